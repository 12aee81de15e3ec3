"""3-7-1 planning over the expiry index (in-memory store)."""
from datetime import timedelta

import pytest

from loyalty.adapters.memory import MemoryLedgerStore
from loyalty.domain import parse_time
from loyalty.messaging.planning import plan_reminders
from loyalty.rules import build_rules
from tests.orders_only import ORDERS_ONLY
from loyalty.services.orders import OrderEvent, handle_order_event

RULES = build_rules(ORDERS_ONLY)
NIGHT = parse_time("2027-11-10T09:00:00+08:00")   # the planner's run


def earn(store, member, amount, expires_on: str, order=None):
    """A paid order whose points expire at 15:00 Shanghai time on `expires_on`."""
    occurred = parse_time(f"{int(expires_on[:4]) - 1}{expires_on[4:]}T15:00:00+08:00")
    order = order or f"{member}-{expires_on}-{amount}"
    handle_order_event(store, RULES, OrderEvent(f"e-{order}", "order.paid", occurred, order, member, amount, "CNY",
                                                None, f"h-{order}"), occurred)


@pytest.fixture
def store():
    return MemoryLedgerStore()


@pytest.mark.parametrize("expires_on, stage", [("2027-11-17", 7), ("2027-11-13", 3), ("2027-11-10", 0)])
def test_points_due_at_each_stage_get_one_job(store, expires_on, stage):
    earn(store, "ana", 50000, expires_on)
    [job] = plan_reminders(store, RULES, NIGHT, 4)
    assert (job.member_id, job.stage_days, job.expiry_date, job.points) == ("ana", stage, expires_on, 520)


def test_nothing_at_ten_days_or_for_points_already_expired(store):
    earn(store, "ana", 50000, "2027-11-20")
    earn(store, "bob", 50000, "2027-11-09")
    assert plan_reminders(store, RULES, NIGHT, 4) == []


def test_a_member_with_points_at_several_stages_gets_one_job_for_the_nearest(store):
    earn(store, "ana", 50000, "2027-11-17")
    earn(store, "ana", 30000, "2027-11-13")
    earn(store, "ana", 20000, "2027-11-13", order="second")
    [job] = plan_reminders(store, RULES, NIGHT, 4)
    assert (job.stage_days, job.points) == (3, 320 + 220)


def test_small_amounts_are_reminded_once_and_high_values_also_a_month_ahead(store):
    earn(store, "small", 5000, "2027-11-17")          # 50 points at the 7-day stage: skipped
    earn(store, "small2", 5000, "2027-11-13")         # 50 points at the 3-day stage: reminded
    earn(store, "big", 300000, "2027-12-10")          # 3,020 points 30 days ahead
    earn(store, "mid", 50000, "2027-12-10")           # 520 points 30 days ahead: not high-value
    jobs = {job.member_id: job for job in plan_reminders(store, RULES, NIGHT, 4)}
    assert set(jobs) == {"small2", "big"}
    assert jobs["big"].stage_days == 30


def test_re_planning_the_same_night_gives_the_same_job_ids(store):
    earn(store, "ana", 50000, "2027-11-17")
    first = plan_reminders(store, RULES, NIGHT, 4)
    again = plan_reminders(store, RULES, NIGHT + timedelta(hours=2), 4)
    assert [j.job_id for j in first] == [j.job_id for j in again]


def test_redeemed_points_are_not_planned(store):
    from loyalty.services.redemptions import redeem
    earn(store, "ana", 100000, "2027-11-13")          # 1,020
    redeem(store, RULES, "ana", "coupon-10", "k", parse_time("2027-11-01T10:00:00+08:00"))
    [job] = plan_reminders(store, RULES, NIGHT, 4)
    assert job.points == 20 and job.stage_days == 3   # small now, but this is the small-amount stage


def test_a_tier_with_the_early_reminder_perk_gets_the_early_stage_whatever_the_amount(store):
    from loyalty.engagement.state import Engagement, TierState
    from loyalty.records import Change
    earn(store, "gold-ana", 50000, "2027-12-10")          # 520 points in 30 days: below the high-value amount
    earn(store, "plain-bo", 50000, "2027-12-10")
    account = store.load_account("gold-ana", with_lots=False)
    store.commit(Change("gold-ana", account.version, engagement=Engagement(tier=TierState(name="gold"))))
    [job] = plan_reminders(store, RULES, NIGHT, 4)
    assert (job.member_id, job.stage_days, job.points) == ("gold-ana", 30, 520)
    assert RULES.tiers.level("gold").early_reminder and not RULES.tiers.level("silver").early_reminder
