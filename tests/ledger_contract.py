"""Ledger behaviour every LedgerStore must show. Run against the in-memory fake
(tests/unit) and against DynamoDB in the emulator (tests/integration): the fake is only
trusted because both pass the same tests. Each module that imports these provides a
`store` fixture."""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from loyalty.domain import parse_time
from loyalty.errors import ConcurrentUpdate, Conflict, Invalid, NotFound
from loyalty.rules import build_rules
from loyalty.services.adjustments import adjust_points
from loyalty.services.expiry import expire_due_lots
from loyalty.services.orders import OrderEvent, handle_order_event
from loyalty.services.queries import ledger_page, points_view, reconcile
from loyalty.services.redemptions import cancel_redemption, fulfil_redemption, redeem
from tests.orders_only import ORDERS_ONLY

T0 = parse_time("2026-03-10T10:00:00+08:00")
# The ledger's own behaviour, without what engagement adds on orders (tests/orders_only.py)
RULES = build_rules(ORDERS_ONLY)


def paid(event_id: str, order_id: str, amount: int, at: datetime = T0, member: str = "m1", currency: str = "CNY"):
    return OrderEvent(event_id, "order.paid", at, order_id, member, amount, currency, None, "h-" + event_id)


def refunded(event_id: str, order_id: str, amount: int, refund: int, at: datetime = T0, member: str = "m1"):
    return OrderEvent(event_id, "order.refunded", at, order_id, member, amount, "CNY", refund, "h-" + event_id)


def cancelled(event_id: str, order_id: str, amount: int, at: datetime = T0, member: str = "m1"):
    return OrderEvent(event_id, "order.cancelled", at, order_id, member, amount, "CNY", None, "h-" + event_id)


def balance(store, member="m1") -> int:
    return store.load_account(member, with_lots=False).balance


def assert_reconciled(store):
    checked, bad = reconcile(store)
    assert bad == []
    return checked


def expire(store, at: datetime):
    return expire_due_lots(store, at, 4, 7)


# --- earning ------------------------------------------------------------------------

@pytest.mark.parametrize("amount, points", [(0, 0), (99, 0), (9999, 99), (10000, 120), (12345, 143)])
def test_paid_order_earns_one_point_per_unit_and_the_threshold_bonus(store, amount, points):
    result = handle_order_event(store, RULES, paid("e1", "o1", amount), T0)
    assert result == {"event_id": "e1", "member_id": "m1", "points": points, "balance": points}
    assert balance(store) == points
    assert_reconciled(store)


def test_zero_decimal_currency_counts_whole_units(store):
    assert handle_order_event(store, RULES, paid("e1", "o1", 250, currency="JPY"), T0)["points"] == 270


def test_the_same_event_twice_credits_once_and_answers_the_same(store):
    first = handle_order_event(store, RULES, paid("e1", "o1", 12345), T0)
    handle_order_event(store, RULES, paid("e2", "o2", 5000), T0)
    again = handle_order_event(store, RULES, paid("e1", "o1", 12345), T0 + timedelta(minutes=3))
    assert again == first
    assert balance(store) == 143 + 50


def test_the_same_event_id_with_another_body_is_a_conflict_and_changes_nothing(store):
    handle_order_event(store, RULES, paid("e1", "o1", 12345), T0)
    other = OrderEvent("e1", "order.paid", T0, "o1", "m1", 99999, "CNY", None, "another-hash")
    with pytest.raises(Conflict):
        handle_order_event(store, RULES, other, T0)
    assert balance(store) == 143


def test_an_order_paid_again_under_a_new_event_id_earns_nothing_more(store):
    handle_order_event(store, RULES, paid("e1", "o1", 12345), T0)
    assert handle_order_event(store, RULES, paid("e2", "o1", 12345), T0)["points"] == 0
    assert balance(store) == 143


def test_an_order_of_another_member_is_a_conflict(store):
    handle_order_event(store, RULES, paid("e1", "o1", 12345), T0)
    with pytest.raises(Conflict):
        handle_order_event(store, RULES, refunded("e2", "o1", 12345, 100, member="m2"), T0)
    assert balance(store, "m2") == 0 and balance(store) == 143


