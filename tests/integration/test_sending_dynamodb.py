"""Sending over the outbox in DynamoDB (the emulator): SQS delivers at least once, a
Lambda can stop between two calls, and neither may lose or double a message."""
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from loyalty.adapters.messaging.store import DynamoMessagingStore
from loyalty.channels.providers import ProviderError, SendResult
from loyalty.messaging.dispatcher import dispatch_job, message_id_for, notice_job
from loyalty.messaging.outbox import ClaimRefused, OutboxRecord
from loyalty.messaging.sending import RetryLater, send_message
from loyalty.rules import build_rules as default_rules
from tests.unit.messaging_fakes import Queues

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=timezone.utc)


class Provider:
    def __init__(self, *errors):
        self.errors = list(errors)
        self.calls = 0

    def __call__(self, record, channel, payload):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return SendResult(provider=channel, provider_message_id=f"p-{uuid.uuid4().hex[:12]}", raw_status="accepted")


@pytest.fixture
def msgs(fresh_aws):
    return DynamoMessagingStore(fresh_aws.environ["TABLE_NAME"], client=fresh_aws.client("dynamodb"))


def record(message_id="m-1", channel="whatsapp", fallbacks=("sms",)) -> OutboxRecord:
    return OutboxRecord(message_id=message_id, member_id="ana", kind="notice", template="points_credited",
                        category="transactional", channel=channel, to="+85290000001", locale="en",
                        variables={"points": 5}, payloads={"whatsapp": {"type": "text", "text": "hi"},
                                                           "sms": {"type": "text", "text": "hi"}},
                        fallbacks=fallbacks, status="queued", created_at=NOW,
                        history=(("queued", NOW.isoformat(), ""),),
                        extra={"to": {"whatsapp": "+85290000001", "sms": "+85290000001"}})


def send(msgs, provider, queues, channel="whatsapp", now=NOW, message_id="m-1", last_delivery=False):
    return send_message(message_id, channel, msgs=msgs, ledger=None, queues=queues, send=provider,
                        rules=default_rules(), now=now, last_delivery=last_delivery)


def test_a_redelivery_while_another_sender_holds_the_message_comes_back_after_the_lease(msgs):
    msgs.create_message(record())
    held = msgs.claim("m-1", "whatsapp", NOW)            # sender A, still talking to the provider
    assert isinstance(held, OutboxRecord) and held.status == "sending"
    provider = Provider()
    with pytest.raises(RetryLater) as retry:
        send(msgs, provider, Queues(), now=NOW + timedelta(seconds=30))
    assert 90 <= retry.value.delay_s <= 91 and provider.calls == 0
    # A's send failed transiently: the redelivered copy is now the only way the message goes out.
    msgs.release_claim("m-1", NOW + timedelta(seconds=40), "whatsapp:http_503")
    assert send(msgs, provider, Queues(), now=NOW + timedelta(seconds=121)) == "sent:whatsapp"
    assert provider.calls == 1 and msgs.message("m-1").status == "sent"


def test_a_sender_that_died_leaves_a_lease_the_next_delivery_takes_over(msgs):
    msgs.create_message(record())
    msgs.claim("m-1", "whatsapp", NOW)
    provider = Provider()
    assert send(msgs, provider, Queues(), now=NOW + timedelta(seconds=121)) == "sent:whatsapp"
    assert provider.calls == 1


def test_a_message_already_sent_is_dropped_without_a_second_call(msgs):
    msgs.create_message(record())
    provider = Provider()
    assert send(msgs, provider, Queues()) == "sent:whatsapp"
    assert send(msgs, provider, Queues(), now=NOW + timedelta(seconds=5)) == "not_claimed:sent"
    assert send(msgs, provider, Queues(), message_id="m-unknown") == "not_claimed:missing"
    assert provider.calls == 1


