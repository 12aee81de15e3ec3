"""Milestones (E2): what a member reaches by its paid orders, its first opt-in and a
completed profile, each rule once per member. Pure planning on the member's `Progress`:
the services credit what these functions return in the same transaction as the event
that caused it (the order, the consent, the profile)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from .state import Progress

if TYPE_CHECKING:
    from ..records import OrderState, Profile
    from .config import MilestoneRules, ReferralRules

FIRST_OPT_IN = "first_opt_in"
PROFILE_COMPLETED = "profile_completed"
REFERRAL_FIRST_ORDER = "referral_first_order"


@dataclass(frozen=True)
class Bonus:
    """Points one rule credits: its own ledger entry, whose reason names the rule."""

    rule_id: str
    points: int
    reason: str
    member_id: str | None = None   # None: the member whose event it is; else another (the referrer)


@dataclass(frozen=True)
class OrderMilestones:
    """What one counted paid order reaches."""

    progress: Progress
    bonuses: tuple[Bonus, ...] = ()
    rewarded: tuple[str, ...] = ()    # once-per-member rules this order reached (given back on a full refund)
    badges: tuple[str, ...] = ()
    gift: bool = False
    # bonuses of another member this order reaches but that wait for an operator's decision
    # (a flagged referral): (bonus, reason), held in that member's review queue, never credited here
    held: tuple[tuple[Bonus, str], ...] = ()


def plan_order_milestones(rules: "MilestoneRules", referrals: "ReferralRules", progress: Progress,
                          member_id: str) -> OrderMilestones:
    """The member's progress after one more paid order, and what that order reaches:
    the order milestones whose count is reached and not yet rewarded, an upgrade gift
    each `every_orders` orders, and the referrer's reward on the first paid order of a
    referred member (in `held`, for the referrer's review queue, when the referral was
    flagged: the referee's `progress.held` keeps the record, and the flag)."""
    count = progress.orders_paid + 1
    bonuses, rewarded, badges, held, to_review = [], [], [], list(progress.held), []
    for milestone in sorted(rules.orders, key=lambda m: m.orders):
        if milestone.orders <= count and milestone.rule_id not in progress.rewarded:
            rewarded.append(milestone.rule_id)
            if milestone.points:
                bonuses.append(Bonus(milestone.rule_id, milestone.points,
                                     f"milestone {milestone.rule_id}: {_ordinal(milestone.orders)} paid order"))
            if milestone.badge and milestone.badge not in progress.badges:
                badges.append(milestone.badge)
    if progress.referrer and REFERRAL_FIRST_ORDER not in progress.rewarded:
        rewarded.append(REFERRAL_FIRST_ORDER)
        points = referrals.first_order_points
        flag = referral_flag(progress)
        bonus = Bonus(REFERRAL_FIRST_ORDER, points, f"referral {REFERRAL_FIRST_ORDER}: first paid order of {member_id}",
                      member_id=progress.referrer)
        if flag is not None and points:
            held.append((REFERRAL_FIRST_ORDER, progress.referrer, points, flag))
            to_review.append((bonus, flag))
        elif points:
            bonuses.append(bonus)
    gift = rules.gift.every_orders is not None and count // rules.gift.every_orders > progress.gifts
    new = replace(progress, orders_paid=count, rewarded=progress.rewarded + tuple(rewarded),
                  badges=progress.badges + tuple(badges), gifts=progress.gifts + (1 if gift else 0), held=tuple(held))
    return OrderMilestones(new, tuple(bonuses), tuple(rewarded), tuple(badges), gift, tuple(to_review))


def undo_order(progress: Progress, order: "OrderState", kept: frozenset[str] = frozenset(),
               kept_badges: frozenset[str] = frozenset()) -> Progress:
    """A counted order fully refunded or cancelled: it no longer counts, and what it
    reached (whose points the refund took back exactly) can be reached again by the next
    order that gets there. A member who returns a first order is still welcomed on the
    real one; a member who orders and cancels gains nothing, since each cancellation
    takes back all the order gave. `kept`: rules whose points could not all be taken
    back (spent, under the clamp policy): they stay rewarded, with their badges, so that
    ordering, spending and cancelling cannot earn a milestone twice."""
    if not order.counted:
        return progress
    return replace(progress, orders_paid=max(0, progress.orders_paid - 1),
                   rewarded=tuple(r for r in progress.rewarded if r not in order.rewarded or r in kept),
                   badges=tuple(b for b in progress.badges if b not in order.badges or b in kept_badges),
                   gifts=max(0, progress.gifts - (1 if order.gift else 0)),
                   held=tuple(h for h in progress.held if h[0] not in order.rewarded))


def plan_first_opt_in(rules: "MilestoneRules", progress: Progress) -> tuple[Progress, Bonus | None]:
    """The first opt-in on any channel (a WeChat follow included)."""
    return _once(progress, FIRST_OPT_IN, rules.first_opt_in, "milestone first_opt_in: first opt-in")


def plan_profile_completed(rules: "MilestoneRules", progress: Progress,
                           profile: "Profile") -> tuple[Progress, Bonus | None]:
    """Every configured profile field set."""
    if not all(getattr(profile, name) for name in rules.profile_fields):
        return progress, None
    return _once(progress, PROFILE_COMPLETED, rules.profile_completed, "milestone profile_completed: profile completed")


def referral_flag(progress: Progress) -> str | None:
    """Why this member's referral is held for review, if it is."""
    return next((reason for rule, _, _, reason in progress.held if rule.startswith("referral")), None)


def _once(progress: Progress, rule_id: str, points: int, reason: str) -> tuple[Progress, Bonus | None]:
    if rule_id in progress.rewarded:
        return progress, None
    progress = replace(progress, rewarded=progress.rewarded + (rule_id,))
    return progress, (Bonus(rule_id, points, reason) if points else None)


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
