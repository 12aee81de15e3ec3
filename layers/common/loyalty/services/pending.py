"""Pending order points (L5): an order's points wait out the return window in a pending
credit, then the release credits them (one lot, one entry per part: the order's and each
bonus's, naming its rule). The release reads the index of due releases, never the table."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from ..domain import EntryType, LedgerEntry, LotWrite, stable_id
from ..ports import AccountStore
from ..records import Change
from ._retry import with_retries
from .orders import _credit

if TYPE_CHECKING:
    from ..rules import Rules


def release_pending(store: AccountStore, rules: "Rules", now: datetime, shards: int, catch_up_days: int,
                    notices: list | None = None) -> int:
    """Credit every pending credit whose return window ended at or before `now` (the
    days since `catch_up_days` before too: a missed night is made up). Returns how many
    were released; a re-run releases none again (the credit is marked released in the
    same transaction as the points). `notices`, when given, receives each release's
    points-credited notice."""
    released = 0
    today = now.astimezone(timezone.utc).date()
    for back in range(catch_up_days, -1, -1):
        for shard in range(shards):
            for page in store.due_pending(today - timedelta(days=back), shard, now):
                for member_id, order_id in page:
                    released += release_one(store, member_id, order_id, now, notices)
    return released


def release_one(store: AccountStore, member_id: str, order_id: str, now: datetime,
                notices: list | None = None) -> int:
    """Release one order's pending points if they are still pending and due."""

    def attempt() -> int:
        waiting = store.get_pending(member_id, order_id)
        if waiting is None or waiting.status != "pending" or waiting.release_at > now:
            return 0
        account = store.load_account(member_id, with_lots=True)
        entries = [LedgerEntry(entry_id=stable_id(order_id, "release", rule), type=EntryType.EARN, amount=kept,
                               recorded_at=now, reason=f"{why} (after the return window)", source=waiting.source,
                               meta={"rule": rule, "order_id": order_id} if rule != "order" else {"order_id": order_id})
                   for rule, _, kept, why in waiting.parts if kept > 0]
        credit = _credit(account, waiting.lot_id, waiting.source, waiting.earned_at, waiting.expires_at, entries,
                         f"release:{order_id}", now)
        engagement = replace(account.engagement, pending=max(0, account.engagement.pending - waiting.points))
        store.commit(Change(member_id=member_id, expected_version=account.version,
                            balance_delta=credit.balance_delta, debt_delta=credit.debt_delta, last_tx=credit.last_tx,
                            lots=(LotWrite(lot=credit.lot, new=True),) if credit.lot else (), entries=credit.entries,
                            engagement=engagement, pending=replace(waiting, status="released")))
        if notices is not None and credit.balance_delta > 0:
            notices.append({"kind": "points_credited", "event_id": f"release#{order_id}", "member_id": member_id,
                            "points": credit.balance_delta, "balance": account.balance + credit.balance_delta})
        return 1

    return with_retries(attempt)
