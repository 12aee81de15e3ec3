"""Tiers (E7) and the per-member catalog (E10) as every LedgerStore must show them: run
against the in-memory fake (tests/unit/test_tiers_memory.py) and DynamoDB in the emulator
(tests/integration/test_tiers_dynamodb.py). Each importing module provides `store`."""
from __future__ import annotations

from datetime import timedelta

import pytest

from loyalty.domain import parse_time
from loyalty.engagement.tiers import tier_view
from loyalty.errors import Conflict, NotFound
from loyalty.rules import build_rules
from tests.orders_only import ORDERS_ONLY
from loyalty.services.orders import handle_order_event
from loyalty.services.queries import ledger_page, points_view, reconcile
from loyalty.services.tier_review import review_tiers
from tests.ledger_contract import paid, refunded

T0 = parse_time("2026-03-10T10:00:00+08:00")
# member 0, silver 2000 (x1.1), gold 6000 (x1.25), vip 15000 (x1.5) in 90 days; an order's
# points alone (milestones and the member day off: their bonuses are tests/engagement_contract.py's)
RULES = build_rules(ORDERS_ONLY)


class Queues:
    def __init__(self):
        self.sent: list[tuple[str, dict]] = []

    def send(self, name, body, delay_s=0):
        self.sent.append((name, body))


def night(day: str):
    return parse_time(f"{day}T00:15:00+08:00")


def tier(store, member="m1", now=T0):
    return tier_view(store.load_account(member, with_lots=False).engagement, now, RULES)


def assert_reconciled(store):
    assert reconcile(store)[1] == []


# --- upgrades ------------------------------------------------------------------------

def test_the_order_that_crosses_a_threshold_upgrades_in_its_own_write_and_tells_of_it(store):
    told = []
    first = handle_order_event(store, RULES, paid("e1", "o1", 100000), T0, told)   # 1020 points
    assert told == [] and tier(store) == {"name": "member", "qualifying_points": 1020,
                                          "next": {"name": "silver", "points_needed": 980}}
    result = handle_order_event(store, RULES, paid("e2", "o2", 100000), T0 + timedelta(hours=1), told)
    assert result == {"event_id": "e2", "member_id": "m1", "points": 1020, "balance": 2040}   # the contract's answer
    assert told == [{"kind": "tier_up", "event_id": "e2", "member_id": "m1", "tier": "silver", "previous": "member",
                     "qualifying_points": 2040}]
    assert tier(store) == {"name": "silver", "qualifying_points": 2040, "next": {"name": "gold", "points_needed": 3960}}
    # a retry of the callback answers the same and tells the tier-up again (the notice's job id dedupes it)
    again = []
    assert handle_order_event(store, RULES, paid("e2", "o2", 100000), T0 + timedelta(hours=2), again) == result
    assert again == told
    assert first["points"] == 1020
    assert_reconciled(store)


def test_a_tier_earns_its_multiplier_as_its_own_entry_naming_the_rule(store):
    handle_order_event(store, RULES, paid("e1", "o1", 200000), T0)          # 2020: silver from here on
    result = handle_order_event(store, RULES, paid("e2", "o2", 10000), T0 + timedelta(days=1))
    assert result["points"] == 120 + 12                                      # 120 x 1.1
    entries = ledger_page(store, "m1", None, 10)["entries"]
    bonus = next(e for e in entries if e["reason"].startswith("tier multiplier"))
    assert (bonus["type"], bonus["amount"], bonus["source"]) == ("EARN", 12, "order:o2")
    assert bonus["meta"]["rule"] == "tier_multiplier:silver" and bonus["reason"] == "tier multiplier silver x1.1"
    assert_reconciled(store)


