"""Provider clients without a network: error classification, payload shapes, the Aliyun
signature, SMS composition, rate limits and the shared WeChat token."""
import base64
import hashlib
import hmac
import json

import pytest
import requests

from loyalty.channels.aliyun import (AliyunClient, AliyunConfig, aliyun_phone, classify_aliyun_error,
                                     percent_encode, send_sms_params, sign, string_to_sign)
from loyalty.channels.providers import (OUTCOMES, ProviderError, RateLimiter, SendResult, SmsComposer, SmsSender,
                                        classify_http_status)
from loyalty.channels.twilio import TwilioClient, TwilioConfig, classify_twilio_error, twilio_form
from loyalty.channels.wechat import (MemoryTokenStore, WeChatClient, WeChatConfig, WeChatTokenCache,
                                     classify_wechat_error, seconds_to_next_day, truncate_fields, wechat_request)
from loyalty.channels.whatsapp import WhatsAppClient, WhatsAppConfig, classify_whatsapp_error, whatsapp_body
from loyalty.rules import SmsRules

# --- fakes ---------------------------------------------------------------------------------

class Clock:
    def __init__(self, at: float = 1_700_000_000.0):
        self.at = at

    def __call__(self) -> float:
        return self.at

    def advance(self, seconds: float) -> None:
        self.at += seconds

def response(status: int, body=None, headers=None) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.reason = "test"
    r._content = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    r.headers.update(headers or {})
    return r

class FakeSession:
    """requests.Session's `request`, answered by `handler(method, url, kwargs)`."""

    def __init__(self, handler):
        self.handler = handler
        self.calls = []

    def request(self, method, url, **kwargs):
        self.calls.append((method, url, kwargs))
        answer = self.handler(method, url, kwargs)
        if isinstance(answer, Exception):
            raise answer
        return answer

def answers(*items):
    queue = list(items)
    return FakeSession(lambda *_: queue.pop(0))

# --- classification tables -----------------------------------------------------------------

@pytest.mark.parametrize("status, code, outcome", [
    (429, 130429, "transient"), (400, 131056, "transient"), (400, 80007, "transient"), (400, 4, "transient"),
    (400, 131048, "transient"), (400, 131049, "transient"),
    (400, 131047, "window_closed"), (400, 131026, "undeliverable"), (400, 131050, "opted_out"),
    (400, 132000, "config"), (400, 132001, "config"), (400, 132005, "config"), (400, 132012, "config"),
    (401, 190, "config"),
    (500, None, "transient"), (503, 999999, "transient"), (403, 999999, "config"), (400, 999999, "permanent"),
    (400, "131047", "window_closed"), (400, "not-a-number", "permanent"),
])
def test_whatsapp_codes_map_to_outcomes(status, code, outcome):
    assert classify_whatsapp_error(status, code).outcome == outcome

def test_whatsapp_slow_down_codes_suggest_a_longer_wait():
    assert classify_whatsapp_error(400, 131048).retry_after_s >= 3600
    assert classify_whatsapp_error(400, 131049).retry_after_s >= 3600
    assert classify_whatsapp_error(400, 131056).retry_after_s == 6

@pytest.mark.parametrize("status, errcode, outcome", [
    (200, -1, "transient"), (200, 45009, "transient"), (200, 45011, "transient"),
    (200, 40003, "undeliverable"), (200, 43004, "opted_out"), (200, 43101, "opted_out"),
    (200, 45015, "window_closed"),
    (200, 40037, "config"), (200, 41028, "config"), (200, 40001, "transient"),
    (200, 12345, "permanent"), (502, None, "transient"), (200, None, "permanent"), (200, "junk", "permanent"),
])
def test_wechat_errcodes_map_to_outcomes(status, errcode, outcome):
    assert classify_wechat_error(status, errcode).outcome == outcome

def test_wechat_daily_quota_waits_until_the_next_beijing_day():
    # 2023-11-14 22:13:20 UTC is 06:13:20 on the 15th in Beijing: wait until 00:05 on the 16th
    now = 1_700_000_000.0
    wait = classify_wechat_error(200, 45009, now=now).retry_after_s
    assert wait == seconds_to_next_day(now) == pytest.approx(17 * 3600 + 51 * 60 + 40)

