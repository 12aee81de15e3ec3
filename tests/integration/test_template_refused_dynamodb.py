"""A template the provider refuses (WhatsApp 132000: the parameters do not match what
Meta approved) is a configuration error: alerted and never resent as is, but the
message is not dropped: it goes on the member's next consented channel. Over the outbox
in DynamoDB (the emulator), with the real WhatsApp client answered as Meta answers."""
import json
import logging
from dataclasses import replace
from datetime import timedelta

import pytest
import requests

from loyalty.adapters.ledger import DynamoLedgerStore
from loyalty.channels.providers import ProviderError, SendResult
from loyalty.channels.pushes import InboundMessage
from loyalty.channels.whatsapp import WhatsAppClient, WhatsAppConfig
from loyalty.messaging.conversations import apply_message
from loyalty.records import Consent, Profile
from loyalty.rules import build_rules
from tests.orders_only import ORDERS_ONLY
from loyalty.services.orders import OrderEvent, handle_order_event
from tests.integration.test_sending_dynamodb import NOW, Queues, msgs, record, send  # noqa: F401

RULES = build_rules(ORDERS_ONLY)
PHONE = "+85290000001"
META_132000 = {"error": {"message": "(#132000) Number of parameters does not match the expected number of params",
                         "type": "OAuthException", "code": 132000,
                         "error_data": {"messaging_product": "whatsapp",
                                        "details": "body: number of localizable_params (3) does not match the "
                                                   "expected number of params (2)"},
                         "fbtrace_id": "AbCdEf"}}
META_131047 = {"error": {"message": "(#131047) Re-engagement message", "code": 131047,
                         "error_data": {"details": "Message failed to send because more than 24 hours have passed "
                                                   "since the customer last replied to this number."}}}


def meta(status: int, body: dict) -> requests.Response:
    answer = requests.Response()
    answer.status_code, answer.reason, answer._content = status, "test", json.dumps(body).encode()
    return answer


class Session:
    """requests.Session for the WhatsApp client: the Cloud API's answers, in order."""

    def __init__(self, *answers):
        self.answers, self.bodies = list(answers), []

    def request(self, method, url, **kwargs):
        self.bodies.append(kwargs["json"])
        return self.answers.pop(0)


class Channels:
    """The senders: WhatsApp through the real client, SMS accepted."""

    def __init__(self, *whatsapp_answers):
        self.session = Session(*whatsapp_answers)
        self.whatsapp = WhatsAppClient(WhatsAppConfig(phone_number_id="1", access_token="t"), session=self.session)
        self.sms = []

    def __call__(self, record, channel, payload):
        if channel == "whatsapp":
            return self.whatsapp.send(record.to, payload, record.message_id)
        self.sms.append(payload)
        return SendResult("twilio", f"SM{len(self.sms)}", "queued")


TEMPLATE = {"type": "template", "name": "points_balance", "language": "en",
            "body_params": ["10", "Nothing expires soon. ", "Nothing to redeem yet."], "button_params": None}


def test_132000_is_a_config_error_about_the_template_only():
    client = WhatsAppClient(WhatsAppConfig(phone_number_id="1", access_token="t"),
                            session=Session(meta(400, META_132000)))
    with pytest.raises(ProviderError) as refused:
        client.send(PHONE, TEMPLATE, "m-1")
    assert (refused.value.outcome, refused.value.code, refused.value.template) == ("config", "132000", True)


def test_a_refused_template_goes_on_the_next_consented_channel_and_is_alerted(msgs, caplog):
    msgs.create_message(replace(record(), payloads={"whatsapp": TEMPLATE, "sms": {"text": "Your points: 10."}}))
    channels, queues = Channels(meta(400, META_132000)), Queues()
    with caplog.at_level(logging.ERROR, logger="loyalty.messaging.sending"):
        assert send(msgs, channels, queues) == "fallback:sms"
    [alert] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert (alert.code, alert.provider, alert.template_only) == ("132000", "whatsapp", True)
    assert queues.sent == [("sms", {"message_id": "m-1", "channel": "sms"}, 0)]
    assert send(msgs, channels, queues, channel="sms", now=NOW + timedelta(seconds=5)) == "sent:twilio"
    assert channels.sms == [{"text": "Your points: 10."}] and len(channels.session.bodies) == 1   # never resent
    done = msgs.message("m-1")
    assert done.status == "sent" and done.channel == "sms"
    assert any("132000" in h[2] for h in done.history)


