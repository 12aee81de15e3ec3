"""Milestones, referrals, the member day and their reversal (E2, E3, E8's referral
rings, E9, L4), with the default rules, as every LedgerStore must show them: run against
the in-memory fake (tests/unit/test_engagement_memory.py) and DynamoDB in the emulator
(tests/integration/test_engagement_dynamodb.py). Each importing module provides `store`."""
from __future__ import annotations

from datetime import timedelta

import pytest

from loyalty.domain import parse_time
from loyalty.errors import Conflict, Invalid
from loyalty.records import Consent, Profile
from loyalty.rules import build_rules
from loyalty.services.adjustments import adjust_points
from loyalty.services.members import member_view, record_consent, update_profile
from loyalty.services.orders import handle_order_event
from loyalty.services.queries import points_view, reconcile
from loyalty.services.redemptions import redeem
from tests.ledger_contract import T0, cancelled, paid, refunded

RULES = build_rules()          # the defaults: first order +100, 10th +500 and VIP, a gift every 3rd, ...
MEMBER_DAY = parse_time("2026-03-18T10:00:00+08:00")


def entries(store, member="m1") -> list:
    return sorted(store.all_entries(member), key=lambda e: (e.recorded_at, e.entry_id))


def by_rule(store, member="m1") -> dict[str, int]:
    """Points per rule (bonus entries and the refunds that name them)."""
    found: dict[str, int] = {}
    for e in store.all_entries(member):
        rule = e.meta.get("rule")
        if rule:
            found[rule] = found.get(rule, 0) + e.amount
    return found


def balance(store, member="m1") -> int:
    return store.load_account(member, with_lots=False).balance


def progress(store, member="m1"):
    return store.load_account(member, with_lots=False).engagement.progress


def reconciled(store) -> None:
    assert reconcile(store)[1] == []


def join(store, member, referrer=None, at=T0, **fields):
    return update_profile(store, store, Profile(member, referrer=referrer, **fields), RULES, at)


# --- order milestones ---------------------------------------------------------------

def test_the_first_paid_order_earns_its_milestone_as_its_own_entry_in_the_same_credit(store):
    result = handle_order_event(store, RULES, paid("e1", "o1", 5000), T0)
    assert result["points"] == 50 + 100 and balance(store) == 150
    bonus = [e for e in entries(store) if e.meta.get("rule") == "first_order"]
    assert [(b.type.value, b.amount, b.source) for b in bonus] == [("EARN", 100, "order:o1")]
    assert "first_order" in bonus[0].reason
    assert progress(store).orders_paid == 1 and "first_order" in progress(store).rewarded
    assert handle_order_event(store, RULES, paid("e2", "o2", 5000), T0)["points"] == 50   # once per member
    assert handle_order_event(store, RULES, paid("e1", "o1", 5000), T0) == result          # a retry: the same answer
    reconciled(store)


def test_the_tenth_order_earns_500_and_the_vip_badge_and_every_third_a_gift_voucher(store):
    for i in range(1, 11):
        handle_order_event(store, RULES, paid(f"e{i}", f"o{i}", 1000), T0 + timedelta(hours=i))
    assert by_rule(store) == {"first_order": 100, "tenth_order": 500}
    assert balance(store) == 10 * 10 + 600
    assert progress(store).badges == ("VIP",)
    assert member_view(store, store, "m1")["badges"] == ["VIP"]
    gifts = store.list_redemptions("m1")
    assert len(gifts) == 3 and {(g.item_id, g.points, g.status) for g in gifts} == {("upgrade-gift", 0, "completed")}
    assert all(len(g.code) == 12 for g in gifts) and len({g.code for g in gifts}) == 3
    reconciled(store)


def test_an_order_below_one_currency_unit_makes_no_milestone(store):
    assert handle_order_event(store, RULES, paid("e1", "o1", 99), T0)["points"] == 0
    assert progress(store).orders_paid == 0 and balance(store) == 0


# --- the member day -----------------------------------------------------------------

def test_orders_paid_on_the_member_day_earn_double_as_their_own_entry(store):
    handle_order_event(store, RULES, paid("e0", "o0", 1000), T0)           # first order out of the way
    result = handle_order_event(store, RULES, paid("e1", "o1", 12345, at=MEMBER_DAY), MEMBER_DAY)
    assert result["points"] == 143 * 2
    [day] = [e for e in entries(store) if e.meta.get("rule") == "member_day"]
    assert day.amount == 143 and "member_day" in day.reason


