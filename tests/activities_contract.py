"""Activities, limited-time tasks, risk control and the review queue: behaviour every
store must show, run against the in-memory fake (tests/unit) and DynamoDB in the
emulator (tests/integration). Each module that imports these provides a `store`
fixture and a `stored_text` fixture (everything the store holds, as text)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from loyalty.domain import EntryType, parse_time
from loyalty.engagement.activities import Activity, record_activity
from loyalty.engagement.reviews import decide_review, hold_for_review, review_id_for, reviews_page
from loyalty.errors import Conflict, Invalid, NotFound, Transient
from loyalty.records import Change, Profile, Review
from loyalty.rules import build_rules
from loyalty.services.adjustments import adjust_points
from loyalty.services.queries import points_view, reconcile

T0 = parse_time("2026-11-20T10:00:00+08:00")
RULES = build_rules()
# Most tests look at one rule at a time: the rate limit and the burst out of the way.
LOOSE = build_rules({"activities": {"risk": {"per_hour": 1000, "burst_count": 1000}}})


def act(activity_id: str, type_: str = "poll", at: datetime = T0, ip: str | None = None, device: str | None = None,
        body: str | None = None) -> Activity:
    return Activity(activity_id, type_, at, ip, device, body or f"h-{activity_id}-{type_}")


def record(store, activity: Activity, member: str = "m1", rules=RULES, now: datetime | None = None) -> dict:
    return record_activity(store, rules, member, activity, now or activity.occurred_at)


def balance(store, member="m1") -> int:
    return store.load_account(member, with_lots=False).balance


def pending(store, member="m1") -> int:
    return store.load_account(member, with_lots=False).engagement.pending


def assert_reconciled(store):
    assert reconcile(store)[1] == []


def open_reviews(store) -> list[dict]:
    return reviews_page(store, "open", None, 200)["reviews"]


# --- credits --------------------------------------------------------------------------

@pytest.mark.parametrize("type_, points", [("poll", 5), ("share", 10), ("survey", 15)])
def test_an_activity_is_credited_as_its_own_lot_and_an_entry_naming_its_type(store, type_, points):
    result = record(store, act("a1", type_))
    assert result == {"activity_id": "a1", "type": type_, "status": "credited", "points": points, "balance": points}
    (lot,) = store.load_account("m1").lots
    assert (lot.points, lot.remaining, lot.source, lot.earned_at) == (points, points, "activity:a1", T0)
    assert lot.expires_at == parse_time("2027-11-20T10:00:00+08:00")
    (entry,) = store.all_entries("m1")
    assert (entry.type, entry.amount, entry.reason, entry.lots) == (EntryType.ACTIVITY, points, f"activity: {type_}",
                                                                     ((lot.lot_id, points),))
    assert_reconciled(store)


def test_the_same_activity_again_answers_the_same_and_credits_once(store):
    first = record(store, act("a1", "share"))
    record(store, act("a2", "poll"))
    assert record(store, act("a1", "share"), now=T0 + timedelta(minutes=5)) == first
    assert balance(store) == 15


def test_the_same_activity_id_with_another_body_is_a_conflict_and_changes_nothing(store):
    record(store, act("a1", "poll"))
    with pytest.raises(Conflict):
        record(store, act("a1", "share", body="another"))
    assert balance(store) == 5 and len(store.all_entries("m1")) == 1


def test_activity_ids_are_the_members_own(store):
    record(store, act("a1", "poll"), member="m1")
    assert record(store, act("a1", "poll"), member="m2")["status"] == "credited"
    assert (balance(store, "m1"), balance(store, "m2")) == (5, 5)


def test_an_unknown_type_is_invalid_and_writes_nothing(store, stored_text):
    before = stored_text()
    with pytest.raises(Invalid) as refused:
        record(store, act("a1", "dance"))
    assert refused.value.problems[0]["field"] == "type"
    assert stored_text() == before


def test_a_retry_is_answered_as_first_even_after_its_type_left_the_rules(store):
    first = record(store, act("a1", "poll"))
    rules = build_rules({"activities": {"types": {"quiz": {"points": 7}}}})
    assert record(store, act("a1", "poll"), rules=rules, now=T0 + timedelta(days=5)) == first
    with pytest.raises(Invalid):
        record(store, act("a2", "poll"), rules=rules)


def test_an_activity_far_from_the_services_clock_is_invalid(store):
    with pytest.raises(Invalid) as refused:
        record(store, act("a1", at=T0 - timedelta(days=3)), now=T0)
    assert refused.value.problems[0]["field"] == "occurred_at"
    assert balance(store) == 0


def test_activity_types_and_points_are_configuration(store):
    rules = build_rules({"activities": {"types": {"quiz": {"points": 7}}}})
    assert record(store, act("a1", "quiz"), rules=rules)["points"] == 7
    with pytest.raises(Invalid):
        record(store, act("a2", "poll"), rules=rules)
    with pytest.raises(Invalid):
        build_rules({"activities": {"types": {"Quiz!": {"points": 7}}}})
    with pytest.raises(Invalid):
        build_rules({"activities": {"types": {"quiz": {"points": -1}}}})


def test_new_points_settle_a_debt_first(store):
    adjust_points(store, RULES, "m1", 3, "seed", "op", "k1", "h", T0)
    store.commit(Change(member_id="m1", expected_version=store.load_account("m1", with_lots=False).version,
                        debt_delta=4))  # as a refund of spent points leaves it
    record(store, act("a1", "poll"))
    account = store.load_account("m1")
    assert account.debt == 0 and sum(lot.remaining for lot in account.lots) == 3 + 1


# --- the daily cap --------------------------------------------------------------------

def test_the_daily_cap_credits_what_fits_then_nothing(store):
    answers = [record(store, act(f"s{i}", "survey", T0 + timedelta(minutes=i)), rules=LOOSE) for i in range(15)]
    assert [a["status"] for a in answers] == ["credited"] * 13 + ["capped", "capped"]
    assert answers[13]["points"] == 5 and answers[13]["reason"] == "daily cap: 5 of 15 points fit"
    assert answers[14]["points"] == 0 and answers[14]["reason"] == "daily cap of 200 points reached"
    assert balance(store) == 200
    assert_reconciled(store)


def test_the_cap_counts_per_member_local_day(store):
    store.put_profile(Profile("m1", time_zone="America/New_York"))
    # 10:00 in Shanghai on the 20th is 21:00 on the 19th in New York
    for i in range(20):
        record(store, act(f"s{i}", "share", T0 + timedelta(seconds=i)), rules=LOOSE)
    assert record(store, act("late", "share", T0 + timedelta(hours=2)), rules=LOOSE)["status"] == "capped"
    assert record(store, act("next", "share", T0 + timedelta(hours=3, minutes=1)), rules=LOOSE)["status"] == "credited"
    assert balance(store) == 210


def test_orders_do_not_count_against_the_non_order_cap(store):
    from loyalty.services.orders import OrderEvent, handle_order_event
    handle_order_event(store, RULES, OrderEvent("e1", "order.paid", T0, "o1", "m1", 50000, "CNY", None, "h"), T0)
    assert record(store, act("a1", "poll"))["points"] == 5


def test_fifty_concurrent_activities_never_exceed_the_cap(store):
    """50 shares of 10 points at once: the cap is taken in the transaction of each credit,
    under the account's version check, so exactly 200 points are credited."""
    start = threading.Barrier(50)

    def one(i: int) -> dict:
        start.wait()
        for _ in range(30):   # as a client retries a 503
            try:
                return record(store, act(f"c{i}", "share", T0 + timedelta(milliseconds=i)), rules=LOOSE, now=T0)
            except Transient:
                continue
        raise AssertionError("never got through")

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(one, range(50)))
    assert sum(a["points"] for a in answers) == 200 == balance(store)
    assert sum(a["status"] == "credited" for a in answers) == 20
    assert store.load_account("m1", with_lots=False).engagement.counter.points == 200
    assert_reconciled(store)