@pytest.mark.parametrize("status, code, outcome", [
    (500, None, "transient"), (429, 20429, "transient"), (400, 21611, "transient"),
    (400, 30003, "undeliverable"), (400, 30005, "undeliverable"), (400, 30006, "undeliverable"),
    (400, 21614, "undeliverable"), (400, 21211, "undeliverable"),
    (400, 21610, "opted_out"), (400, 21606, "config"), (401, 20003, "config"),
    (400, 99999, "permanent"), (404, None, "permanent"), (503, 99999, "transient"),
])
def test_twilio_codes_map_to_outcomes(status, code, outcome):
    assert classify_twilio_error(status, code).outcome == outcome

@pytest.mark.parametrize("status, code, outcome", [
    (200, "isv.BUSINESS_LIMIT_CONTROL", "transient"), (400, "Throttling.User", "transient"),
    (503, "ServiceUnavailable", "transient"), (200, "isv.MOBILE_NUMBER_ILLEGAL", "undeliverable"),
    (200, "isv.SMS_TEMPLATE_ILLEGAL", "config"), (200, "isv.SMS_SIGNATURE_ILLEGAL", "config"),
    (404, "InvalidAccessKeyId.NotFound", "config"), (400, "SignatureDoesNotMatch", "config"),
    (200, "isv.SOMETHING_NEW", "permanent"), (500, "isv.SOMETHING_NEW", "transient"), (502, None, "transient"),
])
def test_aliyun_codes_map_to_outcomes(status, code, outcome):
    assert classify_aliyun_error(status, code).outcome == outcome

@pytest.mark.parametrize("status, outcome", [(500, "transient"), (503, "transient"), (429, "transient"),
                                             (401, "config"), (403, "config"), (400, "permanent"),
                                             (404, "permanent")])
def test_unknown_codes_fall_back_to_the_http_status(status, outcome):
    assert classify_http_status(status).outcome == outcome

def test_every_table_entry_is_a_known_outcome():
    from loyalty.channels import aliyun, twilio, wechat, whatsapp
    for table in (whatsapp.WHATSAPP_ERRORS, wechat.WECHAT_ERRORS, twilio.TWILIO_ERRORS, aliyun.ALIYUN_ERRORS):
        assert {c.outcome for c in table.values()} <= set(OUTCOMES)

def test_an_unknown_outcome_is_refused():
    with pytest.raises(ValueError):
        ProviderError("maybe", "x")

# --- payload shapes ------------------------------------------------------------------------

def test_whatsapp_template_body_has_body_and_url_button_parameters():
    payload = {"type": "template", "name": "points_expiring", "language": "zh_CN",
               "body_params": ["Ana", "1,250"], "button_params": ["r/abc"]}
    assert whatsapp_body("+8613800000000", payload, "m-1") == {
        "messaging_product": "whatsapp", "recipient_type": "individual", "to": "8613800000000",
        "biz_opaque_callback_data": "m-1", "type": "template",
        "template": {"name": "points_expiring", "language": {"code": "zh_CN"}, "components": [
            {"type": "body", "parameters": [{"type": "text", "text": "Ana"}, {"type": "text", "text": "1,250"}]},
            {"type": "button", "sub_type": "url", "index": "0", "parameters": [{"type": "text", "text": "r/abc"}]}]}}

def test_whatsapp_template_without_button_has_only_the_body_component():
    payload = {"type": "template", "name": "t", "language": "en", "body_params": ["a"], "button_params": None}
    assert [c["type"] for c in whatsapp_body("+1555", payload, "m")["template"]["components"]] == ["body"]

def test_whatsapp_text_body():
    body = whatsapp_body("+44 7700 900123", {"type": "text", "body": "hi", "preview_url": True}, "m-2")
    assert body["to"] == "447700900123"
    assert body["type"] == "text" and body["text"] == {"preview_url": True, "body": "hi"}

def test_an_unknown_payload_type_is_a_config_error():
    with pytest.raises(ProviderError) as raised:
        whatsapp_body("+1", {"type": "video"}, "m")
    assert raised.value.outcome == "config"

def test_wechat_values_are_cut_to_twenty_characters():
    data = {"thing1": "一二三四五六七八九十一二三四五六七八九十多出来", "time2": "2024年5月1日", "number3": 1250,
            "thing4": None}
    assert truncate_fields(data) == {"thing1": {"value": "一二三四五六七八九十一二三四五六七八九十"},
                                     "time2": {"value": "2024年5月1日"}, "number3": {"value": "1250"},
                                     "thing4": {"value": ""}}