def test_the_member_day_is_the_programmes_calendar_day(store):
    handle_order_event(store, RULES, paid("e0", "o0", 1000), T0)
    late_utc = parse_time("2026-03-18T17:00:00+00:00")          # the 19th in Shanghai
    assert handle_order_event(store, RULES, paid("e1", "o1", 10000, at=late_utc), late_utc)["points"] == 120
    early = parse_time("2026-03-17T16:30:00+00:00")             # the 18th in Shanghai
    assert handle_order_event(store, RULES, paid("e2", "o2", 10000, at=early), early)["points"] == 240


# --- reversal -----------------------------------------------------------------------

def test_a_partial_refund_takes_back_the_milestone_in_proportion_and_a_full_one_all(store):
    handle_order_event(store, RULES, paid("e1", "o1", 20000, at=MEMBER_DAY), MEMBER_DAY)   # 220 + 220 + 100
    assert balance(store) == 540
    # a quarter refunded: 55 of the order's, 55 of the member day's, 25 of the milestone's
    assert handle_order_event(store, RULES, refunded("e2", "o1", 20000, 5000), T0)["points"] == -135
    assert by_rule(store) == {"member_day": 165, "first_order": 75}
    assert progress(store).orders_paid == 1          # partly refunded, still an order
    handle_order_event(store, RULES, refunded("e3", "o1", 20000, 3333), T0)
    assert handle_order_event(store, RULES, cancelled("e4", "o1", 20000), T0)
    assert balance(store) == 0 and by_rule(store) == {"member_day": 0, "first_order": 0}
    reasons = [e.reason for e in entries(store) if e.type.value == "REFUND"]
    assert any("first_order" in r for r in reasons) and any("member_day" in r for r in reasons)
    reconciled(store)


def test_a_refunded_first_order_does_not_count_and_the_next_order_is_welcomed(store):
    handle_order_event(store, RULES, paid("e1", "o1", 5000), T0)
    handle_order_event(store, RULES, cancelled("e2", "o1", 5000), T0)
    assert balance(store) == 0
    assert progress(store).orders_paid == 0 and "first_order" not in progress(store).rewarded
    assert handle_order_event(store, RULES, paid("e3", "o2", 3000), T0)["points"] == 30 + 100
    assert progress(store).orders_paid == 1
    reconciled(store)


def test_refunding_the_third_order_withdraws_its_gift_and_the_next_third_order_gives_one_again(store):
    for i in (1, 2, 3):
        handle_order_event(store, RULES, paid(f"e{i}", f"o{i}", 1000), T0)
    [gift] = store.list_redemptions("m1")
    handle_order_event(store, RULES, refunded("r3", "o3", 1000, 1000), T0)
    assert store.get_redemption("m1", gift.redemption_id).status == "cancelled"
    handle_order_event(store, RULES, paid("e4", "o4", 1000), T0)
    assert sorted(r.status for r in store.list_redemptions("m1")) == ["cancelled", "completed"]


def test_refunding_an_earlier_order_does_not_give_the_gift_twice(store):
    for i in (1, 2, 3):
        handle_order_event(store, RULES, paid(f"e{i}", f"o{i}", 1000), T0)
    handle_order_event(store, RULES, cancelled("r2", "o2", 1000), T0)
    handle_order_event(store, RULES, paid("e4", "o4", 1000), T0)       # the third counted order again
    assert [r.status for r in store.list_redemptions("m1")] == ["completed"]


def test_a_refund_of_a_milestone_already_spent_leaves_a_debt_that_new_points_settle(store):
    handle_order_event(store, RULES, paid("e1", "o1", 30000), T0)          # 320 + 100
    redeem(store, RULES, "m1", "free-shipping", "k1", T0)                  # 300 spent
    assert handle_order_event(store, RULES, cancelled("e2", "o1", 30000), T0)["points"] == -420
    account = store.load_account("m1", with_lots=False)
    assert (account.balance, account.debt) == (-300, 300)
    handle_order_event(store, RULES, paid("e3", "o3", 50000), T0)          # 520 + 100 (welcomed again)
    assert store.load_account("m1", with_lots=False).debt == 0 and balance(store) == 320
    reconciled(store)


