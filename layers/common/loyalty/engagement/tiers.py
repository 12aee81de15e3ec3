"""Tiers (E7): a member's tier from the points earned in the rolling window (90
programme-local days by default), kept as daily buckets in `Engagement.tier`.

Pure functions over the engagement state; the services call them while planning a
change, so the tier moves in the same transaction as the points that move it:

- `qualify(engagement, points, at, rules, now=None) -> (Engagement, TierChange | None)`:
  `points` earned at `at` (negative: taken back by a refund, from the bucket of `at`).
  An earning that crosses a threshold upgrades at once (TierChange direction "up");
  points taken back never downgrade here: the nightly review decides that.
- `review(engagement, day, rules) -> (Engagement, TierChange | None, warn: bool)`: the
  nightly decision for one member on programme-local `day`.
- `order_bonus(engagement, points, rules) -> int`: the tier's earn multiplier on top of
  `points` (its own ledger entry).
- `tier_view(engagement, now, rules) -> dict`: `tier` in the member and points answers.

The downgrade index: `TierState.check_on` is the next day the nightly review has to
look at the member (the warning day, else the review day); the store keeps an index of
it (a sparse GSI on the member's item), so the nightly run reads only those members.
Members of the base tier have no review and are in no index.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from .state import Engagement, TierState

if TYPE_CHECKING:
    from ..rules import Rules


@dataclass(frozen=True)
class TierChange:
    old: str
    new: str
    direction: str            # up | down
    qualifying_points: int
    at: datetime


def local_day(at: datetime, rules: "Rules") -> date:
    return at.astimezone(ZoneInfo(rules.program_timezone)).date()


def _window_start(day: date, rules: "Rules") -> date:
    return day - timedelta(days=rules.tiers.window_days - 1)


def _in_window(state: TierState, day: date, rules: "Rules") -> tuple[tuple[str, int], ...]:
    start = _window_start(day, rules).isoformat()
    return tuple((d, n) for d, n in state.qualifying if start <= d <= day.isoformat())


def qualifying_points(state: TierState, day: date, rules: "Rules") -> int:
    """Points earned in the window that ends on `day` (inclusive)."""
    return sum(n for _, n in _in_window(state, day, rules))


def review_day(state: TierState, today: date, rules: "Rules") -> date | None:
    """The first day the window falls below the member's tier threshold if nothing more is
    earned (today when it already has); None for the base tier."""
    threshold = rules.tiers.level(state.name).threshold
    if threshold <= 0:
        return None
    buckets = sorted(_in_window(state, today, rules))
    total = sum(n for _, n in buckets)
    if total < threshold:
        return today
    for day, points in buckets:
        total -= points
        if total < threshold:
            return date.fromisoformat(day) + timedelta(days=rules.tiers.window_days)
    return today   # not reached: the loop ends below any positive threshold


def _scheduled(state: TierState, today: date, rules: "Rules") -> TierState:
    """Old buckets dropped, the review day and the day the nightly run looks next."""
    kept = tuple((d, n) for d, n in state.qualifying if d >= _window_start(today, rules).isoformat() and n > 0)
    state = replace(state, qualifying=kept)
    review = review_day(state, today, rules)
    if review is None:
        return replace(state, review_on=None, warned_on=None, check_on=None)
    check = review
    warn_from = review - timedelta(days=rules.tiers.warning_days)
    if rules.tiers.warning_days and state.warned_on != review.isoformat():
        check = min(review, max(warn_from, today))
    return replace(state, review_on=review.isoformat(), check_on=check.isoformat())


def qualify(engagement: Engagement, points: int, at: datetime, rules: "Rules",
            now: datetime | None = None) -> tuple[Engagement, TierChange | None]:
    """Count `points` earned at `at` (negative: taken back) towards the tier; upgrade when
    the window, as of `now` (default `at`), reaches a higher tier's threshold."""
    if points == 0:
        return engagement, None
    now = now or at
    state, day, today = engagement.tier, local_day(at, rules).isoformat(), local_day(now, rules)
    buckets = dict(state.qualifying)
    if points > 0:
        buckets[day] = buckets.get(day, 0) + points
    elif day in buckets:
        buckets[day] = max(0, buckets[day] + points)
    state = replace(state, qualifying=tuple(sorted(buckets.items())))
    change = None
    total = qualifying_points(state, today, rules)
    reached = rules.tiers.for_points(total)
    current = rules.tiers.level(state.name)
    if rules.tiers.rank(reached.name) > rules.tiers.rank(current.name):
        change = TierChange(old=current.name, new=reached.name, direction="up", qualifying_points=total, at=now)
        state = replace(state, name=reached.name, since=now.isoformat(), warned_on=None)
    return replace(engagement, tier=_scheduled(state, today, rules)), change