def test_a_fallback_whose_queue_message_was_lost_is_forwarded_by_the_old_channels_retry(msgs):
    msgs.create_message(record())
    queues = Queues()
    queues.fail_next = 1                                   # SQS down just as the fallback is routed
    undeliverable = ProviderError("undeliverable", "131026", provider="whatsapp")
    with pytest.raises(ConnectionError):
        send(msgs, Provider(undeliverable), queues)
    assert msgs.message("m-1").channel == "sms"
    # The WhatsApp queue message was not deleted (the batch item failed): it comes back.
    assert send(msgs, Provider(), queues, now=NOW + timedelta(seconds=40)) == "forwarded:sms"
    assert queues.sent == [("sms", {"message_id": "m-1", "channel": "sms"}, 0)]
    provider = Provider()
    assert send(msgs, provider, queues, channel="sms") == "sent:sms"
    assert send(msgs, provider, queues, channel="sms") == "not_claimed:sent"
    assert provider.calls == 1


def test_a_claim_refused_says_what_the_record_showed(msgs):
    msgs.create_message(record())
    msgs.claim("m-1", "whatsapp", NOW)
    refused = msgs.claim("m-1", "whatsapp", NOW + timedelta(seconds=1))
    assert refused == ClaimRefused("sending", "whatsapp", NOW + timedelta(seconds=120))
    assert msgs.claim("m-1", "sms", NOW + timedelta(seconds=500)).status == "sending"


def _member(fresh_aws, ledger_store):
    from loyalty.records import Consent, Profile
    ledger_store.put_profile(Profile(member_id="ana", name="Ana", phone="+85290000001", locale="en",
                                     time_zone="Asia/Hong_Kong", preferred_channels=("whatsapp",)))
    ledger_store.add_consent(Consent("ana", "whatsapp", "opted_in", "checkout_checkbox", NOW, proof="form-1"))


def test_a_job_redelivered_after_its_record_was_written_but_not_routed_is_routed_then(fresh_aws, msgs):
    from loyalty.adapters.ledger import DynamoLedgerStore
    ledger = DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=fresh_aws.client("dynamodb"))
    _member(fresh_aws, ledger)
    job = notice_job("ev-1", "ana", "points_credited", {"points": 5, "balance": 5}, NOW)
    queues = Queues()
    queues.fail_next = 1                                    # the first run dies routing the message
    with pytest.raises(ConnectionError):
        dispatch_job(job, msgs, queues, default_rules(), NOW)
    assert msgs.message(message_id_for(job["job_id"])).status == "queued"
    assert dispatch_job(job, msgs, queues, default_rules(), NOW) == "duplicate:requeued"
    assert [name for name, _, _ in queues.sent] == ["whatsapp"]
    # Once the sender has tried it, a further copy of the job routes nothing more.
    send(msgs, Provider(), queues, message_id=message_id_for(job["job_id"]))
    assert dispatch_job(job, msgs, queues, default_rules(), NOW) == "duplicate"
    assert len(queues.sent) == 1


def test_transient_failures_are_in_the_history_and_the_last_one_says_dead_lettered(msgs):
    msgs.create_message(record())
    busy = ProviderError("transient", "http_503", "unavailable", provider="whatsapp")
    provider = Provider(busy, busy)
    with pytest.raises(RetryLater):
        send(msgs, provider, Queues())
    assert msgs.message("m-1").status == "queued"
    with pytest.raises(RetryLater):
        send(msgs, provider, Queues(), now=NOW + timedelta(seconds=60), last_delivery=True)
    dead = msgs.message("m-1")
    assert dead.status == "dead_lettered"
    assert [h[0] for h in dead.history] == ["queued", "retrying", "dead_lettered"]
    assert dead.history[-1][2].startswith("whatsapp:http_503")
    # An operator redrives the dead-letter queue: the message goes out, once.
    assert send(msgs, provider, Queues(), now=NOW + timedelta(hours=2)) == "sent:whatsapp"
    assert send(msgs, provider, Queues(), now=NOW + timedelta(hours=2)) == "not_claimed:sent"
    assert provider.calls == 3


def test_our_own_rate_limit_sends_later_without_using_up_a_delivery(msgs):
    from loyalty.messaging.sending import SendLater
    msgs.create_message(record())
    limited = ProviderError("transient", "rate_limited", "over 1/s", retry_after_s=2.5, provider="whatsapp")
    provider = Provider(limited)
    with pytest.raises(SendLater) as later:
        send(msgs, provider, Queues(), last_delivery=True)
    assert 3 <= later.value.delay_s <= 8
    waiting = msgs.message("m-1")
    assert waiting.status == "queued" and [h[0] for h in waiting.history] == ["queued"]
    assert send(msgs, provider, Queues(), now=NOW + timedelta(seconds=8)) == "sent:whatsapp"