def test_under_the_clamp_policy_a_spent_milestone_is_not_earned_again_after_a_cancellation(store):
    clamp = build_rules({"refunds": {"negative_balance": "clamp"}})
    handle_order_event(store, clamp, paid("e1", "o1", 30000), T0)          # 320 + 100
    redeem(store, clamp, "m1", "free-shipping", "k1", T0)                  # 300 spent: 120 left
    handle_order_event(store, clamp, cancelled("e2", "o1", 30000), T0)     # takes what is left, no debt
    assert balance(store) == 0 and store.load_account("m1", with_lots=False).debt == 0
    assert "first_order" in progress(store).rewarded                       # not all of it came back
    assert handle_order_event(store, clamp, paid("e3", "o3", 5000), T0)["points"] == 50
    reconciled(store)


# --- referrals -------------------------------------------------------------------------

def test_a_referred_member_and_the_referrer_each_get_50_and_the_referrer_200_on_the_first_order(store):
    join(store, "ana")
    join(store, "bo", referrer="ana", name="Bo")
    assert (balance(store, "ana"), balance(store, "bo")) == (50, 50)
    assert by_rule(store, "ana") == {"referral_join_referrer": 50} and by_rule(store, "bo") == {"referral_join": 50}
    join(store, "bo", referrer="ana", name="Bo B")          # the same join again: nothing more
    assert (balance(store, "ana"), balance(store, "bo")) == (50, 50)
    result = handle_order_event(store, RULES, paid("e1", "o1", 5000, member="bo"), T0)
    assert result["points"] == 150 and balance(store, "ana") == 250
    assert by_rule(store, "ana")["referral_first_order"] == 200
    handle_order_event(store, RULES, paid("e2", "o2", 5000, member="bo"), T0)   # one referral reward per referee
    assert balance(store, "ana") == 250
    reconciled(store)


def test_refunding_the_referees_first_order_takes_the_referrers_reward_back(store):
    join(store, "ana")
    join(store, "bo", referrer="ana")
    handle_order_event(store, RULES, paid("e1", "o1", 10000, member="bo"), T0)
    handle_order_event(store, RULES, refunded("e2", "o1", 10000, 5000, member="bo"), T0)
    assert by_rule(store, "ana")["referral_first_order"] == 100
    handle_order_event(store, RULES, cancelled("e3", "o1", 10000, member="bo"), T0)
    assert by_rule(store, "ana")["referral_first_order"] == 0 and balance(store, "ana") == 50
    assert balance(store, "bo") == 50
    # the order never counted: bo's next first order rewards ana again
    handle_order_event(store, RULES, paid("e4", "o4", 1000, member="bo"), T0)
    assert balance(store, "ana") == 250
    reconciled(store)


def test_self_referral_unknown_referrers_and_switching_are_refused_and_change_nothing(store):
    join(store, "ana")
    with pytest.raises(Invalid) as refused:
        join(store, "bo", referrer="bo")
    assert refused.value.problems[0]["field"] == "referrer"
    with pytest.raises(Invalid) as unknown:
        join(store, "bo", referrer="nobody")
    assert unknown.value.problems[0]["field"] == "referrer"
    assert store.get_profile("bo") is None and balance(store, "bo") == 0
    join(store, "cy")
    join(store, "bo", referrer="ana")
    with pytest.raises(Conflict):
        join(store, "bo", referrer="cy")                     # one referral reward per referee
    assert store.get_profile("bo").referrer == "ana"
    assert join(store, "bo", name="Bo")["referrer"] == "ana"  # left out: the referrer fixed at join stays
    with pytest.raises(Conflict):
        join(store, "cy", referrer="ana")                    # cy joined without one: too late
    assert (balance(store, "ana"), balance(store, "bo"), balance(store, "cy")) == (50, 50, 0)


def open_reviews(store, member) -> dict[str, object]:
    """A member's open referral reviews, by the rule they hold."""
    page, _ = store.reviews_page("open", None, 100)
    return {r.meta["rule"]: r for r in page if r.member_id == member and r.kind == "referral"}


def pending(store, member) -> int:
    return points_view(store, member, T0, "Asia/Shanghai")["pending"]


