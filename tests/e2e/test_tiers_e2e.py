"""Tiers (E7) and the per-member catalog (E10) through the local stack, as a member app,
the order system and the scheduler call it."""
from datetime import datetime, timedelta, timezone

from tests.e2e.conftest import paid
from tests.e2e.test_reminders_e2e import messages, setup_member

SHANGHAI = timezone(timedelta(hours=8))


def now_local() -> datetime:
    return datetime.now(SHANGHAI).replace(microsecond=0)


def test_an_order_that_crosses_a_threshold_upgrades_and_the_member_is_told(api, member):
    # given a member on WhatsApp with 1,020 points this quarter
    setup_member(api, member)
    assert api.order(paid(member, f"o1-{member}", 100000, occurred_at=now_local().isoformat())).status_code == 200
    assert api.get(f"/members/{member}").json()["tier"] == {
        "name": "member", "qualifying_points": 1020, "next": {"name": "silver", "points_needed": 980}}

    # when the next order crosses silver's 2,000 (and the order system retries it)
    body = paid(member, f"o2-{member}", 100000, occurred_at=now_local().isoformat())
    first = api.order(body)
    assert first.json() == {"event_id": body["event_id"], "member_id": member, "points": 1020, "balance": 2040}
    assert api.order(body).json() == first.json()

    # then the tier moved with that order, in the member and points answers
    tier = {"name": "silver", "qualifying_points": 2040, "next": {"name": "gold", "points_needed": 3960}}
    assert api.get(f"/members/{member}").json()["tier"] == tier
    assert api.get(f"/members/{member}/points").json()["tier"] == tier
    # and one tier-up notice went out on the member's channel (besides the points-credited ones)
    api.post("/_local/drain")
    [notice] = [m for m in messages(api, member, kind="notice") if m["template"] == "tier_up"]
    assert notice["channel"] == "whatsapp" and notice["category"] == "transactional"
    assert notice["variables"]["tier"] == "silver" and notice["variables"]["qualifying_points"] == 2040
    # and silver's multiplier applies to the next order, as its own entry naming the rule
    third = api.order(paid(member, f"o3-{member}", 10000, occurred_at=now_local().isoformat())).json()
    assert third["points"] == 132
    entries = api.get(f"/members/{member}/ledger").json()["entries"]
    assert entries[0]["reason"] == "tier multiplier silver x1.1" and entries[0]["amount"] == 12


def test_the_catalog_as_two_tiers_see_it_and_what_redemption_enforces(api, member):
    gold, plain = f"{member}-gold", f"{member}-plain"
    api.order(paid(gold, f"o-{gold}", 600000, occurred_at=now_local().isoformat()))      # 6,020: gold
    api.order(paid(plain, f"o-{plain}", 400000, occurred_at=now_local().isoformat()))    # 4,020: silver
    seen = {m: api.get("/catalog", params={"member_id": m}).json() for m in (gold, plain)}
    assert seen[gold]["tier"] == "gold" and seen[plain]["tier"] == "silver"
    assert "vip-lounge-pass" in [i["item_id"] for i in seen[gold]["items"]]
    assert "vip-lounge-pass" not in [i["item_id"] for i in seen[plain]["items"]]
    cake = next(i for i in seen[plain]["items"] if i["item_id"] == "birthday-cake")
    assert (cake["per_member_limit"], cake["limit_left"], cake["points"], cake["list_points"]) == (1, 1, 1500, 1500)
    # without member_id the catalog answers as before: every active item, as configured
    assert "vip-lounge-pass" in [i["item_id"] for i in api.get("/catalog").json()["items"]]

    hidden = api.post(f"/members/{plain}/redemptions", {"item_id": "vip-lounge-pass", "idempotency_key": "r1"})
    assert hidden.status_code == 404, hidden.text
    assert api.balance(plain) == 4020
    ok = api.post(f"/members/{gold}/redemptions", {"item_id": "vip-lounge-pass", "idempotency_key": "r1"})
    assert ok.status_code == 201 and ok.json()["points"] == 3000
    again = api.post(f"/members/{gold}/redemptions", {"item_id": "vip-lounge-pass", "idempotency_key": "r1"})
    assert again.status_code == 200 and again.json()["redemption_id"] == ok.json()["redemption_id"]
    limit = api.post(f"/members/{gold}/redemptions", {"item_id": "vip-lounge-pass", "idempotency_key": "r2"})
    assert limit.status_code == 409, limit.text
    assert api.balance(gold) == 3020
    after = api.get("/catalog", params={"member_id": gold}).json()
    assert next(i for i in after["items"] if i["item_id"] == "vip-lounge-pass")["limit_left"] == 0
    assert api.get("/catalog", params={"member_id": "bad id!"}).status_code == 400


def test_a_member_is_warned_then_downgraded_by_the_nightly_review_as_time_passes(api, member):
    # given a silver member whose qualifying order was 85 days ago: the window falls below
    # silver in 5 days
    setup_member(api, member)
    earned = now_local() - timedelta(days=85)
    api.order(paid(member, f"o-{member}", 200000, occurred_at=earned.isoformat()))
    assert api.get(f"/members/{member}").json()["tier"]["name"] == "silver"
    review_day = earned.date() + timedelta(days=90)

    # when tonight's review runs (twice): one warning, queued as a windowed utility message
    tonight = datetime.combine(now_local().date(), datetime.min.time(), SHANGHAI) + timedelta(minutes=15)
    api.schedule("TierReviewFunction", tonight.isoformat())
    api.schedule("TierReviewFunction", tonight.isoformat())
    api.post("/_local/drain")
    [warning] = [m for m in messages(api, member, kind="campaign") if m["template"] == "tier_warning"]
    assert warning["variables"]["review_date"] == review_day.isoformat()
    assert warning["variables"]["tier"] == "silver" and warning["category"] == "utility"
    assert api.get(f"/members/{member}").json()["tier"]["name"] == "silver"

    # then on the review day's night the member is downgraded (a night missed before is caught up)
    night = datetime.combine(review_day + timedelta(days=1), datetime.min.time(), SHANGHAI) + timedelta(minutes=15)
    api.schedule("TierReviewFunction", night.isoformat())
    assert api.get(f"/members/{member}").json()["tier"]["name"] == "member"
    api.schedule("TierReviewFunction", night.isoformat())   # again: nothing more
    assert len([m for m in messages(api, member, kind="campaign") if m["template"] == "tier_warning"]) == 1
    assert api.balance(member) == 2020                       # the points are the member's still
