"""The nightly expiry: read only what is due from the expiry index, expire it lot by lot."""
from __future__ import annotations

import zlib
from collections import defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone

from ..domain import EntryType, LedgerEntry, Lot, LotWrite, next_tx_time, stable_id
from ..errors import ConcurrentUpdate
from ..ports import AccountStore
from ..records import Change, DueLot
from ._retry import with_retries


# A transaction holds at most 100 items: each lot costs two (the lot and its entry).
LOTS_PER_WRITE = 40


def shard_of(member_id: str, shards: int) -> int:
    """The member's shard in the expiry index: stable across processes and releases."""
    return zlib.crc32(member_id.encode()) % shards


def index_day(expires_at: datetime) -> date:
    return expires_at.astimezone(timezone.utc).date()


@dataclass
class ExpirySummary:
    time: str
    days: list[str] = field(default_factory=list)
    lots_expired: int = 0
    points_expired: int = 0
    members: int = 0
    retried_members: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def expire_due_lots(store: AccountStore, now: datetime, shards: int, catch_up_days: int) -> ExpirySummary:
    """Expire every lot whose expiry is at or before `now`, writing one EXPIRE entry per lot.

    Sweeps the index days from `now - catch_up_days` to `now`, so a missed night is made
    up and a re-run for any date expires nothing twice (expired lots leave the index, and
    each write is conditional on the lot being as read).
    """
    summary = ExpirySummary(time=now.isoformat())
    today = index_day(now)
    for offset in range(catch_up_days, -1, -1):
        day = today - timedelta(days=offset)
        summary.days.append(day.isoformat())
        for shard in range(shards):
            for page in store.due_lots(day, shard, now):
                _expire_page(store, page, now, summary)
    return summary


def _expire_page(store: AccountStore, page: list[DueLot], now: datetime, summary: ExpirySummary) -> None:
    by_member: dict[str, list[DueLot]] = defaultdict(list)
    for due in page:
        if due.remaining > 0 and due.expires_at <= now:
            by_member[due.member_id].append(due)
    for member_id, lots in by_member.items():
        summary.members += 1
        expired: list[tuple[str, int]] = []
        try:
            for start in range(0, len(lots), LOTS_PER_WRITE):
                expired += _commit_blind(store, member_id, lots[start:start + LOTS_PER_WRITE], now)
        except ConcurrentUpdate:
            # The lots moved since the index was read (a spend, or a clock behind the
            # member's last entry): read the member and expire what is still due.
            summary.retried_members += 1
            while batch := with_retries(lambda: _commit_read(store, member_id, now)):
                expired += batch
        summary.lots_expired += len(expired)
        summary.points_expired += sum(n for _, n in expired)


def _entries(member_id: str, expired: list[tuple[str, int]], t: datetime) -> tuple[LedgerEntry, ...]:
    return tuple(
        LedgerEntry(entry_id=stable_id(member_id, lot_id, "expire"), type=EntryType.EXPIRE, amount=-points,
                    recorded_at=t + timedelta(microseconds=i), reason="points expired", source=f"lot:{lot_id}",
                    lots=((lot_id, points),))
        for i, (lot_id, points) in enumerate(expired))


def _commit_blind(store: AccountStore, member_id: str, lots: list[DueLot], now: datetime) -> list[tuple[str, int]]:
    """Without reading the member: the index says what each lot holds, and the write is
    conditional on it still holding exactly that."""
    expired = [(due.lot_id, due.remaining) for due in lots]
    entries = _entries(member_id, expired, now)
    store.commit(Change(member_id=member_id, expected_version=None, balance_delta=-sum(n for _, n in expired),
                        last_tx=entries[-1].recorded_at, entries=entries,
                        lots=tuple(LotWrite(_zeroed(due), expected_remaining=due.remaining) for due in lots)))
    return expired


def _zeroed(due: DueLot) -> Lot:
    # The blind write only needs the lot's key fields and its new remainder.
    return Lot(lot_id=due.lot_id, earned_at=due.expires_at, expires_at=due.expires_at, points=0, remaining=0, source="")


def _commit_read(store: AccountStore, member_id: str, now: datetime) -> list[tuple[str, int]]:
    account = store.load_account(member_id, with_lots=True)
    due = [lot for lot in account.lots if lot.remaining > 0 and lot.expires_at <= now][:LOTS_PER_WRITE]
    if not due:
        return []
    expired = [(lot.lot_id, lot.remaining) for lot in due]
    entries = _entries(member_id, expired, next_tx_time(now, account.last_tx))
    store.commit(Change(member_id=member_id, expected_version=account.version,
                        balance_delta=-sum(n for _, n in expired), last_tx=entries[-1].recorded_at, entries=entries,
                        lots=tuple(LotWrite(replace(lot, remaining=0), expected_remaining=lot.remaining) for lot in due)))
    return expired