# --- rate limit and bursts -------------------------------------------------------------

def test_more_than_ten_activities_an_hour_are_rejected_with_a_reason(store):
    rules = build_rules({"activities": {"risk": {"burst_count": 1000}}})
    answers = [record(store, act(f"a{i}", at=T0 + timedelta(minutes=5 * i)), rules=rules) for i in range(11)]
    assert [a["status"] for a in answers] == ["credited"] * 10 + ["rejected"]
    assert answers[10] == {"activity_id": "a10", "type": "poll", "status": "rejected", "points": 0, "balance": 50,
                           "reason": "rate limit: 10 activities an hour"}
    # an hour after the first, one slot is free again
    assert record(store, act("a11", at=T0 + timedelta(minutes=60, seconds=1)), rules=rules)["status"] == "credited"
    # a rejected activity is answered the same on a retry, and was not counted
    assert record(store, act("a10", at=T0 + timedelta(minutes=50)), rules=rules)["status"] == "rejected"


def test_a_burst_is_held_for_review_not_credited(store):
    answers = [record(store, act(f"b{i}", at=T0 + timedelta(seconds=5 * i))) for i in range(5)]
    assert [a["status"] for a in answers] == ["credited"] * 4 + ["held"]
    assert answers[4]["reason"] == "burst: 5 activities within 60 s" and answers[4]["points"] == 0
    assert balance(store) == 20 and pending(store) == 5
    (review,) = open_reviews(store)
    assert (review["kind"], review["points"], review["member_id"]) == ("risk", 5, "m1")
    assert_reconciled(store)


