"""The local stack plays API Gateway, Lambda's SQS pollers and EventBridge faithfully.

Runs the tiny application in tests/fixtures/local_stack in-process, and talks to it
only over real sockets: HTTP to the API and the control endpoints, boto3 to the
emulator.
"""

from __future__ import annotations

import base64
import http.client
import json
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from infra.local import LocalStack
from infra.local.emulator import emulator_client

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "local_stack" / "template.yaml"


STACK = "local-stack-test"  # its own resource names: moto's state is shared per process


@pytest.fixture(scope="module")
def stack():
    with LocalStack(FIXTURE, port=0, time_scale=0.01, stack_name=STACK) as running:
        yield running


@pytest.fixture(scope="module")
def client(stack):
    """client("sqs"): one boto3 client per service for the emulator (creating one is slow)."""
    clients = {}

    def get(service):
        if service not in clients:
            clients[service] = emulator_client(service, stack.emulator_url)
        return clients[service]
    return get


def echo(stack, method, path, body=None, headers=()):
    """Send a request with http.client (repeated headers allowed); (status, headers, json)."""
    connection = http.client.HTTPConnection("127.0.0.1", int(stack.api_url.rsplit(":", 1)[1]), timeout=10)
    connection.putrequest(method, path, skip_accept_encoding=True)
    for name, value in headers:
        connection.putheader(name, value)
    connection.putheader("Content-Length", str(len(body or b"")))
    connection.endheaders(body)
    response = connection.getresponse()
    payload = response.read()
    connection.close()
    return response.status, response.getheaders(), json.loads(payload) if payload else None


def job_items(client, stack, run, label):
    table = stack.model.tables["Table"].name
    items = client("dynamodb").query(
        TableName=table, KeyConditionExpression="PK = :pk",
        ExpressionAttributeValues={":pk": {"S": f"JOB#{run}#{label}"}})["Items"]
    return sorted(items, key=lambda item: item["SK"]["S"])


def drain(stack):
    response = requests.post(f"{stack.api_url}/_local/drain", timeout=70)
    assert response.status_code == 200
    return response.json()


# --------------------------------------------------------------------------- API


def test_rest_api_event_is_what_api_gateway_sends(stack):
    # given a request with path parameters, repeated query names and repeated headers
    status, _, answer = echo(stack, "GET", "/items/42/notes/n%207?a=1&a=2&b=x%20y&empty=",
                             headers=[("X-Multi", "1"), ("X-Multi", "2"), ("X-Case", "Kept")])

    # then the function gets a payload 1.0 event
    event = answer["event"]
    assert status == 200
    assert event["resource"] == "/items/{item_id}/notes/{note_id}"
    assert event["path"] == "/items/42/notes/n%207"
    assert event["httpMethod"] == "GET"
    assert event["pathParameters"] == {"item_id": "42", "note_id": "n%207"}
    assert event["queryStringParameters"] == {"a": "2", "b": "x y", "empty": ""}
    assert event["multiValueQueryStringParameters"] == {"a": ["1", "2"], "b": ["x y"], "empty": [""]}
    assert event["headers"]["X-Multi"] == "2"
    assert event["multiValueHeaders"]["X-Multi"] == ["1", "2"]
    assert event["headers"]["X-Case"] == "Kept"
    assert event["stageVariables"] is None
    assert event["body"] is None and event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["stage"] == "test"
    assert context["resourcePath"] == "/items/{item_id}/notes/{note_id}"
    assert context["httpMethod"] == "GET"
    assert context["identity"]["sourceIp"] == "127.0.0.1"
    assert isinstance(context["requestTimeEpoch"], int)
    assert context["requestId"]
    # and a Lambda context and the template's environment
    assert answer["function_name"] == f"{STACK}-EchoFunction"
    assert 0 < answer["remaining_ms"] <= 5000
    assert answer["memory"] == 256
    assert answer["env"]["GREETING"] == f"hello-from-{STACK}"
    assert answer["env"]["TABLE_NAME"] == f"{STACK}-Table"
    assert answer["env"]["JOBS_QUEUE_URL"] == f"{stack.emulator_url}/123456789012/{STACK}-JobsQueue"
    assert answer["env"]["AWS_ENDPOINT_URL"] == stack.emulator_url


def test_raw_body_arrives_byte_for_byte(stack):
    text = '{"b": 2,   "a":"é"}\n\t '.encode()
    _, _, answer = echo(stack, "POST", "/items/1/notes/2", body=text,
                        headers=[("Content-Type", "application/json")])
    assert answer["event"]["body"].encode("utf-8") == text
    assert answer["event"]["isBase64Encoded"] is False

    binary = b"\xff\x00\xfe raw"
    _, _, answer = echo(stack, "POST", "/items/1/notes/2", body=binary)
    assert answer["event"]["isBase64Encoded"] is True
    assert base64.b64decode(answer["event"]["body"]) == binary