def test_subscription_fields_of_short_types_are_cut_shorter():
    path, body = wechat_request("OPENID", {"type": "subscription", "template_id": "S", "page": None,
                                           "data": {"phrase1": "即将到期提醒", "thing2": "x" * 25, "number3": "1250"}})
    assert body["data"] == {"phrase1": {"value": "即将到期提"}, "thing2": {"value": "x" * 20},
                            "number3": {"value": "1250"}}

def test_wechat_request_paths_and_bodies():
    path, body = wechat_request("OPENID", {"type": "template", "template_id": "TID", "data": {"thing1": "x" * 30},
                                           "url": "https://e/x", "client_msg_id": "m-1"})
    assert path == "/cgi-bin/message/template/send"
    assert body == {"touser": "OPENID", "template_id": "TID", "data": {"thing1": {"value": "x" * 20}},
                    "url": "https://e/x", "client_msg_id": "m-1"}
    path, body = wechat_request("OPENID", {"type": "subscription", "template_id": "S", "data": {}, "page": None})
    assert path == "/cgi-bin/message/subscribe/bizsend" and "page" not in body
    path, body = wechat_request("OPENID", {"type": "text", "content": "你好"})
    assert path == "/cgi-bin/message/custom/send"
    assert body == {"touser": "OPENID", "msgtype": "text", "text": {"content": "你好"}}

TWILIO = TwilioConfig(account_sid="AC1", auth_token="tok", sender="+15005550006",
                      public_base_url="https://loyalty.example.com/")

def test_twilio_form_with_a_number_and_with_a_messaging_service():
    form = twilio_form(TWILIO, "+15551234567", {"text": "hi"}, "m-1")
    assert form == {"To": "+15551234567", "From": "+15005550006", "Body": "hi",
                    "StatusCallback": "https://loyalty.example.com/webhooks/twilio/status?m=m-1"}
    service = TwilioConfig(account_sid="AC1", auth_token="tok", sender="MG123", public_base_url=None)
    form = twilio_form(service, "+15551234567", {"text": "hi"}, "m-1")
    assert form["MessagingServiceSid"] == "MG123" and "From" not in form and "StatusCallback" not in form

# --- Aliyun signature --------------------------------------------------------------------

def test_aliyun_signature_matches_the_rpc_documentation_example():
    # Aliyun's signature documentation (DescribeRegions, AccessKey testid / testsecret)
    params = {"AccessKeyId": "testid", "Action": "DescribeRegions", "Format": "XML",
              "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf",
              "SignatureVersion": "1.0", "Timestamp": "2016-02-23T12:46:24Z", "Version": "2014-05-26"}
    assert string_to_sign(params, "GET") == (
        "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1"
        "%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0"
        "%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26")
    assert sign(params, "testsecret", "GET") == "OLeaidS1JvxuMvnyHOwuJ+uX5qY="

def test_aliyun_signature_matches_the_sms_documentation_example():
    # Dysmsapi's own example (SendSms, AccessKey testId / testSecret, a Chinese SignName)
    params = {"AccessKeyId": "testId", "Action": "SendSms", "Format": "XML", "OutId": "123",
              "PhoneNumbers": "15300000001", "RegionId": "cn-hangzhou", "SignName": "阿里云短信测试专用",
              "SignatureMethod": "HMAC-SHA1", "SignatureNonce": "45e25e9b-0a6f-4070-8c85-2956eda1b466",
              "SignatureVersion": "1.0", "TemplateCode": "SMS_71390007", "TemplateParam": '{"customer":"test"}',
              "Timestamp": "2017-07-12T02:42:19Z", "Version": "2017-05-25"}
    assert sign(params, "testSecret", "GET") == "zJDF+Lrzhj/ThnlvIToysFRq6t4="

def test_percent_encoding_follows_pop_rules():
    assert percent_encode("a b*~-_.") == "a%20b%2A~-_."
    assert percent_encode("/=&+:") == "%2F%3D%26%2B%3A"
    assert percent_encode("会") == "%E4%BC%9A"

ALIYUN = AliyunConfig(access_key_id="LTAIx", access_key_secret="s3cret", sign_name="会员中心")

