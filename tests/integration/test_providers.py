"""Provider clients over real HTTP: the shared WeChat token in DynamoDB (the AWS
emulator), and every client against the local provider sandbox (infra/local/sandbox,
started with the local stack by spawn_local_stack), whose /_local routes show what it
accepted (outbox), fail on request (faults) and count token fetches (stats)."""
import threading
import time

import pytest
import requests

from infra.local.resources import local_secret_values
from infra.local.testing import spawn_local_stack
from loyalty.channels.aliyun import AliyunClient, AliyunConfig
from loyalty.channels.providers import ProviderError, SendResult
from loyalty.channels.twilio import TwilioClient, TwilioConfig
from loyalty.adapters.messaging.tokens import DynamoTokenStore
from loyalty.channels.wechat import MemoryTokenStore, WeChatClient, WeChatConfig, WeChatTokenCache
from loyalty.channels.whatsapp import WhatsAppClient, WhatsAppConfig


# --- the shared WeChat token in the loyalty table ---------------------------------------------

@pytest.fixture
def token_store(fresh_aws):
    return DynamoTokenStore(fresh_aws.environ["TABLE_NAME"], client=fresh_aws.client("dynamodb"))


class Fetcher:
    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self.count += 1
            return f"token-{self.count}", 7200


def test_token_item_is_written_only_over_the_token_it_replaces(token_store, fresh_aws):
    assert token_store.get("wx1") is None
    assert token_store.put_if_newer("wx1", "a", 1000.0, None)
    assert not token_store.put_if_newer("wx1", "b", 2000.0, None)          # someone stored one already
    assert not token_store.put_if_newer("wx1", "b", 2000.0, "not-a")       # not the one we saw
    assert not token_store.put_if_newer("wx1", "b", 900.0, "a")            # older than what is stored
    assert token_store.put_if_newer("wx1", "b", 2000.0, "a")
    assert token_store.get("wx1") == ("b", 2000.0)
    item = fresh_aws.client("dynamodb").get_item(TableName=fresh_aws.environ["TABLE_NAME"],
                                                 Key={"PK": {"S": "TOKEN#wechat#wx1"}, "SK": {"S": "TOKEN"}})["Item"]
    assert item["token"]["S"] == "b" and int(item["ttl"]["N"]) == 2000 + 86400


def test_caches_in_many_containers_share_one_fetch(token_store):
    clock = [1_700_000_000.0]
    fetch = Fetcher()
    caches = [WeChatTokenCache("wx1", token_store, fetch, lambda: clock[0]) for _ in range(3)]
    for _ in range(30):
        assert {cache.token() for cache in caches} == {"token-1"}
    clock[0] += 7200 - 299
    assert {cache.token() for cache in caches} == {"token-2"}
    assert fetch.count == 2


