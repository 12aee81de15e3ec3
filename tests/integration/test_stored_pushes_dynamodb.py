"""Stored provider pushes in DynamoDB (the emulator), through the WhatsApp webhook's
handler: kept before they are applied, expiring by the table's TTL a week after they
were processed (a month while they are not), and with no full phone number in what is
noted on them or logged."""
import json
import logging
import time
from datetime import timedelta

import pytest

from infra.local.resources import local_secret_values
from loyalty.messaging.pushes import INBOUND_KEEP_PROCESSED, INBOUND_KEEP_UNPROCESSED
from loyalty.channels.signatures import sign_whatsapp
from tests.integration.test_handlers import Context, load_handler

WA_ID = "14155550123"


def push(*, text: str = "STOP", message_id: str = "wamid.STORED1", preference: str | None = None) -> dict:
    value = {"messaging_product": "whatsapp", "contacts": [{"profile": {"name": "Ana"}, "wa_id": WA_ID}]}
    if preference:
        field = "user_preferences"
        value["user_preferences"] = [{"wa_id": WA_ID, "detail": "User requested to stop marketing messages",
                                      "category": "marketing_messages", "value": preference,
                                      "timestamp": int(time.time())}]
    else:
        field = "messages"
        value["messages"] = [{"from": WA_ID, "id": message_id, "timestamp": str(int(time.time())), "type": "text",
                              "text": {"body": text}}]
    raw = json.dumps({"object": "whatsapp_business_account",
                      "entry": [{"id": "WABA1", "changes": [{"field": field, "value": value}]}]})
    signature = sign_whatsapp(raw.encode(), local_secret_values()["WHATSAPP_APP_SECRET"])
    return {"version": "2.0", "routeKey": "POST /webhooks/whatsapp", "rawPath": "/webhooks/whatsapp",
            "rawQueryString": "", "headers": {"x-hub-signature-256": signature, "content-type": "application/json"},
            "requestContext": {"requestId": "req-stored", "stage": "$default", "domainName": "127.0.0.1:3000",
                               "routeKey": "POST /webhooks/whatsapp",
                               "http": {"method": "POST", "path": "/webhooks/whatsapp"}},
            "body": raw, "isBase64Encoded": False}


@pytest.fixture
def webhook(fresh_aws):
    return load_handler("whatsapp_webhook")


def stored(aws) -> list[dict]:
    client = aws.client("dynamodb")
    items = client.scan(TableName=aws.environ["TABLE_NAME"], FilterExpression="begins_with(PK, :p)",
                        ExpressionAttributeValues={":p": {"S": "INBOUND#"}})["Items"]
    return items


def outside_the_body(item: dict) -> str:
    """Everything stored on the push but the push itself (which keeps the sender whole,
    to be processed again): its key, the error noted, the times."""
    return json.dumps({k: v for k, v in item.items() if k != "body"}, ensure_ascii=False)


def expires_in(item: dict, keep: timedelta) -> bool:
    ttl = int(item["ttl"]["N"])
    return abs(ttl - (time.time() + keep.total_seconds())) < 120


def test_a_processed_push_expires_a_week_later_and_notes_no_number(webhook, fresh_aws, caplog):
    caplog.set_level(logging.DEBUG, logger="loyalty")   # ours (botocore at DEBUG prints every body)
    assert webhook(push(), Context())["statusCode"] == 200
    assert webhook(push(preference="stop"), Context())["statusCode"] == 200

    items = stored(fresh_aws)
    assert len(items) == 2
    for item in items:
        assert "processed_at" in item and "error" not in item
        assert expires_in(item, INBOUND_KEEP_PROCESSED)
        assert WA_ID not in outside_the_body(item)            # the preference's key is a digest
        assert json.loads(item["body"]["S"])["sender"] == WA_ID
    assert "whatsapp push" in caplog.text                     # the function's own log lines were captured
    # Our own log lines; the injected exception's text is the test's, and a function that
    # raises has it printed by the Lambda runtime (and Powertools' resolver) whatever we do.
    ours = [r for r in caplog.records if r.name.startswith("loyalty")]
    assert WA_ID not in json.dumps([r.__dict__ for r in ours], default=str)


def test_a_push_that_failed_keeps_a_month_notes_why_masked_and_a_retry_processes_it(webhook, fresh_aws, caplog,
                                                                                    monkeypatch):
    from loyalty.messaging import conversations
    caplog.set_level(logging.DEBUG, logger="loyalty")   # ours (botocore at DEBUG prints every body)
    real = conversations.apply_message

    def broken(message, *args, **kwargs):
        raise RuntimeError(f"no route to {message.sender} (+{message.sender})")
    monkeypatch.setattr(conversations, "apply_message", broken)
    with pytest.raises(RuntimeError):
        webhook(push(message_id="wamid.FAILS1"), Context())     # Lambda fails: Meta retries
    [item] = stored(fresh_aws)
    assert expires_in(item, INBOUND_KEEP_UNPROCESSED) and "processed_at" not in item
    assert item["error"]["S"].startswith("RuntimeError: no route to 1415****23")
    assert WA_ID not in outside_the_body(item)

    monkeypatch.setattr(conversations, "apply_message", real)   # fixed; Meta's retry comes in
    assert webhook(push(message_id="wamid.FAILS1"), Context())["statusCode"] == 200
    [item] = stored(fresh_aws)
    assert "processed_at" in item and "error" not in item and expires_in(item, INBOUND_KEEP_PROCESSED)
    # Our own log lines; the injected exception's text is the test's, and a function that
    # raises has it printed by the Lambda runtime (and Powertools' resolver) whatever we do.
    ours = [r for r in caplog.records if r.name.startswith("loyalty")]
    assert WA_ID not in json.dumps([r.__dict__ for r in ours], default=str)


def test_the_table_expires_items_on_ttl(fresh_aws):
    described = fresh_aws.client("dynamodb").describe_time_to_live(TableName=fresh_aws.environ["TABLE_NAME"])
    assert described["TimeToLiveDescription"]["AttributeName"] == "ttl"
    assert described["TimeToLiveDescription"]["TimeToLiveStatus"] == "ENABLED"
