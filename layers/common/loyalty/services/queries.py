"""Read models: a member's points, the paged ledger, and the reconciliation proof."""
from __future__ import annotations

import base64
import json
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from zoneinfo import ZoneInfo

from ..domain import LedgerEntry, iso
from ..engagement.tiers import tier_view
from ..errors import Invalid
from ..ports import AccountStore, ProfileStore


def member_points(profiles: ProfileStore, accounts: AccountStore, rules, member_id: str, now: datetime) -> dict:
    """The points view in the member's own time zone (the programme's if none is set)."""
    profile = profiles.get_profile(member_id)
    return points_view(accounts, member_id, now, (profile and profile.time_zone) or rules.program_timezone, rules)


def points_view(store: AccountStore, member_id: str, now: datetime, time_zone: str, rules=None) -> dict:
    """Balance, what expires on which (local) date, and the lots with points left.

    `balance` is the ledger's (the sum of the entries). Points whose expiry instant has
    passed leave it at the next nightly run; until then they are `expired` in `lots`,
    not in `expiring`, and not in `spendable` (what a redemption can use now)."""
    account = store.load_account(member_id, with_lots=True)
    zone = ZoneInfo(time_zone)
    live = [lot for lot in account.lots if lot.remaining > 0]
    by_date: dict[str, int] = defaultdict(int)
    for lot in live:
        if lot.expires_at > now:
            by_date[lot.expires_at.astimezone(zone).date().isoformat()] += lot.remaining
    return {
        "member_id": member_id,
        "balance": account.balance,
        "spendable": max(0, sum(lot.remaining for lot in live if lot.expires_at > now) - account.debt),
        "pending": account.engagement.pending,   # held points (review, return window): in no lot, not spendable
        "expiring": [{"date": day, "points": points} for day, points in sorted(by_date.items())],
        "lots": [{"lot_id": lot.lot_id, "source": lot.source, "earned_at": iso(lot.earned_at),
                  "expires_at": iso(lot.expires_at), "points": lot.points, "remaining": lot.remaining,
                  "expired": lot.expires_at <= now} for lot in live],
        **({"tier": tier_view(account.engagement, now, rules)} if rules is not None else {}),
    }


def _encode(cursor: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(cursor, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode(text: str) -> dict:
    try:
        cursor = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        if not isinstance(cursor.get("k"), str) or not isinstance(cursor.get("b"), int):
            raise ValueError
        return cursor
    except (ValueError, TypeError, AttributeError) as exc:
        raise Invalid([{"field": "cursor", "problem": "not a cursor this API gave out"}]) from exc


def ledger_page(store: AccountStore, member_id: str, cursor: str | None, limit: int) -> dict:
    """Entries newest first, each with the balance after it.

    The balance after an entry is derived, not stored: the newest entry ends at the
    current balance and each older one at that minus what came after. Entries are keyed
    in write order per member, so the derivation is the balance as it was.
    """
    if cursor:
        state = _decode(cursor)
        key, balance = state["k"], state["b"]
    else:
        key, balance = None, store.load_account(member_id, with_lots=False).balance
    entries, next_key = store.entries_page(member_id, key, limit)
    shown = []
    for entry in entries:
        shown.append(replace(entry, balance_after=balance))
        balance -= entry.amount
    return {
        "member_id": member_id,
        "entries": [entry_view(e) for e in shown],
        "next_cursor": _encode({"k": next_key, "b": balance}) if next_key else None,
    }


def entry_view(entry: LedgerEntry) -> dict:
    return {"entry_id": entry.entry_id, "type": entry.type.value, "amount": entry.amount,
            "balance_after": entry.balance_after, "recorded_at": iso(entry.recorded_at), "reason": entry.reason,
            "source": entry.source, "lots": [{"lot_id": lot_id, "points": n} for lot_id, n in entry.lots],
            **({"meta": entry.meta} if entry.meta else {})}


@dataclass(frozen=True)
class Mismatch:
    member_id: str
    balance: int
    entries_sum: int
    lots_sum: int
    debt: int


def reconcile(store: AccountStore) -> tuple[int, list[Mismatch]]:
    """Prove balance = sum of entries = sum of lot remainders - debt for every member.
    Returns how many members were checked and the ones that disagree."""
    checked, bad = 0, []
    for member_id in store.member_ids():
        account = store.load_account(member_id, with_lots=True)
        entries_sum = sum(e.amount for e in store.all_entries(member_id))
        lots_sum = sum(lot.remaining for lot in account.lots)
        checked += 1
        if not (account.balance == entries_sum == lots_sum - account.debt) or account.debt < 0 or \
                any(lot.remaining < 0 for lot in account.lots):
            bad.append(Mismatch(member_id, account.balance, entries_sum, lots_sum, account.debt))
    return checked, bad