# --- expiry -------------------------------------------------------------------------

def test_points_expire_twelve_months_after_the_order_and_never_twice(store):
    handle_order_event(store, RULES, paid("e1", "o1", 12345), T0)
    due = parse_time("2027-03-10T10:00:00+08:00")
    assert expire(store, due - timedelta(seconds=1)).lots_expired == 0
    assert balance(store) == 143
    summary = expire(store, due)
    assert (summary.lots_expired, summary.points_expired) == (1, 143)
    assert balance(store) == 0
    assert expire(store, due + timedelta(days=1)).lots_expired == 0
    assert expire(store, due).lots_expired == 0  # a re-run for the same date
    entries = ledger_page(store, "m1", None, 10)["entries"]
    assert [e["type"] for e in entries] == ["EXPIRE", "EARN"]
    assert_reconciled(store)


def test_a_missed_night_is_made_up_by_the_next_run(store):
    handle_order_event(store, RULES, paid("e1", "o1", 5000), T0)
    assert expire(store, parse_time("2027-03-13T00:05:00+08:00")).points_expired == 50


def test_expiry_takes_only_what_is_left_of_a_lot(store):
    handle_order_event(store, RULES, paid("e1", "o1", 200000), T0)
    redeem(store, RULES, "m1", "coupon-10", "k1", T0 + timedelta(days=1))
    summary = expire(store, parse_time("2027-03-11T00:00:00+08:00"))
    assert summary.points_expired == 2020 - 1000
    assert balance(store) == 0
    assert_reconciled(store)


def test_an_order_reported_after_its_points_lifetime_arrives_expired(store):
    old = T0 - timedelta(days=400)
    result = handle_order_event(store, RULES, paid("e1", "o1", 5000, at=old), T0)
    assert result["points"] == 0 and balance(store) == 0
    assert [e["type"] for e in ledger_page(store, "m1", None, 10)["entries"]] == ["EXPIRE", "EARN"]


# --- spending and refunds -------------------------------------------------------------

def test_spending_takes_the_soonest_expiring_lot_first(store):
    handle_order_event(store, RULES, paid("e2", "o2", 80000, at=T0 + timedelta(days=30)), T0 + timedelta(days=30))
    handle_order_event(store, RULES, paid("e1", "o1", 50000, at=T0), T0 + timedelta(days=30))
    redeem(store, RULES, "m1", "free-shipping", "k1", T0 + timedelta(days=31))
    lots = {lot["source"]: lot["remaining"] for lot in points_view(store, "m1", T0, "Asia/Shanghai")["lots"]}
    assert lots == {"order:o1": 220, "order:o2": 820}
    redeem(store, RULES, "m1", "coupon-10", "k2", T0 + timedelta(days=31))
    lots = {lot["source"]: lot["remaining"] for lot in points_view(store, "m1", T0, "Asia/Shanghai")["lots"]}
    assert lots == {"order:o2": 40}


def test_partial_refunds_take_back_points_in_proportion_and_a_full_refund_all(store):
    handle_order_event(store, RULES, paid("e1", "o1", 20000), T0)  # 220 points
    assert handle_order_event(store, RULES, refunded("e2", "o1", 20000, 5000), T0)["points"] == -55
    assert handle_order_event(store, RULES, refunded("e3", "o1", 20000, 3333), T0)["points"] == -36
    assert handle_order_event(store, RULES, refunded("e4", "o1", 20000, 11667), T0)["points"] == -129
    assert balance(store) == 0
    assert_reconciled(store)


def test_a_refund_above_what_was_paid_is_refused_and_changes_nothing(store):
    handle_order_event(store, RULES, paid("e1", "o1", 20000), T0)
    handle_order_event(store, RULES, refunded("e2", "o1", 20000, 15000), T0)
    with pytest.raises(Conflict):
        handle_order_event(store, RULES, refunded("e3", "o1", 20000, 6000), T0)
    assert balance(store) == 220 - 165


