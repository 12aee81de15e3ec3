"""From plan to provider to receipt, through the local stack and its provider sandbox:
what a member would actually receive (GET /_local/outbox), on every channel."""
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from tests.e2e.conftest import paid
from tests.e2e.test_reminders_e2e import earn_due_on, messages

CONTACTS = {"whatsapp": "+8529", "sms": "+8613", "wechat": None}


def new_member(api, member, channels=("whatsapp",), phone_prefix="+8529", locale="en"):
    phone = phone_prefix + str(uuid.uuid4().int)[:8 if phone_prefix.startswith("+852") else 9]
    openid = "o" + uuid.uuid4().hex[:24]
    api.put(f"/members/{member}", {"name": "Ana", "phone": phone, "wechat_openid": openid, "locale": locale,
                                   "time_zone": "Asia/Shanghai", "preferred_channels": list(channels)})
    for channel in channels:
        api.put(f"/members/{member}/consents/{channel}",
                {"status": "opted_in", "source": "checkout_checkbox", "at": "2026-01-01T00:00:00+08:00"})
    return phone, openid


def outbox(api, to: str) -> list[dict]:
    """What the sandbox accepted for this recipient (Aliyun shows +86 numbers without 86)."""
    response = api.get("/_local/outbox")
    assert response.status_code == 200, response.text
    key = to.lstrip("+")[-10:]
    return [m for m in response.json() if (m["to"] or "").lstrip("+").endswith(key)]


def reminders(api, to: str) -> list[dict]:
    names = ("points_expiring", "POINTS_EXPIRING_SUBSCRIBE", "SMS_POINTS_EXPIRING")
    return [m for m in outbox(api, to) if m.get("template") in names or "到期" in (m.get("text") or "")
            or "expire" in (m.get("text") or "")]


@pytest.mark.parametrize("channel", ["whatsapp", "wechat", "sms"])
@pytest.mark.parametrize("stage", [7, 3, 0])
def test_reminders_reach_each_channel_at_each_stage_with_the_right_variables(api, member, channel, stage):
    phone, openid = new_member(api, member, channels=(channel,), phone_prefix="+8613" if channel == "sms" else "+8529")
    expires, seven_before = earn_due_on(api, member)
    run = seven_before + timedelta(days=7 - stage)
    if stage == 0:
        run = run.replace(hour=12, minute=5) if run < expires else expires - timedelta(hours=2, minutes=55)
    api.schedule("ReminderScanFunction", run.isoformat())
    api.post("/_local/drain")
    to = openid if channel == "wechat" else phone
    [sent] = reminders(api, to)
    assert sent["channel"] == channel
    date_en = expires.date().strftime("%d %b %Y").lstrip("0")
    if channel == "whatsapp":
        assert sent["template"] == "points_expiring" and sent["variables"][:3] == ["Ana", "520", date_en]
    elif channel == "wechat":
        assert sent["variables"] == {"thing1": "Ana", "number2": "520", "date3": date_en}
    else:
        assert sent["provider"] == "aliyun" and sent["variables"]["points"] == "520"
    [record] = messages(api, member)
    assert record["status"] in ("sent", "delivered", "read") and record["variables"]["stage_days"] == stage


def test_a_re_run_and_a_duplicate_job_send_nothing_twice(api, member):
    phone, _ = new_member(api, member)
    _, run = earn_due_on(api, member)
    for _ in range(3):
        api.schedule("ReminderScanFunction", run.isoformat())
    api.post("/_local/drain")
    assert len(reminders(api, phone)) == 1


def test_quiet_hours_hold_the_reminder_until_the_window_opens(api, member):
    phone, _ = new_member(api, member)
    _, run = earn_due_on(api, member)
    night = run.replace(hour=22, minute=40)
    api.schedule("ReminderScanFunction", night.isoformat())
    api.schedule("ReleaseDeferredFunction", (night + timedelta(hours=3)).isoformat())
    assert reminders(api, phone) == []
    api.schedule("ReleaseDeferredFunction", (night + timedelta(days=1)).replace(hour=12, minute=0).isoformat())
    assert len(reminders(api, phone)) == 1


