"""The provider sandbox speaks the providers' real wire formats (CHANNELS.md).

A local stack runs in this process on a tiny template that declares the provider
parameters, with stand-in receivers on the /webhooks/... paths. The fakes are driven
over real sockets exactly as a client of each provider would drive them (plain
requests, and the official twilio and wechatpy SDKs pointed at the sandbox), and every
webhook signature is checked here, independently, with hmac/hashlib.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, quote

import pytest
import requests

from infra.local import LocalStack, load_template
from infra.local.__main__ import _parser
from infra.local.http import Response
from infra.local.sandbox import ProviderSandbox, sandbox_parameters
from infra.local.sandbox.base import Sandbox
from infra.local.sandbox.core import Accounts, SandboxClock, SandboxConfig
from infra.local.sandbox.delivery import WebhookPoster
from infra.local.sandbox.signing import aliyun_signature
from infra.local.schedules import SimulatedClock
from infra.local.stack import DEFAULT_TEMPLATE

STACK = "sandbox-test"  # its own resource names: moto's state is shared per process
PARAMETERS = ("PublicBaseUrl", "WhatsAppApiBase", "WhatsAppApiVersion", "WhatsAppPhoneNumberId", "WeChatApiBase",
              "WeChatAppId", "TwilioApiBase", "TwilioAccountSid", "TwilioSender", "AliyunApiBase",
              "AliyunAccessKeyId", "AliyunSignName")
TEMPLATE = "\n".join([
    'AWSTemplateFormatVersion: "2010-09-09"',
    "Transform: AWS::Serverless-2016-10-31",
    "Parameters:",
    *[f"  {name}:\n    Type: String\n    Default: \"\"" for name in PARAMETERS],
    "Resources: {}",
])

# The local secrets (resources.LOCAL_SECRETS) and ids (DESIGN.md): what a sender uses.
WA_TOKEN, WA_APP_SECRET, WA_NUMBER = "local-whatsapp-access-token", "local-whatsapp-secret", "100000000000001"
WECHAT_APPID, WECHAT_SECRET, WECHAT_TOKEN = "wxlocal0000000001", "local-wechat-app-secret", "local-wechat-token"
TWILIO_SID, TWILIO_TOKEN, TWILIO_FROM = "AC00000000000000000000000000000000", "local-twilio-token", "+15005550006"
ALIYUN_KEY, ALIYUN_SECRET, ALIYUN_CALLBACK = "LTAIlocal", "local-aliyun-secret", "local-aliyun-callback-token"
SETTINGS = {"auto_receipts": True, "receipt_delay": 0.05, "receipt_interval": 0.05, "receipt_backoff": 0.05,
            "receipt_retries": 2, "timeout_hold": 0.6, "templates": {}}


class Receivers:
    """Stand-ins for our webhooks: record every request, answer what a test says."""

    PATHS = ("/webhooks/whatsapp", "/webhooks/twilio/status", "/webhooks/twilio/inbound", "/webhooks/wechat",
             "/webhooks/aliyun/report", "/webhooks/aliyun/up")

    def __init__(self):
        self.requests = []
        self.answers = {}
        self._lock = threading.Lock()

    def handle(self, request, params):
        with self._lock:
            self.requests.append(request)
            status, body = self.answers.get(request.path, (200, b"success"))
        return Response(status, body, [("Content-Type", "text/plain")])

    def on(self, path):
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def wait(self, path, count, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.on(path)) >= count:
                return self.on(path)
            time.sleep(0.02)
        raise AssertionError(f"{len(self.on(path))} request(s) to {path}, wanted {count}")

    def clear(self):
        with self._lock:
            self.requests.clear()
            self.answers.clear()


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    template = tmp_path_factory.mktemp("sandbox") / "template.yaml"
    template.write_text(TEMPLATE)
    with LocalStack(template, port=0, stack_name=STACK, time_scale=0.01,
                    extensions=[ProviderSandbox(timeout_hold=0.6)]) as running:
        receivers = Receivers()
        for path in Receivers.PATHS:
            running.router.add("POST", path, receivers.handle, "test receiver")
        running.receivers = receivers
        yield running


@pytest.fixture(autouse=True)
def fresh(stack):
    assert requests.post(f"{stack.api_url}/_local/sandbox/reset", timeout=5).status_code == 200
    assert requests.post(f"{stack.api_url}/_local/sandbox/config", json=SETTINGS, timeout=5).status_code == 200
    stack.receivers.clear()
    yield


@pytest.fixture
def api(stack):
    return stack.api_url


@pytest.fixture
def receivers(stack):
    return stack.receivers


def outbox(api, **query):
    response = requests.get(f"{api}/_local/outbox", params=query, timeout=5)
    assert response.status_code == 200
    return response.json()


def stats(api):
    return requests.get(f"{api}/_local/sandbox/stats", timeout=5).json()


def fault(api, **body):
    response = requests.post(f"{api}/_local/faults", json=body, timeout=5)
    assert response.status_code == 201, response.text
    return response.json()


def inbound(api, **body):
    response = requests.post(f"{api}/_local/inbound", json=body, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


# --- independent signature checks --------------------------------------------------------

def whatsapp_signed(request):
    expected = "sha256=" + hmac.new(WA_APP_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(request.header("X-Hub-Signature-256") or "", expected)


def twilio_signed(request, url):
    signed = url + "".join(k + v for k, v in sorted(parse_qsl(request.body.decode(), keep_blank_values=True)))
    expected = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()).decode()
    return hmac.compare_digest(request.header("X-Twilio-Signature") or "", expected)


def wechat_signed(request):
    query = dict(request.query)
    expected = hashlib.sha1("".join(sorted([WECHAT_TOKEN, query["timestamp"], query["nonce"]])).encode()).hexdigest()
    return query["signature"] == expected and abs(int(query["timestamp"]) - time.time()) < 60


# --- clients, as a sender would write them ------------------------------------------------

def whatsapp_send(api, body, token=WA_TOKEN, number=WA_NUMBER):
    return requests.post(f"{api}/_sandbox/whatsapp/v21.0/{number}/messages", json=body, timeout=5,
                         headers={"Authorization": f"Bearer {token}"})


def whatsapp_template(to="8613800000000", name="points_expiring", **extra):
    return {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "template",
            "template": {"name": name, "language": {"code": "zh_CN"}, "components": [
                {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "1,250"}]},
                {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "r/abc"}]},
            ]}, **extra}


def whatsapp_text(to, body="您的积分: 1,250"):
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"preview_url": False, "body": body}}


def wechat_token(api, appid=WECHAT_APPID, secret=WECHAT_SECRET):
    return requests.get(f"{api}/_sandbox/wechat/cgi-bin/token", timeout=5,
                        params={"grant_type": "client_credential", "appid": appid, "secret": secret}).json()


def wechat_send(api, token, body, path="template/send"):
    response = requests.post(f"{api}/_sandbox/wechat/cgi-bin/message/{path}", params={"access_token": token},
                             data=json.dumps(body, ensure_ascii=False).encode(), timeout=5)
    assert response.status_code == 200  # WeChat answers errors with HTTP 200
    return response.json()


def wechat_template(openid="oAbc123_xyz", **extra):
    return {"touser": openid, "template_id": "POINTS_CREDITED_TEMPLATE", "url": "https://example.com/points",
            "data": {"thing1": {"value": "Ana"}, "number2": {"value": "120"}}, **extra}


def twilio_send(api, form, auth=(TWILIO_SID, TWILIO_TOKEN)):
    return requests.post(f"{api}/_sandbox/twilio/2010-04-01/Accounts/{TWILIO_SID}/Messages.json", data=form,
                         auth=auth, timeout=5)


def pe(text):
    return quote(text, safe="-_.~")


def aliyun_send(api, secret=ALIYUN_SECRET, nonce=None, **overrides):
    """SendSms signed by the documented algorithm, written here again on purpose."""
    params = {"Action": "SendSms", "Version": "2017-05-25", "Format": "JSON", "RegionId": "cn-hangzhou",
              "AccessKeyId": ALIYUN_KEY, "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
              "SignatureNonce": nonce or uuid.uuid4().hex,
              "Timestamp": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "PhoneNumbers": "13800000000", "SignName": "会员中心", "TemplateCode": "SMS_POINTS_EXPIRING",
              "TemplateParam": json.dumps({"name": "Ana", "points": "1,250"}, ensure_ascii=False),
              "OutId": "msg-aliyun-1"}
    params.update(overrides)
    canonical = "&".join(f"{pe(k)}={pe(v)}" for k, v in sorted(params.items()))
    to_sign = "POST&%2F&" + pe(canonical)
    params["Signature"] = base64.b64encode(
        hmac.new((secret + "&").encode(), to_sign.encode(), hashlib.sha1).digest()).decode()
    return requests.post(f"{api}/_sandbox/aliyun/", data=params, timeout=5)


# --- wiring -----------------------------------------------------------------------------

def test_the_stack_points_the_provider_parameters_at_the_sandbox(stack):
    parameters = stack.model.parameters
    base = stack.api_url
    assert parameters["WhatsAppApiBase"] == f"{base}/_sandbox/whatsapp"
    assert parameters["WeChatApiBase"] == f"{base}/_sandbox/wechat"
    assert parameters["TwilioApiBase"] == f"{base}/_sandbox/twilio"
    assert parameters["AliyunApiBase"] == f"{base}/_sandbox/aliyun"
    assert parameters["PublicBaseUrl"] == base
    assert parameters["WhatsAppPhoneNumberId"] == WA_NUMBER and parameters["WeChatAppId"] == WECHAT_APPID
    assert parameters["TwilioAccountSid"] == TWILIO_SID and parameters["TwilioSender"] == TWILIO_FROM
    assert parameters["AliyunAccessKeyId"] == ALIYUN_KEY and parameters["AliyunSignName"] == "会员中心"
    assert parameters["WhatsAppApiVersion"] == ""  # not the sandbox's to set


def test_the_real_template_takes_the_sandbox_parameters_and_the_callers_win(stack):
    model = load_template(DEFAULT_TEMPLATE, parameter_overrides=sandbox_parameters("http://127.0.0.1:3999"))
    environment = next(iter(model.functions.values())).environment
    assert environment["WHATSAPP_API_BASE"] == "http://127.0.0.1:3999/_sandbox/whatsapp"
    assert environment["ALIYUN_API_BASE"] == "http://127.0.0.1:3999/_sandbox/aliyun"
    assert environment["PUBLIC_BASE_URL"] == "http://127.0.0.1:3999"

    own = LocalStack(stack.model.path, port=0, parameter_overrides={"TwilioSender": "MG" + "0" * 32})
    overrides = own._extension_overrides("http://127.0.0.1:3999")
    assert overrides["TwilioSender"] == "MG" + "0" * 32 and overrides["TwilioAccountSid"] == TWILIO_SID
    assert LocalStack(stack.model.path, sandbox=False)._extension_overrides("http://x") == {}
    assert _parser().parse_args(["serve"]).sandbox == 1
    assert _parser().parse_args(["serve", "--sandbox", "0"]).sandbox == 0


def test_aliyun_signature_matches_the_documented_example():
    params = {"AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML", "SignatureMethod": "HMAC-SHA1",
              "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf", "SignatureVersion": "1.0",
              "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26"}
    assert aliyun_signature("GET", params, "testsecret") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="


# --- WhatsApp ---------------------------------------------------------------------------

def test_whatsapp_template_is_accepted_recorded_and_receipted_signed(api, receivers):
    response = whatsapp_send(api, whatsapp_template(biz_opaque_callback_data="msg-42"))
    assert response.status_code == 200
    answer = response.json()
    assert answer["messaging_product"] == "whatsapp"
    assert answer["contacts"] == [{"input": "8613800000000", "wa_id": "8613800000000"}]
    message_id = answer["messages"][0]["id"]
    assert message_id.startswith("wamid.") and answer["messages"][0]["message_status"] == "accepted"

    [record] = outbox(api)
    assert record["channel"] == "whatsapp" and record["provider"] == "whatsapp" and record["kind"] == "template"
    assert record["to"] == "8613800000000" and record["template"] == "points_expiring" and record["text"] is None
    assert record["variables"] == ["Ana", "1,250", "r/abc"] and record["language"] == "zh_CN"
    assert record["components"]["buttons"] == [{"index": "0", "sub_type": "url", "parameters": ["r/abc"]}]
    assert record["provider_message_id"] == message_id and record["at"].endswith("Z")
    assert json.loads(record["raw_body"]) == whatsapp_template(biz_opaque_callback_data="msg-42")

    posted = receivers.wait("/webhooks/whatsapp", 2)
    statuses = []
    for request in posted:
        assert whatsapp_signed(request)
        change = json.loads(request.body)["entry"][0]["changes"][0]
        assert change["field"] == "messages"
        [status] = change["value"]["statuses"]
        assert status["id"] == message_id and status["recipient_id"] == "8613800000000"
        assert status["biz_opaque_callback_data"] == "msg-42"
        statuses.append(status["status"])
    assert statuses == ["sent", "delivered"]


def test_whatsapp_refuses_bad_credentials_and_bad_shapes_as_meta_does(api):
    wrong = whatsapp_send(api, whatsapp_template(), token="not-the-token")
    assert wrong.status_code == 401
    error = wrong.json()["error"]
    assert error["code"] == 190 and error["type"] == "OAuthException" and error["fbtrace_id"]
    assert whatsapp_send(api, whatsapp_template(), number="999").json()["error"]["code"] == 100

    bad = whatsapp_template()
    bad["template"]["components"][0]["parameters"][0] = {"type": "text"}
    refused = whatsapp_send(api, bad)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == 132000 and refused.json()["error"]["error_data"]["details"]
    assert whatsapp_send(api, {**whatsapp_template(), "messaging_product": None}).json()["error"]["code"] == 100
    assert whatsapp_send(api, whatsapp_template(to="+86-138")).json()["error"]["code"] == 131009
    assert outbox(api) == [] and stats(api)["sends_refused"]["whatsapp"] == 5


def test_templates_can_be_declared_so_unknown_ones_and_missing_values_are_refused(api):
    declared = requests.post(f"{api}/_local/sandbox/config", timeout=5, json={"templates": {
        "whatsapp": {"points_expiring": {"languages": ["zh_CN"], "body_parameters": 3}},
        "wechat": {"POINTS_CREDITED_TEMPLATE": ["thing1", "number2", "time3"]},
        "aliyun": {"SMS_POINTS_EXPIRING": ["name", "points"]}}})
    assert declared.status_code == 200
    assert whatsapp_send(api, whatsapp_template(name="nope")).json()["error"]["code"] == 132001
    assert whatsapp_send(api, whatsapp_template()).json()["error"]["code"] == 132000
    token = wechat_token(api)["access_token"]
    assert wechat_send(api, token, wechat_template())["errcode"] == 47003  # time3 missing
    assert wechat_send(api, token, {**wechat_template(), "template_id": "OTHER"})["errcode"] == 40037
    assert aliyun_send(api, TemplateCode="SMS_OTHER").json()["Code"] == "isv.SMS_TEMPLATE_ILLEGAL"
    missing = aliyun_send(api, TemplateParam='{"name": "Ana"}')
    assert missing.json()["Code"] == "isv.TEMPLATE_MISSING_PARAMETERS"
    assert aliyun_send(api).json()["Code"] == "OK"


def test_whatsapp_text_needs_the_24_hour_window_an_inbound_message_opens(stack, api, receivers):
    stack.clock.set(datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc))
    outside = whatsapp_send(api, whatsapp_text("85291234567"))
    assert outside.status_code == 400 and outside.json()["error"]["code"] == 131047

    answered = inbound(api, channel="whatsapp", **{"from": "+85291234567"}, text="我的积分")
    assert answered["status"] == 200 and answered["body"] == "success"
    [request] = receivers.on("/webhooks/whatsapp")
    assert whatsapp_signed(request)
    value = json.loads(request.body)["entry"][0]["changes"][0]["value"]
    assert value["contacts"][0]["wa_id"] == "85291234567"
    [message] = value["messages"]
    assert message["from"] == "85291234567" and message["type"] == "text" and message["text"]["body"] == "我的积分"

    inside = whatsapp_send(api, whatsapp_text("85291234567"))
    assert inside.status_code == 200
    [record] = outbox(api, to="85291234567")
    assert record["kind"] == "text" and record["text"] == "您的积分: 1,250" and record["template"] is None

    stack.clock.set(datetime(2026, 11, 24, 12, 0, 1, tzinfo=timezone.utc))  # 24 h and a second later
    assert whatsapp_send(api, whatsapp_text("85291234567")).json()["error"]["code"] == 131047


def test_whatsapp_marketing_stop_arrives_as_a_user_preferences_webhook(api, receivers):
    inbound(api, channel="whatsapp", **{"from": "85291234567"}, preference="stop")
    [request] = receivers.on("/webhooks/whatsapp")
    change = json.loads(request.body)["entry"][0]["changes"][0]
    assert whatsapp_signed(request) and change["field"] == "user_preferences"
    [preference] = change["value"]["user_preferences"]
    assert preference["wa_id"] == "85291234567" and preference["value"] == "stop"
    assert preference["category"] == "marketing_messages"
    assert whatsapp_send(api, whatsapp_text("85291234567")).json()["error"]["code"] == 131047  # no window


def whatsapp_push(api, value, secret=WA_APP_SECRET):
    """A webhook POST straight to our /webhooks/whatsapp, signed as Meta signs, not posted by the sandbox."""
    raw = json.dumps({"object": "whatsapp_business_account",
                      "entry": [{"id": "200000000000001", "changes": [{"field": "messages", "value": value}]}]}).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return requests.post(f"{api}/webhooks/whatsapp", data=raw, timeout=5,
                         headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature})


def member_message(wa_id, text="POINTS"):
    return {"messaging_product": "whatsapp", "contacts": [{"profile": {"name": "Ana"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": f"wamid.{uuid.uuid4().hex}", "timestamp": str(int(time.time())),
                          "type": "text", "text": {"body": text}}]}


def test_a_signed_push_posted_to_our_webhook_directly_opens_the_24_hour_window(stack, api, receivers):
    stack.clock.set(datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc))
    # a push Meta did not sign, and one of statuses only: no window
    assert whatsapp_push(api, member_message("85291230001"), secret="not-the-app-secret").status_code == 200
    assert whatsapp_push(api, {"messaging_product": "whatsapp", "statuses": [
        {"id": "wamid.x", "status": "read", "timestamp": "1", "recipient_id": "85291230001"}]}).status_code == 200
    assert whatsapp_send(api, whatsapp_text("85291230001")).json()["error"]["code"] == 131047
    assert stats(api)["member_messages_seen"]["whatsapp"] == 0

    # the member's message, signed with the app secret: the window opens for that number only
    assert whatsapp_push(api, member_message("85291230001")).status_code == 200
    assert len(receivers.on("/webhooks/whatsapp")) == 3           # our webhook got all three
    assert whatsapp_send(api, whatsapp_text("85291230001")).status_code == 200
    assert whatsapp_send(api, whatsapp_text("85291230002")).json()["error"]["code"] == 131047
    assert stats(api)["member_messages_seen"]["whatsapp"] == 1
    stack.clock.set(datetime(2026, 11, 24, 12, 0, 1, tzinfo=timezone.utc))
    assert whatsapp_send(api, whatsapp_text("85291230001")).json()["error"]["code"] == 131047


def test_signed_wechat_and_twilio_pushes_posted_directly_reach_the_providers_memory(api):
    # WeChat: a member's text opens the 48-hour window for customer-service messages
    token = wechat_token(api)["access_token"]
    text = {"touser": "oDirect_member1", "msgtype": "text", "text": {"content": "您的积分 1250"}}
    assert wechat_send(api, token, text, "custom/send")["errcode"] == 45015
    timestamp, nonce = str(int(time.time())), "12345"
    signature = hashlib.sha1("".join(sorted([WECHAT_TOKEN, timestamp, nonce])).encode()).hexdigest()
    xml = ("<xml><ToUserName><![CDATA[gh_local00000001]]></ToUserName><FromUserName><![CDATA[oDirect_member1]]>"
           "</FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
           "<Content><![CDATA[我的积分]]></Content><MsgId>1234567890123456</MsgId></xml>")
    query = {"signature": signature, "timestamp": timestamp, "nonce": nonce, "openid": "oDirect_member1"}
    assert requests.post(f"{api}/webhooks/wechat", params={**query, "signature": "0" * 40},
                         data=xml.encode(), timeout=5).status_code == 200
    assert wechat_send(api, token, text, "custom/send")["errcode"] == 45015   # badly signed: nothing learnt
    assert requests.post(f"{api}/webhooks/wechat", params=query, data=xml.encode(), timeout=5).status_code == 200
    assert wechat_send(api, token, text, "custom/send")["errcode"] == 0

    # Twilio: a STOP it would have received opts the number out of further sends
    form = [("From", "+85291230003"), ("To", TWILIO_FROM), ("Body", "STOP"), ("MessageSid", "SM" + "1" * 32)]
    url = f"{api}/webhooks/twilio/inbound"
    signed = url + "".join(k + v for k, v in sorted(form))
    signature = base64.b64encode(hmac.new(TWILIO_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()).decode()
    assert requests.post(url, data=form, headers={"X-Twilio-Signature": signature}, timeout=5).status_code == 200
    stopped = twilio_send(api, {"To": "+85291230003", "From": TWILIO_FROM, "Body": "hi"})
    assert stopped.status_code == 400 and stopped.json()["code"] == 21610
    assert stats(api)["member_messages_seen"] == {"whatsapp": 0, "wechat": 1, "twilio": 1, "aliyun": 0}


# --- WeChat -----------------------------------------------------------------------------

class SandboxWeChatClient:
    """wechatpy's client, pointed at the sandbox (only its base URL changes)."""

    def __new__(cls, api):
        from wechatpy.client import WeChatClient

        class Client(WeChatClient):
            API_BASE_URL = f"{api}/_sandbox/wechat/cgi-bin/"

            def fetch_access_token(self):
                return self._fetch_access_token(url=f"{api}/_sandbox/wechat/cgi-bin/token", params={
                    "grant_type": "client_credential", "appid": self.appid, "secret": self.secret})
        return Client(WECHAT_APPID, WECHAT_SECRET)


