"""The local stack runs every function's calls on threads of one process: two overlapping
HTTP requests must each see their own event, as two Lambda containers would."""
import json
import threading

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from infra.local import resolver_state


def http_event(method: str, path: str, body: str | None = None) -> dict:
    """An HTTP API (payload 2.0) event, the parts the resolver reads."""
    return {"version": "2.0", "routeKey": f"{method} {path}", "rawPath": path, "rawQueryString": "",
            "headers": {"content-type": "application/json"}, "body": body, "isBase64Encoded": False,
            "requestContext": {"http": {"method": method, "path": path, "sourceIp": "127.0.0.1"},
                               "stage": "$default", "requestId": "r", "timeEpoch": 0}}


def _event(path: str, body: dict) -> dict:
    return http_event("POST", path, body=json.dumps(body))


def _resolver(barrier: threading.Barrier) -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver()

    @app.post("/echo/<name>")
    def echo(name: str):
        barrier.wait(timeout=5)    # both requests are in their routes before either reads its body
        return {"name": name, "body": app.current_event.json_body, "seen": app.lambda_context["id"]}

    return app


def test_overlapping_requests_to_one_function_or_two_each_read_their_own():
    resolver_state.apply()
    barrier = threading.Barrier(3)
    one, two = _resolver(barrier), _resolver(barrier)
    calls = [(one, "ana"), (one, "bo"), (two, "cy")]
    answers: dict[str, dict] = {}

    def call(app, name):
        answer = app.resolve(_event(f"/echo/{name}", {"member": name}), {"id": name})
        answers[name] = json.loads(answer["body"])

    threads = [threading.Thread(target=call, args=c) for c in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert answers == {name: {"name": name, "body": {"member": name}, "seen": name} for _, name in calls}


def test_outside_a_call_the_resolver_answers_what_powertools_keeps():
    resolver_state.apply()
    app = APIGatewayHttpResolver()

    @app.get("/ping")
    def ping():
        app.append_context(seen=True)
        return {"seen": app.context.get("seen")}

    assert json.loads(app.resolve(http_event("GET", "/ping"), {})["body"]) == {"seen": True}
    assert "seen" not in app.context
