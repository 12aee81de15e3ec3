"""Sending one outbox message, over the messaging store's fake: SQS delivers at least once
and a Lambda can stop between two calls; neither may lose a message or send it twice."""
from datetime import timedelta

import pytest

from loyalty.channels.inbound import StatusUpdate
from loyalty.channels.providers import ProviderError
from loyalty.errors import Transient
from loyalty.messaging.conversations import apply_status
from loyalty.messaging.outbox import OutboxRecord
from loyalty.messaging.sending import RECEIPT_WAIT_S, RECORD_AGAIN_S, RetryLater, SendLater, record_accepted
from tests.unit.messaging_fakes import NOW, RULES, Provider, Queues, ledger, msgs, record, send  # noqa: F401

BUSY = ProviderError("transient", "http_503", "unavailable", provider="whatsapp")


def receipt(status, pid, code=None, our_ref="m-1"):
    return StatusUpdate(provider="whatsapp", provider_message_id=pid, status=status, at=int(NOW.timestamp()),
                        our_ref=our_ref, recipient=None, error_code=code, error_title="", raw_status=status)


def test_a_send_is_claimed_sent_and_recorded_with_the_providers_id(msgs):
    msgs.create_message(record())
    provider = Provider()
    assert send(msgs, provider, Queues()) == "sent:whatsapp"
    sent = msgs.message("m-1")
    assert (sent.status, sent.provider, sent.attempts) == ("sent", "whatsapp", 1)
    assert msgs.message_id_for("whatsapp", sent.provider_message_id) == "m-1"


def test_a_redelivery_while_another_sender_holds_the_message_comes_back_after_the_lease(msgs):
    msgs.create_message(record())
    msgs.claim("m-1", "whatsapp", NOW)                  # sender A, still talking to the provider
    provider = Provider()
    with pytest.raises(RetryLater) as retry:
        send(msgs, provider, Queues(), now=NOW + timedelta(seconds=30))
    assert 90 <= retry.value.delay_s <= 91 and provider.calls == 0
    msgs.release_claim("m-1", NOW + timedelta(seconds=40), "whatsapp:http_503")   # A failed transiently
    assert send(msgs, provider, Queues(), now=NOW + timedelta(seconds=121)) == "sent:whatsapp"
    assert provider.calls == 1


def test_a_sender_that_died_leaves_a_lease_the_next_delivery_takes_over(msgs):
    msgs.create_message(record())
    msgs.claim("m-1", "whatsapp", NOW)
    provider = Provider()
    assert send(msgs, provider, Queues(), now=NOW + timedelta(seconds=121)) == "sent:whatsapp"
    assert provider.calls == 1 and msgs.message("m-1").attempts == 2


def test_a_message_already_sent_or_unknown_is_dropped_without_a_call(msgs):
    msgs.create_message(record())
    provider = Provider()
    assert send(msgs, provider, Queues()) == "sent:whatsapp"
    assert send(msgs, provider, Queues(), now=NOW + timedelta(seconds=5)) == "not_claimed:sent"
    assert send(msgs, provider, Queues(), message_id="m-unknown") == "not_claimed:missing"
    assert provider.calls == 1


def test_a_fallback_whose_queue_message_was_lost_is_forwarded_by_the_old_channels_retry(msgs):
    msgs.create_message(record())
    queues = Queues()
    queues.fail_next = 1                                 # SQS down just as the fallback is routed
    with pytest.raises(ConnectionError):
        send(msgs, Provider(ProviderError("undeliverable", "131026", provider="whatsapp")), queues)
    assert msgs.message("m-1").channel == "sms"
    assert send(msgs, Provider(), queues, now=NOW + timedelta(seconds=40)) == "forwarded:sms"
    assert queues.sent == [("sms", {"message_id": "m-1", "channel": "sms"}, 0)]
    provider = Provider()
    assert send(msgs, provider, queues, channel="sms") == "sent:sms"
    assert send(msgs, provider, queues, channel="sms") == "not_claimed:sent"
    assert provider.calls == 1


def test_transient_failures_are_in_the_history_and_the_last_one_says_dead_lettered(msgs):
    msgs.create_message(record())
    provider = Provider(BUSY, BUSY)
    with pytest.raises(RetryLater):
        send(msgs, provider, Queues())
    with pytest.raises(RetryLater):
        send(msgs, provider, Queues(), now=NOW + timedelta(seconds=60), last_delivery=True)
    dead = msgs.message("m-1")
    assert dead.status == "dead_lettered" and [h[0] for h in dead.history] == ["queued", "retrying", "dead_lettered"]
    assert send(msgs, provider, Queues(), now=NOW + timedelta(hours=2)) == "sent:whatsapp"    # a redrive
    assert send(msgs, provider, Queues(), now=NOW + timedelta(hours=2)) == "not_claimed:sent"
    assert provider.calls == 3


