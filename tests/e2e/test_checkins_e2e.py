"""Daily check-ins through 127.0.0.1: a member app checking in over simulated days (the
stack's clock moved by running a schedule; the API takes it as the request's time), and
the keywords on two channels through the provider sandbox, answered with the streak."""
from datetime import datetime, timezone

from tests.e2e.conftest import Api, token
from tests.e2e.test_delivery_e2e import new_member, outbox


def clock_at(api, when: str) -> None:
    """Move the stack's clock (a schedule run at that time, harmless at any time)."""
    api.schedule("ReleaseDeferredFunction", when)


def test_a_member_app_checks_in_day_by_day_with_a_missed_day_and_a_second_check_in(stack, api, member):
    app = Api(stack.api_url, token(stack.api_url, subject="member-app",
                                   scopes=["loyalty/members.read", "loyalty/members.write"]))
    assert app.put(f"/members/{member}", {"name": "Mia", "time_zone": "Asia/Shanghai"}).status_code == 200
    path = f"/members/{member}/checkins"

    clock_at(api, "2025-06-02T12:00:00+08:00")
    first = app.post(path, {"at": "2025-06-02T08:30:00+08:00"})
    assert first.status_code == 200, first.text
    assert first.json() == {"date": "2025-06-02", "streak": 1, "points": 10, "balance": 10,
                            "already_checked_in": False}
    again = app.post(path, {"at": "2025-06-02T21:00:00+08:00"})                 # the same local day
    assert again.json() == {"date": "2025-06-02", "streak": 1, "points": 0, "balance": 10,
                            "already_checked_in": True}

    clock_at(api, "2025-06-03T12:00:00+08:00")
    assert app.post(path, {"at": "2025-06-03T07:45:00+08:00"}).json()["streak"] == 2
    # 4 June missed
    clock_at(api, "2025-06-05T12:00:00+08:00")
    after_gap = app.post(path, {"at": "2025-06-05T09:10:00+08:00"}).json()
    assert (after_gap["streak"], after_gap["points"], after_gap["balance"]) == (1, 10, 30)
    late = app.post(path, {"at": "2025-06-04T10:00:00+08:00"})                 # told late, a later day in
    assert late.status_code == 409

    # the service's clock is the stack's: 2025 is "now", the real date is far from it
    far = app.post(path, {"at": datetime.now(timezone.utc).isoformat()})
    assert far.status_code == 400 and far.json()["errors"][0]["field"] == "at"
    bad = app.post(path, {"at": "tomorrow", "extra": 1})
    assert bad.status_code == 400 and {e["field"] for e in bad.json()["errors"]} == {"at", "extra"}
    assert app.post("/members/m-nobody-checks-in/checkins", {"at": "2025-06-05T09:10:00+08:00"}).status_code == 404

    entries = app.get(f"/members/{member}/ledger").json()["entries"]
    assert [(e["type"], e["amount"], e["reason"]) for e in entries] == [
        ("CHECKIN", 10, "check-in: streak day 1"), ("CHECKIN", 10, "check-in: streak day 2"),
        ("CHECKIN", 10, "check-in: streak day 1")]
    assert app.get(f"/members/{member}/points").json()["balance"] == 30
    reader = Api(stack.api_url, token(stack.api_url, subject="reader", scopes=["loyalty/members.read"]))
    assert reader.post(path, {"at": "2025-06-05T09:10:00+08:00"}).status_code == 403


def test_the_check_in_keywords_on_whatsapp_and_wechat_check_in_once_a_day_and_reply(api, member):
    # On simulated days: the sandbox stamps a member's message with the stack's clock, and
    # the webhooks measure a check-in against the request's time, which the stack stamps too.
    clock_at(api, "2025-07-01T10:00:00+08:00")
    phone, openid = new_member(api, member, channels=("whatsapp", "wechat"))
    answer = api.post("/_local/inbound", {"channel": "whatsapp", "from": phone, "text": "签到"})
    assert answer.status_code == 200 and answer.json()["status"] == 200
    api.post("/_local/drain")
    replies = [m for m in outbox(api, phone) if "streak" in (m.get("text") or "")]
    assert [m["text"] for m in replies] == ["Day 1 of your streak +10 points · Balance 10"]

    clock_at(api, "2025-07-02T10:00:00+08:00")
    wechat = api.post("/_local/inbound", {"channel": "wechat", "from": openid, "text": "打卡"})
    assert wechat.status_code == 200 and wechat.json()["status"] == 200
    assert "Day 2 of your streak +10 points · Balance 20" in wechat.json()["body"]   # the passive reply
    again = api.post("/_local/inbound", {"channel": "wechat", "from": openid, "text": "CHECKIN"})
    assert "Already checked in today · 2-day streak · Balance 20" in again.json()["body"]
    assert api.get(f"/members/{member}/points").json()["balance"] == 20
    entries = api.get(f"/members/{member}/ledger").json()["entries"]
    assert [(e["type"], e["amount"], e["reason"]) for e in entries] == [
        ("CHECKIN", 10, "check-in: streak day 2"), ("CHECKIN", 10, "check-in: streak day 1")]