def test_a_cancellation_takes_back_what_is_left_of_the_order(store):
    handle_order_event(store, RULES, paid("e1", "o1", 20000), T0)
    handle_order_event(store, RULES, refunded("e2", "o1", 20000, 5000), T0)
    assert handle_order_event(store, RULES, cancelled("e3", "o1", 20000), T0)["points"] == -165
    assert handle_order_event(store, RULES, cancelled("e4", "o1", 20000), T0)["points"] == 0
    assert balance(store) == 0


def test_refunding_spent_points_leaves_a_negative_balance_that_new_points_settle(store):
    handle_order_event(store, RULES, paid("e1", "o1", 100000), T0)  # 1020
    redeem(store, RULES, "m1", "coupon-10", "k1", T0)
    result = handle_order_event(store, RULES, cancelled("e2", "o1", 100000), T0)
    assert result == {"event_id": "e2", "member_id": "m1", "points": -1020, "balance": -1000}
    handle_order_event(store, RULES, paid("e3", "o3", 150000), T0)  # 1520
    assert balance(store) == 520
    view = points_view(store, "m1", T0, "Asia/Shanghai")
    assert [lot["remaining"] for lot in view["lots"]] == [520]
    assert_reconciled(store)


def test_the_clamp_policy_stops_at_zero_and_records_the_shortfall(store):
    rules = build_rules({**ORDERS_ONLY, "refunds": {"negative_balance": "clamp"}})
    handle_order_event(store, rules, paid("e1", "o1", 100000), T0)
    redeem(store, rules, "m1", "coupon-10", "k1", T0)
    assert handle_order_event(store, rules, cancelled("e2", "o1", 100000), T0)["points"] == -20
    assert balance(store) == 0
    entry = ledger_page(store, "m1", None, 1)["entries"][0]
    assert entry["meta"]["shortfall"] == 1000
    assert_reconciled(store)


def test_a_refund_reported_before_the_payment_is_applied_when_the_payment_arrives(store):
    assert handle_order_event(store, RULES, refunded("e2", "o1", 20000, 10000), T0)["points"] == 0
    assert handle_order_event(store, RULES, paid("e1", "o1", 20000), T0)["points"] == 110
    assert balance(store) == 110
    assert_reconciled(store)


# --- redemptions ---------------------------------------------------------------------

def test_redeeming_without_enough_points_is_refused(store):
    handle_order_event(store, RULES, paid("e1", "o1", 5000), T0)
    with pytest.raises(Conflict):
        redeem(store, RULES, "m1", "coupon-10", "k1", T0)
    assert balance(store) == 50


def test_an_unknown_item_is_invalid(store):
    with pytest.raises(Invalid):
        redeem(store, RULES, "m1", "no-such-item", "k1", T0)


def test_a_redemption_retried_with_its_key_is_not_debited_twice(store):
    handle_order_event(store, RULES, paid("e1", "o1", 300000), T0)
    first, created = redeem(store, RULES, "m1", "coupon-10", "k1", T0)
    again, created_again = redeem(store, RULES, "m1", "coupon-10", "k1", T0)
    assert created and not created_again and again == first
    assert balance(store) == 3020 - 1000
    with pytest.raises(Conflict):
        redeem(store, RULES, "m1", "coupon-50", "k1", T0)


def test_cancelling_a_redemption_returns_points_to_their_lots_and_expired_ones_expire(store):
    handle_order_event(store, RULES, paid("e1", "o1", 50000), T0)                        # 520, expires 2027-03-10
    later = T0 + timedelta(days=60)
    handle_order_event(store, RULES, paid("e2", "o2", 80000, at=later), later)           # 820, expires 2027-05-09
    redemption, _ = redeem(store, RULES, "m1", "coupon-10", "k1", later)                  # 520 from o1, 480 from o2
    assert [n for _, n in redemption.allocation] == [520, 480]
    cancel_at = parse_time("2027-04-01T00:00:00+08:00")                                   # o1 has expired meanwhile
    cancelled_redemption = cancel_redemption(store, RULES, "m1", redemption.redemption_id, "customer asked", cancel_at)
    assert cancelled_redemption.status == "cancelled"
    assert balance(store) == 820
    types = [(e["type"], e["amount"]) for e in ledger_page(store, "m1", None, 3)["entries"]]
    assert types == [("EXPIRE", -520), ("REVERSAL", 1000), ("SPEND", -1000)]
    again = cancel_redemption(store, RULES, "m1", redemption.redemption_id, "again", cancel_at)
    assert again.status == "cancelled" and balance(store) == 820
    assert_reconciled(store)