def test_a_refund_takes_the_multiplier_back_in_proportion_and_lowers_qualifying_points(store):
    handle_order_event(store, RULES, paid("e1", "o1", 200000), T0)            # 2020, silver
    handle_order_event(store, RULES, paid("e2", "o2", 100000, at=T0 + timedelta(days=1)), T0 + timedelta(days=1))
    assert tier(store, now=T0 + timedelta(days=1))["qualifying_points"] == 2020 + 1122
    half = handle_order_event(store, RULES, refunded("e3", "o2", 100000, 50000, at=T0 + timedelta(days=2)),
                              T0 + timedelta(days=2))
    assert half["points"] == -561                                            # half of 1122, the bonus with it
    assert tier(store, now=T0 + timedelta(days=2))["qualifying_points"] == 2020 + 561
    handle_order_event(store, RULES, refunded("e4", "o1", 200000, 200000, at=T0 + timedelta(days=3)),
                       T0 + timedelta(days=3))
    view = tier(store, now=T0 + timedelta(days=3))
    # the window fell below silver: still silver until tonight's review decides (no upgrade, no instant drop)
    assert view["qualifying_points"] == 561 and view["name"] == "silver"
    account = store.load_account("m1", with_lots=False)
    assert account.engagement.tier.review_on == "2026-03-13" == account.engagement.tier.check_on
    summary = review_tiers(store, Queues(), RULES, night("2026-03-14"), 4)
    assert (summary.members, summary.downgraded) == (1, 1)
    assert tier(store, now=T0 + timedelta(days=4))["name"] == "member"
    assert_reconciled(store)


def test_points_outside_the_rolling_window_do_not_qualify(store):
    old = T0 - timedelta(days=95)
    handle_order_event(store, RULES, paid("e1", "o1", 200000, at=old), T0)   # reported late: outside 90 days
    assert tier(store) == {"name": "member", "qualifying_points": 0, "next": {"name": "silver", "points_needed": 2000}}
    handle_order_event(store, RULES, paid("e2", "o2", 200000), T0)
    assert tier(store)["name"] == "silver"       # 4040 earned, 2020 of it in the window: silver, not more
    assert tier(store)["qualifying_points"] == 2020
    # the tier is in the points and member answers
    assert points_view(store, "m1", T0, "Asia/Shanghai", RULES)["tier"]["name"] == "silver"


def test_the_top_tier_has_no_next(store):
    handle_order_event(store, RULES, paid("e1", "o1", 1500000), T0)
    assert tier(store) == {"name": "vip", "qualifying_points": 15020, "next": None}


# --- the nightly review ---------------------------------------------------------------

def test_the_nightly_review_warns_seven_days_before_then_downgrades_and_reruns_decide_nothing(store):
    handle_order_event(store, RULES, paid("e1", "o1", 200000), T0)            # silver until 2026-06-08
    queues = Queues()
    state = store.load_account("m1", with_lots=False).engagement.tier
    assert (state.review_on, state.check_on) == ("2026-06-08", "2026-06-01")

    early = review_tiers(store, queues, RULES, night("2026-05-31"), 4)
    assert (early.members, queues.sent) == (0, [])                           # not due: not even read

    warned = review_tiers(store, queues, RULES, night("2026-06-01"), 4)
    assert (warned.members, warned.warned, warned.downgraded) == (1, 1, 0)
    [(queue, job)] = queues.sent
    assert queue == "jobs" and job["job_id"] == "tier-warning#m1#2026-06-08" and job["template"] == "tier_warning"
    assert job["variables"] == {"tier": "silver", "points_needed": 2000, "review_date": "2026-06-08"}
    assert review_tiers(store, queues, RULES, night("2026-06-01"), 4).members == 0   # the same night again
    assert len(queues.sent) == 1 and tier(store, now=night("2026-06-07"))["name"] == "silver"

    down = review_tiers(store, queues, RULES, night("2026-06-08"), 4)
    assert (down.members, down.downgraded, down.warned) == (1, 1, 0)
    assert tier(store, now=night("2026-06-08")) == {"name": "member", "qualifying_points": 0,
                                                    "next": {"name": "silver", "points_needed": 2000}}
    [(queue, told)] = queues.sent[1:]                                         # the downgrade notice, after the write
    assert queue == "jobs" and told["job_id"] == "tier-down#m1#2026-06-08" and told["template"] == "tier_down"
    assert told["kind"] == "campaign" and told["member_id"] == "m1"           # in the send windows, like the warning
    assert told["variables"] == {"tier": "member", "previous": "silver", "qualifying_points": 0}
    again = review_tiers(store, queues, RULES, night("2026-06-08"), 4)
    assert (again.members, len(queues.sent)) == (0, 2)                         # a re-run tells nothing again
    state = store.load_account("m1", with_lots=False).engagement.tier
    assert (state.name, state.review_on, state.check_on) == (None, None, None)   # out of the index
    assert_reconciled(store)