def test_send_sms_params_are_complete_and_signed_over_post():
    payload = {"template_code": "SMS_1", "params": {"name": "安娜", "points": 1250}, "text": "..."}
    params = send_sms_params(ALIYUN, "+8613800000000", payload, "m-1", timestamp=1_700_000_000, nonce="n-1")
    signature = params.pop("Signature")
    assert params == {"Action": "SendSms", "Version": "2017-05-25", "Format": "JSON", "RegionId": "cn-hangzhou",
                      "AccessKeyId": "LTAIx", "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
                      "SignatureNonce": "n-1", "Timestamp": "2023-11-14T22:13:20Z", "PhoneNumbers": "13800000000",
                      "SignName": "会员中心", "TemplateCode": "SMS_1",
                      "TemplateParam": '{"name":"安娜","points":"1250"}', "OutId": "m-1"}
    # recomputed independently of the module's helpers
    canonical = "&".join(f"{_rfc3986(k)}={_rfc3986(v)}" for k, v in sorted(params.items()))
    expected = base64.b64encode(hmac.new(b"s3cret&", ("POST&%2F&" + _rfc3986(canonical)).encode(),
                                         hashlib.sha1).digest()).decode()
    assert signature == expected

def _rfc3986(value: str) -> str:
    unreserved = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~")
    return "".join(chr(b) if chr(b) in unreserved else f"%{b:02X}" for b in value.encode("utf-8"))

@pytest.mark.parametrize("phone, expected", [("+8613800000000", "13800000000"), ("13800000000", "13800000000"),
                                             ("+85291234567", "85291234567"), ("+86 138-0000-0000", "13800000000"),
                                             ("+861012345678", "861012345678")])
def test_aliyun_phone_numbers_are_domestic_for_mainland_mobiles(phone, expected):
    assert aliyun_phone(phone) == expected

def test_aliyun_send_needs_a_template_code():
    with pytest.raises(ProviderError) as raised:
        send_sms_params(ALIYUN, "+8613800000000", {"text": "hi"}, "m", timestamp=0, nonce="n")
    assert raised.value.outcome == "config"

# --- SMS composition ------------------------------------------------------------------------

RULES = SmsRules(brand="会员中心", max_segments=2)

def test_twilio_text_carries_the_signature_and_the_marketing_opt_out_line():
    sms = SmsComposer(RULES).compose("您有100积分将到期", provider="twilio", phone="+85291234567", locale="zh-HK",
                                     marketing=True)
    assert sms.text == sms.shown == "【会员中心】您有100积分将到期回T退訂"
    assert sms.segments == 1

def test_aliyun_text_leaves_the_signature_to_aliyun_but_counts_it():
    sms = SmsComposer(RULES).compose("您有100积分将到期", provider="aliyun", phone="+8613800000000", locale="zh-CN",
                                     marketing=True)
    assert sms.text == "您有100积分将到期拒收请回复R"
    assert sms.shown == "【会员中心】您有100积分将到期拒收请回复R"

def test_utility_messages_get_no_opt_out_line_and_no_double_signature():
    sms = SmsComposer(RULES).compose("【会员中心】积分已到账", provider="twilio", phone="+8613800000000", locale="zh-CN",
                                     marketing=False)
    assert sms.text == "【会员中心】积分已到账"

def test_english_marketing_gets_the_english_opt_out_line():
    sms = SmsComposer(RULES).compose("Your points expire soon.", provider="twilio", phone="+447700900123",
                                     locale="en", marketing=True)
    assert sms.text.endswith("Your points expire soon. Reply STOP to opt out")

def test_domestic_counting_includes_the_signature():
    composer = SmsComposer(RULES)
    body = "积" * 64   # 6 + 64 = 70 with the signature: one segment; one more character: two
    assert composer.compose(body, provider="aliyun", phone="+8613800000000", locale="zh-CN",
                            marketing=False).segments == 1
    assert composer.compose(body + "分", provider="aliyun", phone="+8613800000000", locale="zh-CN",
                            marketing=False).segments == 2

def test_a_message_above_the_segment_cap_is_refused():
    with pytest.raises(ProviderError) as raised:
        SmsComposer(RULES).compose("积" * 200, provider="aliyun", phone="+8613800000000", locale="zh-CN",
                                   marketing=False)
    assert (raised.value.outcome, raised.value.code) == ("config", "too_many_segments")

class RecordingSms:
    def __init__(self, provider):
        self.provider = provider
        self.sent = []

    def send(self, to, payload, message_id):
        self.sent.append((to, payload, message_id))
        return SendResult(self.provider, "id", "queued")

def test_sms_sender_routes_by_country_prefix_and_composes():
    twilio, aliyun = RecordingSms("twilio"), RecordingSms("aliyun")
    sender = SmsSender(SmsRules(), {"twilio": twilio, "aliyun": aliyun})
    assert sender.send("+8613800000000", {"text": "积分到账", "template_code": "SMS_1", "params": {}}, "m-1",
                       locale="zh-CN", marketing=False).provider == "aliyun"
    result = sender.send("+447700900123", {"text": "Points added"}, "m-2", locale="en", marketing=False)
    assert result.provider == "twilio"
    assert aliyun.sent[0][1]["text"] == "积分到账"
    assert twilio.sent[0][1] == {"text": "【会员中心】Points added"}