def test_wechat_template_message_through_the_sdk_and_its_job_finish_push(api, receivers):
    client = SandboxWeChatClient(api)
    answer = client.message.send_template("oAbc123_xyz", "POINTS_CREDITED_TEMPLATE",
                                          {"thing1": {"value": "Ana"}, "number2": {"value": "120"}})
    assert answer["errcode"] == 0 and answer["errmsg"] == "ok" and isinstance(answer["msgid"], int)
    [record] = outbox(api, channel="wechat")
    assert record["provider"] == "wechat" and record["kind"] == "template" and record["to"] == "oAbc123_xyz"
    assert record["template"] == "POINTS_CREDITED_TEMPLATE" and record["variables"] == {"thing1": "Ana",
                                                                                        "number2": "120"}
    assert record["provider_message_id"] == answer["msgid"]

    [push] = receivers.wait("/webhooks/wechat", 1)
    assert wechat_signed(push) and dict(push.query)["openid"] == "oAbc123_xyz"
    xml = ET.fromstring(push.body)
    assert xml.findtext("Event") == "TEMPLATESENDJOBFINISH" and xml.findtext("Status") == "success"
    assert xml.findtext("FromUserName") == "oAbc123_xyz" and int(xml.findtext("MsgID")) == answer["msgid"]
    assert stats(api)["wechat_token_fetches"] == {WECHAT_APPID: 1}


