"""No full phone number in the logs or in the messages' views, whatever the provider echoes.

A realistic failing send for each provider goes through the real sender handler (the
one behind send_whatsapp, send_wechat and send_sms) with the real client over a faked
HTTP session; everything logged (the function's Powertools logger, the library's module
loggers, stdout and stderr) and the message's view (GET /members/{id}/messages) are
searched for the number the provider echoed. Receipts that echo it are parsed and
applied the same way."""
import io
import json
import logging
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
import requests
from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.adapters.messaging_memory import MemoryMessagingStore
from loyalty.channels.aliyun import AliyunClient, AliyunConfig
from loyalty.channels.inbound import parse_aliyun_report, parse_twilio_status, parse_wechat, parse_whatsapp
from loyalty.channels.providers import SmsSender
from loyalty.channels.twilio import TwilioClient, TwilioConfig
from loyalty.channels.wechat import MemoryTokenStore, WeChatClient, WeChatConfig
from loyalty.channels.whatsapp import WhatsAppClient, WhatsAppConfig
from loyalty.messaging.conversations import apply_status
from loyalty.messaging.outbox import OutboxRecord, message_view
from loyalty.rules import build_rules
from loyalty.web.senders import sender_handler

RULES = build_rules()
NOW = datetime(2026, 11, 23, 4, 0, tzinfo=timezone.utc)
US, CN, OPENID = "+14155550123", "+8613800138000", "oLocalMember000001"


# --- fakes -----------------------------------------------------------------------------------

def Store(*records: OutboxRecord) -> MemoryMessagingStore:
    """The messaging store's fake, holding `records`."""
    store = MemoryMessagingStore()
    for record in records:
        store.create_message(record)
    return store


class Ledger:
    def __init__(self):
        self.consents = []

    def add_consent(self, consent):
        self.consents.append(consent)


class Queues:
    def __init__(self):
        self.sent, self.visibility = [], []

    def send(self, name, body, delay_s=0):
        self.sent.append((name, body, delay_s))

    def change_visibility(self, receipt_handle, seconds, name):
        self.visibility.append((name, seconds))


class Session:
    """requests.Session.request answered from a list (WeChat's token fetch answered apart)."""

    def __init__(self, *answers):
        self.answers = list(answers)

    def request(self, method, url, **kwargs):
        if url.endswith("/cgi-bin/token"):
            return response(200, {"access_token": "T1", "expires_in": 7200})
        return self.answers.pop(0)


def response(status, body):
    r = requests.Response()
    r.status_code, r.reason, r._content = status, "test", json.dumps(body, ensure_ascii=False).encode()
    return r


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "send", 512, "req-1"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:send"

    @staticmethod
    def get_remaining_time_in_millis():
        return 60_000


def outbox_record(channel: str, to: str, payload: dict) -> OutboxRecord:
    return OutboxRecord(message_id="m-1", member_id="ana", kind="notice", template="points_credited",
                        category="transactional", channel=channel, to=to, locale="en", variables={"points": 5},
                        payloads={channel: payload}, fallbacks=(), status="queued", created_at=NOW,
                        history=(("queued", NOW.isoformat(), ""),), extra={"to": {channel: to}})


# --- the sends ----------------------------------------------------------------------------------

def whatsapp(answer):
    client = WhatsAppClient(WhatsAppConfig(phone_number_id="PN1", access_token="tok"), session=Session(answer))
    return "whatsapp", US, {"type": "text", "body": "hi", "preview_url": False}, \
        lambda record, _c, payload: client.send(record.to, payload, record.message_id)


def wechat(answer):
    client = WeChatClient(WeChatConfig(app_id="wx1", app_secret="sec"), MemoryTokenStore(), session=Session(answer),
                          now=lambda: NOW.timestamp())
    payload = {"type": "subscription", "template_id": "S1", "page": None, "data": {"phone_number3": CN}}
    return "wechat", OPENID, payload, lambda record, _c, p: client.send(record.to, p, record.message_id)


