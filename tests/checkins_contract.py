"""Daily check-ins (E4, E8's cap): behaviour every store must show, run against the
in-memory fake (tests/unit) and DynamoDB in the emulator (tests/integration). Each module
that imports these provides a `store` fixture and a `stored_text` fixture (everything the
store holds, as text)."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from loyalty.domain import EntryType, parse_time
from loyalty.engagement.activities import Activity, record_activity
from loyalty.engagement.daily_checkins import checkin_key, plan_checkin, record_checkin
from loyalty.errors import AlreadyApplied, Conflict, Invalid, NotFound, Transient
from loyalty.records import Profile
from loyalty.rules import build_rules
from loyalty.services.queries import reconcile

T0 = parse_time("2026-11-20T09:30:00+08:00")      # a Friday morning in Shanghai (the programme's zone)
RULES = build_rules()
LOOSE = build_rules({"activities": {"risk": {"per_hour": 1000, "burst_count": 1000}}})


def join(store, member: str = "m1", time_zone: str | None = None) -> str:
    store.put_profile(Profile(member, time_zone=time_zone))
    return member


def check_in(store, at: datetime, member: str = "m1", rules=RULES, now: datetime | None = None,
             notices: list | None = None) -> dict:
    return record_checkin(store, rules, member, at, now or at, notices)


def day(n: int, hour: int = 0) -> datetime:
    """Day n after T0, `hour` hours later in the day."""
    return T0 + timedelta(days=n, hours=hour)


def account(store, member="m1"):
    return store.load_account(member, with_lots=False)


def assert_reconciled(store):
    assert reconcile(store)[1] == []


# --- one a day ----------------------------------------------------------------------------

def test_a_check_in_is_credited_as_its_own_lot_and_an_entry_naming_its_streak_day(store):
    join(store)
    assert check_in(store, T0) == {"date": "2026-11-20", "streak": 1, "points": 10, "balance": 10,
                                   "already_checked_in": False}
    (lot,) = store.load_account("m1").lots
    assert (lot.points, lot.remaining, lot.source, lot.earned_at) == (10, 10, "checkin:2026-11-20", T0)
    assert lot.expires_at == parse_time("2027-11-20T09:30:00+08:00")
    (entry,) = store.all_entries("m1")
    assert (entry.type, entry.amount, entry.reason, entry.lots) == (EntryType.CHECKIN, 10, "check-in: streak day 1",
                                                                     ((lot.lot_id, 10),))
    state = account(store).engagement.checkin
    assert (state.last, state.streak, state.days) == ("2026-11-20", 1, 1)
    assert_reconciled(store)


def test_a_second_check_in_the_same_local_day_answers_already_and_writes_nothing(store, stored_text):
    join(store)
    check_in(store, T0)
    before = stored_text()
    again = check_in(store, T0 + timedelta(hours=12))     # 21:30 the same day in Shanghai
    assert again == {"date": "2026-11-20", "streak": 1, "points": 0, "balance": 10, "already_checked_in": True}
    assert stored_text() == before


def test_points_follow_the_streak_day_and_stay_at_the_last_step(store):
    join(store)
    points = [check_in(store, day(n))["points"] for n in range(33)]
    assert points == [10] * 7 + [15] * 7 + [20] * 16 + [20] * 3
    assert account(store).engagement.checkin.streak == 33
    assert account(store).balance == sum(points)
    reasons = {e.reason for e in store.all_entries("m1")}
    assert {"check-in: streak day 1", "check-in: streak day 8", "check-in: streak day 33"} <= reasons
    assert_reconciled(store)


def test_a_missed_day_resets_the_streak_to_one(store):
    join(store)
    assert [check_in(store, day(n))["streak"] for n in (0, 1, 2, 3, 4, 5, 6, 7)] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert check_in(store, day(7))["points"] == 0                  # day 8 again: already
    after_gap = check_in(store, day(9))                            # day 9 (n=8) missed
    assert (after_gap["streak"], after_gap["points"]) == (1, 10)
    assert (check_in(store, day(10))["streak"], account(store).engagement.checkin.days) == (2, 10)


def test_the_date_is_the_members_local_day(store):
    join(store, "ny", time_zone="America/New_York")
    join(store, "sh")
    late = parse_time("2026-11-21T12:30:00+08:00")   # 23:30 on the 20th in New York
    assert check_in(store, late, "ny")["date"] == "2026-11-20"
    assert check_in(store, late, "sh")["date"] == "2026-11-21"
    next_morning = parse_time("2026-11-21T14:00:00+00:00")   # 09:00 the 21st in New York: a new day
    assert check_in(store, next_morning, "ny", now=late + timedelta(hours=26))["streak"] == 2


def test_a_check_in_far_from_the_services_clock_is_invalid_and_writes_nothing(store, stored_text):
    join(store)
    before = stored_text()
    for at in (T0 - timedelta(hours=48, seconds=1), T0 + timedelta(hours=49), T0 + timedelta(hours=15)):
        with pytest.raises(Invalid) as refused:
            check_in(store, at, now=T0)
        assert refused.value.problems[0]["field"] == "at"
    assert stored_text() == before
    # (09:30 + 15 h is tomorrow in Shanghai: a day not begun yet, refused too)
    assert check_in(store, T0 - timedelta(hours=47), now=T0)["points"] == 10   # within 48 h: counted
    assert check_in(store, T0 + timedelta(hours=14), now=T0)["date"] == "2026-11-20"   # later today: counted


def test_an_unknown_member_is_not_found_and_nothing_is_written(store, stored_text):
    before = stored_text()
    with pytest.raises(NotFound):
        check_in(store, T0, member="nobody")
    assert stored_text() == before


def test_an_earlier_day_answers_already_when_the_streak_holds_it_and_conflicts_otherwise(store, stored_text):
    join(store)
    check_in(store, day(0))
    check_in(store, day(2))                    # the 21st missed: streak 1 on the 22nd
    before = stored_text()
    with pytest.raises(Conflict):              # the 21st, told late: a later day is checked in
        check_in(store, day(1), now=day(2))
    # the 20th, told again (outside the streak, which restarted on the 22nd): its record says so
    assert check_in(store, day(0, hour=3), now=day(1)) == {"date": "2026-11-20", "streak": 1, "points": 0,
                                                           "balance": 20, "already_checked_in": True}
    assert stored_text() == before
    check_in(store, day(3))                    # streak 2: the 22nd and the 23rd
    assert check_in(store, day(2, hour=5), now=day(3)) == {"date": "2026-11-22", "streak": 2, "points": 0,
                                                           "balance": 30, "already_checked_in": True}


# --- the daily cap (E8), shared with activities ----------------------------------------------

def test_the_daily_cap_leaves_what_fits_and_the_streak_counts_anyway(store):
    join(store)
    check_in(store, day(-1))
    for i in range(19):                        # 190 of the day's 200 in shares
        record_activity(store, LOOSE, "m1", Activity(f"s{i}", "share", T0, None, None, f"h{i}"), T0)
    record_activity(store, LOOSE, "m1", Activity("p", "poll", T0, None, None, "hp"), T0)   # 195
    capped = check_in(store, T0)
    assert capped == {"date": "2026-11-20", "streak": 2, "points": 5, "balance": 10 + 195 + 5,
                      "already_checked_in": False, "capped": True, "reason": "daily cap: 5 of 10 points fit"}
    entry = next(e for e in store.all_entries("m1") if e.type == EntryType.CHECKIN and e.meta["date"] == "2026-11-20")
    assert (entry.amount, entry.meta["capped_from"]) == (5, 10)
    assert account(store).engagement.counter.points == 200
    assert check_in(store, day(1))["points"] == 10          # a new day, a new cap
    assert_reconciled(store)


def test_a_check_in_the_cap_leaves_nothing_for_credits_nothing_but_keeps_the_streak(store):
    join(store)
    rules = build_rules({"activities": {"risk": {"daily_cap": 0}}})
    answer = check_in(store, T0, rules=rules)
    assert answer == {"date": "2026-11-20", "streak": 1, "points": 0, "balance": 0, "already_checked_in": False,
                      "capped": True, "reason": "daily cap of 0 points reached"}
    assert store.all_entries("m1") == [] and store.load_account("m1").lots == ()
    assert check_in(store, day(1), rules=rules)["streak"] == 2
    assert check_in(store, day(1), rules=rules)["already_checked_in"] is True


def test_orders_do_not_take_the_cap_and_refunds_never_touch_check_in_points(store):
    from loyalty.services.orders import OrderEvent, handle_order_event
    join(store)
    paid = OrderEvent("e1", "order.paid", T0, "o1", "m1", 50000, "CNY", None, "h1")
    earned = handle_order_event(store, RULES, paid, T0)["points"]
    check_ins = sum(check_in(store, day(n, hour=1))["points"] for n in range(3))
    assert check_ins == 30
    refund = OrderEvent("e2", "order.refunded", day(2, hour=2), "o1", "m1", 50000, "CNY", 50000, "h2")
    assert handle_order_event(store, RULES, refund, day(2, hour=2))["points"] == -earned
    lots = [lot for lot in store.load_account("m1").lots if lot.source.startswith("checkin:")]
    assert [(lot.points, lot.remaining) for lot in lots] == [(10, 10)] * 3
    assert account(store).balance == 30 and account(store).engagement.checkin.streak == 3
    assert [e.amount for e in store.all_entries("m1") if e.type == EntryType.CHECKIN] == [10, 10, 10]
    assert_reconciled(store)


# --- exactly once -------------------------------------------------------------------------------

def test_ten_concurrent_check_ins_for_the_same_day_credit_once(store):
    join(store)
    start = threading.Barrier(10)

    def one(i: int) -> dict:
        start.wait()
        for _ in range(30):   # as a client retries a 503
            try:
                return check_in(store, T0 + timedelta(minutes=i), now=T0)
            except Transient:
                continue
        raise AssertionError("never got through")

    with ThreadPoolExecutor(10) as pool:
        answers = list(pool.map(one, range(10)))
    assert sorted(a["already_checked_in"] for a in answers) == [False] + [True] * 9
    assert sum(a["points"] for a in answers) == 10 == account(store).balance
    assert len(store.all_entries("m1")) == 1 and account(store).engagement.checkin.days == 1
    assert_reconciled(store)


def test_the_days_key_refuses_a_second_credit_even_past_the_version_check(store):
    """A plan made on the account as it was before the day's check-in, sent with the
    version it has now: the version check would let it through, the day's record does not."""
    join(store)
    stale = account(store)
    check_in(store, T0)
    change, _ = plan_checkin(RULES, "m1", stale, RULES.program_timezone, T0 + timedelta(hours=1), T0)
    assert change.idempotency.key == checkin_key("m1", T0.date())
    with pytest.raises(AlreadyApplied):
        store.commit(replace(change, expected_version=account(store).version))
    assert account(store).balance == 10 and len(store.all_entries("m1")) == 1


def test_streak_points_are_configuration(store):
    join(store)
    rules = build_rules({"checkins": {"streak_points": [[1, 1], [3, 5]]}})
    assert [check_in(store, day(n), rules=rules)["points"] for n in range(5)] == [1, 1, 5, 5, 5]
    for bad in ([[2, 10]], [[1, 10], [1, 15]], [[1, 10], [8, -1]], [], [{"from_day": 1}]):
        with pytest.raises(Invalid) as refused:
            build_rules({"checkins": {"streak_points": bad}})
        assert refused.value.problems[0]["field"].startswith("checkins")


def test_a_check_in_that_crosses_a_tier_threshold_tells_of_the_tier_up(store):
    join(store)
    levels = [{"name": "member", "threshold": 0}, {"name": "silver", "threshold": 15},
              {"name": "gold", "threshold": 100_000}]
    rules = build_rules({"tiers": {"levels": levels}})
    told: list[dict] = []
    check_in(store, day(0), rules=rules, notices=told)
    assert told == []
    second = check_in(store, day(1), rules=rules, notices=told)
    assert "tier_up" not in second
    assert [(t["kind"], t["tier"], t["event_id"]) for t in told] == [("tier_up", "silver", "checkin#m1#2026-11-21")]