def test_routes_prefer_literals_and_greedy_proxy_takes_the_rest(stack):
    _, _, featured = echo(stack, "GET", "/items/featured/notes/9")
    assert featured["event"]["resource"] == "/items/featured/notes/{note_id}"

    status, _, files = echo(stack, "DELETE", "/files/a/b/c.txt")
    assert status == 200
    assert files["event"]["pathParameters"] == {"proxy": "a/b/c.txt"}
    assert files["event"]["httpMethod"] == "DELETE"


def test_http_api_gets_a_payload_2_event(stack):
    status, _, answer = echo(stack, "POST", "/v2/echo/Ann%20Lee?x=1&x=2", body=b"hi",
                             headers=[("X-Multi", "1"), ("X-Multi", "2"), ("Cookie", "c=1; d=2")])
    event = answer["event"]
    assert status == 200
    assert event["version"] == "2.0"
    assert event["routeKey"] == "POST /v2/echo/{name}"
    assert event["rawPath"] == "/v2/echo/Ann Lee"
    assert event["rawQueryString"] == "x=1&x=2"
    assert event["queryStringParameters"] == {"x": "1,2"}
    assert event["pathParameters"] == {"name": "Ann Lee"}
    assert event["headers"]["x-multi"] == "1,2"
    assert event["cookies"] == ["c=1", "d=2"]
    assert event["requestContext"]["http"]["method"] == "POST"
    assert event["requestContext"]["stage"] == "$default"
    assert event["body"] == "hi"


def test_response_maps_status_headers_and_base64_body(stack):
    status, headers, _ = echo(stack, "GET", "/items/1/notes/2?status=201")
    assert status == 201
    assert ("X-Echo", "yes") in headers
    assert [value for name, value in headers if name == "Set-Cookie"] == ["a=1", "b=2"]

    response = requests.get(f"{stack.api_url}/items/1/notes/2?binary=1", timeout=10)
    assert response.content == b"\x00\xffbinary"
    assert response.headers["Content-Type"] == "application/octet-stream"


def test_misses_answer_as_the_api_that_owns_the_path(stack):
    # An HTTP API (EchoV2) serves the stack: an unknown path is its 404.
    missing = requests.get(f"{stack.api_url}/nowhere", timeout=10)
    assert missing.status_code == 404
    assert missing.json() == {"message": "Not Found"}
    # Another method on a REST API resource: REST's 403, as API Gateway answers it.
    wrong = requests.delete(f"{stack.api_url}/items/1/notes/2", timeout=10)
    assert wrong.status_code == 403
    assert wrong.json() == {"message": "Missing Authentication Token"}
    # Another method on an HTTP API route: its 404.
    other = requests.get(f"{stack.api_url}/v2/echo/x", timeout=10)
    assert (other.status_code, other.json()) == (404, {"message": "Not Found"})
    # A control route: 405 with Allow.
    control = requests.delete(f"{stack.api_url}/_local/drain", timeout=10)
    assert control.status_code == 405 and control.headers["Allow"] == "POST"


@pytest.mark.parametrize("method", ["FOO", "TRACE", "CONNECT", "PROPFIND"])
def test_any_method_gets_json_never_an_html_page(stack, method):
    status, headers, body = echo(stack, method, "/nowhere")
    assert status == 404 and body == {"message": "Not Found"}
    assert dict(headers)["Content-Type"] == "application/json"


def test_a_malformed_request_gets_a_json_400(stack):
    port = int(stack.api_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"GET /x HTTP/1.1 extra\r\n\r\n")
        reply = connection.recv(4096)
    assert reply.startswith(b"HTTP/1.1 400") or reply.startswith(b"HTTP/1.0 400")
    assert b"application/json" in reply and b"<html" not in reply.lower()


def test_handler_exception_is_a_502_as_api_gateway_answers(stack):
    response = requests.get(f"{stack.api_url}/items/boom/notes/1", timeout=10)
    assert response.status_code == 502
    assert response.json() == {"message": "Internal server error"}


def test_body_over_10_mb_is_refused_with_413(stack):
    port = int(stack.api_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"POST /items/1/notes/2 HTTP/1.1\r\nHost: x\r\n"
                           b"Content-Length: 10485761\r\n\r\n" + b"x" * 1024)
        reply = connection.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_twenty_parallel_transactions_all_succeed(stack, client):
    ids = [f"t{i}-{uuid.uuid4().hex[:6]}" for i in range(20)]
    with ThreadPoolExecutor(max_workers=20) as pool:
        statuses = list(pool.map(
            lambda transfer_id: requests.post(f"{stack.api_url}/transfers/{transfer_id}", timeout=30).status_code,
            ids))
    assert statuses == [200] * 20
    table = stack.model.tables["Table"].name
    for transfer_id in ids:
        items = client("dynamodb").query(TableName=table, KeyConditionExpression="PK = :pk",
                                      ExpressionAttributeValues={":pk": {"S": f"TRANSFER#{transfer_id}"}})
        assert items["Count"] == 2


