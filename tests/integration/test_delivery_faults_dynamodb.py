"""Faults the delivery path used to hide, over DynamoDB in the emulator, through the
services and handlers as Lambda runs them: a cancelled transaction read as a duplicate,
a send recorded unchecked, deferred jobs lost after two hours, stored pushes never
applied again. Each test failed on the code before its fix."""
import json
from datetime import timedelta

import pytest

from loyalty.adapters.ledger import DynamoLedgerStore
from loyalty.channels.inbound import StatusUpdate
from loyalty.errors import Transient
from loyalty.messaging.conversations import apply_message, apply_status
from loyalty.messaging.dispatcher import dispatch_job, message_id_for, notice_job
from loyalty.records import Consent, Profile
from loyalty.rules import build_rules
from tests.integration.test_handlers import Context, load_handler
from tests.integration.faults import cancel_next_transaction
from tests.integration.test_sending_dynamodb import NOW, Provider, Queues, msgs, record, send  # noqa: F401

RULES = build_rules()
PHONE = "+85290000001"


@pytest.fixture
def ledger(fresh_aws):
    return DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=fresh_aws.client("dynamodb"))


@pytest.fixture
def ana(ledger):
    ledger.put_profile(Profile("ana", name="Ana", phone=PHONE, locale="en", time_zone="Asia/Hong_Kong",
                               preferred_channels=("whatsapp",)))
    ledger.add_consent(Consent("ana", "whatsapp", "opted_in", "checkout_checkbox", NOW - timedelta(days=1),
                               proof="form-1"))
    return "ana"


def campaign_job(campaign: str) -> dict:
    return {"job_id": f"campaign#{campaign}#ana", "kind": "campaign", "member_id": "ana",
            "template": "member_day_offer", "variables": {"offer": "double points"}, "planned_at": NOW.isoformat()}


# --- a cancelled transaction is read by its reasons ---------------------------------------

def test_a_notice_whose_outbox_write_meets_a_transaction_conflict_is_retried_not_dropped(msgs, ana):
    job = notice_job("ev-1", "ana", "points_credited", {"points": 5, "balance": 5}, NOW)
    queues = Queues()
    cancel_next_transaction(msgs.client, "TransactionConflict")
    with pytest.raises(Transient):                      # the jobs queue delivers it again
        dispatch_job(job, msgs, queues, RULES, NOW)
    assert msgs.message(message_id_for(job["job_id"])) is None and queues.sent == []
    assert dispatch_job(job, msgs, queues, RULES, NOW) == "queued:whatsapp"


def test_a_marketing_job_whose_counters_moved_meanwhile_is_decided_again(fresh_aws, msgs, ana):
    # another campaign's message for ana is counted between this job's read and its write
    from loyalty.adapters.messaging.store import DynamoMessagingStore
    other = DynamoMessagingStore(fresh_aws.environ["TABLE_NAME"], client=fresh_aws.client("dynamodb"))
    raced = []

    def race(**_):
        if not raced:
            raced.append(dispatch_job(campaign_job("spring"), other, Queues(), RULES, NOW))
    msgs.client.meta.events.register("before-call.dynamodb.TransactWriteItems", race)

    outcome = dispatch_job(campaign_job("summer"), msgs, Queues(), RULES, NOW)

    assert raced == ["queued:whatsapp"]
    assert outcome == "skipped:cap_reached"             # one marketing message a day, read again
    assert msgs.message(message_id_for("campaign#summer#ana")).status == "skipped"


def test_a_reply_whose_outbox_write_meets_a_conflict_fails_the_push_instead_of_vanishing(msgs, ledger, ana):
    from loyalty.channels.inbound import InboundMessage
    balance = InboundMessage(provider="whatsapp", provider_message_id="wamid.IN1", sender=PHONE.lstrip("+"),
                             text="POINTS", at=int(NOW.timestamp()), kind="text", dedup_key="wamid.IN1")
    queues = Queues()
    cancel_next_transaction(msgs.client, "TransactionConflict")
    with pytest.raises(Transient):                     # the push is noted failed and applied again
        apply_message(balance, ledger, msgs, queues, RULES, NOW)
    assert queues.sent == []
    assert apply_message(balance, ledger, msgs, queues, RULES, NOW).handled == "reply:balance_reply"
    assert [name for name, _, _ in queues.sent] == ["whatsapp"]


# --- the result of marking a message sent is checked --------------------------------------

def receipt(status, pid, code=None, our_ref="m-1"):
    return StatusUpdate(provider="whatsapp", provider_message_id=pid, status=status, at=int(NOW.timestamp()),
                        our_ref=our_ref, recipient=None, error_code=code, error_title="", raw_status=status)


class FastReceipts(Provider):
    """A provider whose receipt reaches the webhook before its answer reaches the sender."""

    def __init__(self, msgs, status, code=None, ledger=None, queues=None):
        super().__init__()
        self.msgs, self.status, self.code, self.ledger, self.queues = msgs, status, code, ledger, queues
        self.pids = []

    def __call__(self, record, channel, payload):
        result = super().__call__(record, channel, payload)
        self.pids.append(result.provider_message_id)
        apply_status(receipt(self.status, result.provider_message_id, self.code), self.msgs, NOW,
                     ledger=self.ledger, queues=self.queues, rules=RULES)
        return result