def test_our_own_rate_limit_sends_later_without_a_trace_in_the_history(msgs):
    msgs.create_message(record())
    limited = ProviderError("transient", "rate_limited", "over 1/s", retry_after_s=2.5, provider="whatsapp")
    with pytest.raises(SendLater) as later:
        send(msgs, Provider(limited), Queues(), last_delivery=True)
    assert 3 <= later.value.delay_s <= 8
    waiting = msgs.message("m-1")
    assert waiting.status == "queued" and [h[0] for h in waiting.history] == ["queued"]


def test_after_a_read_timeout_the_retry_waits_for_a_receipt_and_never_sends_twice(msgs):
    msgs.create_message(record())
    provider = Provider(ProviderError("transient", "read_timeout", "no answer", provider="whatsapp"))
    with pytest.raises(RetryLater) as retry:
        send(msgs, provider, Queues())
    assert retry.value.delay_s >= RECEIPT_WAIT_S
    assert apply_status(receipt("sent", "wamid.TAKEN"), msgs, NOW + timedelta(seconds=3)).handled == "status:sent"
    assert send(msgs, provider, Queues(), now=NOW + timedelta(seconds=RECEIPT_WAIT_S)) == "not_claimed:sent"
    assert provider.calls == 1 and msgs.message("m-1").provider_message_id == "wamid.TAKEN"


def test_a_permanent_failure_fails_the_message_and_an_opt_out_suppresses_it(msgs, ledger):
    msgs.create_message(record())
    rejected = ProviderError("permanent", "132001", "template does not exist", provider="whatsapp")
    assert send(msgs, Provider(rejected), Queues()) == "failed:permanent"
    msgs.create_message(record("m-2", channel="sms", fallbacks=()))
    stopped = ProviderError("opted_out", "21610", "unsubscribed", provider="twilio")
    assert send(msgs, Provider(stopped), Queues(), channel="sms", message_id="m-2", ledger=ledger) == "suppressed"
    assert ledger.consent_history("ana", "sms")[0].status == "opted_out"


# --- once the provider accepted, nothing sends it again -----------------------------------

def test_a_receipt_that_arrives_before_the_send_is_recorded_keeps_its_status_and_the_alias(msgs):
    msgs.create_message(record())
    provider = Provider(before_answer=lambda pid: apply_status(receipt("delivered", pid), msgs, NOW))
    assert send(msgs, provider, Queues()) == "sent:whatsapp:after_receipt"
    after = msgs.message("m-1")
    assert after.status == "delivered" and msgs.message_id_for("whatsapp", after.provider_message_id) == "m-1"


def test_a_failure_receipt_before_the_send_is_recorded_leaves_the_fallback_to_go_out(msgs, ledger):
    msgs.create_message(record())
    queues = Queues()
    early = Provider(before_answer=lambda pid: apply_status(receipt("failed", pid, "131026"), msgs, NOW,
                                                            ledger=ledger, queues=queues, rules=RULES))
    send(msgs, early, queues)
    assert queues.sent == [("sms", {"message_id": "m-1", "channel": "sms"}, 0)]
    assert send(msgs, Provider(), queues, channel="sms") == "sent:sms"


def test_a_send_whose_record_fails_is_handed_on_and_recorded_never_sent_again(msgs):
    msgs.create_message(record())
    queues, provider = Queues(), Provider()
    msgs.faults["mark_sent"].append(Transient("TransactionConflict"))
    assert send(msgs, provider, queues) == "sent:whatsapp:recorded_later"
    [(channel, body, delay)] = queues.sent
    assert channel == "whatsapp" and body["accepted"]["provider"] == "whatsapp" and delay == RECORD_AGAIN_S
    assert msgs.message("m-1").status == "sending"
    # the hand-off fails once more, then records it
    msgs.faults["mark_sent"].append(Transient("ThrottlingError"))
    with pytest.raises(RetryLater):
        record_accepted("m-1", "whatsapp", body["accepted"], msgs=msgs)
    assert record_accepted("m-1", "whatsapp", body["accepted"], msgs=msgs) == "recorded:whatsapp"
    assert msgs.message("m-1").status == "sent"
    # a copy of the first queue message, after the lease: nothing more goes out
    assert send(msgs, provider, queues, now=NOW + timedelta(minutes=10)) == "not_claimed:sent"
    assert provider.calls == 1


def test_a_hand_off_for_a_message_that_moved_on_records_the_id_only(msgs):
    msgs.create_message(record())
    queues = Queues()
    msgs.faults["mark_sent"].append(Transient("TransactionConflict"))
    send(msgs, Provider(), queues)
    [(_, body, _)] = queues.sent
    msgs.record_status("m-1", "read", NOW, channel="whatsapp")           # its receipts came first
    assert record_accepted("m-1", "whatsapp", body["accepted"], msgs=msgs) == "recorded:whatsapp:after_receipt"
    assert msgs.message("m-1").status == "read"
    assert msgs.message_id_for("whatsapp", body["accepted"]["provider_message_id"]) == "m-1"


def test_the_claimed_record_carries_its_lease(msgs):
    msgs.create_message(record())
    claimed = msgs.claim("m-1", "whatsapp", NOW)
    assert isinstance(claimed, OutboxRecord) and claimed.lease_until == NOW + timedelta(seconds=120)