def test_wechat_tokens_expire_and_a_new_one_retires_the_old_after_an_overlap(stack, api):
    start = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
    stack.clock.set(start)
    assert wechat_token(api, secret="wrong")["errcode"] == 40125
    assert wechat_token(api, appid="wx-other")["errcode"] == 40013
    first = wechat_token(api)
    assert first["expires_in"] == 7200 and first["access_token"]
    assert wechat_send(api, first["access_token"], wechat_template())["errcode"] == 0
    assert wechat_send(api, "forged", wechat_template())["errcode"] == 40001
    assert wechat_send(api, "", wechat_template())["errcode"] == 41001

    stack.clock.set(start + timedelta(seconds=7201))  # the local clock runs on from where it is set
    assert wechat_send(api, first["access_token"], wechat_template())["errcode"] == 42001

    second = wechat_token(api)
    stack.clock.set(start + timedelta(seconds=7300))
    third = wechat_token(api)
    assert wechat_send(api, second["access_token"], wechat_template())["errcode"] == 0  # still in the overlap
    stack.clock.set(start + timedelta(seconds=7300 + 301))
    assert wechat_send(api, second["access_token"], wechat_template())["errcode"] == 40001  # not latest
    assert wechat_send(api, third["access_token"], wechat_template())["errcode"] == 0
    assert stats(api)["wechat_token_fetches"] == {WECHAT_APPID: 3}