def test_a_sender_short_of_time_starts_no_send_and_gives_the_rest_back_at_once(fresh_aws, msgs):
    import json

    from aws_lambda_powertools import Logger

    from loyalty.web.senders import SEND_RESERVE_MS, sender_handler
    sqs = fresh_aws.client("sqs")
    url = fresh_aws.environ["WHATSAPP_QUEUE_URL"]
    for message_id in ("m-1", "m-2"):
        msgs.create_message(record(message_id=message_id))
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"message_id": message_id, "channel": "whatsapp"}))
    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300)["Messages"]
    assert len(received) == 2

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "send_whatsapp", 512, "req-1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:send_whatsapp"

        def get_remaining_time_in_millis(self):
            return SEND_RESERVE_MS - 1

    event = {"Records": [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                          "attributes": {"ApproximateReceiveCount": "1"}} for m in received]}
    answer = sender_handler("whatsapp", Logger(), clock=lambda: NOW)(event, Context())
    assert sorted(f["itemIdentifier"] for f in answer["batchItemFailures"]) == sorted(m["MessageId"] for m in received)
    assert [msgs.message(i).status for i in ("m-1", "m-2")] == ["queued", "queued"]        # nothing claimed
    again = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]     # visible again at once
    assert len(again) == 2


class SenderContext:
    function_name, memory_limit_in_mb, aws_request_id = "send_whatsapp", 512, "req-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:send_whatsapp"

    def get_remaining_time_in_millis(self):
        return 30_000


def sqs_event(*message_ids: str, channel: str = "whatsapp") -> dict:
    import json
    return {"Records": [{"messageId": f"sqs-{i}", "receiptHandle": f"rh-{i}",
                         "body": json.dumps({"message_id": i, "channel": channel}),
                         "attributes": {"ApproximateReceiveCount": "1"}} for i in message_ids]}


def emf_lines(out: str) -> list[dict]:
    """The CloudWatch EMF documents among what the handler printed (logs are JSON too)."""
    import json
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return [line for line in lines if "_aws" in line]


def whatsapp_sender(monkeypatch, provider):
    from aws_lambda_powertools import Logger

    from loyalty import wiring
    from loyalty.web.senders import sender_handler
    monkeypatch.setattr(wiring, "channel_sender", lambda channel: provider)
    return sender_handler("whatsapp", Logger(), clock=lambda: NOW)