# --- rate limits ------------------------------------------------------------------------------

def test_token_bucket_refills_at_its_rate_and_never_sleeps():
    clock = Clock()
    bucket = RateLimiter(80, now=clock)
    assert all(bucket.wait("n1") == 0 for _ in range(80))
    assert bucket.wait("n1") == pytest.approx(1 / 80)
    assert bucket.wait("n2") == 0            # per sender
    clock.advance(0.5)
    assert sum(bucket.wait("n1") == 0 for _ in range(100)) == 40

def test_whatsapp_client_over_its_rate_raises_transient_with_a_wait():
    clock = Clock()
    ok = response(200, {"messages": [{"id": "wamid.1"}]})
    session = FakeSession(lambda *_: ok)
    client = WhatsAppClient(WhatsAppConfig(phone_number_id="PN", access_token="t", rate_per_s=2), session=session,
                            now=clock)
    payload = {"type": "text", "body": "hi", "preview_url": False}
    client.send("+1", payload, "m")
    client.send("+1", payload, "m")
    with pytest.raises(ProviderError) as raised:
        client.send("+1", payload, "m")
    assert raised.value.outcome == "transient" and raised.value.code == "rate_limited"
    assert raised.value.retry_after_s == pytest.approx(0.5)
    assert len(session.calls) == 2

# --- clients over a fake session ---------------------------------------------------------

def test_whatsapp_client_posts_with_bearer_and_returns_the_wamid():
    session = answers(response(200, {"messaging_product": "whatsapp", "contacts": [{"input": "1", "wa_id": "1"}],
                                     "messages": [{"id": "wamid.X", "message_status": "accepted"}]}))
    client = WhatsAppClient(WhatsAppConfig(phone_number_id="123", access_token="tok", base_url="https://g.test/"),
                            session=session)
    result = client.send("+8613800000000", {"type": "text", "body": "hi", "preview_url": True}, "m-1")
    assert result == SendResult("whatsapp", "wamid.X", "accepted")
    method, url, kwargs = session.calls[0]
    assert (method, url) == ("POST", "https://g.test/v21.0/123/messages")
    assert kwargs["headers"]["Authorization"] == "Bearer tok" and kwargs["timeout"] == (3.0, 8.0)

@pytest.mark.parametrize("answer, outcome, code", [
    (response(400, {"error": {"code": 131047, "message": "Re-engagement message"}}), "window_closed", "131047"),
    (response(429, {"error": {"code": 130429}}, {"Retry-After": "12"}), "transient", "130429"),
    (response(502, b"<html>bad gateway</html>"), "transient", "http_502"),
    (requests.ReadTimeout("read timed out"), "transient", "read_timeout"),
    (requests.ConnectTimeout("connect timed out"), "transient", "connect_timeout"),
    (requests.ConnectionError("refused"), "transient", "connection_error"),
])
def test_whatsapp_client_errors(answer, outcome, code):
    client = WhatsAppClient(WhatsAppConfig(phone_number_id="1", access_token="t"), session=answers(answer))
    with pytest.raises(ProviderError) as raised:
        client.send("+1", {"type": "text", "body": "x", "preview_url": False}, "m")
    assert (raised.value.outcome, raised.value.code, raised.value.provider) == (outcome, code, "whatsapp")
    if code == "130429":
        assert raised.value.retry_after_s == 12

def test_network_errors_do_not_carry_the_request_url():
    secret_url_error = requests.ConnectionError("Max retries exceeded with url: /send?access_token=SECRET")
    client = TwilioClient(TWILIO, session=answers(secret_url_error))
    with pytest.raises(ProviderError) as raised:
        client.send("+15551234567", {"text": "hi"}, "m")
    assert "SECRET" not in str(raised.value) and raised.value.__cause__ is None and raised.value.__suppress_context__

def test_twilio_client_uses_basic_auth_and_classifies_21610():
    session = answers(response(201, {"sid": "SM1", "status": "queued"}),
                      response(400, {"code": 21610, "message": "unsubscribed", "status": 400}))
    client = TwilioClient(TWILIO, session=session)
    assert client.send("+15551234567", {"text": "hi"}, "m-1") == SendResult("twilio", "SM1", "queued")
    method, url, kwargs = session.calls[0]
    assert url == "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages.json" and kwargs["auth"] == ("AC1", "tok")
    with pytest.raises(ProviderError) as raised:
        client.send("+15551234567", {"text": "hi"}, "m-2")
    assert (raised.value.outcome, raised.value.code) == ("opted_out", "21610")