def ring(store):
    """xi -> yu -> xi: yu's referral credited, xi's a ring, both shares held for review."""
    adjust_points(store, RULES, "xi", 10, "goodwill", "op", "a1", "h1", T0)    # xi exists, has not joined
    join(store, "yu", referrer="xi")                                           # yu -> xi: credited
    assert balance(store, "xi") == 60
    join(store, "xi", referrer="yu", at=T0 + timedelta(minutes=1))             # xi -> yu -> xi: a ring


def test_a_referral_ring_is_held_for_review_each_share_in_its_members_queue_and_credits_nothing(store):
    ring(store)
    assert (balance(store, "xi"), balance(store, "yu")) == (60, 50)
    [mine] = open_reviews(store, "xi").values()
    [theirs] = open_reviews(store, "yu").values()
    assert (mine.meta["rule"], mine.points, mine.kind) == ("referral_join", 50, "referral")
    assert (theirs.meta["rule"], theirs.points) == ("referral_join_referrer", 50)
    assert mine.reason.startswith("referral ring") and theirs.reason == mine.reason
    assert (pending(store, "xi"), pending(store, "yu")) == (50, 50)        # each member's share in its own pending
    assert not [lot for lot in store.load_account("yu").lots if lot.source == "referral:xi"]
    join(store, "xi", referrer="yu", at=T0 + timedelta(minutes=2))          # a retry: nothing more
    assert (pending(store, "xi"), pending(store, "yu")) == (50, 50) and len(open_reviews(store, "yu")) == 1
    reconciled(store)


def test_an_approved_ring_credits_each_share_to_its_member_once_as_the_credit_would_have(store):
    from loyalty.engagement.reviews import decide_review
    ring(store)
    for member in ("xi", "yu"):
        [review] = open_reviews(store, member).values()
        decide_review(store, RULES, review.review_id, "approve", "checked", "op1", T0 + timedelta(hours=1))
        decide_review(store, RULES, review.review_id, "approve", "again", "op1", T0 + timedelta(hours=1))
    assert (balance(store, "xi"), balance(store, "yu")) == (110, 100)
    assert (pending(store, "xi"), pending(store, "yu")) == (0, 0)
    assert by_rule(store, "xi") == {"referral_join": 50, "referral_join_referrer": 50}   # xi referred yu too
    [entry] = [e for e in store.all_entries("yu") if e.meta.get("rule") == "referral_join_referrer"
               and e.source == "referral:xi"]
    assert entry.amount == 50 and "referral_join_referrer" in entry.reason and entry.meta["approved_by"] == "op1"
    assert [lot.points for lot in store.load_account("yu").lots if lot.source == "referral:xi"] == [50]
    reconciled(store)


def test_a_rejected_ring_drops_both_shares(store):
    from loyalty.engagement.reviews import decide_review
    ring(store)
    for member in ("xi", "yu"):
        [review] = open_reviews(store, member).values()
        decide_review(store, RULES, review.review_id, "reject", "a ring", "op1", T0 + timedelta(hours=1))
    assert (balance(store, "xi"), balance(store, "yu")) == (60, 50)
    assert (pending(store, "xi"), pending(store, "yu")) == (0, 0)
    reconciled(store)


def test_a_flagged_referees_first_order_holds_the_referrers_200_in_the_referrers_queue(store):
    from loyalty.engagement.reviews import decide_review
    ring(store)
    result = handle_order_event(store, RULES, paid("e1", "o1", 1000, member="xi"), T0 + timedelta(hours=1))
    assert result["points"] == 10 + 100 and balance(store, "yu") == 50       # the referee's own points credited
    held = open_reviews(store, "yu")["referral_first_order"]
    assert (held.points, held.source, held.reason) == (200, "order:o1", open_reviews(store, "xi")["referral_join"].reason)
    assert pending(store, "yu") == 50 + 200
    assert handle_order_event(store, RULES, paid("e1", "o1", 1000, member="xi"), T0 + timedelta(hours=1)) == result
    assert pending(store, "yu") == 250                                          # a retry holds nothing more
    decide_review(store, RULES, held.review_id, "approve", "ok", "op1", T0 + timedelta(hours=2))
    assert by_rule(store, "yu")["referral_first_order"] == 200 and balance(store, "yu") == 250
    # approved, it is taken back with the order as a credited share is: in proportion, then in full
    handle_order_event(store, RULES, refunded("e2", "o1", 1000, 250, member="xi"), T0 + timedelta(hours=3))
    assert by_rule(store, "yu")["referral_first_order"] == 150
    handle_order_event(store, RULES, cancelled("e3", "o1", 1000, member="xi"), T0 + timedelta(hours=4))
    assert by_rule(store, "yu")["referral_first_order"] == 0 and balance(store, "yu") == 50
    reconciled(store)