def test_concurrent_refreshers_fetch_once(token_store):
    fetch = Fetcher()
    caches = [WeChatTokenCache("wx1", token_store, fetch, lambda: 1_700_000_000.0) for _ in range(8)]
    start, tokens, waits = threading.Barrier(len(caches)), [], []

    def run(cache):
        start.wait()
        try:
            tokens.append(cache.token())
        except ProviderError as exc:      # nothing usable yet, another container is fetching
            waits.append(exc.outcome)
    threads = [threading.Thread(target=run, args=(cache,)) for cache in caches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fetch.count == 1
    assert set(tokens) == {"token-1"} and set(waits) <= {"transient"}
    assert {cache.token() for cache in caches} == {"token-1"} and fetch.count == 1


# --- every client against the local provider sandbox ------------------------------------------

MEMBER_PHONE, MEMBER_OPENID = "+8613800138000", "oLocalMember000001"


class Sandbox:
    """The sandbox's control routes, and clients configured as the stack configures ours."""

    def __init__(self, api_url: str):
        self.api = api_url
        described = requests.get(f"{api_url}/_local/sandbox/config", timeout=5).json()
        self.accounts, self.endpoints = described["accounts"], described["endpoints"]
        self.secrets = local_secret_values()

    def reset(self) -> None:
        assert requests.post(f"{self.api}/_local/sandbox/reset", timeout=5).status_code == 200
        # no receipts: this file tests our sends, not our webhooks
        assert requests.post(f"{self.api}/_local/sandbox/config", json={"auto_receipts": False},
                             timeout=5).status_code == 200

    def outbox(self, **filters) -> list[dict]:
        return requests.get(f"{self.api}/_local/outbox", params=filters, timeout=5).json()

    def stats(self) -> dict:
        return requests.get(f"{self.api}/_local/sandbox/stats", timeout=5).json()

    def fault(self, **fault) -> None:
        answer = requests.post(f"{self.api}/_local/faults", json=fault, timeout=5)
        assert answer.status_code in (200, 201), answer.text

    def inbound(self, **message) -> None:
        answer = requests.post(f"{self.api}/_local/inbound", json=message, timeout=10)
        assert answer.status_code in (200, 201, 202), answer.text

    def whatsapp(self, **changes) -> WhatsAppClient:
        return WhatsAppClient(WhatsAppConfig(**{
            "phone_number_id": self.accounts["whatsapp_phone_number_id"],
            "access_token": self.secrets["WHATSAPP_ACCESS_TOKEN"], "base_url": self.endpoints["whatsapp"],
            **changes}))

    def wechat(self, store=None) -> WeChatClient:
        return WeChatClient(WeChatConfig(app_id=self.accounts["wechat_app_id"],
                                         app_secret=self.secrets["WECHAT_APP_SECRET"],
                                         base_url=self.endpoints["wechat"]), store or MemoryTokenStore())

    def twilio(self) -> TwilioClient:
        return TwilioClient(TwilioConfig(account_sid=self.accounts["twilio_account_sid"],
                                         auth_token=self.secrets["TWILIO_AUTH_TOKEN"],
                                         sender=self.accounts["twilio_sender"], public_base_url=self.api,
                                         base_url=self.endpoints["twilio"]))

    def aliyun(self) -> AliyunClient:
        return AliyunClient(AliyunConfig(access_key_id=self.accounts["aliyun_access_key_id"],
                                         access_key_secret=self.secrets["ALIYUN_ACCESS_KEY_SECRET"],
                                         sign_name=self.accounts["aliyun_sign_name"],
                                         base_url=self.endpoints["aliyun"]))


@pytest.fixture(scope="module")
def stack():
    with spawn_local_stack(env={"POWERTOOLS_LOG_LEVEL": "WARNING"}, timeout=120) as running:
        yield running


@pytest.fixture
def sandbox(stack):
    sandbox = Sandbox(stack.api_url)
    sandbox.reset()
    return sandbox


def expect(send, outcome: str, code: str | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as raised:
        send()
    assert raised.value.outcome == outcome, raised.value
    if code is not None:
        assert raised.value.code == code
    return raised.value


WA_TEMPLATE = {"type": "template", "name": "points_expiring", "language": "zh_CN",
               "body_params": ["安娜", "1,250", "2025年6月30日"], "button_params": ["r/abc"]}


def test_whatsapp_template_reaches_the_outbox(sandbox):
    result = sandbox.whatsapp().send(MEMBER_PHONE, WA_TEMPLATE, "m-wa-1")
    [record] = sandbox.outbox(provider="whatsapp")
    assert result == SendResult("whatsapp", record["provider_message_id"], "accepted")
    assert (record["to"], record["kind"], record["template"], record["language"]) == \
        ("8613800138000", "template", "points_expiring", "zh_CN")
    assert record["variables"] == ["安娜", "1,250", "2025年6月30日", "r/abc"]
    assert record["biz_opaque_callback_data"] == "m-wa-1"


def test_whatsapp_text_needs_the_members_window(sandbox):
    client, text = sandbox.whatsapp(), {"type": "text", "body": "您的积分：1,250", "preview_url": False}
    expect(lambda: client.send(MEMBER_PHONE, text, "m-wa-2"), "window_closed", "131047")
    sandbox.inbound(channel="whatsapp", **{"from": MEMBER_PHONE}, text="我的积分")
    assert client.send(MEMBER_PHONE, text, "m-wa-3").provider == "whatsapp"
    assert [r["text"] for r in sandbox.outbox(provider="whatsapp")] == ["您的积分：1,250"]


@pytest.mark.parametrize("fault, outcome, code", [
    ({"status": 500}, "transient", None), ({"status": 429}, "transient", None),
    ({"error_code": 131026}, "undeliverable", "131026"), ({"error_code": 131047}, "window_closed", "131047"),
    ({"error_code": 131050}, "opted_out", "131050"), ({"error_code": 132001}, "config", "132001"),
    ({"error_code": 131048}, "transient", "131048"),
])
def test_whatsapp_faults_are_classified(sandbox, fault, outcome, code):
    sandbox.fault(provider="whatsapp", **fault)
    error = expect(lambda: sandbox.whatsapp().send(MEMBER_PHONE, WA_TEMPLATE, "m"), outcome, code)
    assert error.provider == "whatsapp" and sandbox.outbox() == []


def test_a_provider_that_does_not_answer_in_time_is_transient(sandbox):
    client = sandbox.whatsapp(timeout=(3.0, 0.5))
    sandbox.fault(provider="whatsapp", timeout=True, hold=1.5)
    expect(lambda: client.send(MEMBER_PHONE, WA_TEMPLATE, "m"), "transient", "read_timeout")
    # ... and it may still have sent it: a read timeout is not proof of failure
    sandbox.fault(provider="whatsapp", timeout=True, hold=1.5, then="accept")
    expect(lambda: client.send(MEMBER_PHONE, WA_TEMPLATE, "m-late"), "transient", "read_timeout")
    deadline = time.monotonic() + 5
    while not sandbox.outbox(provider="whatsapp") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [r["biz_opaque_callback_data"] for r in sandbox.outbox(provider="whatsapp")] == ["m-late"]


def test_nothing_listening_is_transient():
    client = WhatsAppClient(WhatsAppConfig(phone_number_id="1", access_token="t", base_url="http://127.0.0.1:9"))
    expect(lambda: client.send(MEMBER_PHONE, WA_TEMPLATE, "m"), "transient", "connection_error")


WECHAT_TEMPLATE = {"type": "template", "template_id": "TPL_POINTS_CREDITED",
                   "data": {"thing1": "一二三四五六七八九十一二三四五六七八九十多出的字", "number2": "1,250"},
                   "url": "https://example.com/m/abc", "client_msg_id": "m-wx-1"}


def test_wechat_template_reaches_the_outbox_with_fields_cut_to_twenty(sandbox):
    result = sandbox.wechat().send(MEMBER_OPENID, WECHAT_TEMPLATE, "m-wx-1")
    [record] = sandbox.outbox(provider="wechat")
    assert result.provider_message_id == str(record["provider_message_id"])
    assert record["template"] == "TPL_POINTS_CREDITED" and record["client_msg_id"] == "m-wx-1"
    assert record["variables"] == {"thing1": "一二三四五六七八九十一二三四五六七八九十", "number2": "1,250"}


def test_wechat_subscription_and_customer_service_messages(sandbox):
    client = sandbox.wechat()
    client.send(MEMBER_OPENID, {"type": "subscription", "template_id": "SUB_EXPIRY",
                                "data": {"thing1": "积分即将到期", "date2": "2025年6月30日"}, "page": None}, "m-1")
    expect(lambda: client.send(MEMBER_OPENID, {"type": "text", "content": "您的积分：1,250"}, "m-2"),
           "window_closed", "45015")
    sandbox.inbound(channel="wechat", **{"from": MEMBER_OPENID}, text="我的积分")
    client.send(MEMBER_OPENID, {"type": "text", "content": "您的积分：1,250"}, "m-3")
    assert [(r["kind"], r["template"] or r["text"]) for r in sandbox.outbox(provider="wechat")] == \
        [("subscription", "SUB_EXPIRY"), ("text", "您的积分：1,250")]


def test_one_wechat_token_fetch_for_a_hundred_sends_from_two_containers(sandbox, fresh_aws):
    store = DynamoTokenStore(fresh_aws.environ["TABLE_NAME"], client=fresh_aws.client("dynamodb"))
    containers = [sandbox.wechat(store), sandbox.wechat(store)]
    for n in range(100):
        containers[n % 2].send(MEMBER_OPENID, {**WECHAT_TEMPLATE, "client_msg_id": f"m-{n}"}, f"m-{n}")
    stats = sandbox.stats()
    assert stats["wechat_token_fetches"] == {sandbox.accounts["wechat_app_id"]: 1}
    assert stats["sends_accepted"]["wechat"] == 100


def test_wechat_refreshes_a_rejected_token_once_and_retries(sandbox):
    client = sandbox.wechat()
    client.send(MEMBER_OPENID, WECHAT_TEMPLATE, "m-1")
    sandbox.fault(provider="wechat", error_code=40001)
    client.send(MEMBER_OPENID, {**WECHAT_TEMPLATE, "client_msg_id": "m-2"}, "m-2")
    assert sandbox.stats()["wechat_token_fetches"] == {sandbox.accounts["wechat_app_id"]: 2}
    sandbox.fault(provider="wechat", error_code=40001, count=2)
    expect(lambda: client.send(MEMBER_OPENID, {**WECHAT_TEMPLATE, "client_msg_id": "m-3"}, "m-3"), "transient", "40001")
    assert len(sandbox.outbox(provider="wechat")) == 2


@pytest.mark.parametrize("fault, outcome, code", [
    ({"error_code": -1}, "transient", "-1"), ({"error_code": 45009}, "transient", "45009"),
    ({"error_code": 43004}, "opted_out", "43004"), ({"error_code": 43101}, "opted_out", "43101"),
    ({"error_code": 40003}, "undeliverable", "40003"), ({"error_code": 40037}, "config", "40037"),
    ({"status": 503}, "transient", None),
])
def test_wechat_faults_are_classified(sandbox, fault, outcome, code):
    sandbox.fault(provider="wechat", **fault)
    error = expect(lambda: sandbox.wechat().send(MEMBER_OPENID, WECHAT_TEMPLATE, "m"), outcome, code)
    if code == "45009":
        assert 0 < error.retry_after_s <= 86400 + 300


def test_an_unfollowed_member_is_opted_out(sandbox):
    sandbox.inbound(channel="wechat", **{"from": MEMBER_OPENID}, event="unsubscribe")
    expect(lambda: sandbox.wechat().send(MEMBER_OPENID, WECHAT_TEMPLATE, "m"), "opted_out", "43004")


def test_twilio_sms_reaches_the_outbox_with_our_status_callback(sandbox):
    result = sandbox.twilio().send("+447700900123", {"text": "【会员中心】Points added"}, "m-sms-1")
    [record] = sandbox.outbox(provider="twilio")
    assert result == SendResult("twilio", record["provider_message_id"], "queued")
    assert record["to"] == "447700900123" and record["text"] == "【会员中心】Points added"
    assert record["request"]["StatusCallback"] == f"{sandbox.api}/webhooks/twilio/status?m=m-sms-1"


@pytest.mark.parametrize("fault, outcome, code", [
    ({"status": 500}, "transient", None), ({"status": 429}, "transient", None),
    ({"error_code": 21610}, "opted_out", "21610"), ({"error_code": 21614}, "undeliverable", "21614"),
    ({"error_code": 21606}, "config", "21606"),
])
def test_twilio_faults_are_classified(sandbox, fault, outcome, code):
    sandbox.fault(provider="twilio", **fault)
    expect(lambda: sandbox.twilio().send("+447700900123", {"text": "hi"}, "m"), outcome, code)


def test_a_member_who_texted_stop_is_opted_out(sandbox):
    sandbox.inbound(channel="twilio", **{"from": "+447700900123"}, text="STOP")
    expect(lambda: sandbox.twilio().send("+447700900123", {"text": "hi"}, "m"), "opted_out", "21610")


def test_aliyun_sms_is_signed_and_reaches_the_outbox(sandbox):
    payload = {"template_code": "SMS_POINTS_EXPIRING", "text": "安娜您好，您有1,250积分将于2025年6月30日到期",
               "params": {"name": "安娜", "points": "1,250", "expiry_date": "2025年6月30日"}}
    result = sandbox.aliyun().send(MEMBER_PHONE, payload, "m-ali-1")
    [record] = sandbox.outbox(provider="aliyun")
    assert result == SendResult("aliyun", str(record["provider_message_id"]), "OK")
    assert record["to"] == "13800138000" and record["template"] == "SMS_POINTS_EXPIRING"
    assert record["variables"] == payload["params"] and record["request"]["OutId"] == "m-ali-1"


@pytest.mark.parametrize("fault, outcome, code", [
    ({"error_code": "isv.BUSINESS_LIMIT_CONTROL"}, "transient", "isv.BUSINESS_LIMIT_CONTROL"),
    ({"error_code": "isv.MOBILE_NUMBER_ILLEGAL"}, "undeliverable", "isv.MOBILE_NUMBER_ILLEGAL"),
    ({"error_code": "isv.SMS_TEMPLATE_ILLEGAL"}, "config", "isv.SMS_TEMPLATE_ILLEGAL"),
    ({"status": 500}, "transient", None), ({"status": 429}, "transient", None),
])
def test_aliyun_faults_are_classified(sandbox, fault, outcome, code):
    sandbox.fault(provider="aliyun", **fault)
    expect(lambda: sandbox.aliyun().send(MEMBER_PHONE, {"template_code": "SMS_1", "params": {}, "text": "x"}, "m"),
           outcome, code)


def test_a_wrong_aliyun_secret_is_a_config_error(sandbox):
    client = sandbox.aliyun()
    client = AliyunClient(AliyunConfig(access_key_id=client.config.access_key_id, access_key_secret="wrong",
                                       sign_name=client.config.sign_name, base_url=client.config.base_url))
    expect(lambda: client.send(MEMBER_PHONE, {"template_code": "SMS_1", "params": {}, "text": "x"}, "m"),
           "config", "SignatureDoesNotMatch")