# ------------------------------------------------------------------------ queues


def test_consumer_gets_batches_no_larger_than_batch_size(stack, client):
    run = uuid.uuid4().hex[:8]
    queue_url = stack.model.queues["JobsQueue"].url
    client("sqs").send_message_batch(QueueUrl=queue_url, Entries=[
        {"Id": str(i), "MessageBody": f"{run}:job-{i}"} for i in range(7)])

    assert drain(stack)["drained"] is True
    table = stack.model.tables["Table"].name
    batches = client("dynamodb").query(TableName=table, KeyConditionExpression="PK = :pk",
                                    ExpressionAttributeValues={":pk": {"S": f"BATCH#{run}"}})["Items"]
    sizes = sorted(int(batch["size"]["N"]) for batch in batches)
    assert sum(sizes) == 7
    assert max(sizes) == 3  # BatchSize: 3
    first = job_items(client, stack, run, "job-0")[0]
    assert set(first["record_keys"]["SS"]) >= {
        "messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
        "eventSource", "eventSourceARN", "awsRegion"}
    assert first["event_source"]["S"] == "aws:sqs"


def test_partial_failures_are_retried_then_dead_lettered(stack, client):
    # given a batch where one job is poison
    run = uuid.uuid4().hex[:8]
    sqs = client("sqs")
    dead_letter_url = stack.model.queues["JobsDeadLetterQueue"].url
    dead_before = drain(stack)["dead_letter"]["JobsDeadLetterQueue"]
    sqs.send_message_batch(QueueUrl=stack.model.queues["JobsQueue"].url, Entries=[
        {"Id": label, "MessageBody": f"{run}:{label}"} for label in ("ok-1", "poison", "ok-2")])

    # when the queues drain
    summary = drain(stack)

    # then the good jobs ran once, the poison one maxReceiveCount (3) times
    assert [i["SK"]["S"] for i in job_items(client, stack, run, "ok-1")] == ["RECEIVE#1"]
    assert [i["SK"]["S"] for i in job_items(client, stack, run, "ok-2")] == ["RECEIVE#1"]
    assert [i["SK"]["S"] for i in job_items(client, stack, run, "poison")] == ["RECEIVE#1", "RECEIVE#2", "RECEIVE#3"]
    # and it sits in the dead-letter queue, counted by /_local/drain
    assert summary["drained"] is True
    assert summary["queues"]["JobsQueue"] == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert summary["dead_letter"]["JobsDeadLetterQueue"] == dead_before + 1
    bodies = [m["Body"] for m in sqs.receive_message(
        QueueUrl=dead_letter_url, MaxNumberOfMessages=10)["Messages"]]
    assert f"{run}:poison" in bodies


def test_delays_and_a_handler_set_visibility_are_respected_on_the_time_scale(stack, client):
    run = uuid.uuid4().hex[:8]
    sqs = client("sqs")
    queue_url = stack.model.queues["JobsQueue"].url
    sent = time.time()
    sqs.send_message(QueueUrl=queue_url, MessageBody=f"{run}:delayed", DelaySeconds=100)  # 1 s scaled
    sqs.send_message(QueueUrl=queue_url, MessageBody=f"{run}:snooze")  # handler asks 200 s: 2 s scaled

    assert drain(stack)["drained"] is True

    delayed = job_items(client, stack, run, "delayed")
    assert float(delayed[0]["at"]["N"]) - sent >= 0.9
    first, second = job_items(client, stack, run, "snooze")
    assert float(second["at"]["N"]) - float(first["at"]["N"]) >= 1.8  # not the queue's 0.3 s


# --------------------------------------------------------------------- schedules


def test_schedule_runs_with_the_time_substituted_and_waits_for_the_queues(stack, client):
    # given a time without an offset: read in the schedule's zone (Asia/Shanghai)
    response = requests.post(f"{stack.api_url}/_local/schedules/NightlyWriterFunction",
                             json={"time": "2026-11-24T00:05:00"}, timeout=70)

    assert response.status_code == 200
    answer = response.json()
    assert answer["function"] == "NightlyWriterFunction"
    assert answer["time"] == "2026-11-23T16:05:00Z"
    assert answer["result"] == {"wrote": "2026-11-23T16:05:00Z"}
    assert answer["queues"]["JobsQueue"] == {"visible": 0, "in_flight": 0, "delayed": 0}
    assert stack.clock.simulated.isoformat() == "2026-11-23T16:05:00+00:00"
    table = stack.model.tables["Table"].name
    stored = client("dynamodb").get_item(TableName=table, Key={
        "PK": {"S": "SCHEDULED"}, "SK": {"S": "2026-11-23T16:05:00Z"}})["Item"]
    event = json.loads(stored["event"]["S"])
    assert event["arn"].endswith(f":schedule/default/{STACK}-NightlyWriterFunctionNightly")
    assert event["attempt"] == "1"
    # the job it queued was consumed before the answer came back
    assert job_items(client, stack, f"nightly-{event['execution']}", "from-schedule")