def test_a_refund_shrinks_an_open_first_order_review_and_a_full_one_closes_it(store):
    from loyalty.engagement.reviews import decide_review
    ring(store)
    handle_order_event(store, RULES, paid("e1", "o1", 1000, member="xi"), T0 + timedelta(hours=1))
    review_id = open_reviews(store, "yu")["referral_first_order"].review_id
    handle_order_event(store, RULES, refunded("e2", "o1", 1000, 250, member="xi"), T0 + timedelta(hours=2))
    assert open_reviews(store, "yu")["referral_first_order"].points == 150 and pending(store, "yu") == 50 + 150
    handle_order_event(store, RULES, refunded("e3", "o1", 1000, 750, member="xi"), T0 + timedelta(hours=3))
    closed = store.get_review(review_id)
    assert (closed.status, closed.note) == ("rejected", "order refunded: the referee's first order")
    assert pending(store, "yu") == 50 and balance(store, "yu") == 50
    with pytest.raises(Conflict):   # nothing left to approve
        decide_review(store, RULES, review_id, "approve", "late", "op1", T0 + timedelta(hours=4))
    assert balance(store, "yu") == 50
    reconciled(store)


def test_many_referrals_from_one_source_within_a_day_are_held(store):
    join(store, "src")
    for i in range(6):
        join(store, f"r{i}", referrer="src", at=T0 + timedelta(minutes=i))
    assert balance(store, "src") == 5 * 50
    assert progress(store, "r5").held[0][3].startswith("many referrals from one source")
    assert balance(store, "r5") == 0
    join(store, "late", referrer="src", at=T0 + timedelta(days=1, minutes=10))   # a day later: credited
    assert balance(store, "late") == 50


# --- profile and consent milestones ----------------------------------------------------------

def test_a_completed_profile_earns_30_once(store):
    join(store, "ana", name="Ana")
    assert balance(store, "ana") == 0
    complete = dict(name="Ana", phone="+85291230001", locale="en", birthday="1990-05-01")
    join(store, "ana", **complete)
    join(store, "ana", **{**complete, "name": "Ana L"})
    assert by_rule(store, "ana") == {"profile_completed": 30} and balance(store, "ana") == 30


def test_the_first_opt_in_on_any_channel_earns_50_once(store):
    record_consent(store, Consent("ana", "sms", "opted_out", "api", T0), store, RULES, T0)
    assert balance(store, "ana") == 0
    record_consent(store, Consent("ana", "whatsapp", "opted_in", "checkout_checkbox", T0), store, RULES, T0)
    record_consent(store, Consent("ana", "wechat", "opted_in", "wechat:follow", T0), store, RULES, T0)
    assert by_rule(store, "ana") == {"first_opt_in": 50} and balance(store, "ana") == 50
    reconciled(store)


# --- pending points: the return window (L5) ------------------------------------------------------

WINDOW = build_rules({"pending": {"return_window_days": 14}})


def release(store, at):
    from loyalty.services.pending import release_pending
    return release_pending(store, WINDOW, at, 4, 7)


def test_order_points_wait_out_the_return_window_unspendable_then_become_a_lot(store):
    result = handle_order_event(store, WINDOW, paid("e1", "o1", 5000), T0)
    assert result["points"] == 0 and balance(store) == 0                        # nothing credited yet
    view = points_view(store, "m1", T0, "Asia/Shanghai")
    assert (view["pending"], view["spendable"], view["lots"]) == (150, 0, [])   # 50 + the first order's 100
    with pytest.raises(Conflict):
        redeem(store, WINDOW, "m1", "free-shipping", "k1", T0)
    assert release(store, T0 + timedelta(days=13)) == 0
    assert release(store, T0 + timedelta(days=14)) == 1
    view = points_view(store, "m1", T0 + timedelta(days=14), "Asia/Shanghai")
    assert (view["balance"], view["pending"], view["spendable"]) == (150, 0, 150)
    assert by_rule(store) == {"first_order": 100}
    assert release(store, T0 + timedelta(days=15)) == 0                         # never twice
    reconciled(store)


