"""Expiry reminders through the local stack: planning, dispatch, windows, the outbox."""
import uuid
from datetime import datetime, timedelta, timezone

from loyalty.domain import add_months
from tests.e2e.conftest import paid

SHANGHAI = timezone(timedelta(hours=8))


def setup_member(api, member, *, consent=True, channels=("whatsapp",)) -> str:
    """The member with a phone of its own (a phone belongs to one member); the phone."""
    phone = f"+86138{uuid.uuid4().int % 10**8:08d}"
    response = api.put(f"/members/{member}", {"name": "Ana", "phone": phone, "locale": "zh-CN",
                                              "time_zone": "Asia/Shanghai", "preferred_channels": list(channels)})
    assert response.status_code == 200, response.text
    if consent:
        for channel in channels:
            api.put(f"/members/{member}/consents/{channel}",
                    {"status": "opted_in", "source": "checkout_checkbox", "at": "2026-01-01T00:00:00+08:00"})
    return phone


def earn_due_on(api, member, amount=50000):
    """Points earned 100 days ago: the day they expire, and the planner's run 7 days before it at noon."""
    earned = (datetime.now(SHANGHAI) - timedelta(days=100)).replace(hour=15, minute=0, second=0, microsecond=0)
    api.order(paid(member, f"o-{member}", amount, occurred_at=earned.isoformat()))
    expires = add_months(earned, 12)
    return expires, (expires - timedelta(days=7)).replace(hour=12, minute=5)


def messages(api, member, kind="reminder"):
    response = api.get(f"/members/{member}/messages")
    assert response.status_code == 200, response.text
    return [m for m in response.json()["messages"] if m["kind"] == kind]


def test_a_reminder_seven_days_ahead_is_queued_once_with_the_right_variables(api, member):
    phone = setup_member(api, member)
    expires, run = earn_due_on(api, member)
    api.schedule("ReminderScanFunction", run.isoformat())
    api.schedule("ReminderScanFunction", (run + timedelta(minutes=30)).isoformat())   # re-run: nothing twice
    [message] = messages(api, member)
    assert (message["template"], message["channel"], message["kind"]) == ("points_expiring", "whatsapp", "reminder")
    assert [h["status"] for h in message["history"]][0] == "queued"
    assert message["variables"]["points"] == 520 and message["variables"]["expiry_date"] == expires.date().isoformat()
    assert message["to"] != phone  # masked


def test_nothing_is_planned_ten_days_ahead(api, member):
    setup_member(api, member)
    expires, _ = earn_due_on(api, member)
    api.schedule("ReminderScanFunction", (expires - timedelta(days=10)).replace(hour=12, minute=5).isoformat())
    assert messages(api, member) == []


def test_outside_the_send_window_the_reminder_waits_for_the_window(api, member):
    setup_member(api, member)
    expires, run = earn_due_on(api, member)
    late = run.replace(hour=22, minute=30)
    api.schedule("ReminderScanFunction", late.isoformat())
    [message] = messages(api, member)
    assert message["status"] == "deferred"
    api.schedule("ReleaseDeferredFunction", (late + timedelta(hours=2)).isoformat())  # 00:30: still closed
    assert messages(api, member)[0]["status"] == "deferred"
    api.schedule("ReleaseDeferredFunction", (late.replace(hour=12, minute=0) + timedelta(days=1)).isoformat())
    [released] = messages(api, member)
    assert released["status"] != "deferred"
    assert [h["status"] for h in released["history"]][:2] == ["deferred", "queued"]


def test_nothing_is_sent_once_the_due_points_are_redeemed(api, member):
    setup_member(api, member)
    _, run = earn_due_on(api, member, amount=150000)   # 1,520 points
    api.post(f"/members/{member}/redemptions", {"item_id": "coupon-10", "idempotency_key": "r1"})
    api.post(f"/members/{member}/redemptions", {"item_id": "free-shipping", "idempotency_key": "r2"})
    api.post(f"/members/{member}/adjustments", {"points": -220, "reason": "test", "operator_id": "op",
                                                "idempotency_key": "a1"})
    api.schedule("ReminderScanFunction", run.isoformat())
    assert messages(api, member) == []   # nothing left to expire: nothing planned