def test_wechat_refuses_what_it_no_longer_accepts(api):
    token = wechat_token(api)["access_token"]
    assert wechat_send(api, token, {**wechat_template(), "template_id": ""})["errcode"] == 40037
    no_id = wechat_template()
    del no_id["template_id"]
    assert wechat_send(api, token, no_id)["errcode"] == 40037
    long = wechat_template(data={"thing1": {"value": "会" * 21}})
    assert wechat_send(api, token, long)["errcode"] == 47003
    coloured = wechat_template(data={"thing1": {"value": "Ana", "color": "#173177"}})
    assert wechat_send(api, token, coloured)["errcode"] == 47003
    assert wechat_send(api, token, wechat_template(openid="x"))["errcode"] == 40003
    assert outbox(api) == []


def test_wechat_subscription_unfollow_dedup_and_the_48_hour_window(api, receivers):
    token = wechat_token(api)["access_token"]
    subscription = {"touser": "oSub_member1", "template_id": "POINTS_EXPIRING_SUBSCRIBE", "page": "pages/points",
                    "data": {"thing1": {"value": "Ana"}, "number2": {"value": "1250"}}}
    assert wechat_send(api, token, subscription, "subscribe/bizsend")["errcode"] == 0
    again = wechat_template(openid="oSub_member1", client_msg_id="reminder-1")
    first = wechat_send(api, token, again)
    assert wechat_send(api, token, again)["msgid"] == first["msgid"]  # deduplicated: sent once
    assert [r["kind"] for r in outbox(api)] == ["subscription", "template"]

    text = {"touser": "oSub_member1", "msgtype": "text", "text": {"content": "您的积分 1250"}}
    assert wechat_send(api, token, text, "custom/send")["errcode"] == 45015
    answered = inbound(api, channel="wechat", **{"from": "oSub_member1"}, text="我的积分")
    assert answered["status"] == 200
    push = [r for r in receivers.on("/webhooks/wechat") if b"<MsgType><![CDATA[text]]>" in r.body][0]
    assert wechat_signed(push) and ET.fromstring(push.body).findtext("Content") == "我的积分"
    assert wechat_send(api, token, text, "custom/send") == {"errcode": 0, "errmsg": "ok"}

    inbound(api, channel="wechat", **{"from": "oSub_member1"}, event="unsubscribe")
    event = ET.fromstring(receivers.on("/webhooks/wechat")[-1].body)
    assert event.findtext("MsgType") == "event" and event.findtext("Event") == "unsubscribe"
    assert wechat_send(api, token, wechat_template(openid="oSub_member1"))["errcode"] == 43004