def test_a_missed_night_is_caught_up_and_a_member_who_earned_meanwhile_keeps_the_tier(store):
    handle_order_event(store, RULES, paid("a1", "oa", 200000, member="ana"), T0)
    handle_order_event(store, RULES, paid("b1", "ob", 200000, member="bo"), T0)
    later = T0 + timedelta(days=60)
    handle_order_event(store, RULES, paid("b2", "ob2", 200000, at=later, member="bo"), later)
    queues = Queues()
    # no run from 31 May to 8 June: the run of the 8th reads the days it missed (ana's warning
    # day among them) and, her review day being here, downgrades her
    summary = review_tiers(store, queues, RULES, night("2026-06-08"), 4)
    assert (summary.members, summary.downgraded, summary.warned) == (1, 1, 0)   # ana; bo is due in August
    assert tier(store, "ana", night("2026-06-08"))["name"] == "member"
    assert tier(store, "bo", night("2026-06-08"))["name"] == "silver"
    bo = store.load_account("bo", with_lots=False).engagement.tier
    assert bo.review_on == "2026-08-07"


def test_a_downgrade_lands_on_the_tier_the_window_still_reaches(store):
    handle_order_event(store, RULES, paid("e1", "o1", 400000), T0)              # 4020
    later = T0 + timedelta(days=30)
    handle_order_event(store, RULES, paid("e2", "o2", 200000, at=later), later)   # 2020 x1.1: gold
    assert tier(store, now=T0 + timedelta(days=30))["name"] == "gold"
    state = store.load_account("m1", with_lots=False).engagement.tier
    assert state.review_on == "2026-06-08"        # the first order's bucket leaves the window then
    review_tiers(store, Queues(), RULES, night("2026-06-08"), 4)
    assert tier(store, now=night("2026-06-08"))["name"] == "silver"            # 2222 left: silver
    assert store.load_account("m1", with_lots=False).engagement.tier.review_on == "2026-07-08"


def test_a_review_planned_on_a_moved_member_reads_again(store):
    """The index is read, then the member moves (a redemption) before the write: the
    write's version check fails and the member is read again, decided once."""
    from loyalty.services.redemptions import redeem
    handle_order_event(store, RULES, paid("e1", "o1", 200000), T0)
    original = store.tier_reviews

    def moved_meanwhile(day, shard):
        for page in original(day, shard):
            if page:
                redeem(store, RULES, "m1", "free-shipping", "k1", night("2026-06-08"))
            yield page

    store.tier_reviews = moved_meanwhile
    summary = review_tiers(store, Queues(), RULES, night("2026-06-08"), 4)
    assert (summary.members, summary.downgraded, summary.retried_members) == (1, 1, 1)
    assert tier(store, now=night("2026-06-08"))["name"] == "member"
    assert_reconciled(store)


# --- the per-member catalog (E10) --------------------------------------------------------

CATALOG = build_rules({
    **ORDERS_ONLY,
    "catalog": [{"item_id": "mug", "name": "Mug", "points": 1000},
                {"item_id": "lounge", "name": "Lounge", "points": 500, "min_tier": "silver"},
                {"item_id": "cake", "name": "Cake", "points": 300, "per_member_limit": 2},
                {"item_id": "frame", "name": "Frame", "points": 999, "discountable": False}],
    "redemption": {"discount_days": {"days_of_month": [18], "percent_off": 20}}})


def test_the_catalog_a_member_sees_hides_tier_items_and_shows_todays_price_and_limits(store):
    from loyalty.services.catalog import member_catalog
    handle_order_event(store, CATALOG, paid("e1", "o1", 100000), T0)        # member tier
    handle_order_event(store, CATALOG, paid("e2", "o2", 200000, member="m2"), T0)   # silver
    ordinary = parse_time("2026-03-17T12:00:00+08:00")
    view = member_catalog(store, CATALOG, "m1", ordinary)
    assert [i["item_id"] for i in view["items"]] == ["mug", "cake", "frame"]
    assert view["tier"] == "member" and view["redemption_day"] is False
    cake = next(i for i in view["items"] if i["item_id"] == "cake")
    assert (cake["points"], cake["list_points"], cake["per_member_limit"], cake["limit_left"]) == (300, 300, 2, 2)
    day = parse_time("2026-03-18T12:00:00+08:00")
    silver = member_catalog(store, CATALOG, "m2", day)
    assert [i["item_id"] for i in silver["items"]] == ["mug", "lounge", "cake", "frame"]
    prices = {i["item_id"]: (i["points"], i["list_points"]) for i in silver["items"]}
    assert prices == {"mug": (800, 1000), "lounge": (400, 500), "cake": (240, 300), "frame": (999, 999)}
    assert silver["redemption_day"] is True and silver["percent_off"] == 20