def test_a_send_publishes_messages_sent_as_emf_summed_by_service_and_split_by_channel(
        fresh_aws, msgs, monkeypatch, capsys):
    for message_id in ("m-1", "m-2"):
        msgs.create_message(record(message_id=message_id))
    handler = whatsapp_sender(monkeypatch, Provider())
    capsys.readouterr()
    answer = handler(sqs_event("m-1", "m-2"), SenderContext())
    assert answer == {"batchItemFailures": []}
    [emf] = emf_lines(capsys.readouterr().out)                       # one document per invocation
    [directive] = emf["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == fresh_aws.environ["POWERTOOLS_METRICS_NAMESPACE"] == "loyalty-local/Messaging"
    assert directive["Metrics"] == [{"Name": "MessagesSent", "Unit": "Count"}]
    assert directive["Dimensions"] == [["service"], ["channel"]]
    assert emf["service"] == "loyalty" and emf["channel"] == "whatsapp"
    assert emf["MessagesSent"] == [1.0, 1.0]


def test_a_permanent_failure_publishes_messages_failed(fresh_aws, msgs, monkeypatch, capsys):
    msgs.create_message(record())
    rejected = ProviderError("permanent", "132001", "template does not exist", provider="whatsapp")
    handler = whatsapp_sender(monkeypatch, Provider(rejected))
    capsys.readouterr()
    assert handler(sqs_event("m-1"), SenderContext()) == {"batchItemFailures": []}
    [emf] = emf_lines(capsys.readouterr().out)
    assert [m["Name"] for m in emf["_aws"]["CloudWatchMetrics"][0]["Metrics"]] == ["MessagesFailed"]
    assert emf["MessagesFailed"] == [1.0] and msgs.message("m-1").status == "failed"


def test_a_batch_that_counts_nothing_publishes_nothing_and_only_warns(fresh_aws, msgs, monkeypatch, capsys):
    msgs.create_message(record())
    handler = whatsapp_sender(monkeypatch, Provider(ProviderError("transient", "http_503", "", provider="whatsapp")))
    monkeypatch.setattr("loyalty.adapters.queues.SqsQueues.change_visibility", lambda *args, **kwargs: None)
    capsys.readouterr()
    with pytest.warns(UserWarning, match="No application metrics"):
        answer = handler(sqs_event("m-1"), SenderContext())      # retried: neither sent nor failed
    assert answer == {"batchItemFailures": [{"itemIdentifier": "sqs-m-1"}]}
    assert emf_lines(capsys.readouterr().out) == []


def test_without_a_metrics_namespace_the_sends_stand_and_the_batch_answers(fresh_aws, msgs, monkeypatch, capsys,
                                                                            caplog):
    msgs.create_message(record())
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE")
    handler = whatsapp_sender(monkeypatch, Provider())
    capsys.readouterr()
    assert handler(sqs_event("m-1"), SenderContext()) == {"batchItemFailures": []}
    assert emf_lines(capsys.readouterr().out) == []
    assert "send metrics not published" in [r.getMessage() for r in caplog.records]
    assert msgs.message("m-1").status == "sent"


def test_a_batch_whose_every_record_fails_answers_every_id_and_logs_each(fresh_aws, caplog):
    """BatchProcessor would raise on an all-failed batch by default; ours answers it."""
    import importlib.util
    from pathlib import Path
    source = Path(__file__).resolve().parents[2] / "functions" / "dispatcher" / "app.py"
    spec = importlib.util.spec_from_file_location("fn_dispatcher_batch", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    event = {"Records": [{"messageId": "a", "receiptHandle": "rh-a", "body": "not json"},
                         {"messageId": "b", "receiptHandle": "rh-b", "body": "{"}]}
    assert module.handler(event, SenderContext()) == {"batchItemFailures": [{"itemIdentifier": "a"},
                                                                           {"itemIdentifier": "b"}]}
    failures = [r for r in caplog.records if r.getMessage() == "record failed; it will be retried"]
    assert [(f.message_id, f.error) for f in failures] == [("a", "JSONDecodeError"), ("b", "JSONDecodeError")]
    assert all(f.levelname == "WARNING" and f.exc_info is None for f in failures)   # one line each, no traceback


def test_after_a_read_timeout_the_retry_waits_for_a_receipt_and_never_sends_twice(msgs):
    from loyalty.channels.inbound import StatusUpdate
    from loyalty.messaging.conversations import apply_status
    from loyalty.messaging.sending import RECEIPT_WAIT_S
    msgs.create_message(record())
    no_answer = ProviderError("transient", "read_timeout", "no answer from the provider", provider="whatsapp")
    provider = Provider(no_answer)
    with pytest.raises(RetryLater) as retry:
        send(msgs, provider, Queues())
    assert retry.value.delay_s >= RECEIPT_WAIT_S
    # Meta did take it: its status webhook carries our id (biz_opaque_callback_data)
    update = StatusUpdate(provider="whatsapp", provider_message_id="wamid.TAKEN", status="sent",
                          at=int((NOW + timedelta(seconds=3)).timestamp()), our_ref="m-1", recipient=None,
                          error_code=None, error_title=None, raw_status="sent")
    assert apply_status(update, msgs, NOW + timedelta(seconds=3)).handled == "status:sent"
    assert send(msgs, provider, Queues(), now=NOW + timedelta(seconds=RECEIPT_WAIT_S)) == "not_claimed:sent"
    assert provider.calls == 1
    assert msgs.message("m-1").provider_message_id == "wamid.TAKEN"


def test_a_connect_timeout_is_retried_on_the_usual_backoff(msgs):
    from loyalty.messaging.sending import RECEIPT_WAIT_S
    msgs.create_message(record())
    never_sent = ProviderError("transient", "connect_timeout", "no connection", provider="whatsapp")
    with pytest.raises(RetryLater) as retry:
        send(msgs, Provider(never_sent), Queues())
    assert retry.value.delay_s < RECEIPT_WAIT_S
