"""Domain types of the points ledger and the pure rules that move points between lots.

Nothing here does I/O. Times are timezone-aware datetimes handed in by the caller.
"""
from __future__ import annotations

import calendar
import hashlib
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .engagement.state import Engagement


class EntryType(str, Enum):
    EARN = "EARN"          # points from a paid order
    REFUND = "REFUND"      # points taken back after a refund or cancellation
    SPEND = "SPEND"        # an instant redemption
    HOLD = "HOLD"          # points reserved for a pending redemption
    CAPTURE = "CAPTURE"    # a held redemption was fulfilled (amount 0: the HOLD moved the points)
    RELEASE = "RELEASE"    # a held redemption was cancelled: points back to their lots
    REVERSAL = "REVERSAL"  # a completed redemption was cancelled: points back to their lots
    EXPIRE = "EXPIRE"      # a lot reached its expiry
    ADJUST = "ADJUST"      # a manual adjustment by an operator
    ACTIVITY = "ACTIVITY"  # an activity (poll, share, survey, content, a task's bonus) or its approved review
    CHECKIN = "CHECKIN"    # a daily check-in (E4): the points of its streak day
    CHALLENGE = "CHALLENGE"  # a check-in challenge's final reward (base, top 50%, top 10%)


@dataclass(frozen=True)
class Lot:
    """Points earned together, spent soonest-expiry first, expiring together."""

    lot_id: str
    earned_at: datetime
    expires_at: datetime
    points: int       # as credited
    remaining: int    # what is left to spend
    source: str       # e.g. "order:1001"

    def spendable(self, now: datetime) -> bool:
        return self.remaining > 0 and self.expires_at > now


@dataclass(frozen=True)
class LedgerEntry:
    """One immutable movement of points. `lots` says which lots it touched and by how much."""

    entry_id: str
    type: EntryType
    amount: int
    recorded_at: datetime
    reason: str
    source: str
    lots: tuple[tuple[str, int], ...] = ()
    meta: dict = field(default_factory=dict)
    balance_after: int | None = None  # derived when the ledger is read, never stored


@dataclass(frozen=True)
class Account:
    """A member's ledger state. `lots` holds what was loaded (all lots, or none)."""

    member_id: str
    balance: int = 0
    debt: int = 0
    version: int = 0
    last_tx: datetime | None = None
    lots: tuple[Lot, ...] = ()
    engagement: "Engagement" = None   # loyalty.engagement.state.Engagement; an empty one when None given

    def __post_init__(self):
        if self.engagement is None:
            from .engagement.state import Engagement
            object.__setattr__(self, "engagement", Engagement())


@dataclass(frozen=True)
class LotWrite:
    """A lot's new state; `expected_remaining` turns the write into a conditional one."""

    lot: Lot
    expected_remaining: int | None = None
    new: bool = False


# --- time -----------------------------------------------------------------------------

def parse_time(value: str) -> datetime:
    """ISO 8601 with an offset (or Z) -> aware datetime. Naive times are rejected."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValueError("time must carry an offset, e.g. 2026-11-23T10:00:00+08:00")
    return parsed


def utc_key(moment: datetime) -> str:
    """Fixed-width UTC text that sorts like time: 2026-11-23T02:00:00.000000Z."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def iso(moment: datetime) -> str:
    """The time as ISO 8601 text, keeping its offset."""
    return moment.isoformat()


def add_months(moment: datetime, months: int) -> datetime:
    """Calendar months later, keeping the wall-clock time and offset; the 31st or 29 Feb
    falls back to the month's last day."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    day = min(moment.day, calendar.monthrange(year, month)[1])
    return moment.replace(year=year, month=month, day=day)


def stable_id(*parts: str, length: int = 20) -> str:
    """A short id derived from its source, so a retry lands on the same record."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:length]


def next_tx_time(now: datetime, last_tx: datetime | None) -> datetime:
    """Entries of one member are keyed by time; keep the key strictly increasing even when
    callers' clocks disagree, so the ledger reads in the order it was written."""
    if last_tx is not None and now <= last_tx:
        return last_tx + timedelta(microseconds=1)
    return now


def in_sequence(entries: list["LedgerEntry"]) -> tuple["LedgerEntry", ...]:
    """Entries written together get successive microseconds, so they read back in order."""
    if not entries:
        return ()
    start = entries[0].recorded_at
    return tuple(replace(e, recorded_at=start + timedelta(microseconds=i)) for i, e in enumerate(entries))


# --- moving points ----------------------------------------------------------------------

def take_from_lots(lots: list[Lot], points: int, now: datetime,
                   first: str | None = None) -> tuple[list[Lot], list[tuple[str, int]], int]:
    """Take up to `points` from spendable lots, soonest expiry first. The lot `first`
    (an order's own lot, on a refund) goes before all others, even past its expiry: those
    points leave the member either way. Returns the changed lots, the allocation
    [(lot_id, taken)] and what could not be covered."""
    ordered = sorted((lot for lot in lots if lot.spendable(now) or (lot.lot_id == first and lot.remaining > 0)),
                     key=lambda lot: (lot.lot_id != first, lot.expires_at, lot.lot_id))
    changed, allocation, left = [], [], points
    for lot in ordered:
        if left == 0:
            break
        taken = min(lot.remaining, left)
        changed.append(replace(lot, remaining=lot.remaining - taken))
        allocation.append((lot.lot_id, taken))
        left -= taken
    return changed, allocation, left


def settle_debt(points: int, debt: int) -> tuple[int, int]:
    """New points first settle an outstanding negative balance. Returns (points left for
    the lot, debt left)."""
    settled = min(points, debt)
    return points - settled, debt - settled