def test_aliyun_client_returns_the_biz_id_and_classifies_codes():
    session = answers(response(200, {"Code": "OK", "BizId": "B1", "RequestId": "R"}),
                      response(200, {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "触发分钟级流控"}))
    client = AliyunClient(ALIYUN, session=session, now=Clock(), nonce=lambda: "n")
    payload = {"template_code": "SMS_1", "params": {"name": "安娜"}, "text": "..."}
    assert client.send("+8613800000000", payload, "m-1") == SendResult("aliyun", "B1", "OK")
    form = session.calls[0][2]["data"]
    assert form["OutId"] == "m-1" and form["Signature"] == sign({k: v for k, v in form.items() if k != "Signature"},
                                                                 "s3cret")
    with pytest.raises(ProviderError) as raised:
        client.send("+8613800000000", payload, "m-2")
    assert (raised.value.outcome, raised.value.code) == ("transient", "isv.BUSINESS_LIMIT_CONTROL")

# --- the WeChat token ------------------------------------------------------------------------

class Fetcher:
    def __init__(self, expires_in=7200):
        self.count = 0
        self.expires_in = expires_in

    def __call__(self):
        self.count += 1
        return f"token-{self.count}", self.expires_in

def test_one_fetch_serves_a_hundred_sends():
    clock, fetch = Clock(), Fetcher()
    cache = WeChatTokenCache("wx1", MemoryTokenStore(), fetch, clock)
    tokens = set()
    for _ in range(100):
        tokens.add(cache.token())
        clock.advance(60)    # 100 minutes: still more than 300 s before expiry
    assert fetch.count == 1 and tokens == {"token-1"}

def test_the_token_is_refreshed_within_the_margin_before_expiry():
    clock, fetch = Clock(), Fetcher()
    cache = WeChatTokenCache("wx1", MemoryTokenStore(), fetch, clock)
    assert cache.token() == "token-1"
    clock.advance(7200 - 301)
    assert cache.token() == "token-1"
    clock.advance(2)
    assert cache.token() == "token-2" and fetch.count == 2

def test_a_rejected_token_is_refreshed_once():
    clock, fetch, store = Clock(), Fetcher(), MemoryTokenStore()
    cache = WeChatTokenCache("wx1", store, fetch, clock)
    first = cache.token()
    cache.invalidate(first)
    assert cache.token() == "token-2"
    assert cache.token() == "token-2" and fetch.count == 2
    assert store.get("wx1")[0] == "token-2"

def test_two_caches_sharing_one_store_fetch_once():
    clock, fetch, store = Clock(), Fetcher(), MemoryTokenStore()
    a = WeChatTokenCache("wx1", store, fetch, clock)
    b = WeChatTokenCache("wx1", store, fetch, clock)
    assert a.token() == b.token() == "token-1"
    for _ in range(50):
        a.token(), b.token()
    assert fetch.count == 1

def test_a_token_rejected_in_one_container_is_replaced_for_the_others_without_another_fetch():
    clock, fetch, store = Clock(), Fetcher(), MemoryTokenStore()
    a = WeChatTokenCache("wx1", store, fetch, clock)
    b = WeChatTokenCache("wx1", store, fetch, clock)
    old = a.token()
    b.token()
    clock.advance(1)
    a.invalidate(old)
    assert a.token() == "token-2"
    b.invalidate(old)             # b sees the same rejection a moment later
    assert b.token() == "token-2" and fetch.count == 2

def test_while_another_container_refreshes_the_old_token_is_used():
    clock, store = Clock(), MemoryTokenStore()
    store.put_if_newer("wx1", "old", clock() + 200, None)          # inside the refresh margin, still valid
    store.put_if_newer("wx1#refresh", "someone-else", clock() + 30, None)
    fetch = Fetcher()
    cache = WeChatTokenCache("wx1", store, fetch, clock)
    assert cache.token() == "old" and fetch.count == 0
    clock.advance(31)                                               # the other refresher's lease ran out
    assert cache.token() == "token-1" and fetch.count == 1

