"""Provider webhooks through 127.0.0.1, called as the providers call them, signed with
the local secrets of DESIGN.md."""
import hashlib
import hmac
import json
import time
import uuid

from tests.e2e.conftest import paid

WA_SECRET, WA_VERIFY, WECHAT_TOKEN = "local-whatsapp-secret", "local-verify-token", "local-wechat-token"


def post_whatsapp(api, body: dict, secret: str = WA_SECRET):
    raw = json.dumps(body).encode()
    signature = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return api.http.post(api.base + "/webhooks/whatsapp", data=raw, timeout=30,
                         headers={"Content-Type": "application/json", "X-Hub-Signature-256": signature})


def wa_envelope(value: dict) -> dict:
    return {"object": "whatsapp_business_account",
            "entry": [{"id": "WABA", "changes": [{"field": "messages", "value": value}]}]}


def wa_text(phone_digits: str, text: str) -> dict:
    return wa_envelope({"messaging_product": "whatsapp",
                        "contacts": [{"profile": {"name": "Ana"}, "wa_id": phone_digits}],
                        "messages": [{"from": phone_digits, "id": f"wamid.{uuid.uuid4().hex}",
                                      "timestamp": str(int(time.time())), "type": "text", "text": {"body": text}}]})


def wa_status(message_id: str, status: str, ts: int) -> dict:
    return wa_envelope({"messaging_product": "whatsapp", "statuses": [
        {"id": f"wamid.{message_id}", "status": status, "timestamp": str(ts), "recipient_id": "8613800000000",
         "biz_opaque_callback_data": message_id}]})


def wechat_query(token: str = WECHAT_TOKEN) -> dict:
    timestamp, nonce = str(int(time.time())), uuid.uuid4().hex[:10]
    signature = hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode()).hexdigest()
    return {"signature": signature, "timestamp": timestamp, "nonce": nonce}


def member_with_phone(api, member: str, phone: str, channel: str = "whatsapp", openid: str | None = None):
    profile = {"name": "Ana", "phone": phone, "locale": "en", "preferred_channels": [channel]}
    if openid:
        profile["wechat_openid"] = openid
    assert api.put(f"/members/{member}", profile).status_code == 200
    api.put(f"/members/{member}/consents/{channel}",
            {"status": "opted_in", "source": "checkout_checkbox", "at": "2026-01-01T00:00:00+08:00"})


def test_whatsapp_verification_handshake(api):
    ok = api.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": WA_VERIFY,
                                               "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444"
    wrong = api.get("/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "nope",
                                                  "hub.challenge": "x"})
    assert wrong.status_code == 403


def test_a_wrongly_signed_whatsapp_push_is_refused_and_changes_nothing(api, member):
    phone = "+852" + str(uuid.uuid4().int)[:8]
    member_with_phone(api, member, phone)
    response = post_whatsapp(api, wa_text(phone[1:], "STOP"), secret="wrong")
    assert response.status_code == 401
    assert api.get(f"/members/{member}/consents/whatsapp").json()["status"] == "opted_in"


def test_stop_on_whatsapp_opts_out_at_once_and_is_confirmed_once(api, member):
    phone = "+852" + str(uuid.uuid4().int)[:8]
    member_with_phone(api, member, phone)
    assert post_whatsapp(api, wa_text(phone[1:], "ＳＴＯＰ")).status_code == 200
    assert post_whatsapp(api, wa_text(phone[1:], "stop")).status_code == 200
    consent = api.get(f"/members/{member}/consents/whatsapp").json()
    assert consent["status"] == "opted_out" and consent["history"][0]["source"].startswith("keyword:")
    replies = [m for m in api.get(f"/members/{member}/messages").json()["messages"] if m["kind"] == "reply"]
    assert [m["template"] for m in replies] == ["opt_out_confirmed"]


