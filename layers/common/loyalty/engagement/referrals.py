"""Referrals (E3) and referral rings (E8): whether a referral is credited or held for
review. Pure: the service reads the referrer's chain and recent referrals and commits
what this decides."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..domain import utc_key

if TYPE_CHECKING:
    from .config import ReferralRules

REFERRAL_JOIN = "referral_join"            # the new member's join bonus
REFERRAL_JOIN_REFERRER = "referral_join_referrer"   # the referrer's, for the same join
WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class Credit:
    pass


@dataclass(frozen=True)
class Hold:
    reason: str


def referral_decision(rules: "ReferralRules", referee: str, referrer: str, chain: tuple[str, ...],
                      recent: tuple[str, ...], now: datetime) -> Credit | Hold:
    """`chain`: the referrer's own referrer, theirs, ... nearest first (up to
    `ring_depth`). `recent`: utc keys of the referrer's earlier referrals. A chain that
    comes back to the referee is a ring (A refers B and B refers A, or longer); a
    referrer with `max_per_source_day` referrals in the last 24 hours is one source of
    many: both are held for review with the reason, never credited before a decision."""
    loop = chain[:rules.ring_depth]
    if referee in loop:
        path = " -> ".join((referee, referrer) + loop[:loop.index(referee) + 1])
        return Hold(f"referral ring: {path}")
    if len(recent_referrals(recent, now)) >= rules.max_per_source_day:
        return Hold(f"many referrals from one source: {referrer} referred {rules.max_per_source_day} "
                    f"members within 24 hours")
    return Credit()


def recent_referrals(recent: tuple[str, ...], now: datetime) -> tuple[str, ...]:
    """The referrals within the last 24 hours (what the referrer's state keeps)."""
    since = utc_key(now - WINDOW)
    return tuple(key for key in recent if key > since)