@pytest.mark.parametrize("channel, text", [("whatsapp", "STOP"), ("wechat", "退订"), ("sms", "TD")])
def test_nothing_is_sent_after_stop_on_each_channel(api, member, channel, text):
    phone, openid = new_member(api, member, channels=(channel,), phone_prefix="+8613" if channel == "sms" else "+8529")
    _, run = earn_due_on(api, member)
    sender = openid if channel == "wechat" else phone
    inbound_channel = {"sms": "aliyun"}.get(channel, channel)
    answer = api.post("/_local/inbound", {"channel": inbound_channel, "from": sender, "text": text})
    assert answer.status_code == 200 and answer.json()["status"] == 200
    assert api.get(f"/members/{member}/consents/{channel}").json()["status"] == "opted_out"
    if channel == "sms":   # confirmed once, through Aliyun's approved template for +86 numbers
        api.post("/_local/drain")
        assert [m["template"] for m in outbox(api, sender) if m["template"] != "SMS_POINTS_CREDITED"] == \
            ["SMS_OPT_OUT_CONFIRMED"]
    api.schedule("ReminderScanFunction", run.isoformat())
    assert reminders(api, sender) == []
    [skipped] = messages(api, member)
    assert skipped["status"] == "skipped"


@pytest.mark.parametrize("channel", ["whatsapp", "wechat", "twilio", "aliyun"])
def test_my_points_gets_an_answer_on_each_channel(api, member, channel):
    phone, openid = new_member(api, member, channels=({"twilio": "sms", "aliyun": "sms"}.get(channel, channel),),
                               phone_prefix="+8613" if channel == "aliyun" else "+8529")
    api.order(paid(member, f"o-{member}", 150000))
    sender = openid if channel == "wechat" else phone
    answer = api.post("/_local/inbound", {"channel": channel, "from": sender, "text": "我的积分"})
    assert answer.status_code == 200 and answer.json()["status"] == 200
    api.post("/_local/drain")
    if channel == "wechat":
        assert "1,520" in answer.json()["body"]          # the passive reply, in the webhook's answer
    elif channel == "aliyun":                            # Aliyun sends approved templates only
        [reply] = [m for m in outbox(api, sender) if m.get("template") == "SMS_POINTS_BALANCE"]
        assert reply["provider"] == "aliyun" and reply["variables"]["balance"] == "1,520"
    else:
        replies = [m for m in outbox(api, sender) if "Your points: 1,520" in (m.get("text") or "")]
        assert len(replies) == 1


def test_provider_5xx_429_and_timeouts_are_retried_into_exactly_one_message(api, member):
    phone, _ = new_member(api, member)
    api.post("/_local/faults", {"provider": "whatsapp", "status": 500, "count": 1, "to": phone.lstrip("+")})
    api.post("/_local/faults", {"provider": "whatsapp", "status": 429, "count": 1, "to": phone.lstrip("+")})
    api.post("/_local/faults", {"provider": "whatsapp", "timeout": True, "hold": 9, "count": 1,
                                "to": phone.lstrip("+")})
    api.order(paid(member, f"o-{member}", 50000))
    api.post("/_local/drain")
    sent = [m for m in outbox(api, phone) if m.get("template") == "points_credited"]
    assert len(sent) == 1
    [notice] = messages(api, member, kind="notice")
    assert notice["status"] in ("sent", "delivered", "read")


def test_131047_outside_the_window_switches_to_the_template(api, member):
    phone, _ = new_member(api, member)
    api.order(paid(member, f"o-{member}", 50000))
    api.post("/_local/drain")
    api.post("/_local/faults", {"provider": "whatsapp", "error_code": 131047, "count": 1, "to": phone.lstrip("+")})
    api.post("/_local/inbound", {"channel": "whatsapp", "from": phone, "text": "POINTS"})
    api.post("/_local/drain")
    answers = [m for m in outbox(api, phone) if m.get("template") == "points_balance"]
    assert len(answers) == 1 and "520" in answers[0]["variables"][0]


def test_131026_falls_back_to_sms_once(api, member):
    phone, _ = new_member(api, member, channels=("whatsapp", "sms"))
    api.post("/_local/faults", {"provider": "whatsapp", "error_code": 131026, "count": 5, "to": phone.lstrip("+")})
    api.order(paid(member, f"o-{member}", 50000))
    api.post("/_local/drain")
    sent = outbox(api, phone)
    assert [(m["channel"], m["provider"]) for m in sent] == [("sms", "twilio")]
    [notice] = messages(api, member, kind="notice")
    assert notice["channel"] == "sms" and "fallback" in [h["status"] for h in notice["history"]]