def test_a_pending_redemption_holds_points_until_fulfilled_or_released(store):
    handle_order_event(store, RULES, paid("e1", "o1", 600000), T0)  # 6020
    mug, _ = redeem(store, RULES, "m1", "coffee-mug", "k1", T0)
    assert mug.status == "pending" and balance(store) == 3520
    assert fulfil_redemption(store, "m1", mug.redemption_id, T0).status == "fulfilled"
    second, _ = redeem(store, RULES, "m1", "coffee-mug", "k2", T0)
    cancel_redemption(store, RULES, "m1", second.redemption_id, "changed mind", T0)
    assert balance(store) == 3520
    assert [e["type"] for e in ledger_page(store, "m1", None, 10)["entries"]] == \
        ["RELEASE", "HOLD", "CAPTURE", "HOLD", "EARN"]
    with pytest.raises(NotFound):
        fulfil_redemption(store, "m1", "r-nope", T0)


def test_an_item_out_of_stock_is_refused(store):
    rules = build_rules({**ORDERS_ONLY, "catalog": [{"item_id": "rare", "name": "Rare", "points": 10, "stock": 1}]})
    handle_order_event(store, rules, paid("e1", "o1", 5000), T0)
    redeem(store, rules, "m1", "rare", "k1", T0)
    with pytest.raises(Conflict):
        redeem(store, rules, "m1", "rare", "k2", T0)
    assert balance(store) == 40


# --- adjustments and the ledger --------------------------------------------------------

def test_adjustments_add_and_remove_points_once_per_key_and_never_below_zero(store):
    add, created = adjust_points(store, RULES, "m1", 500, "goodwill", "op-7", "a1", "h1", T0)
    assert created and add["balance"] == 500
    assert adjust_points(store, RULES, "m1", 500, "goodwill", "op-7", "a1", "h1", T0) == (add, False)
    with pytest.raises(Conflict):
        adjust_points(store, RULES, "m1", 600, "goodwill", "op-7", "a1", "h2", T0)
    assert adjust_points(store, RULES, "m1", -200, "correction", "op-7", "a2", "h3", T0)[0]["balance"] == 300
    with pytest.raises(Conflict):
        adjust_points(store, RULES, "m1", -301, "too much", "op-7", "a3", "h4", T0)
    entry = ledger_page(store, "m1", None, 1)["entries"][0]
    assert entry["type"] == "ADJUST" and entry["source"] == "operator:op-7" and entry["reason"] == "correction"
    assert_reconciled(store)


def test_the_ledger_pages_newest_first_with_the_balance_after_each_entry(store):
    for i in range(7):
        handle_order_event(store, RULES, paid(f"e{i}", f"o{i}", 1000 * (i + 1)), T0 + timedelta(minutes=i))
    first = ledger_page(store, "m1", None, 3)
    second = ledger_page(store, "m1", first["next_cursor"], 3)
    third = ledger_page(store, "m1", second["next_cursor"], 3)
    entries = first["entries"] + second["entries"] + third["entries"]
    assert third["next_cursor"] is None
    assert [e["amount"] for e in entries] == [70, 60, 50, 40, 30, 20, 10]
    assert [e["balance_after"] for e in entries] == [280, 210, 150, 100, 60, 30, 10]
    with pytest.raises(Invalid):
        ledger_page(store, "m1", "garbage", 3)