def test_without_consent_nothing_is_sent(api, member):
    setup_member(api, member, consent=False)
    _, run = earn_due_on(api, member)
    api.schedule("ReminderScanFunction", run.isoformat())
    [message] = messages(api, member)
    assert message["status"] == "skipped" and message["history"][0]["detail"] == "no_consented_channel"


def test_points_credited_and_redemption_confirmed_notices_go_out_once_with_consent(api, member):
    setup_member(api, member)
    body = paid(member, f"o-{member}", 150000)
    api.order(body)
    api.order(body)                                            # the order system retries: one notice
    api.post(f"/members/{member}/redemptions", {"item_id": "coupon-10", "idempotency_key": "r1"})
    api.post(f"/members/{member}/redemptions", {"item_id": "coupon-10", "idempotency_key": "r1"})
    api.post("/_local/drain")
    notices = messages(api, member, kind="notice")
    assert sorted(m["template"] for m in notices) == ["points_credited", "redemption_confirmed"]
    credited = next(m for m in notices if m["template"] == "points_credited")
    assert credited["variables"]["points"] == 1520 and credited["category"] == "transactional"


def test_no_notice_without_consent(api, member):
    setup_member(api, member, consent=False)
    api.order(paid(member, f"o-{member}", 150000))
    api.post("/_local/drain")
    [notice] = messages(api, member, kind="notice")
    assert notice["status"] == "skipped" and notice["channel"] is None


def test_a_los_angeles_member_is_told_the_day_their_points_expire_in_los_angeles(api, member):
    phone = f"+1415{uuid.uuid4().int % 10**7:07d}"
    assert api.put(f"/members/{member}", {"name": "Ana", "phone": phone, "locale": "en",
                                          "time_zone": "America/Los_Angeles",
                                          "preferred_channels": ["whatsapp"]}).status_code == 200
    api.put(f"/members/{member}/consents/whatsapp",
            {"status": "opted_in", "source": "checkout_checkbox", "at": "2026-01-01T00:00:00+08:00"})
    # earned so that the lot expires at 2027-03-01T02:00+08:00, 2027-02-28T10:00 in Los Angeles
    api.order(paid(member, f"o-{member}", 50000, occurred_at="2026-03-01T02:00:00+08:00"))
    assert api.get(f"/members/{member}/points").json()["expiring"][0]["date"] == "2027-02-28"
    # the planner's run 7 days before (Shanghai's calendar): 19:55 on the 21st in Los Angeles, in a window
    api.schedule("ReminderScanFunction", "2027-02-22T11:55:00+08:00")
    api.post("/_local/drain")
    [message] = messages(api, member)
    assert message["variables"]["expiry_date"] == "2027-02-28"
    [sent] = [m for m in api.get("/_local/outbox").json()
              if m["to"] == phone[1:] and m.get("template") == "points_expiring"]
    assert sent["variables"][:3] == ["Ana", "520", "28 Feb 2027"]


def test_a_reminder_planned_at_night_goes_out_at_noon_once_a_later_run_passes_noon(api, member):
    # given a reminder planned at 04:30, outside the send windows: deferred to 12:00
    phone = setup_member(api, member)
    expires, run = earn_due_on(api, member)
    night = run.replace(hour=4, minute=30)
    api.schedule("ReminderScanFunction", night.isoformat())
    [message] = messages(api, member)
    assert message["status"] == "deferred"

    # when a later schedule run moves the clock past noon: nobody runs ReleaseDeferredFunction by hand
    later = night.replace(hour=12, minute=5)
    answer = api.schedule("ExpiryScanFunction", later.isoformat())

    # then the 15-minute release schedule fired meanwhile, as in AWS, and sent it at 12:00
    [sent] = messages(api, member)
    assert sent["status"] in ("sent", "delivered", "read"), sent
    assert [h["status"] for h in sent["history"]][:3] == ["deferred", "queued", "sent"]
    noon = night.replace(hour=12, minute=0).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    caught_up = answer["caught_up"]
    assert caught_up["mode"] == "each" and caught_up["failed"] == 0
    [release] = [s for s in caught_up["schedules"] if s["function"] == "ReleaseDeferredFunction"]
    assert noon in [r["time"] for r in release["runs"] if r["result"]["released"] >= 1]
    outbox = [m for m in api.get("/_local/outbox").json() if m["to"] == phone.lstrip("+")]
    assert [m["template"] for m in outbox if m["template"] != "points_credited"] == ["points_expiring"]