def test_redeeming_charges_todays_price_once_keeps_the_per_member_count_and_hides_tier_items(store):
    from loyalty.services.catalog import member_catalog
    from loyalty.services.redemptions import cancel_redemption, redeem
    handle_order_event(store, CATALOG, paid("e1", "o1", 100000), T0)        # 1020, member tier
    day = parse_time("2026-03-18T12:00:00+08:00")
    with pytest.raises(NotFound):                                           # hidden from this member's tier
        redeem(store, CATALOG, "m1", "lounge", "k0", day)
    first, created = redeem(store, CATALOG, "m1", "cake", "k1", day)
    assert created and first.points == 240                                  # the redemption day's price
    again, created = redeem(store, CATALOG, "m1", "cake", "k1", day + timedelta(days=1))
    assert not created and again == first                                   # the same answer, not re-priced
    redeem(store, CATALOG, "m1", "cake", "k2", day + timedelta(days=1))     # 300 on an ordinary day
    assert store.load_account("m1", with_lots=False).balance == 1020 - 240 - 300
    with pytest.raises(Conflict):                                           # the limit of 2 is reached
        redeem(store, CATALOG, "m1", "cake", "k3", day + timedelta(days=1))
    assert store.load_account("m1", with_lots=False).balance == 480
    assert next(i for i in member_catalog(store, CATALOG, "m1", day)["items"]
                if i["item_id"] == "cake")["limit_left"] == 0
    cancel_redemption(store, CATALOG, "m1", first.redemption_id, "changed my mind", day + timedelta(days=2))
    assert next(i for i in member_catalog(store, CATALOG, "m1", day)["items"]
                if i["item_id"] == "cake")["limit_left"] == 1                # a cancelled one is given back
    third, created = redeem(store, CATALOG, "m1", "cake", "k3", day + timedelta(days=2))
    assert created and third.points == 300
    assert_reconciled(store)


MONTHLY = build_rules({"catalog": [{"item_id": "coffee", "name": "Coffee", "points": 100, "per_member_limit": 2,
                                    "per_member_limit_period": "month"}]})


def test_a_monthly_per_member_limit_starts_again_each_programme_calendar_month(store):
    from loyalty.services.catalog import member_catalog
    from loyalty.services.redemptions import cancel_redemption, redeem

    def left(at):
        [coffee] = member_catalog(store, MONTHLY, "m1", at)["items"]
        return coffee["limit_left"]

    handle_order_event(store, MONTHLY, paid("e1", "o1", 100000), T0)
    march, april = parse_time("2026-03-31T23:30:00+08:00"), parse_time("2026-03-31T16:30:00Z")   # 00:30 on 1 April
    first, _ = redeem(store, MONTHLY, "m1", "coffee", "k1", march)
    redeem(store, MONTHLY, "m1", "coffee", "k2", march)
    with pytest.raises(Conflict, match="this month"):
        redeem(store, MONTHLY, "m1", "coffee", "k3", march)
    assert (left(march), left(april)) == (0, 2)
    redeem(store, MONTHLY, "m1", "coffee", "k4", april)                     # a new month in the programme's zone
    assert left(april) == 1
    assert store.load_account("m1", with_lots=False).engagement.tier.redeemed == (("coffee#2026-04", 1),)
    cancel_redemption(store, MONTHLY, "m1", first.redemption_id, "late", april)   # March's is over: April keeps its count
    assert left(april) == 1
    fifth, _ = redeem(store, MONTHLY, "m1", "coffee", "k5", april)
    with pytest.raises(Conflict):
        redeem(store, MONTHLY, "m1", "coffee", "k6", april)
    cancel_redemption(store, MONTHLY, "m1", fifth.redemption_id, "changed my mind", april)   # this month's: given back
    assert left(april) == 1
    assert_reconciled(store)