def test_points_view_groups_expiring_points_by_local_date(store):
    handle_order_event(store, RULES, paid("e1", "o1", 5000, at=parse_time("2026-03-10T23:30:00+08:00")), T0)
    handle_order_event(store, RULES, paid("e2", "o2", 3000, at=parse_time("2026-03-10T08:00:00+08:00")), T0)
    view = points_view(store, "m1", T0, "Asia/Shanghai")
    assert view["balance"] == 80
    assert view["expiring"] == [{"date": "2027-03-10", "points": 80}]
    assert points_view(store, "m1", T0, "UTC")["expiring"] == [{"date": "2027-03-10", "points": 80}]


def test_points_past_their_expiry_before_the_nightly_run_are_not_spendable_nor_expiring(store):
    handle_order_event(store, RULES, paid("e1", "o1", 5000, at=parse_time("2026-03-10T08:00:00+08:00")), T0)
    handle_order_event(store, RULES, paid("e2", "o2", 3000, at=parse_time("2026-03-20T08:00:00+08:00")), T0)
    after = parse_time("2027-03-10T09:00:00+08:00")           # the first lot ran out an hour ago
    view = points_view(store, "m1", after, "Asia/Shanghai")
    assert (view["balance"], view["spendable"]) == (80, 30)
    assert view["expiring"] == [{"date": "2027-03-20", "points": 30}]
    assert [lot["expired"] for lot in view["lots"]] == [True, False]
    expire(store, parse_time("2027-03-11T00:05:00+08:00"))
    view = points_view(store, "m1", after, "Asia/Shanghai")
    assert (view["balance"], view["spendable"]) == (30, 30)


# --- disputes --------------------------------------------------------------------------

def test_a_dispute_waits_for_review_and_an_upheld_one_adds_a_correcting_entry(store):
    from loyalty.services.disputes import open_dispute, resolve_dispute
    handle_order_event(store, RULES, paid("e1", "o1", 12345), T0)
    entry_id = ledger_page(store, "m1", None, 1)["entries"][0]["entry_id"]
    dispute, created = open_dispute(store, store, "m1", entry_id, "the bonus is missing", "k1", T0)
    assert created and dispute.status == "open"
    assert open_dispute(store, store, "m1", entry_id, "the bonus is missing", "k1", T0) == (dispute, False)
    assert [d.dispute_id for d in store.open_disputes(10)] == [dispute.dispute_id]
    with pytest.raises(Invalid):
        open_dispute(store, store, "m1", "no-such-entry", "?", "k2", T0)
    resolved = resolve_dispute(store, store, RULES, "m1", dispute.dispute_id, "upheld", 20, "op-1", "bonus added", T0)
    assert resolved.status == "upheld" and store.open_disputes(10) == []
    assert resolve_dispute(store, store, RULES, "m1", dispute.dispute_id, "upheld", 20, "op-1", "bonus added",
                           T0) == resolved
    with pytest.raises(Conflict):
        resolve_dispute(store, store, RULES, "m1", dispute.dispute_id, "rejected", 0, "op-2", "no", T0)
    assert balance(store) == 163
    newest = ledger_page(store, "m1", None, 1)["entries"][0]
    assert newest["type"] == "ADJUST" and newest["amount"] == 20 and dispute.dispute_id in newest["reason"]
    assert_reconciled(store)


# --- contacts: one member per phone number or OpenID ------------------------------------

def profile(member: str, **fields) -> "Profile":
    from loyalty.records import Profile
    return Profile(member_id=member, name=fields.pop("name", member.upper()), **fields)