@pytest.mark.parametrize("channel, provider, code, prefix", [("whatsapp", "whatsapp", 131026, "+8529"),
                                                             ("sms", "twilio", 30003, "+8529")])
def test_undeliverable_reported_in_a_receipt_falls_back_to_the_next_channel_once(api, member, channel, provider,
                                                                                  code, prefix):
    # WhatsApp accepts the send and reports 131026 later, in a status webhook; Twilio
    # reports an unreachable handset (30003) in the status callback.
    following = "sms" if channel == "whatsapp" else "whatsapp"
    phone, _ = new_member(api, member, channels=(channel, following), phone_prefix=prefix)
    assert api.post("/_local/sandbox/config", {"auto_receipts": False}).status_code == 200
    try:
        api.order(paid(member, f"o-{member}", 50000))
        api.post("/_local/drain")
        [first] = outbox(api, phone)
        assert first["channel"] == channel
        for _ in range(2):   # the provider retries its webhook: still one fallback
            answer = api.post("/_local/receipts", {"provider": provider, "status": "failed", "error_code": code,
                                                   "provider_message_id": first["provider_message_id"]}).json()
            assert answer["status"] == 200
        api.post("/_local/drain")
    finally:
        api.post("/_local/sandbox/config", {"auto_receipts": True})
    assert [m["channel"] for m in outbox(api, phone)] == [channel, following]
    [notice] = messages(api, member, kind="notice")
    assert notice["channel"] == following and notice["status"] == "sent"
    assert [h["status"] for h in notice["history"]] == ["queued", "sent", "failed", "fallback", "sent"]


def test_a_poison_message_lands_in_the_dead_letter_queue(api, member):
    phone, _ = new_member(api, member)
    api.post("/_local/faults", {"provider": "whatsapp", "status": 503, "count": 50, "to": phone.lstrip("+")})
    api.order(paid(member, f"o-{member}", 50000))
    drained = api.post("/_local/drain").json()
    api.http.delete(api.base + "/_local/faults", timeout=10)
    assert drained["dead_letter"].get("WhatsAppDLQ", 0) >= 1
    assert outbox(api, phone) == []
    [notice] = messages(api, member, kind="notice")
    assert notice["status"] == "dead_lettered"
    assert [h["status"] for h in notice["history"]] == ["queued"] + ["retrying"] * 5 + ["dead_lettered"]


def test_one_wechat_token_fetch_for_a_hundred_sends(api):
    before = api.get("/_local/sandbox/stats").json()
    members = [f"w-{uuid.uuid4().hex[:10]}" for _ in range(100)]

    def one(member):
        new_member(api, member, channels=("wechat",))
        api.order(paid(member, f"o-{member}", 10000))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, members))
    import time
    for _ in range(30):   # a send retried under load (a slow answer waits for its receipt) comes a little later
        api.post("/_local/drain")
        after = api.get("/_local/sandbox/stats").json()
        if after["sends_accepted"]["wechat"] - before["sends_accepted"]["wechat"] >= 100:
            break
        time.sleep(1)
    assert after["sends_accepted"]["wechat"] - before["sends_accepted"]["wechat"] >= 100
    fetches = sum(after["wechat_token_fetches"].values()) - sum(before["wechat_token_fetches"].values())
    assert fetches <= 1


def wait_for_status(api, member, kind, wanted, tries=60):
    import time
    for _ in range(tries):
        found = messages(api, member, kind=kind)
        if found and found[0]["status"] == wanted:
            return found[0]
        time.sleep(0.1)
    return messages(api, member, kind=kind)[0]


@pytest.mark.parametrize("channel, prefix, provider", [("whatsapp", "+8529", "whatsapp"), ("wechat", "+8529", "wechat"),
                                                       ("sms", "+8529", "twilio"), ("sms", "+8613", "aliyun")])
