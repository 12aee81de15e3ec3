"""The messaging store's calls (PynamoDB's, through the layer's boto3 client) are checked
against the calling function's role, as in AWS, and the sweep of stored pushes runs with
the policies template.yaml gives it."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from botocore.exceptions import ClientError

from infra.local import LocalStack
from infra.local.emulator import emulator_client
from infra.local.stack import DEFAULT_TEMPLATE

STACK = "iam-messaging-test"  # its own resource names: moto's state is shared per process


@pytest.fixture(scope="module")
def stack():
    from loyalty import wiring

    wiring.reset()  # the layer's adapters are process-wide: point them at this stack
    try:
        with LocalStack(DEFAULT_TEMPLATE, port=0, time_scale=0.01, stack_name=STACK) as running:
            yield running
    finally:
        wiring.reset()


def stores(stack):
    """The developer's own stores on the stack's table (no function header: not checked)."""
    from loyalty.adapters.ledger import DynamoLedgerStore
    from loyalty.adapters.messaging.store import DynamoMessagingStore
    table, client = stack.model.tables["LoyaltyTable"].name, emulator_client("dynamodb", stack.emulator_url)
    return DynamoLedgerStore(table, shards=4, client=client), DynamoMessagingStore(table, client=client)


def test_a_stored_stop_is_applied_by_the_sweep_under_its_own_role(stack):
    from loyalty.records import Consent, Profile
    ledger, msgs = stores(stack)
    member, phone = f"m-{uuid.uuid4().hex[:8]}", "+8529" + str(uuid.uuid4().int)[:7]
    ledger.put_profile(Profile(member, name="Ana", phone=phone, preferred_channels=("sms",)))
    ledger.add_consent(Consent(member, "sms", "opted_in", "checkout_checkbox", datetime(2026, 1, 1, tzinfo=timezone.utc)))
    came_in = datetime.now(timezone.utc)
    push = {"provider": "twilio", "provider_message_id": "SM" + member, "sender": phone, "text": "STOP", "at": None,
            "kind": "text", "dedup_key": "SM" + member, "payload": None}
    assert msgs.store_inbound("twilio", push["dedup_key"], push, came_in)   # the webhook stopped after storing

    run = stack.run_schedule("ReapplyPushesFunction", (came_in + timedelta(minutes=6)).isoformat())

    # this run, or a run of the same schedule that moving the clock caught up first, applied it
    assert run["result"]["failed"] == 0, run
    assert ledger.consent_history(member, "sms")[0].status == "opted_out"
    assert all(p.dedup_key != push["dedup_key"] for p in msgs.due_inbound(came_in + timedelta(days=1)))


def test_a_store_call_the_functions_role_does_not_allow_is_refused(stack, monkeypatch):
    from loyalty.adapters.messaging.store import DynamoMessagingStore

    def reads_a_message(self, now, limit=500):
        self.message("m-anything")          # GetItem, through PynamoDB: not in ReleaseDeferredFunction's role
        return []

    monkeypatch.setattr(DynamoMessagingStore, "due_deferred", reads_a_message)
    with pytest.raises(ClientError) as refused:
        stack.runtime.invoke("ReleaseDeferredFunction", {"time": datetime.now(timezone.utc).isoformat()})
    assert refused.value.response["Error"]["Code"] == "AccessDeniedException"
    assert "ReleaseDeferredFunction" in str(refused.value) and "dynamodb:GetItem" in str(refused.value)
