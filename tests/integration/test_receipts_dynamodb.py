"""Failures a provider reports after accepting a send (WhatsApp reports 131026 and 131047
in status webhooks, Twilio 30003-30007 in status callbacks), over the outbox in DynamoDB."""
from datetime import timedelta

import pytest

from loyalty.adapters.ledger import DynamoLedgerStore
from loyalty.channels.inbound import StatusUpdate
from loyalty.messaging.conversations import apply_status
from tests.integration.test_sending_dynamodb import NOW, Provider, Queues, msgs, record, send  # noqa: F401
from loyalty.rules import build_rules

RULES = build_rules()


@pytest.fixture
def ledger(fresh_aws):
    return DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=fresh_aws.client("dynamodb"))


def receipt(status, pid, code=None, provider="whatsapp", at=NOW + timedelta(minutes=1), our_ref=None):
    return StatusUpdate(provider=provider, provider_message_id=pid, status=status, at=int(at.timestamp()),
                        our_ref=our_ref, recipient=None, error_code=code, error_title="", raw_status=status)


def sent(msgs, message=None, **kw):
    """A message the provider accepted; answers its provider id."""
    msgs.create_message(message or record(**kw))
    message_id = (message.message_id if message else "m-1")
    channel = (message.channel if message else kw.get("channel", "whatsapp"))
    assert send(msgs, Provider(), Queues(), channel=channel, message_id=message_id) == f"sent:{channel}"
    return msgs.message(message_id).provider_message_id


def apply(update, msgs, ledger, queues):
    return apply_status(update, msgs, NOW + timedelta(minutes=2), ledger=ledger, queues=queues, rules=RULES).handled


def test_undeliverable_in_a_receipt_falls_back_to_the_next_channel_once(msgs, ledger):
    pid = sent(msgs)
    queues = Queues()
    assert apply(receipt("failed", pid, "131026"), msgs, ledger, queues) == "fallback:sms"
    assert queues.sent == [("sms", {"message_id": "m-1", "channel": "sms"}, 0)]
    moved = msgs.message("m-1")
    assert (moved.status, moved.channel, moved.fallbacks) == ("queued", "sms", ())
    assert [h[0] for h in moved.history] == ["queued", "sent", "failed", "fallback"]
    # Meta retries the webhook: routed again at most, and sent once by the claim.
    assert apply(receipt("failed", pid, "131026"), msgs, ledger, queues) == "rerouted:sms"
    # A late "delivered" of the WhatsApp send changes nothing.
    assert apply(receipt("delivered", pid), msgs, ledger, queues) == "status:not_forward"
    provider = Provider()
    assert send(msgs, provider, queues, channel="sms") == "sent:sms"
    assert send(msgs, provider, queues, channel="sms") == "not_claimed:sent"
    assert provider.calls == 1


def test_undeliverable_with_no_channel_left_is_a_failure(msgs, ledger):
    pid = sent(msgs, fallbacks=())
    queues = Queues()
    assert apply(receipt("failed", pid, "131026"), msgs, ledger, queues) == "status:failed"
    assert queues.sent == [] and msgs.message("m-1").status == "failed"


def test_131047_in_a_receipt_sends_the_approved_template_instead(msgs, ledger):
    from loyalty.messaging.outbox import OutboxRecord
    reply = OutboxRecord(message_id="m-r", member_id="ana", kind="reply", template="balance_reply",
                         category="utility", channel="whatsapp", to="+85290000001", locale="en",
                         variables={"balance": 1520, "expiring": "", "redeemable": ""},
                         payloads={"whatsapp": {"type": "text", "body": "Your points: 1,520"}}, fallbacks=(),
                         status="queued", created_at=NOW, history=(("queued", NOW.isoformat(), ""),))
    pid = sent(msgs, reply)
    queues = Queues()
    assert apply(receipt("failed", pid, "131047"), msgs, ledger, queues) == "resend:whatsapp"
    again = msgs.message("m-r")
    assert again.status == "queued" and again.payloads["whatsapp"]["type"] == "template"
    assert again.payloads["whatsapp"]["name"] == RULES.template("balance_reply").whatsapp.name
    # The first send's own late "sent" does not stop the template going out.
    assert apply(receipt("sent", pid), msgs, ledger, queues) == "status:not_forward"
    payloads = []
    provider = Provider()
    original = provider.__call__

    def capture(record, channel, payload):
        payloads.append(payload)
        return original(record, channel, payload)

    assert send(msgs, capture, queues, message_id="m-r") == "sent:whatsapp"
    assert [p["type"] for p in payloads] == ["template"]


def test_an_opt_out_in_a_receipt_is_recorded_and_suppresses(msgs, ledger):
    pid = sent(msgs, channel="sms")
    queues = Queues()
    # Twilio finds the message through the status callback URL (our id in its query)
    update = receipt("undelivered", pid, "21610", provider="twilio", our_ref="m-1")
    assert apply(update, msgs, ledger, queues) == "suppressed"
    assert msgs.message("m-1").status == "suppressed" and queues.sent == []
    [consent] = ledger.consent_history("ana", "sms")
    assert consent.status == "opted_out" and consent.source == "provider:twilio:21610"


def test_131050_in_a_receipt_is_an_opt_out_of_whatsapp_marketing_only(msgs, ledger):
    pid = sent(msgs)
    assert apply(receipt("failed", pid, "131050"), msgs, ledger, Queues()) == "suppressed"
    assert ledger.consent_history("ana", "whatsapp") == []
    [consent] = ledger.consent_history("ana", "whatsapp_marketing")
    assert consent.status == "opted_out" and consent.source == "provider:whatsapp:131050"


def test_a_late_transient_failure_sends_again_after_the_wait_twice_at_most(msgs, ledger):
    pid = sent(msgs, fallbacks=())
    queues = Queues()
    assert apply(receipt("failed", pid, "131049"), msgs, ledger, queues) == "resend:whatsapp"
    assert queues.sent == [("whatsapp", {"message_id": "m-1", "channel": "whatsapp"}, 900)]
    for _ in range(2):
        provider = Provider()
        send(msgs, provider, queues)
        pid = msgs.message("m-1").provider_message_id
        outcome = apply(receipt("failed", pid, "131049"), msgs, ledger, queues)
    assert outcome == "status:failed" and msgs.message("m-1").status == "failed"
    assert [h[0] for h in msgs.message("m-1").history].count("resend") == 2


def test_a_failure_of_an_older_send_or_unknown_code_changes_only_the_status(msgs, ledger):
    pid = sent(msgs)
    queues = Queues()
    # found through our reference, but about another send than the one on record
    assert apply(receipt("failed", "wamid.other", "131026", our_ref="m-1"), msgs, ledger, queues) == "status:failed"
    assert apply(receipt("failed", pid, "999999"), msgs, ledger, queues) == "status:not_forward"
    assert queues.sent == [] and msgs.message("m-1").channel == "whatsapp"