def test_a_contact_another_member_holds_is_refused_and_nothing_changes(store):
    from loyalty.errors import ContactTaken
    from loyalty.services.members import update_profile
    update_profile(store, store, profile("ana", phone="+85291230001", wechat_openid="oAnaOpenId0001"))
    update_profile(store, store, profile("bo", name="Bo", phone="+85291230002"))
    for fields, named in (({"phone": "+85291230001"}, ["phone"]),
                          ({"phone": "+85291230002", "wechat_openid": "oAnaOpenId0001"}, ["wechat_openid"]),
                          ({"phone": "+85291230001", "wechat_openid": "oAnaOpenId0001"}, ["phone", "wechat_openid"])):
        with pytest.raises(ContactTaken) as refused:
            update_profile(store, store, profile("bo", name="Bob", **fields))
        assert refused.value.problems == [{"field": f, "problem": "held by another member"} for f in named]
        assert "ana" not in str(refused.value)
    assert store.get_profile("bo") == profile("bo", name="Bo", phone="+85291230002")     # untouched
    assert store.member_for_contact("PHONE", "+85291230001") == "ana"
    assert store.member_for_contact("OPENID", "oAnaOpenId0001") == "ana"
    assert store.member_for_contact("PHONE", "+85291230002") == "bo"
    with pytest.raises(ContactTaken):   # a member without a profile yet gets none either
        update_profile(store, store, profile("cy", phone="+85291230001"))
    assert store.get_profile("cy") is None


def test_putting_ones_own_contacts_again_is_fine(store):
    from loyalty.services.members import update_profile
    for name in ("Ana", "Ana", "Ana Li"):
        view = update_profile(store, store, profile("ana", name=name, phone="+85291230001",
                                                    wechat_openid="oAnaOpenId0001"))
        assert (view["name"], view["phone"]) == (name, "+85291230001")
    assert store.member_for_contact("PHONE", "+85291230001") == "ana"
    assert store.member_for_contact("OPENID", "oAnaOpenId0001") == "ana"


def test_changing_or_clearing_a_contact_releases_it_for_another_member(store):
    from loyalty.services.members import update_profile
    update_profile(store, store, profile("ana", phone="+85291230001", wechat_openid="oAnaOpenId0001"))
    update_profile(store, store, profile("ana", phone="+85291230009"))       # new phone; OpenID left out = cleared
    assert store.member_for_contact("PHONE", "+85291230001") is None
    assert store.member_for_contact("OPENID", "oAnaOpenId0001") is None
    assert store.member_for_contact("PHONE", "+85291230009") == "ana"
    update_profile(store, store, profile("bo", phone="+85291230001", wechat_openid="oAnaOpenId0001"))
    assert store.member_for_contact("PHONE", "+85291230001") == "bo"
    assert store.member_for_contact("OPENID", "oAnaOpenId0001") == "bo"
    update_profile(store, store, profile("ana", phone=None))                    # null: released too
    assert store.member_for_contact("PHONE", "+85291230009") is None
    update_profile(store, store, profile("cy", phone="+85291230009"))
    assert store.member_for_contact("PHONE", "+85291230009") == "cy"


def test_inbound_messages_reach_the_member_holding_the_contact_then_the_next_one(store):
    from loyalty.channels.inbound import ChannelEvent
    from loyalty.messaging.conversations import apply_event
    from loyalty.messaging.dispatch import MARKETING_SCOPE
    from loyalty.services.members import update_profile
    marketing = MARKETING_SCOPE["whatsapp"]

    def stop_marketing(n: int):   # WhatsApp's "stop marketing" from the number, as parse_whatsapp gives it
        return apply_event(ChannelEvent("whatsapp", "85291230001", "stop_marketing", "stop", None, f"wa#{n}"),
                           store, T0 + timedelta(minutes=n))

    def unfollow(n: int):
        return apply_event(ChannelEvent("wechat", "oAnaOpenId0001", "unfollow", "unsubscribe", None, f"wx#{n}"),
                           store, T0 + timedelta(minutes=n))

    update_profile(store, store, profile("ana", phone="+85291230001", wechat_openid="oAnaOpenId0001"))
    assert stop_marketing(1).handled == "consent:opted_out" and unfollow(1).handled == "consent:opted_out"
    assert len(store.consent_history("ana", marketing)) == 1 and len(store.consent_history("ana", "wechat")) == 1
    update_profile(store, store, profile("ana", phone="+85291230009"))
    update_profile(store, store, profile("bo", phone="+85291230001", wechat_openid="oAnaOpenId0001"))
    stop_marketing(2), unfollow(2)
    assert len(store.consent_history("bo", marketing)) == 1 and len(store.consent_history("bo", "wechat")) == 1
    assert len(store.consent_history("ana", marketing)) == 1 and len(store.consent_history("ana", "wechat")) == 1