def test_a_receipt_that_arrives_before_the_send_is_recorded_still_finds_the_message(msgs):
    msgs.create_message(record())
    provider = FastReceipts(msgs, "delivered")
    send(msgs, provider, Queues())
    after = msgs.message("m-1")
    assert after.status == "delivered"                               # the receipt's status stands
    assert after.provider_message_id == provider.pids[0]
    assert msgs.message_id_for("whatsapp", provider.pids[0]) == "m-1"   # later receipts find it by id


def test_a_failure_receipt_before_the_send_is_recorded_lets_the_fallback_go_out(msgs, ledger):
    msgs.create_message(record())
    queues = Queues()
    send(msgs, FastReceipts(msgs, "failed", "131026", ledger=ledger, queues=queues), queues)
    assert queues.sent == [("sms", {"message_id": "m-1", "channel": "sms"}, 0)]
    sms = Provider()
    assert send(msgs, sms, queues, channel="sms") == "sent:sms"
    assert sms.calls == 1 and msgs.message("m-1").channel == "sms"


class SenderQueues(Queues):
    def change_visibility(self, receipt_handle, seconds, name):
        pass


def test_a_send_whose_record_fails_is_recorded_later_and_never_sent_again(fresh_aws, monkeypatch):
    from aws_lambda_powertools import Logger

    from loyalty import wiring
    from loyalty.web.senders import sender_handler
    from tests.integration.test_sending_dynamodb import SenderContext, sqs_event
    store, queues, provider, clock = wiring.messaging_store(), SenderQueues(), Provider(), [NOW]
    store.create_message(record())
    monkeypatch.setattr(wiring, "channel_sender", lambda channel: provider)
    monkeypatch.setattr(wiring, "queues", lambda: queues)
    handler = sender_handler("whatsapp", Logger(), clock=lambda: clock[0])
    cancel_next_transaction(store.client, "TransactionConflict", "None")    # recording the send conflicts

    handler(sqs_event("m-1"), SenderContext())
    for _, body, _ in list(queues.sent):                 # whatever the send queued, delivered
        clock[0] = NOW + timedelta(seconds=5)
        handler({"Records": [{"messageId": "sqs-again", "receiptHandle": "rh", "body": json.dumps(body),
                              "attributes": {"ApproximateReceiveCount": "1"}}]}, SenderContext())
    clock[0] = NOW + timedelta(minutes=10)               # SQS delivers a copy of the first message
    handler(sqs_event("m-1"), SenderContext())

    assert provider.calls == 1
    assert store.message("m-1").status == "sent"


# --- a deferred job is released however long it waited -----------------------------------

def test_a_deferred_job_is_released_however_long_it_waited(fresh_aws, ana):
    from loyalty import wiring
    store = wiring.messaging_store()
    night = NOW.replace(hour=14, minute=40)              # 22:40 in Hong Kong: marketing waits for the morning
    job = campaign_job("night")
    assert dispatch_job(job, store, Queues(), RULES, night) == "deferred"
    [deferred] = [m for m in store.member_messages("ana") if m.status == "deferred"]
    opens = deferred.not_before
    # the releases around the window's opening did not run (an outage): the next one is 3 hours late
    answer = load_handler("release_deferred")({"time": (opens + timedelta(hours=3)).isoformat()}, Context())
    assert answer["released"] == 1
    sqs = fresh_aws.client("sqs")
    [message] = sqs.receive_message(QueueUrl=fresh_aws.environ["REMINDER_JOBS_QUEUE_URL"])["Messages"]
    released = json.loads(message["Body"])
    assert released["job_id"] == job["job_id"] and released["released"] is True
    answer = load_handler("release_deferred")({"time": (opens + timedelta(hours=3, minutes=15)).isoformat()},
                                              Context())
    assert answer["released"] == 0                       # released once


# --- a stored push whose processing failed is processed again -----------------------------

def test_a_stop_whose_processing_failed_is_applied_by_the_sweep_without_any_retry(fresh_aws, ledger, monkeypatch):
    from datetime import datetime, timezone

    from loyalty.messaging import conversations
    from tests.integration.test_stored_pushes_dynamodb import WA_ID, push
    ledger.put_profile(Profile("wa", name="Wa", phone="+" + WA_ID, preferred_channels=("whatsapp",)))
    ledger.add_consent(Consent("wa", "whatsapp", "opted_in", "checkout_checkbox", NOW - timedelta(days=400)))
    real = conversations.apply_message

    def broken(*args, **kwargs):
        raise RuntimeError("the ledger was unreachable")
    monkeypatch.setattr(conversations, "apply_message", broken)
    with pytest.raises(RuntimeError):
        load_handler("whatsapp_webhook")(push(text="STOP", message_id="wamid.LOSTSTOP"), Context())
    monkeypatch.setattr(conversations, "apply_message", real)
    assert ledger.consent_history("wa", "whatsapp")[0].status == "opted_in"

    # the provider never retries; the sweep runs on its schedule
    later = datetime.now(timezone.utc) + timedelta(minutes=6)
    answer = load_handler("reapply_pushes")({"time": later.isoformat()}, Context())

    assert answer["applied"] == 1
    [latest, *_] = ledger.consent_history("wa", "whatsapp")
    assert (latest.status, latest.source) == ("opted_out", "keyword:STOP")
    answer = load_handler("reapply_pushes")({"time": (later + timedelta(hours=1)).isoformat()}, Context())
    assert answer["due"] == 0                            # applied once