# --- many members on one device or IP --------------------------------------------------

def test_a_third_member_on_one_device_within_24_hours_is_held(store, stored_text):
    assert record(store, act("a1", device="phone-1"), member="m1")["status"] == "credited"
    assert record(store, act("a1", device="phone-1", at=T0 + timedelta(hours=1)), member="m2")["status"] == "credited"
    third = record(store, act("a1", device="phone-1", at=T0 + timedelta(hours=2)), member="m3")
    assert third["status"] == "held" and third["reason"] == "device shared by 3 members within 24 h"
    assert (balance(store, "m3"), pending(store, "m3")) == (0, 5)
    # the first member again, while three are on the device: held too
    assert record(store, act("a2", device="phone-1", at=T0 + timedelta(hours=3)), member="m1")["status"] == "held"
    # a day after the others were last seen there, the device is m3's alone again
    later = record(store, act("a3", device="phone-1", at=T0 + timedelta(hours=27)), member="m3")
    assert later["status"] == "credited"
    assert "phone-1" not in stored_text()


def test_many_members_on_one_ip_address_are_held_and_the_address_is_not_stored(store, stored_text):
    for i, member in enumerate(("m1", "m2")):
        assert record(store, act("a1", ip="203.0.113.7", at=T0 + timedelta(minutes=i)), member=member)["status"] == "credited"
    third = record(store, act("a1", ip="203.0.113.7", at=T0 + timedelta(minutes=2)), member="m3")
    assert (third["status"], third["reason"]) == ("held", "IP address shared by 3 members within 24 h")
    assert record(store, act("a1", ip="203.0.113.8", at=T0 + timedelta(minutes=3)), member="m4")["status"] == "credited"
    assert "203.0.113" not in stored_text()


# --- limited-time tasks ------------------------------------------------------------------

TASKS = build_rules({"activities": {"tasks": [
    {"task_id": "share-day", "type": "share", "starts_at": "2026-11-20T00:00:00+08:00",
     "ends_at": "2026-11-21T00:00:00+08:00", "bonus": 20},
    {"task_id": "post-order", "type": "post_order", "starts_at": "2026-11-20T00:00:00+08:00",
     "ends_at": "2026-11-21T00:00:00+08:00", "bonus": 50}]}})


def test_an_activity_inside_a_tasks_window_earns_the_bonus_once(store):
    first = record(store, act("a1", "share"), rules=TASKS)
    assert (first["status"], first["points"]) == ("credited", 30)
    (entry,) = store.all_entries("m1")
    assert entry.reason == "activity: share + task share-day" and entry.meta["tasks"] == ["share-day"]
    assert record(store, act("a2", "share", T0 + timedelta(minutes=30)), rules=TASKS)["points"] == 10