def test_my_points_on_whatsapp_gets_an_answer_with_balance_and_what_expires(api, member):
    phone = "+852" + str(uuid.uuid4().int)[:8]
    member_with_phone(api, member, phone)
    api.order(paid(member, f"o-{member}", 150000))
    push = wa_text(phone[1:], "我的积分")
    assert post_whatsapp(api, push).status_code == 200
    assert post_whatsapp(api, push).status_code == 200        # Meta retries: answered once
    [reply] = [m for m in api.get(f"/members/{member}/messages").json()["messages"] if m["kind"] == "reply"]
    assert reply["template"] == "balance_reply" and reply["variables"]["balance"] == 1520
    assert "You can redeem" in reply["variables"]["redeemable"]


def test_receipts_only_move_forward_and_unknown_ids_are_acknowledged(api, member):
    from tests.e2e.test_reminders_e2e import earn_due_on, setup_member
    setup_member(api, member)
    _, run = earn_due_on(api, member)
    # Only the receipts this test posts, in the order it posts them: the sandbox's own
    # "delivered" could otherwise arrive before our "read" and be (rightly) recorded.
    assert api.post("/_local/sandbox/config", {"auto_receipts": False}).status_code == 200
    try:
        api.schedule("ReminderScanFunction", run.isoformat())
    finally:
        api.post("/_local/sandbox/config", {"auto_receipts": True})
    [message] = [m for m in api.get(f"/members/{member}/messages").json()["messages"] if m["kind"] == "reminder"]
    mid, now = message["message_id"], int(time.time())
    assert post_whatsapp(api, wa_status(mid, "read", now + 5)).status_code == 200
    assert post_whatsapp(api, wa_status(mid, "delivered", now + 2)).status_code == 200   # late: ignored
    assert post_whatsapp(api, wa_status("m-nobody", "delivered", now)).status_code == 200
    [after] = [m for m in api.get(f"/members/{member}/messages").json()["messages"] if m["kind"] == "reminder"]
    assert after["status"] == "read"
    assert "delivered" not in [h["status"] for h in after["history"]]


def test_wechat_server_verification_and_a_passive_reply_to_my_points(api, member):
    openid = "o" + uuid.uuid4().hex[:20]
    member_with_phone(api, member, "+8613" + str(uuid.uuid4().int)[:9], channel="wechat", openid=openid)
    api.order(paid(member, f"o-{member}", 50000))
    echo = api.get("/webhooks/wechat", params={**wechat_query(), "echostr": "hello123"})
    assert echo.status_code == 200 and echo.text == "hello123"
    assert api.get("/webhooks/wechat", params={**wechat_query("bad"), "echostr": "x"}).status_code == 401
    xml = (f"<xml><ToUserName><![CDATA[gh_local]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
           f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
           f"<Content><![CDATA[我的积分]]></Content><MsgId>{uuid.uuid4().int % 10**18}</MsgId></xml>")
    reply = api.http.post(api.base + "/webhooks/wechat", params=wechat_query(), data=xml.encode(), timeout=30)
    assert reply.status_code == 200 and "520" in reply.text and f"<![CDATA[{openid}]]>" in reply.text
    unfollow = (f"<xml><ToUserName><![CDATA[gh_local]]></ToUserName><FromUserName><![CDATA[{openid}]]>"
                f"</FromUserName><CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
                f"<Event><![CDATA[unsubscribe]]></Event></xml>")
    assert api.http.post(api.base + "/webhooks/wechat", params=wechat_query(), data=unfollow.encode(),
                         timeout=30).text == "success"
    assert api.get(f"/members/{member}/consents/wechat").json()["status"] == "opted_out"