def test_a_refund_inside_the_window_takes_from_the_pending_points_and_leaves_no_debt(store):
    handle_order_event(store, WINDOW, paid("e1", "o1", 20000), T0)               # 220 + 100 pending
    assert handle_order_event(store, WINDOW, refunded("e2", "o1", 20000, 5000), T0)["points"] == 0
    assert points_view(store, "m1", T0, "Asia/Shanghai")["pending"] == 165 + 75
    release(store, T0 + timedelta(days=15))
    assert balance(store) == 240 and store.load_account("m1", with_lots=False).engagement.pending == 0
    # after the release a refund takes from the lot, as without a window
    assert handle_order_event(store, WINDOW, cancelled("e3", "o1", 20000), T0 + timedelta(days=16))["points"] == -240
    assert balance(store) == 0
    reconciled(store)


def test_a_cancellation_inside_the_window_drops_the_pending_points_and_the_release_finds_nothing(store):
    handle_order_event(store, WINDOW, paid("e1", "o1", 5000), T0)
    handle_order_event(store, WINDOW, cancelled("e2", "o1", 5000), T0 + timedelta(days=1))
    account = store.load_account("m1", with_lots=False)
    assert (account.balance, account.debt, account.engagement.pending) == (0, 0, 0)
    assert account.engagement.progress.orders_paid == 0
    assert release(store, T0 + timedelta(days=15)) == 0 and balance(store) == 0
    reconciled(store)


def test_referees_first_orders_at_once_credit_their_referrer_each_once(store):
    from concurrent.futures import ThreadPoolExecutor
    join(store, "ana")
    referees = [f"r{i}" for i in range(5)]
    for i, member in enumerate(referees):
        join(store, member, referrer="ana", at=T0 + timedelta(minutes=i))
    with ThreadPoolExecutor(max_workers=5) as pool:
        results = list(pool.map(lambda m: handle_order_event(store, RULES, paid(f"e-{m}", f"o-{m}", 1000, member=m), T0),
                                referees))
    assert [r["points"] for r in results] == [110] * 5
    assert balance(store, "ana") == 5 * 50 + 5 * 200
    reconciled(store)


# --- points-credited notices beyond the caller's answer ----------------------------------------

def test_a_referrers_rewards_tell_of_the_points_credited_to_them_and_a_retry_tells_the_same(store):
    join(store, "ana")
    told: list = []
    update_profile(store, store, Profile("bo", referrer="ana"), RULES, T0, told)
    assert told == [{"kind": "points_credited", "event_id": "referral#bo#join", "member_id": "ana", "points": 50,
                     "balance": 50}]
    told = []
    result = handle_order_event(store, RULES, paid("e1", "o1", 1000, member="bo"), T0, told)
    assert "credited" not in result                                       # the contract's answer only
    assert told == [{"kind": "points_credited", "event_id": "e1#ana", "member_id": "ana", "points": 200,
                     "balance": 250}]
    again: list = []
    assert handle_order_event(store, RULES, paid("e1", "o1", 1000, member="bo"), T0, again) == result
    assert again == told


def test_a_held_referral_tells_of_no_credit(store):
    ring(store)
    told: list = []
    handle_order_event(store, RULES, paid("e1", "o1", 1000, member="xi"), T0 + timedelta(hours=1), told)
    assert told == []


def test_released_pending_points_tell_of_the_points_credited(store):
    from loyalty.services.pending import release_pending
    handle_order_event(store, WINDOW, paid("e1", "o1", 5000), T0)
    told: list = []
    assert release_pending(store, WINDOW, T0 + timedelta(days=14), 4, 7, told) == 1
    assert told == [{"kind": "points_credited", "event_id": "release#o1", "member_id": "m1", "points": 150,
                     "balance": 150}]
    assert release_pending(store, WINDOW, T0 + timedelta(days=14), 4, 7, told) == 0 and len(told) == 1