def test_outside_the_window_the_bonus_is_not_credited(store):
    assert record(store, act("a1", "share", parse_time("2026-11-21T00:00:00+08:00")), rules=TASKS)["points"] == 10


def test_a_task_only_type_outside_its_window_is_rejected(store):
    late = parse_time("2026-11-21T09:00:00+08:00")
    assert record(store, act("a1", "post_order", late), rules=TASKS) == {
        "activity_id": "a1", "type": "post_order", "status": "rejected", "points": 0, "balance": 0,
        "reason": "outside the task's window"}
    assert record(store, act("a2", "post_order"), rules=TASKS)["points"] == 50
    again = record(store, act("a3", "post_order", T0 + timedelta(minutes=30)), rules=TASKS)
    assert (again["status"], again["reason"]) == ("rejected", "the task's bonus was already credited")
    assert balance(store) == 50


def test_a_task_is_validated_like_the_earning_rules():
    with pytest.raises(Invalid):
        build_rules({"activities": {"tasks": [{"task_id": "t", "type": "share", "starts_at": "2026-11-21T00:00:00Z",
                                               "ends_at": "2026-11-20T00:00:00Z", "bonus": 5}]}})
    with pytest.raises(Invalid):
        build_rules({"activities": {"tasks": [{"task_id": "t", "type": "share", "starts_at": "2026-11-20",
                                               "ends_at": "2026-11-21T00:00:00Z", "bonus": 5}]}})


# --- the review queue --------------------------------------------------------------------

def test_content_that_needs_review_is_held_then_credited_on_approval(store):
    held = record(store, act("u1", "ugc"))
    assert held == {"activity_id": "u1", "type": "ugc", "status": "held", "points": 0, "balance": 0,
                    "reason": "ugc needs review"}
    assert pending(store) == 50 and store.load_account("m1").lots == () and store.all_entries("m1") == []
    assert points_view(store, "m1", T0, "Asia/Shanghai")["pending"] == 50
    (review,) = open_reviews(store)
    assert review == {"review_id": review_id_for("activity", "m1", "u1"), "member_id": "m1", "kind": "activity",
                      "points": 50, "reason": "ugc needs review", "created_at": T0.isoformat(), "status": "open",
                      "source": "activity:u1"}
    assert_reconciled(store)

    decided, after = decide_review(store, RULES, review["review_id"], "approve", "genuine", "op-ana",
                                   T0 + timedelta(hours=2))
    assert (decided.status, decided.operator_id, decided.note, after) == ("approved", "op-ana", "genuine", 50)
    assert (balance(store), pending(store)) == (50, 0)
    (lot,) = store.load_account("m1").lots
    assert (lot.earned_at, lot.expires_at, lot.source) == (T0, parse_time("2027-11-20T10:00:00+08:00"), "activity:u1")
    (entry,) = store.all_entries("m1")
    assert (entry.type, entry.amount, entry.reason) == (EntryType.ACTIVITY, 50, "activity: ugc")
    assert open_reviews(store) == []
    assert [r["review_id"] for r in reviews_page(store, "approved", None, 10)["reviews"]] == [review["review_id"]]
    # deciding again answers the same; the other way is a conflict
    again, changed = decide_review(store, RULES, review["review_id"], "approve", "other note", "op-bo", T0 + timedelta(hours=3))
    assert again == decided and changed is None and balance(store) == 50
    with pytest.raises(Conflict):
        decide_review(store, RULES, review["review_id"], "reject", "no", "op-bo", T0)
    assert_reconciled(store)


def test_a_rejected_review_drops_the_points(store):
    record(store, act("u1", "ugc"))
    review_id = open_reviews(store)[0]["review_id"]
    decided, _ = decide_review(store, RULES, review_id, "reject", "stock photo", "op-ana", T0 + timedelta(hours=1))
    assert decided.status == "rejected"
    assert (balance(store), pending(store), store.all_entries("m1")) == (0, 0, [])
    assert decide_review(store, RULES, review_id, "reject", "x", "op", T0)[0] == decided
    assert_reconciled(store)