# --- Twilio -----------------------------------------------------------------------------

def test_twilio_sdk_sends_and_status_callbacks_are_signed_over_the_exact_url(api, receivers):
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    class SandboxHttpClient(TwilioHttpClient):
        def request(self, method, url, *args, **kwargs):
            return super().request(method, url.replace("https://api.twilio.com", f"{api}/_sandbox/twilio"),
                                   *args, **kwargs)

    callback = f"{api}/webhooks/twilio/status?m={quote('msg#7 ü', safe='')}&x=1"
    client = Client(TWILIO_SID, TWILIO_TOKEN, http_client=SandboxHttpClient())
    message = client.messages.create(to="+85291234567", from_=TWILIO_FROM, body="您的积分 1,250",
                                     status_callback=callback)
    assert message.sid.startswith("SM") and len(message.sid) == 34 and message.status == "queued"
    [record] = outbox(api, channel="sms")
    assert record["provider"] == "twilio" and record["to"] == "85291234567" and record["text"] == "您的积分 1,250"
    assert record["provider_message_id"] == message.sid and record["kind"] == "text"

    posted = receivers.wait("/webhooks/twilio/status", 2)
    for request in posted:
        assert "?" + request.raw_query == callback[callback.index("?"):]
        assert twilio_signed(request, callback)
    forms = [dict(parse_qsl(r.body.decode())) for r in posted]
    assert [f["MessageStatus"] for f in forms] == ["sent", "delivered"]
    assert {f["MessageSid"] for f in forms} == {message.sid} and forms[0]["To"] == "+85291234567"


