"""The pure planning of milestones, the member day and referral decisions (E2, E3, E8, E9)."""
from datetime import timedelta

import pytest

from loyalty.domain import parse_time, utc_key
from loyalty.engagement.config import MilestoneRules, ReferralRules, MemberDayRules
from loyalty.engagement.member_day import member_day_bonus
from loyalty.engagement.milestones import plan_order_milestones, undo_order
from loyalty.engagement.referrals import Credit, Hold, referral_decision
from loyalty.engagement.state import Engagement, Progress
from loyalty.errors import Invalid
from loyalty.records import OrderState
from loyalty.rules import build_rules

NOW = parse_time("2026-03-10T10:00:00+08:00")
RULES = ReferralRules()


def test_a_direct_ring_is_held_with_the_path():
    decision = referral_decision(RULES, "a", "b", ("a",), (), NOW)
    assert decision == Hold("referral ring: a -> b -> a")


def test_a_longer_ring_within_the_depth_is_held_and_beyond_it_credited():
    assert isinstance(referral_decision(RULES, "a", "b", ("c", "a"), (), NOW), Hold)
    assert referral_decision(RULES, "a", "b", ("c", "d", "e", "a"), (), NOW) == Credit()   # depth 3


def test_many_referrals_from_one_source_in_24_hours_are_held_and_older_ones_do_not_count():
    recent = tuple(utc_key(NOW - timedelta(hours=h)) for h in range(5))
    assert referral_decision(RULES, "z", "src", (), recent, NOW).reason.startswith("many referrals from one source")
    old = tuple(utc_key(NOW - timedelta(hours=25 + h)) for h in range(5))
    assert referral_decision(RULES, "z", "src", (), old, NOW) == Credit()


def test_order_milestones_are_reached_once_and_a_full_refund_gives_them_back():
    rules = MilestoneRules()
    first = plan_order_milestones(rules, RULES, Progress(), "m1")
    assert [b.rule_id for b in first.bonuses] == ["first_order"] and first.progress.orders_paid == 1
    nine = Progress(orders_paid=9, rewarded=("first_order",), gifts=3)
    tenth = plan_order_milestones(rules, RULES, nine, "m1")
    assert [(b.rule_id, b.points) for b in tenth.bonuses] == [("tenth_order", 500)]
    assert tenth.badges == ("VIP",) and not tenth.gift
    order = OrderState("o10", "m1", "CNY", counted=True, rewarded=tenth.rewarded, badges=tenth.badges)
    assert undo_order(tenth.progress, order) == nine


def test_the_referrers_first_order_reward_goes_to_the_referrer_or_is_held_when_flagged():
    plan = plan_order_milestones(MilestoneRules(), RULES, Progress(referrer="ana"), "bo")
    assert [(b.rule_id, b.member_id, b.points) for b in plan.bonuses if b.member_id] == [
        ("referral_first_order", "ana", 200)]
    flagged = Progress(referrer="ana", held=(("referral_join", "bo", 50, "referral ring: bo -> ana -> bo"),))
    plan = plan_order_milestones(MilestoneRules(), RULES, flagged, "bo")
    assert not [b for b in plan.bonuses if b.member_id]
    assert plan.progress.held[-1] == ("referral_first_order", "ana", 200, "referral ring: bo -> ana -> bo")


def test_the_member_day_is_a_calendar_day_in_the_programmes_zone():
    rules = MemberDayRules()
    assert member_day_bonus(rules, "Asia/Shanghai", parse_time("2026-03-18T00:30:00+08:00"), 120).points == 120
    assert member_day_bonus(rules, "Asia/Shanghai", parse_time("2026-03-18T23:30:00+00:00"), 120) is None
    assert member_day_bonus(MemberDayRules(multiplier=3), "UTC", parse_time("2026-03-18T10:00:00+00:00"), 7).points == 14
    assert member_day_bonus(MemberDayRules(day_of_month=None), "UTC", parse_time("2026-03-18T10:00:00+00:00"), 7) is None


def test_the_engagement_state_with_progress_round_trips_its_document():
    state = Engagement(progress=Progress(orders_paid=3, rewarded=("first_order",), gifts=1, referrer="ana",
                                         referred=("2026-03-10T02:00:00.000000Z",),
                                         held=(("referral_join", "bo", 50, "ring"),)), pending=50)
    assert Engagement.of_document(state.to_document()) == state


@pytest.mark.parametrize("overrides, field", [
    ({"milestones": {"profile_fields": ["name", "shoe_size"]}}, "milestones.profile_fields"),
    ({"milestones": {"orders": [{"rule_id": "a", "orders": 1, "points": 1}, {"rule_id": "a", "orders": 2, "points": 1}]}},
     "milestones"),
    ({"member_day": {"day_of_month": 32}}, "member_day.day_of_month"),
    ({"referrals": {"join_points": -1}}, "referrals.join_points"),
])
def test_bad_engagement_rules_are_refused_naming_the_field(overrides, field):
    with pytest.raises(Invalid) as refused:
        build_rules(overrides)
    assert field in {p["field"] for p in refused.value.problems}