def test_with_no_usable_token_and_a_refresh_under_way_the_send_is_retried_later():
    clock, store = Clock(), MemoryTokenStore()
    store.put_if_newer("wx1#refresh", "someone-else", clock() + 30, None)
    cache = WeChatTokenCache("wx1", store, Fetcher(), clock)
    with pytest.raises(ProviderError) as raised:
        cache.token()
    assert raised.value.outcome == "transient" and raised.value.retry_after_s

def test_the_newest_fetched_token_wins_the_shared_copy():
    clock, store = Clock(), MemoryTokenStore()
    store.put_if_newer("wx1", "older", clock() + 7000, None)
    assert not store.put_if_newer("wx1", "stale-writer", clock() + 7100, "not-what-is-stored")
    assert not store.put_if_newer("wx1", "late", clock() + 6000, "older")
    assert store.put_if_newer("wx1", "newer", clock() + 7100, "older")
    assert store.get("wx1") == ("newer", clock() + 7100)

def test_concurrent_refreshers_near_expiry_fetch_once():
    import threading
    clock, fetch, store = Clock(), Fetcher(), MemoryTokenStore()
    store.put_if_newer("wx1", "old", clock() + 100, None)
    caches = [WeChatTokenCache("wx1", store, fetch, clock) for _ in range(20)]
    start, got = threading.Barrier(20), []

    def run(cache):
        start.wait()
        got.append(cache.token())
    threads = [threading.Thread(target=run, args=(c,)) for c in caches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fetch.count == 1 and set(got) <= {"old", "token-1"} and len(got) == 20

WECHAT = WeChatConfig(app_id="wx1", app_secret="sec", base_url="https://wx.test")

def wechat_session(send_answers, token_counter):
    queue = list(send_answers)

    def handler(method, url, kwargs):
        if url.endswith("/cgi-bin/token"):
            token_counter.append(kwargs["params"])
            return response(200, {"access_token": f"T{len(token_counter)}", "expires_in": 7200})
        return queue.pop(0)
    return FakeSession(handler)

def test_wechat_client_refreshes_on_40001_and_retries_once():
    fetched = []
    session = wechat_session([response(200, {"errcode": 40001, "errmsg": "invalid credential"}),
                              response(200, {"errcode": 0, "errmsg": "ok", "msgid": 200228332})], fetched)
    clock = Clock()
    client = WeChatClient(WECHAT, MemoryTokenStore(), session=session, now=clock)
    payload = {"type": "template", "template_id": "TID", "data": {"thing1": "x"}, "url": None, "client_msg_id": "m-1"}
    assert client.send("OPENID", payload, "m-1") == SendResult("wechat", "200228332", "ok")
    assert fetched == [{"grant_type": "client_credential", "appid": "wx1", "secret": "sec"}] * 2
    sends = [c for c in session.calls if "/message/" in c[1]]
    assert [c[2]["params"]["access_token"] for c in sends] == ["T1", "T2"]
    assert json.loads(sends[0][2]["data"].decode()) == {"touser": "OPENID", "template_id": "TID",
                                                        "data": {"thing1": {"value": "x"}}, "client_msg_id": "m-1"}

def test_wechat_client_gives_up_after_one_refresh():
    fetched = []
    bad = response(200, {"errcode": 40001, "errmsg": "invalid credential"})
    client = WeChatClient(WECHAT, MemoryTokenStore(), session=wechat_session([bad, bad], fetched), now=Clock())
    with pytest.raises(ProviderError) as raised:
        client.send("OPENID", {"type": "text", "content": "hi"}, "m")
    assert raised.value.outcome == "transient" and len(fetched) == 2

def test_wechat_token_fetch_with_a_bad_secret_is_a_config_error():
    session = answers(response(200, {"errcode": 40125, "errmsg": "invalid appsecret"}))
    client = WeChatClient(WECHAT, MemoryTokenStore(), session=session, now=Clock())
    with pytest.raises(ProviderError) as raised:
        client.send("OPENID", {"type": "text", "content": "hi"}, "m")
    assert (raised.value.outcome, raised.value.code) == ("config", "40125")

def test_configs_do_not_print_their_secrets():
    assert "tok" not in repr(WhatsAppConfig(phone_number_id="1", access_token="tok"))
    assert "zz-secret" not in repr(WeChatConfig(app_id="wx1", app_secret="zz-secret"))
    assert "tok" not in repr(TWILIO)
    assert "s3cret" not in repr(ALIYUN)

def test_configs_from_the_environment():
    env = {"WHATSAPP_PHONE_NUMBER_ID": "100", "WECHAT_APP_ID": "wx", "TWILIO_ACCOUNT_SID": "AC", "TWILIO_SENDER": "MG1",
           "ALIYUN_ACCESS_KEY_ID": "LTAI", "ALIYUN_SIGN_NAME": "会员中心", "PUBLIC_BASE_URL": "https://x",
           "WHATSAPP_API_VERSION": "v22.0"}
    secrets = {"WHATSAPP_ACCESS_TOKEN": "a", "WECHAT_APP_SECRET": "b", "TWILIO_AUTH_TOKEN": "c",
               "ALIYUN_ACCESS_KEY_SECRET": "d"}
    assert WhatsAppConfig.from_env(env, secrets.get).api_version == "v22.0"
    assert WeChatConfig.from_env(env, secrets.get).base_url == "https://api.weixin.qq.com"
    assert TwilioConfig.from_env(env, secrets.get).public_base_url == "https://x"
    assert (TwilioConfig.from_env(env, secrets.get).segments_per_s,
            TwilioConfig.from_env(env, secrets.get).burst_segments) == (1.0, 10.0)   # a long code
    assert (TwilioConfig.from_env({**env, "TWILIO_SEGMENTS_PER_S": "100"}, secrets.get).segments_per_s,
            TwilioConfig.from_env({**env, "TWILIO_SEGMENTS_PER_S": "100"}, secrets.get).burst_segments) == (100, 100)
    assert AliyunConfig.from_env(env, secrets.get).sign_name == "会员中心"
    from loyalty.errors import Misconfigured
    with pytest.raises(Misconfigured):
        WhatsAppConfig.from_env({}, secrets.get)
    for rate in ("0", "-3", "fast"):
        with pytest.raises(Misconfigured, match="TWILIO_SEGMENTS_PER_S"):
            TwilioConfig.from_env({**env, "TWILIO_SEGMENTS_PER_S": rate}, secrets.get)


def test_each_sender_instance_takes_its_share_of_the_providers_rate():
    from loyalty.channels.providers import rate_share
    whatsapp = WhatsAppConfig(phone_number_id="1", access_token="t")
    assert whatsapp.rate_per_s == 80.0 and rate_share(whatsapp, 4).rate_per_s == 20.0
    assert rate_share(whatsapp, 0).rate_per_s == 80.0
    twilio = rate_share(TwilioConfig(account_sid="AC1", auth_token="tok", sender="+15005550006"), 2)
    assert (twilio.segments_per_s, twilio.burst_segments) == (0.5, 5.0)
    # four instances at 20/s: 80 messages a second together, never more
    limiter = RateLimiter(rate_share(whatsapp, 4).rate_per_s, now=lambda: 100.0)
    assert sum(limiter.wait("PN") == 0.0 for _ in range(30)) == 20


def test_the_senders_limit_themselves_to_their_share(monkeypatch):
    from loyalty import wiring
    monkeypatch.setenv("SENDER_MAX_CONCURRENCY", "8")
    monkeypatch.setenv("WHATSAPP_PHONE_NUMBER_ID", "1")
    monkeypatch.setenv("WHATSAPP_ACCESS_TOKEN", "t")
    monkeypatch.delenv("SECRETS_ID", raising=False)
    wiring.reset()
    try:
        send = wiring.channel_sender("whatsapp")
        limiter = next(c.cell_contents for c in send.__closure__ if hasattr(c.cell_contents, "limiter")).limiter
        assert limiter.rate == 10.0
    finally:
        wiring.reset()


@pytest.mark.parametrize("classify, status, code, template", [
    (classify_whatsapp_error, 400, 132000, True), (classify_whatsapp_error, 400, 132001, True),
    (classify_whatsapp_error, 400, 132012, True), (classify_whatsapp_error, 400, 132018, True),
    (classify_whatsapp_error, 401, 190, False), (classify_whatsapp_error, 400, 131031, False),
    (classify_wechat_error, 200, 40037, True), (classify_wechat_error, 200, 47003, True),
    (classify_wechat_error, 200, 40125, False),
    (classify_aliyun_error, 200, "isv.SMS_TEMPLATE_ILLEGAL", True),
    (classify_aliyun_error, 200, "isv.TEMPLATE_MISSING_PARAMETERS", True),
    (classify_aliyun_error, 200, "isv.SMS_SIGNATURE_ILLEGAL", False),
    (classify_aliyun_error, 400, "SignatureDoesNotMatch", False),
])
def test_template_refusals_are_config_errors_about_the_template_only(classify, status, code, template):
    found = classify(status, code)
    assert (found.outcome, found.template) == ("config", template)
