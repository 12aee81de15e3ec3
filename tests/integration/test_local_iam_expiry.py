"""The nightly expiry's retry path runs with the real template's IAM policies.

When a lot moves between the expiry index read and the expiry's transaction, the
transaction's condition fails and ExpiryScanFunction re-reads the member: a Query on
the base table, not on the ExpiryIndex. Its policy used to allow Query on the index
only, so in AWS that re-read failed with AccessDeniedException every time it was
needed. The local stack now enforces the template's policies, so this test fails with
that AccessDeniedException if the table statement of ExpiryScanFunction in
template.yaml loses dynamodb:Query again (checked by hand when the fix was made).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import requests

from infra.local import LocalStack
from infra.local.emulator import SerializedApp, emulator_client
from infra.local.iam import HEADER
from infra.local.stack import DEFAULT_TEMPLATE
from loyalty.web.signatures import sign_order_body

STACK = "iam-expiry-test"  # its own resource names: moto's state is shared per process
ORDER_SECRET = "local-order-secret"


@pytest.fixture(scope="module")
def stack():
    from loyalty import wiring

    wiring.reset()  # the layer's adapters are process-wide: point them at this stack
    try:
        with LocalStack(DEFAULT_TEMPLATE, port=0, time_scale=0.01, stack_name=STACK) as running:
            yield running
    finally:
        wiring.reset()


def post_order(stack, body: dict) -> dict:
    raw = json.dumps(body).encode()
    response = requests.post(f"{stack.api_url}/webhooks/orders", data=raw, timeout=30, headers={
        "Content-Type": "application/json", "X-Signature": sign_order_body(ORDER_SECRET, raw, int(time.time()))})
    assert response.status_code == 200, response.text
    return response.json()


def refund_when_the_expiry_has_read_the_index(monkeypatch, stack, member: str, refund: dict) -> threading.Event:
    """Between ExpiryScanFunction's ExpiryIndex query (answered) and its transaction,
    the order system refunds part of the order: the lot the index showed has moved."""
    done = threading.Event()
    original = SerializedApp._call

    def call(app, environ, body):
        answer = original(app, environ, body)
        if (not done.is_set() and environ.get("HTTP_" + HEADER.upper().replace("-", "_")) == "ExpiryScanFunction"
                and json.loads(body or b"{}").get("IndexName") == "ExpiryIndex" and member.encode() in answer[2]):
            done.set()
            post_order(stack, refund)  # outside moto's lock: the webhook's own calls go through
        return answer

    monkeypatch.setattr(SerializedApp, "_call", call)
    return done


def test_a_lot_that_moved_after_the_index_read_is_expired_after_re_reading_the_member(stack, monkeypatch):
    # given a member whose order of 100.00 CNY earned 120 points, in a lot due in a day or two
    member, order = f"m-{uuid.uuid4().hex[:10]}", f"o-{uuid.uuid4().hex[:10]}"
    now = datetime.now(timezone.utc)
    paid_at = (now - timedelta(days=364)).isoformat(timespec="seconds")
    order_body = {"order_id": order, "member_id": member, "amount_minor": 10000, "currency": "CNY"}
    assert post_order(stack, {"event_id": f"{order}-paid", "type": "order.paid", "occurred_at": paid_at,
                              "order": order_body})["points"] == 120
    # and half of the order refunded while the nightly expiry is between its index read and its write
    refund = {"event_id": f"{order}-refund", "type": "order.refunded", "occurred_at": now.isoformat(timespec="seconds"),
              "order": {**order_body, "refund_amount_minor": 5000}}
    refunded = refund_when_the_expiry_has_read_the_index(monkeypatch, stack, member, refund)

    # when the nightly expiry runs after the lot's expiry
    run = stack.run_schedule("ExpiryScanFunction", (now + timedelta(days=3)).isoformat())

    # then the blind write lost, the member was re-read (a Query on the table) and what
    # was left of the lot expired
    assert refunded.is_set()
    assert run["result"]["retried_members"] == 1
    assert (run["result"]["lots_expired"], run["result"]["points_expired"]) == (1, 60)
    table = stack.model.tables["LoyaltyTable"].name
    dynamodb = emulator_client("dynamodb", stack.emulator_url)
    profile = dynamodb.get_item(TableName=table, Key={"PK": {"S": f"MEMBER#{member}"}, "SK": {"S": "PROFILE"}})
    assert profile["Item"]["balance"] == {"N": "0"}
    entries = dynamodb.query(TableName=table, KeyConditionExpression="PK = :pk AND begins_with(SK, :tx)",
                             ExpressionAttributeValues={":pk": {"S": f"MEMBER#{member}"}, ":tx": {"S": "TX#"}})
    assert sorted((item["type"]["S"], int(item["amount"]["N"])) for item in entries["Items"]) == [
        ("EARN", 120), ("EXPIRE", -60), ("REFUND", -60)]