def test_concurrent_redemptions_never_pass_the_per_member_limit(store):
    """The count is taken under the debit's version check: of 6 concurrent requests (each
    its own key) for an item limited to 2 per member, exactly 2 are redeemed."""
    from concurrent.futures import ThreadPoolExecutor

    from loyalty.services.redemptions import redeem
    handle_order_event(store, CATALOG, paid("e1", "o1", 300000), T0)         # 3020 points
    day = parse_time("2026-03-17T12:00:00+08:00")

    def attempt(i):
        try:
            return redeem(store, CATALOG, "m1", "cake", f"k{i}", day)[1]
        except Conflict:
            return False

    with ThreadPoolExecutor(6) as pool:
        created = list(pool.map(attempt, range(6)))
    assert created.count(True) == 2
    assert store.load_account("m1", with_lots=False).balance == 3020 - 600
    assert len(store.list_redemptions("m1")) == 2
    assert_reconciled(store)


def test_activities_and_approved_reviews_count_towards_the_tier(store):
    from loyalty.engagement.activities import Activity, record_activity
    from loyalty.engagement.reviews import decide_review
    rules = build_rules({**ORDERS_ONLY, "activities": {"types": {
        "poll": {"points": 5}, "ugc": {"points": 50, "needs_review": True}}}})
    handle_order_event(store, rules, paid("e1", "o1", 100000), T0)                 # 1020
    credited = record_activity(store, rules, "m1", Activity("a1", "poll", T0, None, None, "h1"), T0)
    assert credited["status"] == "credited" and tier(store)["qualifying_points"] == 1025
    held = record_activity(store, rules, "m1", Activity("a2", "ugc", T0, None, None, "h2"), T0)
    assert held["status"] == "held" and tier(store)["qualifying_points"] == 1025   # not before a decision
    [review] = [r for r in store_reviews(store) if r.member_id == "m1"]
    told = []
    decide_review(store, rules, review.review_id, "approve", "ok", "op", T0 + timedelta(hours=1), told)
    assert tier(store, now=T0 + timedelta(hours=1))["qualifying_points"] == 1075
    assert told == []                                                            # still below silver


def test_an_approval_that_crosses_a_threshold_tells_of_the_tier_up(store):
    from loyalty.engagement.activities import Activity, record_activity
    from loyalty.engagement.reviews import decide_review
    rules = build_rules({**ORDERS_ONLY, "activities": {"types": {"ugc": {"points": 50, "needs_review": True}}}})
    handle_order_event(store, rules, paid("e1", "o1", 196000), T0)                 # 1980: 20 short of silver
    record_activity(store, rules, "m1", Activity("u1", "ugc", T0, None, None, "h1"), T0)
    [review] = [r for r in store_reviews(store) if r.member_id == "m1"]
    told = []
    decide_review(store, rules, review.review_id, "approve", "ok", "op", T0 + timedelta(hours=1), told)
    assert told == [{"kind": "tier_up", "event_id": f"review#{review.review_id}", "member_id": "m1",
                     "tier": "silver", "previous": "member", "qualifying_points": 2030}]
    again = []
    decide_review(store, rules, review.review_id, "approve", "ok", "op", T0 + timedelta(hours=2), again)
    assert again == []                                                           # decided already: nothing new


def store_reviews(store):
    return store.reviews_page("open", None, 50)[0]


def test_an_activity_that_crosses_a_threshold_tells_of_the_tier_up_and_a_retry_tells_it_again(store):
    from loyalty.engagement.activities import Activity, record_activity
    rules = build_rules({**ORDERS_ONLY, "activities": {"types": {"survey": {"points": 15}}}})
    handle_order_event(store, rules, paid("e1", "o1", 197000), T0)                 # 1990: 10 short of silver
    told = []
    answer = record_activity(store, rules, "m1", Activity("a1", "survey", T0, None, None, "h1"), T0, told)
    assert answer["status"] == "credited" and "tier_up" not in answer            # the contract's answer only
    assert told == [{"kind": "tier_up", "event_id": "activity#m1#a1", "member_id": "m1", "tier": "silver",
                     "previous": "member", "qualifying_points": 2005}]
    again = []
    assert record_activity(store, rules, "m1", Activity("a1", "survey", T0, None, None, "h1"), T0, again) == answer
    assert again == told                                                          # the same notice id: sent once