def test_signed_receipts_from_every_provider_move_the_message_forward_only(api, member, channel, prefix, provider):
    new_member(api, member, channels=(channel,), phone_prefix=prefix)
    api.order(paid(member, f"o-{member}", 50000))
    api.post("/_local/drain")
    notice = wait_for_status(api, member, "notice", "delivered")      # the sandbox's own signed receipt
    assert notice["status"] == "delivered" and notice["provider"] == provider
    pid = notice["provider_message_id"]
    if provider in ("whatsapp", "twilio"):
        assert api.post("/_local/receipts", {"provider": provider, "provider_message_id": pid,
                                             "status": "read"}).json()["status"] == 200
    assert api.post("/_local/receipts", {"provider": provider, "provider_message_id": pid,
                                         "status": "delivered"}).json()["status"] == 200   # late, out of order
    final = messages(api, member, kind="notice")[0]
    assert final["status"] == ("read" if provider in ("whatsapp", "twilio") else "delivered")
    assert [h["status"] for h in final["history"]].count("delivered") == 1


def test_a_wrongly_signed_twilio_callback_is_refused_and_changes_nothing(api, member):
    phone, _ = new_member(api, member, channels=("sms",))
    api.order(paid(member, f"o-{member}", 50000))
    api.post("/_local/drain")
    notice = wait_for_status(api, member, "notice", "delivered")
    form = {"MessageSid": notice["provider_message_id"], "MessageStatus": "undelivered", "ErrorCode": "30007"}
    url = api.base + f"/webhooks/twilio/status?m={notice['message_id']}"
    refused = api.http.post(url, data=form, headers={"X-Twilio-Signature": "bm90LWEtc2lnbmF0dXJl"}, timeout=30)
    assert refused.status_code == 401
    assert messages(api, member, kind="notice")[0]["status"] == "delivered"


def test_caps_hold_across_two_campaigns_on_one_day(api, member):
    phone, _ = new_member(api, member, channels=("whatsapp", "sms"))
    noon = "2027-03-18T12:10:00+08:00"
    for campaign in ("member-day", "flash-sale"):
        answer = api.post("/campaigns", {"campaign_id": f"{campaign}-{member}", "template": "member_day_offer",
                                         "member_ids": [member], "variables": {"offer": "double points"}, "at": noon})
        assert answer.status_code == 202 and answer.json()["category"] == "marketing"
    api.post("/_local/drain")
    offers = [m for m in outbox(api, phone) if m.get("template") == "member_day_offer"
              or "member day" in (m.get("text") or "")]
    assert len(offers) == 1                                     # one marketing message a day, across channels
    campaign = sorted((m for m in messages(api, member, kind="campaign")), key=lambda m: m["status"])
    assert [m["status"] for m in campaign][-1] == "skipped"
    assert campaign[-1]["history"][0]["detail"] == "cap_reached"
    again = api.post("/campaigns", {"campaign_id": f"member-day-{member}", "template": "member_day_offer",
                                    "member_ids": [member], "variables": {"offer": "double points"}, "at": noon})
    assert again.status_code == 202
    api.post("/_local/drain")
    assert len(messages(api, member, kind="campaign")) == 2      # the same campaign again reaches nobody twice
    assert api.post("/campaigns", {"campaign_id": "x", "template": "nope", "member_ids": [member]}).status_code == 400


def test_marketing_waits_out_the_quiet_hours(api, member):
    phone, _ = new_member(api, member)
    late = "2027-03-18T22:30:00+08:00"
    api.post("/campaigns", {"campaign_id": f"late-{member}", "template": "member_day_offer", "member_ids": [member],
                            "variables": {"offer": "double points"}, "at": late})
    api.post("/_local/drain")
    assert [m["status"] for m in messages(api, member, kind="campaign")] == ["deferred"]
    api.schedule("ReleaseDeferredFunction", "2027-03-19T12:00:00+08:00")
    assert len([m for m in outbox(api, phone) if m.get("template") == "member_day_offer"]) == 1


