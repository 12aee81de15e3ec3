"""Handlers invoked with API Gateway / Scheduler events from tests/events, against the
emulator: what the function does in Lambda, minus API Gateway itself."""
import copy
import importlib.util
import json
import time
from pathlib import Path

import pytest

from loyalty.web.signatures import sign_order_body

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"
SECRET = "local-order-secret"


def load_handler(name: str):
    spec = importlib.util.spec_from_file_location(f"fn_{name}", ROOT / "functions" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


class Context:
    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "req-1"


def order_event(body: dict | str, *, signed_at: int | None = None, secret: str = SECRET, signature: str | None = None):
    event = json.loads((EVENTS / "order_paid.json").read_text())
    raw = body if isinstance(body, str) else json.dumps(body)
    event["body"] = raw
    header = signature if signature is not None else sign_order_body(secret, raw.encode(), signed_at or int(time.time()))
    event["headers"]["x-signature"] = header
    return event


def paid_body(event_id="evt-1", order_id="1001", amount=12345, member="m-ana", occurred_at="2026-11-20T14:03:00+08:00"):
    return {"event_id": event_id, "type": "order.paid", "occurred_at": occurred_at,
            "order": {"order_id": order_id, "member_id": member, "amount_minor": amount, "currency": "CNY"}}


@pytest.fixture
def orders(fresh_aws):
    return load_handler("order_webhook")


@pytest.fixture
def members(fresh_aws):
    return load_handler("members_api")


def points(members, member="m-ana"):
    event = json.loads((EVENTS / "members_get_points.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/members/{member}/points"
    event["pathParameters"] = {"member_id": member}
    response = members(event, Context())
    assert response["statusCode"] == 200
    return json.loads(response["body"])


def test_the_sample_event_credits_the_member(orders, members):
    event = json.loads((EVENTS / "order_paid.json").read_text())
    event["headers"]["x-signature"] = sign_order_body(SECRET, event["body"].encode(), int(time.time()))
    response = orders(event, Context())
    assert response["statusCode"] == 200
    assert json.loads(response["body"]) == {"event_id": "evt-1001-paid", "member_id": "m-ana", "points": 143, "balance": 143}
    assert points(members)["expiring"] == [{"date": "2027-11-20", "points": 143}]


def test_the_secret_comes_from_secrets_manager(orders, fresh_aws, monkeypatch):
    monkeypatch.delenv("ORDER_WEBHOOK_SECRET", raising=False)
    assert orders(order_event(paid_body()), Context())["statusCode"] == 200


@pytest.mark.parametrize("signature", [
    None, "", "t=123", "v1=abc", "t=abc,v1=00", "garbage",
])
def test_a_missing_or_malformed_signature_is_refused_and_changes_nothing(orders, members, signature):
    event = order_event(paid_body(), signature=signature if signature is not None else "")
    if signature is None:
        del event["headers"]["x-signature"]
    response = orders(event, Context())
    assert response["statusCode"] == 401
    assert points(members)["balance"] == 0


def test_a_wrong_secret_or_an_altered_body_is_refused(orders, members):
    assert orders(order_event(paid_body(), secret="not-the-secret"), Context())["statusCode"] == 401
    event = order_event(paid_body())
    event["body"] = event["body"].replace("12345", "99999")
    assert orders(event, Context())["statusCode"] == 401
    assert points(members)["balance"] == 0


@pytest.mark.parametrize("age", [301, 3600, -301])
def test_a_signature_outside_five_minutes_is_refused(orders, members, age):
    response = orders(order_event(paid_body(), signed_at=int(time.time()) - age), Context())
    assert response["statusCode"] == 401
    assert points(members)["balance"] == 0


def test_a_signature_within_five_minutes_is_accepted(orders):
    assert orders(order_event(paid_body(), signed_at=int(time.time()) - 290), Context())["statusCode"] == 200


@pytest.mark.parametrize("body, fields", [
    ("not json", [""]),
    ("[1, 2]", [""]),
    ({"event_id": "e", "type": "order.shipped", "occurred_at": "2026-11-20T14:03:00+08:00",
      "order": {"order_id": "1", "member_id": "m-ana", "amount_minor": 1, "currency": "CNY"}}, ["type"]),
    ({"event_id": "e", "type": "order.paid", "occurred_at": "2026-11-20T14:03:00",
      "order": {"order_id": "1", "member_id": "m-ana", "amount_minor": 1.5, "currency": "CNY"}},
     ["occurred_at", "order.amount_minor"]),
    ({"event_id": "e", "type": "order.paid", "occurred_at": "2026-11-20T14:03:00+08:00",
      "order": {"order_id": "1", "member_id": "m-ana", "amount_minor": -1, "currency": "XXX"}},
     ["order.amount_minor"]),
    ({"event_id": "e", "type": "order.paid", "occurred_at": "2026-11-20T14:03:00+08:00",
      "order": {"order_id": "1", "member_id": "m-ana", "amount_minor": "100", "currency": "CNY"}},
     ["order.amount_minor"]),
    ({"event_id": "e", "type": "order.refunded", "occurred_at": "2026-11-20T14:03:00+08:00",
      "order": {"order_id": "1", "member_id": "m-ana", "amount_minor": 100, "currency": "CNY"}},
     ["order.refund_amount_minor"]),
    ({"type": "order.paid", "occurred_at": "2026-11-20T14:03:00+08:00"}, ["event_id", "order"]),
])
def test_a_bad_body_gets_400_listing_every_problem_and_changes_nothing(orders, members, body, fields):
    response = orders(order_event(body), Context())
    assert response["statusCode"] == 400
    answer = json.loads(response["body"])
    assert sorted(e["field"] for e in answer["errors"]) == sorted(fields)
    assert all(e["problem"] for e in answer["errors"])
    assert points(members)["balance"] == 0


def test_an_unaccepted_currency_is_a_400(orders):
    body = paid_body()
    body["order"]["currency"] = "XXX"
    response = orders(order_event(body), Context())
    assert response["statusCode"] == 400
    assert json.loads(response["body"])["errors"][0]["field"] == "order.currency"


def test_duplicates_answer_the_same_body_and_a_changed_body_is_409(orders, members):
    first = orders(order_event(paid_body()), Context())
    again = orders(order_event(paid_body()), Context())
    assert again["statusCode"] == 200 and again["body"] == first["body"]
    reordered = json.dumps(dict(reversed(list(paid_body().items()))))
    assert json.loads(orders(order_event(reordered), Context())["body"]) == json.loads(first["body"])
    changed = orders(order_event(paid_body(amount=20000)), Context())
    assert changed["statusCode"] == 409
    assert "event_id" in json.loads(changed["body"])["message"]
    assert points(members)["balance"] == 143


def test_an_oversized_body_is_413(orders):
    body = paid_body()
    body["padding"] = "x" * 70_000
    assert orders(order_event(body), Context())["statusCode"] == 413


def test_the_nightly_schedule_event_expires_what_is_due(orders, members, fresh_aws):
    orders(order_event(paid_body(occurred_at="2026-11-20T14:03:00+08:00")), Context())
    expiry = load_handler("expiry_scan")
    schedule = json.loads((EVENTS / "expiry_schedule.json").read_text())  # 2027-11-21 00:05 in Shanghai
    summary = expiry(schedule, Context())
    assert summary["points_expired"] == 143 and summary["lots_expired"] == 1
    assert points(members)["balance"] == 0
    assert expiry(copy.deepcopy(schedule), Context())["points_expired"] == 0


def test_an_operator_action_without_the_authorizers_claims_fails_closed(members, orders):
    """Only a route that lost its authorizer would arrive without claims: refuse it."""
    orders(order_event(paid_body()), Context())
    event = json.loads((EVENTS / "members_get_points.json").read_text())
    del event["requestContext"]["authorizer"]
    event["routeKey"] = event["requestContext"]["routeKey"] = "POST /members/{member_id}/adjustments"
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/members/m-ana/adjustments"
    event["requestContext"]["http"]["method"] = "POST"
    event["body"] = json.dumps({"points": 500, "reason": "x", "idempotency_key": "k"})
    response = members(event, Context())
    assert response["statusCode"] == 401
    assert points(members)["balance"] == 143
