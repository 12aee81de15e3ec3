"""The messaging store's behaviour over DynamoDB in the emulator: the same tests as the
fake's, and what only DynamoDB does (cancelled transactions, the items' layout)."""
import pytest

from loyalty.adapters.ledger import DynamoLedgerStore
from loyalty.adapters.messaging.store import DynamoMessagingStore
from loyalty.adapters.messaging.tokens import DynamoTokenStore
from loyalty.messaging.dispatch import CapCounters
from tests.integration.faults import cancel_next_transaction
from tests.messaging_contract import *  # noqa: F401,F403 - the shared behaviour
from tests.messaging_contract import NOW, STOP, claimed, record


@pytest.fixture
def ledger(fresh_aws):
    return DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=fresh_aws.client("dynamodb"))


@pytest.fixture
def msgs(fresh_aws):
    return DynamoMessagingStore(fresh_aws.environ["TABLE_NAME"], client=fresh_aws.client("dynamodb"))


@pytest.fixture
def token_store(fresh_aws):
    return DynamoTokenStore(fresh_aws.environ["TABLE_NAME"], client=fresh_aws.client("dynamodb"))


# --- what only DynamoDB does: transactions cancelled for other reasons than a condition ---

@pytest.mark.parametrize("codes", [("TransactionConflict",), ("None", "ThrottlingError"),
                                   ("ProvisionedThroughputExceeded", "None")])
def test_a_record_write_cancelled_by_a_conflict_or_throttling_is_transient_not_a_duplicate(msgs, codes):
    from loyalty.errors import Transient
    cancel_next_transaction(msgs.client, *codes)
    caps = (CapCounters(), CapCounters("2026-11-23", 1, "2026-11", 1)) if len(codes) == 2 else None
    with pytest.raises(Transient):
        msgs.create_message(record(), caps)
    assert msgs.message("m-1") is None
    assert msgs.create_message(record(), caps)                      # the retry writes it


def test_a_transaction_refused_for_a_bad_request_is_neither_transient_nor_a_duplicate(msgs):
    from botocore.exceptions import ClientError
    cancel_next_transaction(msgs.client, "ValidationError")
    with pytest.raises(ClientError):
        msgs.create_message(record())


def test_marking_sent_cancelled_by_a_conflict_is_transient_and_leaves_the_claim(msgs):
    from loyalty.errors import Transient
    msgs.create_message(record())
    held = claimed(msgs)
    cancel_next_transaction(msgs.client, "TransactionConflict", "None")
    with pytest.raises(Transient):
        msgs.mark_sent("m-1", "whatsapp", "wamid.1", NOW, channel="whatsapp", lease_until=held.lease_until)
    assert msgs.message("m-1").status == "sending"
    assert msgs.mark_sent("m-1", "whatsapp", "wamid.1", NOW, channel="whatsapp", lease_until=held.lease_until)


def test_throttling_outside_a_transaction_is_transient(msgs):
    from botocore.awsrequest import AWSResponse

    from loyalty.errors import Transient
    msgs.client.meta.events.register("before-call.dynamodb.GetItem", lambda **_: (
        AWSResponse("https://dynamodb.local", 400, {}, None),
        {"Error": {"Code": "ThrottlingException", "Message": "slow down"}, "ResponseMetadata": {"HTTPStatusCode": 400}}))
    with pytest.raises(Transient):
        msgs.message("m-1")


# --- PynamoDB's calls are the client's: counted, signed and checked as every other ----------

def test_every_call_goes_through_the_stores_client(msgs):
    from collections import Counter
    calls = Counter()
    msgs.client.meta.events.register("after-call.dynamodb", lambda model=None, **_: calls.update([model.name]))
    msgs.create_message(record())
    held = claimed(msgs)
    msgs.mark_sent("m-1", "whatsapp", "wamid.1", NOW, channel="whatsapp", lease_until=held.lease_until)
    msgs.record_status("m-1", "delivered", NOW, channel="whatsapp", provider_message_id="wamid.1")
    msgs.message_id_for("whatsapp", "wamid.1")
    msgs.member_snapshot("ana")
    assert calls == Counter({"TransactWriteItems": 2, "UpdateItem": 2, "GetItem": 1, "Query": 1})


# --- the items' layout: the keys and indexes stay, items of earlier versions read ----------

def raw(fresh_aws, pk, sk):
    return fresh_aws.client("dynamodb").get_item(TableName=fresh_aws.environ["TABLE_NAME"],
                                                 Key={"PK": {"S": pk}, "SK": {"S": sk}}).get("Item")


