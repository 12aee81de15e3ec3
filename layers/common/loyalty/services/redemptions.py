"""Redeeming catalog items: debit soonest-expiring lots, hold for items fulfilled later,
and give points back to their own lots when a redemption is cancelled."""
from __future__ import annotations

from typing import TYPE_CHECKING

import base64
import hashlib
from dataclasses import replace
from datetime import datetime

from ..domain import Account, EntryType, LedgerEntry, LotWrite, in_sequence, iso, next_tx_time, settle_debt, stable_id, take_from_lots
from ..errors import AlreadyApplied, Conflict, Invalid, NotFound
from ..ports import AccountStore
from ..records import Change, Redemption, StockMove
from . import catalog
from ._retry import with_retries

if TYPE_CHECKING:  # the rules' models load on first use, not at handler import
    from ..rules import Rules


def redemption_id_for(member_id: str, idempotency_key: str) -> str:
    return "r-" + stable_id("redemption", member_id, idempotency_key)


def voucher_code(redemption_id: str) -> str:
    """A code derived from the redemption, so a retried request shows the same code."""
    digest = hashlib.sha256(("voucher\x1f" + redemption_id).encode()).digest()
    return base64.b32encode(digest).decode()[:12]


def redeem(store: AccountStore, rules: Rules, member_id: str, item_id: str, idempotency_key: str,
           now: datetime) -> tuple[Redemption, bool]:
    """Redeem `item_id` once per idempotency key. Returns the redemption and whether this
    call created it. Not enough points or stock is a Conflict; an unknown item is Invalid."""
    redemption_id = redemption_id_for(member_id, idempotency_key)
    request_hash = stable_id(item_id)

    def attempt() -> tuple[Redemption, bool]:
        existing = store.get_redemption(member_id, redemption_id)
        if existing is not None:
            if existing.request_hash != request_hash:
                raise Conflict(f"idempotency_key {idempotency_key!r} was already used for item {existing.item_id}")
            return existing, False
        item = rules.item(item_id)
        if item is None:
            raise Invalid([{"field": "item_id", "problem": f"no active catalog item {item_id!r}"}])
        account = store.load_account(member_id, with_lots=True)
        # E10: hidden below the item's tier (404: not in this member's catalog), the
        # member's limit (409), today's price; the count moves with the debit
        cost, engagement = catalog.admit(item, account.engagement, rules, member_id, now)
        changed, allocation, short = take_from_lots(list(account.lots), cost, now)
        if short:
            raise Conflict(f"not enough points: {item_id} costs {cost}, "
                           f"{cost - short} available")
        pending = item.fulfilment == "pending"
        from ..engagement import lucky_draws   # on first use: pydantic's challenge models are not for import time
        from ..engagement.challenge_counts import during_challenges
        t = next_tx_time(now, account.last_tx)
        redemption = Redemption(redemption_id=redemption_id, member_id=member_id, item_id=item_id,
                                points=cost, status="pending" if pending else "completed",
                                code=voucher_code(redemption_id), created_at=now, request_hash=request_hash,
                                allocation=tuple(allocation), history=(("pending" if pending else "completed", iso(now)),))
        entry = LedgerEntry(entry_id=stable_id(redemption_id, "debit"),
                            type=EntryType.HOLD if pending else EntryType.SPEND, amount=-cost,
                            recorded_at=t, reason=f"redeemed {item.name}", source=f"redemption:{redemption_id}",
                            lots=tuple(allocation),
                            meta={"item_id": item_id, **({"list_points": item.points} if cost != item.points else {})})
        expected = {lot.lot_id: lot.remaining for lot in account.lots}
        change = Change(member_id=member_id, expected_version=account.version, balance_delta=-cost,
                        last_tx=t, lots=tuple(LotWrite(lot, expected_remaining=expected[lot.lot_id]) for lot in changed),
                        entries=(entry,), redemption=redemption, engagement=engagement,
                        stock=StockMove(item_id, 1, item.stock) if item.stock is not None else None,
                        # E10: a lucky-draw item's redemption is an entry in its draw
                        draw_entry=lucky_draws.entry_for(item, member_id, redemption_id, now),
                        # E5: a redemption during a challenge the member is in counts in its stats
                        participants=during_challenges(account.engagement, member_id, now, rules.program_timezone,
                                                       redemptions=1))
        try:
            store.commit(change)
        except AlreadyApplied:
            return attempt()
        return redemption, True

    return with_retries(attempt)