def test_with_no_other_channel_a_refused_template_fails_visibly(msgs):
    msgs.create_message(replace(record(fallbacks=()), payloads={"whatsapp": TEMPLATE}))
    assert send(msgs, Channels(meta(400, META_132000)), Queues()) == "failed:config"
    assert msgs.message("m-1").status == "failed"


def test_credentials_refused_stay_a_failure_not_a_fallback(msgs):
    msgs.create_message(replace(record(), payloads={"whatsapp": TEMPLATE, "sms": {"text": "x"}}))
    token = meta(401, {"error": {"message": "Invalid OAuth access token", "type": "OAuthException", "code": 190}})
    assert send(msgs, Channels(token), Queues()) == "failed:config"


@pytest.fixture
def ledger(fresh_aws):
    return DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=fresh_aws.client("dynamodb"))


def test_my_points_from_a_member_whose_points_buy_nothing_is_answered_by_sms_when_whatsapp_refuses_it(msgs, ledger):
    # given a member with 10 points (nothing in the catalogue is that cheap), on WhatsApp and SMS
    ledger.put_profile(Profile(member_id="ana", name="Ana", phone=PHONE, locale="en", time_zone="Asia/Shanghai",
                               preferred_channels=("whatsapp", "sms")))
    for channel in ("whatsapp", "sms"):
        ledger.add_consent(Consent("ana", channel, "opted_in", "checkout_checkbox", NOW - timedelta(days=9)))
    handle_order_event(ledger, RULES, OrderEvent("o-1-paid", "order.paid", NOW - timedelta(days=1), "o-1", "ana",
                                                 1000, "CNY", None, "h"), NOW)
    # when they ask on WhatsApp, and WhatsApp takes neither the text (131047: its window is
    # closed) nor the approved template (132000)
    asked = InboundMessage(provider="whatsapp", provider_message_id="wamid.Q", sender=PHONE[1:], text="我的积分",
                           at=int(NOW.timestamp()), kind="text", dedup_key="whatsapp#msg#wamid.Q")
    queues = Queues()
    assert apply_message(asked, ledger, msgs, queues, RULES, NOW).handled == "reply:balance_reply"
    [(channel, body, _)] = queues.sent
    channels = Channels(meta(400, META_131047), meta(400, META_132000))
    assert send(msgs, channels, queues, channel=channel, message_id=body["message_id"]) == "fallback:sms"
    # then the answer goes by SMS, once
    assert send(msgs, channels, queues, channel="sms", message_id=body["message_id"]) == "sent:twilio"
    [sms] = channels.sms
    assert sms["text"].startswith("Your points: 10. 10 expire on ")
    assert [b["type"] for b in channels.session.bodies] == ["text", "template"]
    reply = msgs.message(body["message_id"])
    assert (reply.status, reply.channel, reply.kind) == ("sent", "sms", "reply")


def test_a_consent_confirmation_stays_on_the_channel_it_confirms(msgs, ledger):
    ledger.put_profile(Profile(member_id="ana", name="Ana", phone=PHONE, locale="en"))
    for channel in ("whatsapp", "sms"):
        ledger.add_consent(Consent("ana", channel, "opted_in", "checkout_checkbox", NOW - timedelta(days=9)))
    stop = InboundMessage(provider="whatsapp", provider_message_id="wamid.S", sender=PHONE[1:], text="STOP",
                          at=int(NOW.timestamp()), kind="text", dedup_key="whatsapp#msg#wamid.S")
    queues = Queues()
    assert apply_message(stop, ledger, msgs, queues, RULES, NOW).handled == "reply:opt_out_confirmed"
    confirmation = msgs.message(queues.sent[0][1]["message_id"])
    assert confirmation.fallbacks == () and set(confirmation.payloads) == {"whatsapp"}