@pytest.mark.parametrize("name", ["NightlyWriterFunction", "nightlywriterfunction",
                                  "NightlyWriter", "nightly_writer"])
def test_schedule_accepts_the_function_by_any_of_its_names(stack, name):
    response = requests.post(f"{stack.api_url}/_local/schedules/{name}",
                             json={"time": "2027-01-01T00:00:00+08:00"}, timeout=70)
    assert response.status_code == 200
    assert response.json()["function"] == "NightlyWriterFunction"


def test_schedule_without_input_gets_the_eventbridge_envelope(stack):
    response = requests.post(f"{stack.api_url}/_local/schedules/tick",
                             json={"time": "2026-05-01T10:00:00Z"}, timeout=70)
    event = response.json()["result"]
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["time"] == "2026-05-01T10:00:00Z"


@pytest.mark.parametrize("name, body, status", [
    ("NoSuchFunction", {"time": "2026-01-01T00:00:00Z"}, 404),
    ("EchoFunction", {"time": "2026-01-01T00:00:00Z"}, 404),  # has no schedule
    ("NightlyWriter", {}, 400),
    ("NightlyWriter", {"time": "yesterday"}, 400),
])
def test_schedule_rejects_unknown_functions_and_bad_times(stack, name, body, status):
    response = requests.post(f"{stack.api_url}/_local/schedules/{name}", json=body, timeout=10)
    assert response.status_code == status
    assert response.json()["message"]


# ------------------------------------------------------------ control and setup


def test_health_says_what_listens_where(stack):
    health = requests.get(f"{stack.api_url}/_local/health", timeout=10).json()
    assert health["api_url"] == stack.api_url
    assert health["emulator_url"] == stack.emulator_url
    assert "POST /transfers/{transfer_id}" in health["routes"]
    assert health["pollers"] == ["JobsQueue -> JobsConsumerFunction"]


def test_resources_are_created_from_the_template(stack, client):
    table = client("dynamodb").describe_table(TableName=f"{STACK}-Table")["Table"]
    index = table["GlobalSecondaryIndexes"][0]
    assert index["IndexName"] == "ByKind"
    assert index["Projection"] == {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["size"]}
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=stack.model.queues["JobsQueue"].url, AttributeNames=["All"])["Attributes"]
    assert attributes["VisibilityTimeout"] == "30"
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": f"arn:aws:sqs:us-east-1:123456789012:{STACK}-JobsDeadLetterQueue",
        "maxReceiveCount": 3}
    secret = client("secretsmanager").get_secret_value(SecretId=stack.model.secrets["Secrets"].arn)
    assert json.loads(secret["SecretString"])["ORDER_WEBHOOK_SECRET"] == "local-order-secret"
    parameter = client("ssm").get_parameter(Name=f"{STACK}-Settings")["Parameter"]
    assert parameter["Value"] == '{"greeting": "hello"}'


def test_control_routes_can_be_added_while_serving(stack):
    from infra.local.http import Response

    stack.router.add("GET", "/_local/ping/{name}",
                     lambda request, params: Response.json(200, {"pong": params["name"]}))
    assert requests.get(f"{stack.api_url}/_local/ping/x", timeout=10).json() == {"pong": "x"}


def test_observers_see_each_routed_request_before_its_handler_and_cannot_break_it():
    from infra.local.http import HttpServer, Response, Router

    router, seen = Router(), []
    router.add("POST", "/webhooks/{name}", lambda request, params: Response.json(200, {"seen": list(seen)}))
    router.observe(lambda request, route: seen.append((request.path, route.path, request.body.decode())))
    router.observe(lambda request, route: 1 / 0)   # logged, and the request goes on
    server = HttpServer(router, "127.0.0.1", 0).start()
    try:
        answer = requests.post(f"{server.url}/webhooks/whatsapp", data=b"raw", timeout=5)
        missed = requests.post(f"{server.url}/elsewhere", data=b"x", timeout=5)
    finally:
        server.stop()
    assert answer.status_code == 200
    assert answer.json() == {"seen": [["/webhooks/whatsapp", "/webhooks/{name}", "raw"]]}
    assert missed.status_code == 404 and len(seen) == 1   # unrouted requests are not observed