def test_twilio_refuses_bad_auth_and_bad_numbers_and_honours_stop(api, receivers):
    wrong = twilio_send(api, {"To": "+85291234567", "From": TWILIO_FROM, "Body": "hi"}, auth=(TWILIO_SID, "nope"))
    assert wrong.status_code == 401 and wrong.json()["code"] == 20003
    assert set(wrong.json()) == {"code", "message", "more_info", "status"}
    invalid = twilio_send(api, {"To": "12345", "From": TWILIO_FROM, "Body": "hi"})
    assert invalid.status_code == 400 and invalid.json()["code"] == 21211
    assert twilio_send(api, {"To": "+85291234567", "From": TWILIO_FROM}).json()["code"] == 21602
    assert twilio_send(api, {"To": "+85291234567", "Body": "hi"}).json()["code"] == 21603

    answered = inbound(api, channel="twilio", **{"from": "+85291234567"}, text="STOP")
    assert answered["status"] == 200
    [request] = receivers.on("/webhooks/twilio/inbound")
    assert twilio_signed(request, f"{api}/webhooks/twilio/inbound")
    form = dict(parse_qsl(request.body.decode()))
    assert form["From"] == "+85291234567" and form["To"] == TWILIO_FROM and form["Body"] == "STOP"
    assert form["OptOutType"] == "STOP" and form["MessageSid"].startswith("SM")
    stopped = twilio_send(api, {"To": "+85291234567", "From": TWILIO_FROM, "Body": "hi"})
    assert stopped.status_code == 400 and stopped.json()["code"] == 21610
    assert outbox(api) == []


# --- Aliyun -----------------------------------------------------------------------------

def test_aliyun_signed_send_is_recorded_and_reported_with_out_id(api, receivers):
    response = aliyun_send(api)
    assert response.status_code == 200
    answer = response.json()
    assert answer["Code"] == "OK" and answer["Message"] == "OK" and answer["BizId"] and answer["RequestId"]
    [record] = outbox(api, channel="sms")
    assert record["provider"] == "aliyun" and record["to"] == "13800000000" and record["kind"] == "template"
    assert record["template"] == "SMS_POINTS_EXPIRING" and record["variables"] == {"name": "Ana", "points": "1,250"}
    assert record["provider_message_id"] == answer["BizId"] and record["out_id"] == "msg-aliyun-1"

    [report] = receivers.wait("/webhooks/aliyun/report", 1)
    assert dict(report.query) == {"token": ALIYUN_CALLBACK}
    [item] = json.loads(report.body)
    assert item["success"] is True and item["err_code"] == "DELIVERED"
    assert item["biz_id"] == answer["BizId"] and item["out_id"] == "msg-aliyun-1"
    assert item["phone_number"] == "13800000000"


def test_aliyun_refuses_bad_signatures_keys_replays_and_numbers(api):
    forged = aliyun_send(api, secret="not-the-secret")
    assert forged.status_code == 400 and forged.json()["Code"] == "SignatureDoesNotMatch"
    assert set(forged.json()) >= {"Code", "Message", "RequestId"}
    unknown = aliyun_send(api, AccessKeyId="LTAIother")
    assert unknown.status_code == 404 and unknown.json()["Code"] == "InvalidAccessKeyId.NotFound"
    assert aliyun_send(api, nonce="n-1").json()["Code"] == "OK"
    assert aliyun_send(api, nonce="n-1").json()["Code"] == "SignatureNonceUsed"
    illegal = aliyun_send(api, PhoneNumbers="12345")
    assert illegal.status_code == 200 and illegal.json()["Code"] == "isv.MOBILE_NUMBER_ILLEGAL"
    assert aliyun_send(api, TemplateParam='{"points": 1250}').json()["Code"] == "isv.INVALID_JSON_PARAM"
    assert aliyun_send(api, SignName="别的签名").json()["Code"] == "isv.SMS_SIGNATURE_ILLEGAL"
    assert aliyun_send(api, Format="XML").text.startswith("<?xml")
    assert len(outbox(api)) == 2  # the nonce's first use and the XML one


# --- faults -----------------------------------------------------------------------------