def test_the_outbox_item_keeps_its_keys_its_index_and_its_alias(msgs, fresh_aws):
    msgs.create_message(record())
    held = claimed(msgs)
    msgs.mark_sent("m-1", "whatsapp", "wamid.1", NOW, channel="whatsapp", lease_until=held.lease_until)
    item = raw(fresh_aws, "MSG#m-1", "MSG")
    assert item["MM_PK"] == {"S": "MEMBER#ana"} and item["MM_SK"] == {"S": "2026-11-23T04:00:00.000000Z#m-1"}
    assert item["rank_"] == {"N": "2"} and item["status"] == {"S": "sent"}
    assert item["variables"] == {"S": '{"points": 5, "name": "陈"}'}               # UTF-8 as written, not \\u
    assert item["history"]["L"][0] == {"L": [{"S": "queued"}, {"S": NOW.isoformat()}, {"S": ""}]}
    assert raw(fresh_aws, "PMSG#whatsapp#wamid.1", "PMSG")["message_id"] == {"S": "m-1"}


OLD_RECORD = {  # as the previous adapter wrote it (hand-built), before any claim
    "PK": {"S": "MSG#m-old"}, "SK": {"S": "MSG"}, "message_id": {"S": "m-old"}, "member_id": {"S": "ana"},
    "kind": {"S": "reminder"}, "template": {"S": "points_expiring"}, "category": {"S": "utility"},
    "locale": {"S": "zh-CN"}, "status": {"S": "queued"}, "rank_": {"N": "0"},
    "created_at": {"S": "2026-11-23T12:00:00+08:00"}, "attempts": {"N": "0"},
    "variables": {"S": '{"points": 520, "expiry_date": "2026-11-30"}'},
    "payloads": {"S": '{"whatsapp": {"type": "template", "name": "points_expiring"}}'},
    "fallbacks": {"S": "[]"}, "history": {"L": [{"L": [{"S": "queued"}, {"S": "2026-11-23T12:00:00+08:00"},
                                                        {"S": ""}]}]},
    "extra": {"S": '{"job_id": "reminder#ana#2026-11-30#7"}'},
    "MM_PK": {"S": "MEMBER#ana"}, "MM_SK": {"S": "2026-11-23T04:00:00.000000Z#m-old"}, "lease_until": {"S": ""},
    "channel": {"S": "whatsapp"}, "to": {"S": "+85290000001"}}


def test_a_record_written_by_the_previous_version_is_read_claimed_and_sent(msgs, fresh_aws):
    client = fresh_aws.client("dynamodb")
    client.put_item(TableName=fresh_aws.environ["TABLE_NAME"], Item=OLD_RECORD)
    old = msgs.message("m-old")
    assert (old.status, old.channel, old.variables["points"], old.fallbacks, old.lease_until) == \
        ("queued", "whatsapp", 520, (), None)
    assert [r.message_id for r in msgs.member_messages("ana")] == ["m-old"]
    held = claimed(msgs, "m-old")
    assert msgs.mark_sent("m-old", "whatsapp", "wamid.9", NOW, channel="whatsapp", lease_until=held.lease_until)


def test_jobs_deferred_by_the_previous_version_are_released_too(msgs, fresh_aws):
    fresh_aws.client("dynamodb").put_item(TableName=fresh_aws.environ["TABLE_NAME"], Item={
        "PK": {"S": "DEFER#2026-11-23T04:00"}, "SK": {"S": "j-old"},
        "job": {"S": '{"job_id": "j-old", "member_id": "ana", "template": "spring_sale"}'},
        "not_before": {"S": "2026-11-23T12:00:00+08:00"}})
    assert msgs.due_deferred(NOW - timedelta(minutes=1)) == []
    [due] = msgs.due_deferred(NOW + timedelta(minutes=20))
    assert (due.job_id, due.job["template"]) == ("j-old", "spring_sale")
    msgs.remove_deferred(due)
    assert msgs.due_deferred(NOW + timedelta(minutes=20)) == []


def test_a_stored_push_waits_in_the_sparse_index_until_processed(msgs, fresh_aws):
    msgs.store_inbound("twilio", "SM1", STOP, NOW)
    item = raw(fresh_aws, "INBOUND#twilio#SM1", "IN")
    assert item["PENDING_PK"]["S"].startswith("PENDING#") and item["ttl"]["N"] == str(int(NOW.timestamp()) + 30 * 86400)
    msgs.inbound_processed("twilio", "SM1", NOW)
    item = raw(fresh_aws, "INBOUND#twilio#SM1", "IN")
    assert "PENDING_PK" not in item and "PENDING_SK" not in item and item["ttl"]["N"] == str(int(NOW.timestamp()) + 7 * 86400)