def cancel_redemption(store: AccountStore, rules: Rules, member_id: str, redemption_id: str, reason: str,
                      now: datetime) -> Redemption:
    """Give the points back to the lots they came from, with their original expiry.
    Points whose lot has expired meanwhile come back expired. Cancelling twice is a no-op."""

    def attempt() -> Redemption:
        redemption = _existing(store, member_id, redemption_id)
        if redemption.status == "cancelled":
            return redemption
        item = rules.item(redemption.item_id)
        if item is not None and item.lucky_draw is not None:
            raise Conflict(f"redemption {redemption_id} is an entry in lucky draw {item.lucky_draw.draw_id}: "
                           "entries are not cancelled")
        account = store.load_account(member_id, with_lots=True)
        t = next_tx_time(now, account.last_tx)
        restore = _restore_to_lots(account, redemption.allocation, now)
        kind = EntryType.RELEASE if redemption.status == "pending" else EntryType.REVERSAL
        source = f"redemption:{redemption_id}"
        entries = [LedgerEntry(entry_id=stable_id(redemption_id, "return"), type=kind, amount=redemption.points,
                               recorded_at=t, reason=reason or "redemption cancelled", source=source,
                               lots=redemption.allocation)]
        if restore.expired:
            entries.append(LedgerEntry(entry_id=stable_id(redemption_id, "expire"), type=EntryType.EXPIRE,
                                       amount=-sum(n for _, n in restore.expired), recorded_at=t,
                                       reason="returned after its lot expired", source=source,
                                       lots=tuple(restore.expired)))
        kept = redemption.points - sum(n for _, n in restore.expired)
        cancelled = replace(redemption, status="cancelled", history=redemption.history + (("cancelled", iso(now)),))
        item = rules.item(redemption.item_id)
        entries = in_sequence(entries)
        change = Change(member_id=member_id, expected_version=account.version, balance_delta=kept,
                        debt_delta=restore.debt_after - account.debt, last_tx=entries[-1].recorded_at,
                        lots=restore.writes, entries=entries, redemption=cancelled, redemption_expected_status=redemption.status,
                        engagement=catalog.given_back(account.engagement, redemption.item_id, rules, redemption.created_at),
                        stock=StockMove(redemption.item_id, -1, None) if item is not None and item.stock is not None else None)
        store.commit(change)
        return cancelled

    return with_retries(attempt)


def fulfil_redemption(store: AccountStore, member_id: str, redemption_id: str, now: datetime) -> Redemption:
    """A pending redemption was handed over: the held points are captured."""

    def attempt() -> Redemption:
        redemption = _existing(store, member_id, redemption_id)
        if redemption.status in ("fulfilled", "completed"):
            return redemption
        if redemption.status != "pending":
            raise Conflict(f"redemption {redemption_id} is {redemption.status}")
        account = store.load_account(member_id, with_lots=False)
        t = next_tx_time(now, account.last_tx)
        entry = LedgerEntry(entry_id=stable_id(redemption_id, "capture"), type=EntryType.CAPTURE, amount=0,
                            recorded_at=t, reason="redemption fulfilled", source=f"redemption:{redemption_id}")
        fulfilled = replace(redemption, status="fulfilled", history=redemption.history + (("fulfilled", iso(now)),))
        store.commit(Change(member_id=member_id, expected_version=account.version, last_tx=t, entries=(entry,),
                            redemption=fulfilled, redemption_expected_status="pending"))
        return fulfilled

    return with_retries(attempt)


def _existing(store: AccountStore, member_id: str, redemption_id: str) -> Redemption:
    redemption = store.get_redemption(member_id, redemption_id)
    if redemption is None:
        raise NotFound(f"member {member_id} has no redemption {redemption_id}")
    return redemption


class _Restore:
    def __init__(self, writes: tuple[LotWrite, ...], expired: list[tuple[str, int]], debt_after: int):
        self.writes, self.expired, self.debt_after = writes, expired, debt_after


def _restore_to_lots(account: Account, allocation: tuple[tuple[str, int], ...], now: datetime) -> _Restore:
    lots = {lot.lot_id: lot for lot in account.lots}
    writes, expired, debt = [], [], account.debt
    for lot_id, points in allocation:
        lot = lots.get(lot_id)
        if lot is None or lot.expires_at <= now:
            expired.append((lot_id, points))
            continue
        back, debt = settle_debt(points, debt)
        if back:
            writes.append(LotWrite(replace(lot, remaining=lot.remaining + back), expected_remaining=lot.remaining))
            lots[lot_id] = replace(lot, remaining=lot.remaining + back)
    return _Restore(tuple(writes), expired, debt)
