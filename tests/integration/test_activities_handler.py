"""The members API's activity and review routes invoked as API Gateway calls them,
against the emulator: the 积分到账 notice of a credited activity and of an approved
review is queued (a held one queues none until approved)."""
import json
from datetime import datetime, timezone

import pytest

from tests.integration.test_handlers import Context, load_handler


def call(members, method: str, path: str, route: str, body: dict | None = None, query: str = "",
         sub: str = "ops-ana") -> tuple[int, dict]:
    event = {"version": "2.0", "routeKey": f"{method} {route}", "rawPath": path, "rawQueryString": query,
             "headers": {"content-type": "application/json"},
             "queryStringParameters": dict(p.split("=", 1) for p in query.split("&")) if query else None,
             "requestContext": {"requestId": "r", "stage": "$default", "routeKey": f"{method} {route}",
                                "http": {"method": method, "path": path},
                                "authorizer": {"jwt": {"claims": {"sub": sub}, "scopes": []}}},
             "body": json.dumps(body) if body is not None else None, "isBase64Encoded": False}
    answer = members(event, Context())
    return answer["statusCode"], json.loads(answer["body"])


def queued_jobs(fresh_aws) -> list[dict]:
    sqs, url = fresh_aws.client("sqs"), fresh_aws.environ["REMINDER_JOBS_QUEUE_URL"]
    jobs = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not got:
            return jobs
        jobs += [json.loads(m["Body"]) for m in got]


@pytest.fixture
def members(fresh_aws):
    return load_handler("members_api")


def test_a_credited_activity_and_an_approved_review_queue_their_notices(members, fresh_aws):
    at = datetime.now(timezone.utc).isoformat()
    status, body = call(members, "POST", "/members/m-ana/activities", "/members/{member_id}/activities",
                        {"activity_id": "a1", "type": "poll", "occurred_at": at})
    assert (status, body["status"], body["points"]) == (200, "credited", 5)
    status, held = call(members, "POST", "/members/m-ana/activities", "/members/{member_id}/activities",
                        {"activity_id": "u1", "type": "ugc", "occurred_at": at})
    assert held["status"] == "held"
    jobs = queued_jobs(fresh_aws)
    assert [(j["job_id"], j["variables"]) for j in jobs] == [
        ("notice#points_credited#activity#m-ana#a1", {"points": 5, "balance": 5})]

    status, page = call(members, "GET", "/reviews", "/reviews", query="status=open")
    (review,) = page["reviews"]
    status, decided = call(members, "POST", f"/reviews/{review['review_id']}", "/reviews/{review_id}",
                           {"decision": "approve", "note": "fine"})
    assert (status, decided["status"], decided["operator_id"]) == (200, "approved", "ops-ana")
    jobs = queued_jobs(fresh_aws)
    assert [(j["job_id"], j["variables"]) for j in jobs] == [
        (f"notice#points_credited#review#{review['review_id']}", {"points": 50, "balance": 55})]
    # deciding again answers the same and queues nothing more
    assert call(members, "POST", f"/reviews/{review['review_id']}", "/reviews/{review_id}",
                {"decision": "approve"})[1] == decided
    assert queued_jobs(fresh_aws) == []