def test_aliyun_pushes_need_the_callback_token(api, member):
    phone = "+8613" + str(uuid.uuid4().int)[:9]
    member_with_phone(api, member, phone, channel="sms")
    up = [{"phone_number": phone[3:], "send_time": "2026-11-23 10:00:00", "content": "TD", "sign_name": "会员中心",
           "dest_code": "1234", "sequence_id": uuid.uuid4().int % 10**9}]
    refused = api.http.post(api.base + "/webhooks/aliyun/up", params={"token": "wrong"}, json=up, timeout=30)
    assert refused.status_code == 401
    accepted = api.http.post(api.base + "/webhooks/aliyun/up", params={"token": "local-aliyun-callback-token"},
                             json=up, timeout=30)
    assert accepted.status_code == 200 and accepted.json() == {"code": 0, "msg": "接收成功"}
    assert api.get(f"/members/{member}/consents/sms").json()["status"] == "opted_out"


def sandbox_outbox(api, phone: str) -> list[dict]:
    """What the sandbox accepted for this number, the points-credited notice left out."""
    return [m for m in api.get("/_local/outbox").json() if (m["to"] or "").lstrip("+") == phone.lstrip("+")
            and m.get("template") != "points_credited" and "points were added" not in (m.get("text") or "")]


def test_my_points_from_a_member_whose_points_buy_nothing_reaches_them_as_the_template(api, member):
    # The push comes straight to our webhook, so for the sandbox (as for Meta when the
    # member's last message is over a day old) the 24-hour window is closed: the reply
    # goes as the approved template, whose parameters the sandbox checks as Meta does.
    phone = "+852" + str(uuid.uuid4().int)[:8]
    member_with_phone(api, member, phone)
    api.order(paid(member, f"o-{member}", 1000))                    # 10 points: nothing is that cheap
    api.post("/_local/drain")                                       # its notice is out before the fault
    # The member's message opens the window; Meta refuses the free-form answer all the same
    # (131047, as when the window closed before the answer left), so it goes as the template.
    assert api.post("/_local/faults", {"provider": "whatsapp", "error_code": 131047, "count": 1}).ok
    assert post_whatsapp(api, wa_text(phone[1:], "我的积分")).status_code == 200
    api.post("/_local/drain")
    [sent] = sandbox_outbox(api, phone)
    assert sent["template"] == "points_balance"
    assert sent["variables"][0] == "10" and sent["variables"][2] == "Nothing to redeem yet."
    [reply] = [m for m in api.get(f"/members/{member}/messages").json()["messages"] if m["kind"] == "reply"]
    assert reply["status"] in ("sent", "delivered", "read") and reply["variables"]["redeemable"] == ""


def test_a_reply_whose_template_whatsapp_refuses_comes_by_sms(api, member):
    phone = "+852" + str(uuid.uuid4().int)[:8]
    member_with_phone(api, member, phone)
    api.put(f"/members/{member}/consents/sms",
            {"status": "opted_in", "source": "checkout_checkbox", "at": "2026-01-01T00:00:00+08:00"})
    api.order(paid(member, f"o-{member}", 150000))
    api.post("/_local/drain")                                       # its notice is out before the fault
    # Meta approved points_balance with two body parameters; our rules send three: 132000.
    declared = api.post("/_local/sandbox/config", {"templates": {"whatsapp": {"points_balance": {
        "body_parameters": 2}}}})
    assert declared.status_code == 200, declared.text
    # The member's message opens the window; the free-form answer is refused (131047), so
    # the template goes, and Meta refuses that one too: the answer comes by SMS.
    assert api.post("/_local/faults", {"provider": "whatsapp", "error_code": 131047, "count": 1}).ok
    try:
        assert post_whatsapp(api, wa_text(phone[1:], "POINTS")).status_code == 200
        api.post("/_local/drain")
    finally:
        api.post("/_local/sandbox/config", {"templates": {}})
    [sent] = sandbox_outbox(api, phone)
    assert (sent["channel"], sent["provider"]) == ("sms", "twilio") and "Your points: 1,520." in sent["text"]
    [reply] = [m for m in api.get(f"/members/{member}/messages").json()["messages"] if m["kind"] == "reply"]
    assert reply["channel"] == "sms" and any("132000" in (h.get("detail") or "") for h in reply["history"])