def test_a_status_fault_fails_exactly_count_sends_in_the_providers_shape(api):
    fault(api, provider="whatsapp", status=500, count=2)
    fault(api, provider="twilio", status=503, count=1)
    assert [f["remaining"] for f in requests.get(f"{api}/_local/faults", timeout=5).json()] == [2, 1]
    failed = [whatsapp_send(api, whatsapp_template()) for _ in range(2)]
    assert [r.status_code for r in failed] == [500, 500] and failed[0].json()["error"]["code"] == 1
    assert whatsapp_send(api, whatsapp_template()).status_code == 200
    down = twilio_send(api, {"To": "+85291234567", "From": TWILIO_FROM, "Body": "hi"})
    assert down.status_code == 503 and down.json()["status"] == 503
    assert twilio_send(api, {"To": "+85291234567", "From": TWILIO_FROM, "Body": "hi"}).status_code == 201
    assert requests.get(f"{api}/_local/faults", timeout=5).json() == []
    counts = stats(api)
    assert counts["faults_injected"]["whatsapp"] == 2 and counts["faults_injected"]["twilio"] == 1
    assert counts["sends_accepted"]["whatsapp"] == 1 and len(outbox(api)) == 2


def test_a_share_fault_fails_that_share_of_sends_repeatably_until_dropped(api):
    fault(api, provider="whatsapp", status=503, share=0.5, seed=11)
    fault(api, provider="whatsapp", status=429, share=1.0, to="85290000009")
    first = [whatsapp_send(api, whatsapp_template()).status_code for _ in range(40)]
    assert set(first) == {200, 503} and 10 < first.count(503) < 30
    special = whatsapp_send(api, whatsapp_template(to="85290000009")).status_code   # the first fault draws first
    assert special in (429, 503)
    [half, always] = requests.get(f"{api}/_local/faults", timeout=5).json()
    assert half["share"] == 0.5 and half["seed"] == 11 and half["remaining"] is None
    assert half["hits"] == first.count(503) + (special == 503) and always["hits"] == (special == 429)
    assert requests.delete(f"{api}/_local/faults", timeout=5).json() == {"cleared": 2}
    assert whatsapp_send(api, whatsapp_template()).status_code == 200

    fault(api, provider="whatsapp", status=503, share=0.5, seed=11)   # the same seed: the same draws
    again = [whatsapp_send(api, whatsapp_template()).status_code for _ in range(40)]
    assert again == first
    for body in ({"share": 0}, {"share": 1.5}, {"share": 0.5, "count": 2}, {"seed": 3}):
        refused = requests.post(f"{api}/_local/faults", json={"provider": "whatsapp", "status": 500, **body},
                                timeout=5)
        assert refused.status_code == 400, body


def test_error_code_faults_answer_each_providers_error(api):
    fault(api, provider="whatsapp", error_code=131056, count=1, to="+8613800000000")
    fault(api, provider="wechat", error_code=45009, count=1)
    fault(api, provider="twilio", error_code=30007, count=1)
    fault(api, provider="aliyun", error_code="isv.BUSINESS_LIMIT_CONTROL", count=1)

    assert whatsapp_send(api, whatsapp_template(to="85291234567")).status_code == 200  # not the faulted number
    limited = whatsapp_send(api, whatsapp_template(to="8613800000000"))
    assert limited.status_code == 429 and limited.json()["error"]["code"] == 131056
    token = wechat_token(api)["access_token"]
    assert wechat_send(api, token, wechat_template())["errcode"] == 45009
    filtered = twilio_send(api, {"To": "+85291234567", "From": TWILIO_FROM, "Body": "hi"})
    assert filtered.status_code == 400 and filtered.json()["code"] == 30007
    capped = aliyun_send(api)
    assert capped.status_code == 200 and capped.json()["Code"] == "isv.BUSINESS_LIMIT_CONTROL"

    assert whatsapp_send(api, whatsapp_template(to="8613800000000")).status_code == 200
    assert wechat_send(api, token, wechat_template())["errcode"] == 0
    assert stats(api)["faults_injected"] == {"whatsapp": 1, "wechat": 1, "twilio": 1, "aliyun": 1}
    assert requests.post(f"{api}/_local/faults", json={"provider": "fax", "status": 500}, timeout=5).status_code == 400


def test_a_timeout_fault_holds_the_request_past_the_clients_timeout(api):
    fault(api, provider="whatsapp", timeout=True, count=1)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(f"{api}/_sandbox/whatsapp/v21.0/{WA_NUMBER}/messages", json=whatsapp_template(),
                      headers={"Authorization": f"Bearer {WA_TOKEN}"}, timeout=0.2)
    assert whatsapp_send(api, whatsapp_template()).status_code == 200  # consumed once
    assert time.monotonic() - started < 2

    fault(api, provider="wechat", timeout=True, hold=0.2)  # held, then a gateway timeout
    token = wechat_token(api)["access_token"]
    started = time.monotonic()
    held = requests.post(f"{api}/_sandbox/wechat/cgi-bin/message/template/send", params={"access_token": token},
                         json=wechat_template(), timeout=5)
    assert held.status_code == 504 and held.json()["errcode"] == -1 and time.monotonic() - started >= 0.2

    fault(api, provider="twilio", timeout=True, hold=0.2, then="accept")  # held, then sent after all
    started = time.monotonic()
    late = twilio_send(api, {"To": "+85291234567", "From": TWILIO_FROM, "Body": "hi"})
    assert late.status_code == 201 and time.monotonic() - started >= 0.2
    assert [r["provider"] for r in outbox(api)] == ["whatsapp", "twilio"]


def test_stopping_the_sandbox_releases_a_held_request():
    sandbox = Sandbox(Accounts.resolve({}, {}, "http://127.0.0.1:9"), SandboxConfig(),
                      SandboxClock(SimulatedClock()), WebhookPoster("http://127.0.0.1:9", "http://127.0.0.1:9"))
    sandbox.start()
    released = []
    holder = threading.Thread(target=lambda: released.append(sandbox.hold(30)))
    holder.start()
    time.sleep(0.05)
    started = time.monotonic()
    sandbox.stop()
    holder.join(2)
    assert released == [False] and time.monotonic() - started < 2