def test_whatsapp_stop_marketing_stops_marketing_only(api, member):
    phone, _ = new_member(api, member, channels=("whatsapp", "sms"))
    assert api.post("/_local/inbound", {"channel": "whatsapp", "from": phone, "preference": "stop"}).status_code == 200
    consent = api.get(f"/members/{member}/consents/whatsapp").json()
    assert consent["status"] == "opted_in" and consent["marketing"]["status"] == "opted_out"
    # a campaign goes to the next consented channel ...
    api.post("/campaigns", {"campaign_id": f"offer-{member}", "template": "member_day_offer", "member_ids": [member],
                            "variables": {"offer": "double points"}, "at": "2027-03-18T12:10:00+08:00"})
    api.post("/_local/drain")
    [offer] = messages(api, member, kind="campaign")
    assert offer["channel"] == "sms"
    # ... while a utility reminder still goes on WhatsApp
    expires, seven_before = earn_due_on(api, member)
    api.schedule("ReminderScanFunction", seven_before.isoformat())
    api.post("/_local/drain")
    [reminder] = reminders(api, phone)
    assert reminder["channel"] == "whatsapp"
    assert api.post("/_local/inbound", {"channel": "whatsapp", "from": phone, "preference": "resume"}).status_code == 200
    assert api.get(f"/members/{member}/consents/whatsapp").json()["marketing"]["status"] == "opted_in"


def test_a_burst_over_the_sms_rate_waits_for_the_limit_and_reaches_everyone(api):
    # Twilio long codes send about a segment a second (shared by the sender's instances):
    # the notices over the limit wait as fresh queue messages and none is dead-lettered.
    before = api.post("/_local/drain").json()["dead_letter"]["SmsDLQ"]
    members = [f"r-{uuid.uuid4().hex[:10]}" for _ in range(8)]
    phones = [new_member(api, member, channels=("sms",))[0] for member in members]
    for member in members:
        api.order(paid(member, f"o-{member}", 10000))
    drained = api.post("/_local/drain").json()
    assert drained["drained"] and drained["dead_letter"]["SmsDLQ"] == before
    for member, phone in zip(members, phones):
        assert len(outbox(api, phone)) == 1
        [notice] = messages(api, member, kind="notice")
        assert "retrying" not in [h["status"] for h in notice["history"]]


def signed_whatsapp_push(api, wa_id: str, text: str):
    """What Meta posts when a member writes, signed with the app secret, posted to our
    webhook directly (not through the sandbox's POST /_local/inbound)."""
    import hashlib
    import hmac
    import json
    import time

    import requests

    raw = json.dumps({"object": "whatsapp_business_account", "entry": [{"id": "200000000000001", "changes": [{
        "field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001234", "phone_number_id": "100000000000001"},
            "contacts": [{"profile": {"name": "Ana"}, "wa_id": wa_id}],
            "messages": [{"from": wa_id, "id": f"wamid.e2e{uuid.uuid4().hex}", "timestamp": str(int(time.time())),
                          "type": "text", "text": {"body": text}}]}}]}]}).encode()
    signature = "sha256=" + hmac.new(b"local-whatsapp-secret", raw, hashlib.sha256).hexdigest()
    return requests.post(api.base + "/webhooks/whatsapp", data=raw, timeout=30,
                         headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature})


def test_a_signed_push_to_our_webhook_opens_the_window_so_the_free_form_reply_goes_through(api, member):
    # given a member who has never written on WhatsApp: outside the 24-hour window
    phone, _ = new_member(api, member)
    api.order(paid(member, f"o-{member}", 50000))
    api.post("/_local/drain")
    refused_before = api.get("/_local/sandbox/stats").json()["sends_refused"]["whatsapp"]

    # when the member's POINTS arrives as Meta would post it, straight to our webhook
    assert signed_whatsapp_push(api, phone.lstrip("+"), "POINTS").status_code == 200
    api.post("/_local/drain")

    # then the sandbox saw the message, and the free-form reply went out as text, no 131047
    stats = api.get("/_local/sandbox/stats").json()
    assert stats["member_messages_seen"]["whatsapp"] >= 1
    assert stats["sends_refused"]["whatsapp"] == refused_before
    replies = [m for m in outbox(api, phone) if m["kind"] == "text"]
    assert len(replies) == 1 and "Your points: 520" in replies[0]["text"]
    assert [m for m in outbox(api, phone) if m.get("template") == "points_balance"] == []
    [reply] = messages(api, member, kind="reply")
    assert reply["status"] in ("sent", "delivered", "read")
    assert "fallback" not in [h["status"] for h in reply["history"]]