def test_members_claiming_one_phone_at_once_leave_exactly_one_holder(store):
    import threading

    from loyalty.errors import ContactTaken
    from loyalty.services.members import update_profile
    members = [f"m{i}" for i in range(4)]
    start, won, refused = threading.Barrier(len(members)), [], []

    def claim(member: str):
        start.wait()
        try:
            update_profile(store, store, profile(member, phone="+85291230001"))
            won.append(member)
        except ContactTaken:
            refused.append(member)

    threads = [threading.Thread(target=claim, args=(m,)) for m in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and sorted(won + refused) == members
    assert store.member_for_contact("PHONE", "+85291230001") == won[0]
    assert all(store.get_profile(m) is None for m in refused)


def test_concurrent_changes_of_one_profile_leave_no_alias_behind(store):
    import threading

    from loyalty.services.members import update_profile
    update_profile(store, store, profile("ana", phone="+85291230001"))
    phones = [f"+8529123001{i}" for i in range(4)]
    start, failed = threading.Barrier(len(phones)), []

    def change(phone: str):
        start.wait()
        try:
            update_profile(store, store, profile("ana", phone=phone))
        except Exception as exc:  # noqa: BLE001 - reported below, not lost in the thread
            failed.append(exc)

    threads = [threading.Thread(target=change, args=(p,)) for p in phones]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failed == []
    final = store.get_profile("ana").phone
    assert final in phones
    assert {p: store.member_for_contact("PHONE", p) for p in ["+85291230001", *phones]} == {
        p: ("ana" if p == final else None) for p in ["+85291230001", *phones]}


# --- what each store keeps exactly as given ----------------------------------------------

def test_a_profile_in_any_script_is_kept_as_given_and_can_be_changed_again(store):
    from loyalty.records import Profile
    from loyalty.services.members import update_profile
    given = Profile("ana", name="李雷 (Lǐ Léi)", phone="+8613800138000", wechat_openid="oAnaOpenId0001",
                    locale="zh-CN", time_zone="Asia/Shanghai", preferred_channels=("wechat", "sms"),
                    birthday="1990-05-01", referrer="m-bo", extra={"门店": "静安寺", "vip": True, "visits": 3})
    update_profile(store, store, given)
    assert store.get_profile("ana") == given
    # the next write is conditional on the profile as read: it must hold on the same text
    again = Profile("ana", name="李雷", phone="+8613800138000", preferred_channels=("wechat",))
    assert update_profile(store, store, again)["name"] == "李雷"
    assert store.get_profile("ana") == again
    assert store.member_for_contact("OPENID", "oAnaOpenId0001") is None


def test_a_channels_consent_history_is_newest_first_and_an_opt_out_wins_a_tie(store):
    from loyalty.records import Consent
    from loyalty.services.members import consent_view, record_consent
    record_consent(store, Consent("ana", "sms", "opted_in", "checkout_checkbox", T0, proof="form-1"))
    record_consent(store, Consent("ana", "sms", "opted_in", "checkout_checkbox", T0, proof="form-1"))  # again
    record_consent(store, Consent("ana", "sms", "opted_out", "keyword:STOP", T0 + timedelta(hours=1)))
    record_consent(store, Consent("ana", "sms", "opted_in", "api", T0 + timedelta(hours=1)))   # the same instant
    record_consent(store, Consent("ana", "wechat", "opted_in", "follow", T0))
    view = consent_view(store, "ana", "sms")
    assert view["status"] == "opted_out"
    assert [(c["status"], c["source"]) for c in view["history"]] == [
        ("opted_out", "keyword:STOP"), ("opted_in", "api"), ("opted_in", "checkout_checkbox")]
    assert view["history"][-1] == {"status": "opted_in", "source": "checkout_checkbox", "at": T0.isoformat(),
                                   "proof": "form-1"}
    assert [c.channel for c in store.consent_history("ana", "wechat")] == ["wechat"]


def test_entries_keep_their_reason_meta_and_lots_and_the_last_full_page_has_no_cursor(store):
    handle_order_event(store, RULES, paid("e1", "o1", 12345), T0)
    adjust_points(store, RULES, "m1", 7, "补偿：快递延误", "op-7", "a1", "h1", T0 + timedelta(minutes=1))
    adjust_points(store, RULES, "m1", -5, "correction", "op-7", "a2", "h2", T0 + timedelta(minutes=2))
    page = ledger_page(store, "m1", None, 3)
    assert page["next_cursor"] is None and len(page["entries"]) == 3
    down, up, earn = page["entries"]
    assert (up["reason"], up["meta"], up["amount"]) == ("补偿：快递延误", {"operator_id": "op-7"}, 7)
    assert earn["meta"] == {"event_id": "e1", "amount_minor": 12345, "currency": "CNY"}
    assert [lot["points"] for lot in down["lots"]] == [5] and down["source"] == "operator:op-7"
    assert earn["recorded_at"] == T0.isoformat()
    first = ledger_page(store, "m1", None, 2)
    assert [e["entry_id"] for e in ledger_page(store, "m1", first["next_cursor"], 2)["entries"]] == [earn["entry_id"]]


def test_a_night_run_for_a_time_before_the_members_newest_entry_reads_the_member_and_expires_once(store):
    handle_order_event(store, RULES, paid("e1", "o1", 12345), T0)                  # due 2027-03-10
    adjust_points(store, RULES, "m1", 5, "later", "op", "a1", "h1", T0 + timedelta(days=400))
    night = parse_time("2027-03-11T00:05:00+08:00")                              # before the adjustment
    summary = expire(store, night)
    assert (summary.lots_expired, summary.points_expired, summary.retried_members) == (1, 143, 1)
    assert expire(store, night).lots_expired == 0
    assert balance(store) == 5
    assert [e["type"] for e in ledger_page(store, "m1", None, 10)["entries"]] == ["EXPIRE", "ADJUST", "EARN"]
    assert_reconciled(store)


# --- the engagement state, written with the account ------------------------------------

def test_the_engagement_state_is_written_with_the_account_and_kept_by_blind_writes(store):
    from dataclasses import replace as _replace

    from loyalty.engagement.state import DayCounter, Engagement, Progress, TierState
    from loyalty.records import Change
    handle_order_event(store, RULES, paid("e1", "o1", 10000), T0)
    account = store.load_account("m1", with_lots=False)
    # the order counted (E2) and filled its day's bucket (E7)
    assert account.engagement == Engagement(progress=Progress(orders_paid=1),
                                            tier=TierState(qualifying=(("2026-03-10", 120),)))
    state = Engagement(counter=DayCounter(day="2026-03-10", points=35, recent=("2026-03-10T02:00:00.000000Z",)),
                       progress=Progress(orders_paid=1, rewarded=("first_order",), badges=("vip",), referrer="m9"),
                       tier=TierState(name="silver", qualifying=(("2026-03-10", 120),), review_on="2026-06-08"),
                       pending=50)
    store.commit(Change(member_id="m1", expected_version=account.version, engagement=state))
    assert store.load_account("m1", with_lots=False).engagement == state
    assert store.load_account("m1").engagement == state
    with pytest.raises(ConcurrentUpdate):   # under the account's version, like the points
        store.commit(Change(member_id="m1", expected_version=account.version, engagement=Engagement()))
    expire(store, T0 + timedelta(days=400))  # a blind write (no version) leaves it alone
    assert store.load_account("m1").engagement == state
    cleared = store.load_account("m1", with_lots=False)
    store.commit(Change(member_id="m1", expected_version=cleared.version, engagement=Engagement()))
    assert store.load_account("m1", with_lots=False).engagement == Engagement()
    assert "pending" not in _replace(state, pending=0).to_document()   # only what is set is stored
    with pytest.raises(ValueError):
        Change(member_id="m1", expected_version=None, engagement=state)