# --- receipts and inbound on request -------------------------------------------------------

def test_receipts_on_request_in_any_order_and_auto_receipts_can_be_switched_off(api, receivers):
    requests.post(f"{api}/_local/sandbox/config", json={"auto_receipts": False}, timeout=5)
    message_id = whatsapp_send(api, whatsapp_template(biz_opaque_callback_data="msg-9")).json()["messages"][0]["id"]
    time.sleep(0.2)
    assert receivers.on("/webhooks/whatsapp") == []

    receivers.answers["/webhooks/whatsapp"] = (200, b"stored")
    for status in ("delivered", "sent"):
        answer = requests.post(f"{api}/_local/receipts", timeout=5, json={
            "provider": "whatsapp", "provider_message_id": message_id, "status": status}).json()
        assert answer["status"] == 200 and answer["body"] == "stored"
    failed = requests.post(f"{api}/_local/receipts", timeout=5, json={
        "provider": "whatsapp", "provider_message_id": message_id, "status": "failed", "error_code": 131026}).json()
    posted = receivers.on("/webhooks/whatsapp")
    assert all(whatsapp_signed(r) for r in posted)
    statuses = [json.loads(r.body)["entry"][0]["changes"][0]["value"]["statuses"][0] for r in posted]
    assert [s["status"] for s in statuses] == ["delivered", "sent", "failed"]
    assert statuses[2]["errors"][0]["code"] == 131026 and failed["status"] == 200
    assert outbox(api)[0]["status"] == "failed"

    missing = requests.post(f"{api}/_local/receipts", timeout=5, json={
        "provider": "twilio", "provider_message_id": "SMnope", "status": "delivered"})
    assert missing.status_code == 404
    made_up = requests.post(f"{api}/_local/receipts", timeout=5, json={
        "provider": "twilio", "provider_message_id": "SMnope", "status": "undelivered", "error_code": 30007,
        "to": "+85291234567"}).json()
    [request] = receivers.on("/webhooks/twilio/status")
    assert made_up["status"] == 200 and twilio_signed(request, f"{api}/webhooks/twilio/status")
    assert dict(parse_qsl(request.body.decode()))["ErrorCode"] == "30007"


def test_a_receipt_our_webhook_refuses_is_retried_then_counted_undelivered(api, receivers):
    receivers.answers["/webhooks/aliyun/report"] = (404, b"not yet")
    assert aliyun_send(api).json()["Code"] == "OK"
    receivers.wait("/webhooks/aliyun/report", 3)  # the first attempt and two retries
    deadline = time.monotonic() + 3
    while stats(api)["receipts"]["undelivered"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    counts = stats(api)["receipts"]
    assert counts["undelivered"] == 1 and counts["retries"] == 2 and counts["pending"] == 0
    [entry] = requests.get(f"{api}/_local/receipts", timeout=5).json()
    assert entry["outcome"] == "undelivered" and entry["attempts"] == 3 and entry["http_status"] == 404


def test_aliyun_reply_is_posted_to_the_up_webhook_with_our_token(api, receivers):
    receivers.answers["/webhooks/aliyun/up"] = (200, '{"code":0,"msg":"接收成功"}'.encode())
    answered = inbound(api, channel="aliyun", **{"from": "13800000000"}, text="R")
    assert answered == {**answered, "status": 200, "body": '{"code":0,"msg":"接收成功"}'}
    [request] = receivers.on("/webhooks/aliyun/up")
    assert dict(request.query) == {"token": ALIYUN_CALLBACK}
    [reply] = json.loads(request.body)
    assert reply["phone_number"] == "13800000000" and reply["content"] == "R" and reply["sign_name"] == "会员中心"
    assert {"send_time", "dest_code", "sequence_id"} <= set(reply)
    assert stats(api)["inbound"]["aliyun"] == 1
    bad = requests.post(f"{api}/_local/inbound", json={"channel": "sms", "from": "1", "text": "x"}, timeout=5)
    assert bad.status_code == 400


def test_config_shows_the_accounts_and_refuses_unknown_settings(api):
    shown = requests.get(f"{api}/_local/sandbox/config", timeout=5).json()
    assert shown["accounts"]["whatsapp_phone_number_id"] == WA_NUMBER
    assert "whatsapp_access_token" not in shown["accounts"]  # no secrets
    assert shown["endpoints"]["twilio"] == f"{api}/_sandbox/twilio" and shown["config"]["timeout_hold"] == 0.6
    refused = requests.post(f"{api}/_local/sandbox/config", json={"auto_receipt": False}, timeout=5)
    assert refused.status_code == 400 and "auto_receipt" in refused.json()["message"]
    bad_templates = {"templates": {"wechat": {"T1": "thing1"}}}
    assert requests.post(f"{api}/_local/sandbox/config", json=bad_templates, timeout=5).status_code == 400


def test_the_outbox_filters_and_clears(api):
    whatsapp_send(api, whatsapp_template(to="8613800000001"))
    whatsapp_send(api, whatsapp_template(to="8613800000002"))
    twilio_send(api, {"To": "+8613800000001", "From": TWILIO_FROM, "Body": "hi"})
    assert [r["provider"] for r in outbox(api, to="+8613800000001")] == ["whatsapp", "twilio"]
    assert [r["to"] for r in outbox(api, channel="whatsapp")] == ["8613800000001", "8613800000002"]
    assert requests.delete(f"{api}/_local/outbox", timeout=5).json() == {"cleared": 3}
    assert outbox(api) == []