def test_an_unknown_review_is_not_found_and_a_bad_decision_invalid(store):
    with pytest.raises(NotFound):
        decide_review(store, RULES, "r-nope", "approve", "", "op", T0)
    with pytest.raises(Invalid):
        decide_review(store, RULES, "r-nope", "maybe", "", "op", T0)


def test_held_points_take_the_cap_when_held(store):
    for i in range(19):
        record(store, act(f"s{i}", "share", T0 + timedelta(minutes=i)), rules=LOOSE)
    held = record(store, act("u1", "ugc", T0 + timedelta(minutes=30)), rules=LOOSE)
    assert held["status"] == "held" and held["reason"] == "ugc needs review; daily cap: 10 of 50 points fit"
    assert pending(store) == 10
    assert record(store, act("s99", "share", T0 + timedelta(minutes=31)), rules=LOOSE)["status"] == "capped"


def test_the_queue_pages_oldest_first(store):
    for i in range(5):
        record(store, act(f"u{i}", "ugc", T0 + timedelta(minutes=i)), member=f"m{i}", rules=LOOSE)
    first = reviews_page(store, "open", None, 2)
    second = reviews_page(store, "open", first["cursor"], 2)
    third = reviews_page(store, "open", second["cursor"], 2)
    members = [r["member_id"] for page in (first, second, third) for r in page["reviews"]]
    assert members == ["m0", "m1", "m2", "m3", "m4"] and third["cursor"] is None
    with pytest.raises(Invalid):
        reviews_page(store, "open", "not-a-cursor", 2)
    with pytest.raises(Invalid):
        reviews_page(store, "closed", None, 2)


def test_another_rule_family_holds_an_earning_in_its_own_transaction(store):
    """The referral-ring hold, as a rule family would plan it: its change (here only the
    engagement state it would write) plus the hold, committed as one."""
    account = store.load_account("m1", with_lots=False)
    progress = replace(account.engagement.progress, referrer="m9")
    engagement = replace(account.engagement, progress=progress)
    review = Review(review_id=review_id_for("referral", "m1", "join"), member_id="m1", kind="referral", points=50,
                    reason="referral ring: m9 referred 4 members from one device", created_at=T0,
                    entry_type=EntryType.ADJUST.value, entry_reason="referral join bonus", source="referral:m9",
                    earned_at=T0)
    change = hold_for_review(Change(member_id="m1", expected_version=account.version, engagement=engagement),
                             engagement, review)
    store.commit(change)
    state = store.load_account("m1", with_lots=False).engagement
    assert (state.pending, state.progress.referrer) == (50, "m9")
    assert [r["kind"] for r in open_reviews(store)] == ["referral"]
    decide_review(store, RULES, review.review_id, "approve", "ok", "op", T0)
    (entry,) = store.all_entries("m1")
    assert (entry.type, entry.reason, entry.amount) == (EntryType.ADJUST, "referral join bonus", 50)
    assert_reconciled(store)
    with pytest.raises(ValueError):
        hold_for_review(Change(member_id="m1", expected_version=None, touches_account=False), engagement, review)


def test_operators_deciding_one_review_at_once_credit_it_once(store):
    record(store, act("u1", "ugc"))
    review_id = open_reviews(store)[0]["review_id"]
    start = threading.Barrier(10)

    def decide(i: int):
        start.wait()
        for _ in range(30):
            try:
                return decide_review(store, RULES, review_id, "approve" if i % 2 else "reject", f"n{i}", f"op{i}", T0)[0]
            except Transient:
                continue
            except Conflict:
                return None

    with ThreadPoolExecutor(10) as pool:
        outcomes = list(pool.map(decide, range(10)))
    final = store.get_review(review_id)
    assert final.status in ("approved", "rejected")
    assert all(o is None or o == final for o in outcomes) and any(o == final for o in outcomes)
    assert (balance(store), pending(store)) == ((50, 0) if final.status == "approved" else (0, 0))
    assert len(store.all_entries("m1")) == (1 if final.status == "approved" else 0)
    assert_reconciled(store)