def sms(to, answer):
    clients = {"twilio": TwilioClient(TwilioConfig(account_sid="AC1", auth_token="tok", sender="+15005550006"),
                                      session=Session(answer)),
               "aliyun": AliyunClient(AliyunConfig(access_key_id="LTAI", access_key_secret="s", sign_name="会员中心"),
                                      session=Session(answer), nonce=lambda: "n")}
    sender = SmsSender(RULES.messaging.sms, clients)
    payload = {"type": "text", "text": "Points added", "template_code": "SMS_1", "params": {}}
    return "sms", to, payload, lambda record, _c, p: sender.send(record.to, p, record.message_id,
                                                                 locale=record.locale, marketing=False)


SENDS = {
    # permanent failures: the text goes into the history (and the view)
    "whatsapp not in allowed list": (lambda: whatsapp(response(400, {"error": {
        "message": "(#131030) Recipient phone number not in allowed list", "type": "OAuthException", "code": 131030,
        "error_data": {"messaging_product": "whatsapp",
                       "details": "Recipient phone number 14155550123 not in allowed list"},
        "fbtrace_id": "AbCdEf123"}})), "14155550123", "failed"),
    "twilio invalid To": (lambda: sms(US, response(400, {
        "code": 21211, "message": "The 'To' number +14155550123 is not a valid phone number.",
        "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400})), "14155550123", "failed"),
    "aliyun illegal number": (lambda: sms(CN, response(200, {
        "Code": "isv.MOBILE_NUMBER_ILLEGAL", "Message": "Mobile number +8613800138000 illegal",
        "RequestId": "F655A8D5-B967-440B-8683-DAD6FF8DE990"})), "13800138000", "failed"),
    "wechat invalid field value": (lambda: wechat(response(200, {
        "errcode": 47003, "errmsg": "argument invalid! data.phone_number3.value invalid: 13800138000 "
                                    "rid: 65f0c1d2-1a2b3c4d-5e6f7a8b"})), "13800138000", "failed"),
    # transient failures: the text also goes into the retry's log line
    "whatsapp pair rate limit": (lambda: whatsapp(response(400, {"error": {
        "message": "(#131056) (Business Account, Consumer Account) pair rate limit hit", "code": 131056,
        "error_data": {"details": "Too many messages sent from PN1 to 14155550123 in a short period"}}})),
        "14155550123", "queued"),
    "twilio unavailable": (lambda: sms(US, response(503, {
        "code": 20503, "message": "Service unavailable: could not queue the message to +1 415-555-0123"})),
        "14155550123", "queued"),
    "aliyun frequency cap": (lambda: sms(CN, response(200, {
        "Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发号码天级流控Permits:10 手机号13800138000",
        "RequestId": "R1"})), "13800138000", "queued"),
    "wechat system busy": (lambda: wechat(response(200, {
        "errcode": -1, "errmsg": "system error while sending to 8613800138000"})), "13800138000", "queued"),
}


def everything_logged(stream: io.StringIO, caplog, capsys) -> str:
    records = [json.dumps({k: v for k, v in r.__dict__.items()}, default=str, ensure_ascii=False)
               for r in caplog.records]
    out, err = capsys.readouterr()
    return "\n".join([stream.getvalue(), out, err, caplog.text, *records])


@pytest.mark.parametrize("name", list(SENDS))
def test_a_failing_send_logs_and_shows_no_full_number(name, monkeypatch, caplog, capsys):
    build, echoed, status = SENDS[name]
    channel, to, payload, send = build()
    store, ledger, queues = Store(outbox_record(channel, to, payload)), Ledger(), Queues()
    for attr, value in (("messaging_store", lambda: store), ("ledger_store", lambda: ledger),
                        ("queues", lambda: queues), ("channel_sender", lambda _channel: send),
                        ("rules", lambda: RULES)):
        monkeypatch.setattr(wiring, attr, value)
    stream = io.StringIO()
    logger = Logger(service=f"pii-{uuid.uuid4().hex[:8]}", stream=stream, level="DEBUG")
    handler = sender_handler(channel, logger, clock=lambda: NOW)
    event = {"Records": [{"messageId": "q-1", "receiptHandle": "rh-1", "attributes": {"ApproximateReceiveCount": "1"},
                          "body": json.dumps({"message_id": "m-1", "channel": channel})}]}
    caplog.set_level(logging.DEBUG)

    answer = handler(event, Context())

    record = store.message("m-1")
    assert record.status == status, record.history
    assert answer == {"batchItemFailures": [{"itemIdentifier": "q-1"}] if status == "queued" else []}
    logged = everything_logged(stream, caplog, capsys)
    assert '"message handled"' in logged or "record failed" in logged    # the logs were captured
    assert echoed not in logged
    view = json.dumps(message_view(record), ensure_ascii=False)
    assert echoed not in view and "****" in view                          # the error text, masked
    if status == "queued":   # the retry's reason is logged: masked, not dropped
        assert "****" in stream.getvalue()


# --- receipts that echo the number ------------------------------------------------------------------

def sent_record(channel: str, provider: str, pid: str, to: str) -> tuple[Store, OutboxRecord]:
    record = replace(outbox_record(channel, to, {}), status="sent", provider=provider, provider_message_id=pid)
    store = Store(record)
    store.aliases[(provider, pid)] = "m-1"
    return store, record


RECEIPTS = {
    "twilio": (lambda: [parse_twilio_status({
        "MessageSid": "SM1", "MessageStatus": "undelivered", "ErrorCode": "30005",
        "ErrorMessage": "Unknown destination handset +14155550123", "To": US})], "sms", "SM1", "14155550123"),
    "whatsapp": (lambda: parse_whatsapp({"object": "whatsapp_business_account", "entry": [{"id": "W", "changes": [{
        "field": "messages", "value": {"statuses": [{
            "id": "wamid.X", "status": "failed", "timestamp": "1803520000", "recipient_id": "14155550123",
            "errors": [{"code": 131049, "title": "Not delivered to 14155550123 to maintain healthy ecosystem "
                                              "engagement"}]}]}}]}]}), "whatsapp", "wamid.X", "14155550123"),
    "aliyun": (lambda: parse_aliyun_report([{
        "phone_number": "13800138000", "send_time": "2026-11-23 12:00:00", "report_time": "2026-11-23 12:00:05",
        "success": False, "err_code": "MK:0012", "err_msg": "号码13800138000状态异常", "biz_id": "900619746936498440^0",
        "out_id": None}]), "sms", "900619746936498440^0", "13800138000"),
    "wechat": (lambda: [parse_wechat(
        "<xml><ToUserName>gh_1</ToUserName><FromUserName>oLocalMember000001</FromUserName>"
        "<CreateTime>1803520000</CreateTime><MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event>"
        "<MsgID>200163836</MsgID><Status>failed: phone 13800138000 unreachable</Status></xml>".encode())],
        "wechat", "200163836", "13800138000"),
}


@pytest.mark.parametrize("provider", list(RECEIPTS))
def test_a_failure_receipt_that_echoes_the_number_is_recorded_masked(provider, caplog):
    parse, channel, pid, echoed = RECEIPTS[provider]
    store, _ = sent_record(channel, provider, pid, US if channel != "wechat" else OPENID)
    caplog.set_level(logging.DEBUG)
    [update] = parse()
    assert echoed not in (update.error_title or "") + update.raw_status
    assert echoed not in repr(update)                                    # the recipient stays out of reprs

    outcome = apply_status(update, store, NOW + timedelta(minutes=1))

    assert echoed not in outcome.handled
    view = json.dumps(message_view(store.message("m-1")), ensure_ascii=False)
    assert store.message("m-1").status in ("failed", "undelivered") and echoed not in view and "****" in view
    assert echoed not in caplog.text


def test_the_view_masks_the_members_number_and_keeps_an_openid_recognisable():
    assert message_view(outbox_record("sms", CN, {}))["to"] == "+86138****8000"
    assert message_view(outbox_record("wechat", OPENID, {}))["to"] == "oLoc***********001"