def review(engagement: Engagement, day: date, rules: "Rules") -> tuple[Engagement, TierChange | None, bool]:
    """The nightly decision on `day`: downgrade when the window has fallen below the tier
    (to the tier the window still reaches), else warn once when the review day is within
    the warning period; returns the new state, the downgrade and whether to warn. Running
    it again on the same state and day decides nothing more."""
    state = engagement.tier
    current = rules.tiers.level(state.name)
    review_on = review_day(state, day, rules)
    change, warn = None, False
    if review_on is not None and day >= review_on:
        total = qualifying_points(state, day, rules)
        lower = rules.tiers.for_points(total)
        change = TierChange(old=current.name, new=lower.name, direction="down", qualifying_points=total,
                            at=datetime.combine(day, datetime.min.time(), ZoneInfo(rules.program_timezone)))
        state = replace(state, name=None if lower is rules.tiers.levels[0] else lower.name,
                        since=change.at.isoformat(), warned_on=None)
    elif review_on is not None and rules.tiers.warning_days and \
            day >= review_on - timedelta(days=rules.tiers.warning_days) and state.warned_on != review_on.isoformat():
        warn = True
        state = replace(state, warned_on=review_on.isoformat())
    return replace(engagement, tier=_scheduled(state, day, rules)), change, warn


def multiplier_percent(engagement: Engagement, rules: "Rules") -> int:
    return rules.tiers.level(engagement.tier.name).multiplier_percent


def order_bonus(engagement: Engagement, points: int, rules: "Rules") -> int:
    """Extra points the member's tier earns on `points` (rounded down)."""
    return max(0, points) * (multiplier_percent(engagement, rules) - 100) // 100


def bonus_reason(engagement: Engagement, rules: "Rules") -> str:
    level = rules.tiers.level(engagement.tier.name)
    return f"tier multiplier {level.name} x{level.multiplier_percent / 100:g}"


def tier_name(engagement: Engagement, rules: "Rules") -> str:
    return rules.tiers.level(engagement.tier.name).name


def tier_view(engagement: Engagement, now: datetime, rules: "Rules") -> dict:
    """{"name", "qualifying_points", "next": {"name", "points_needed"} | null} as of `now`."""
    points = qualifying_points(engagement.tier, local_day(now, rules), rules)
    levels = rules.tiers.levels
    rank = rules.tiers.rank(engagement.tier.name)
    above = levels[rank + 1] if rank + 1 < len(levels) else None
    return {"name": levels[rank].name, "qualifying_points": points,
            "next": {"name": above.name, "points_needed": max(0, above.threshold - points)} if above else None}


def warning_variables(engagement: Engagement, day: date, rules: "Rules") -> dict:
    state = engagement.tier
    level = rules.tiers.level(state.name)
    review_on = state.review_on or day.isoformat()
    points = qualifying_points(state, date.fromisoformat(review_on), rules)
    return {"tier": level.name, "points_needed": max(0, level.threshold - points), "review_date": review_on}


def bonus_entry(engagement: Engagement, rules: "Rules", event_id: str, bonus: int, at: datetime, source: str,
                lot_id: str):
    """The multiplier's own EARN entry, in the order's lot: a refund of the order takes it
    back in proportion with the order's own points (OrderState.points_earned counts both)."""
    from ..domain import EntryType, LedgerEntry, stable_id
    level = rules.tiers.level(engagement.tier.name)
    return LedgerEntry(entry_id=stable_id(event_id, "tier-bonus"), type=EntryType.EARN, amount=bonus, recorded_at=at,
                       reason=bonus_reason(engagement, rules), source=source, lots=((lot_id, bonus),),
                       meta={"event_id": event_id, "rule": f"tier_multiplier:{level.name}",
                             "multiplier_percent": level.multiplier_percent})


TIER_UP = "tier_up"   # the key of an order's stored answer that carries its tier-up


def tier_up_answer(before: Engagement, after: Engagement | None, rules: "Rules", now: datetime) -> dict:
    """What an order's stored answer keeps of the tier-up it caused ({} when none)."""
    if after is None or rules.tiers.rank(after.tier.name) <= rules.tiers.rank(before.tier.name):
        return {}
    return {TIER_UP: {"tier": tier_name(after, rules), "previous": tier_name(before, rules),
                      "qualifying_points": qualifying_points(after.tier, local_day(now, rules), rules)}}


def told(response: dict, notices: list | None) -> dict:
    """The answer as the contract shows it; its tier-up, if any, handed to `notices`."""
    if TIER_UP not in response:
        return response
    if notices is not None:
        notices.append({"kind": TIER_UP, "event_id": response["event_id"], "member_id": response["member_id"],
                        **response[TIER_UP]})
    return {k: v for k, v in response.items() if k != TIER_UP}
