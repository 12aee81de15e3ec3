"""Manual adjustments by an operator, each with a reason and the operator's id."""
from __future__ import annotations

from typing import TYPE_CHECKING

from datetime import datetime

from ..domain import EntryType, LedgerEntry, Lot, LotWrite, add_months, next_tx_time, settle_debt, stable_id, take_from_lots
from ..errors import AlreadyApplied, Conflict, Invalid
from ..ports import AccountStore
from ..records import Change, IdempotencyRecord
from ._retry import with_retries

if TYPE_CHECKING:  # the rules' models load on first use, not at handler import
    from ..rules import Rules


def adjust_points(store: AccountStore, rules: Rules, member_id: str, points: int, reason: str, operator_id: str,
                  idempotency_key: str, request_hash: str, now: datetime,
                  expires_at: datetime | None = None) -> tuple[dict, bool]:
    """Add points (a new lot, expiring like earned points unless `expires_at` is given) or
    remove them (soonest-expiring lots first; never below zero). Idempotent per key:
    returns the answer and whether this call made the adjustment."""
    if points == 0:
        raise Invalid([{"field": "points", "problem": "must not be 0"}])
    key = f"adjust#{member_id}#{idempotency_key}"

    def attempt() -> tuple[dict, bool]:
        record = store.get_idempotency(key)
        if record is not None:
            if record.body_hash != request_hash:
                raise Conflict(f"idempotency_key {idempotency_key!r} was already used with a different body")
            return record.response, False
        if expires_at is not None and expires_at <= now:
            raise Invalid([{"field": "expires_at", "problem": "must be in the future"}])
        account = store.load_account(member_id, with_lots=points < 0)
        t = next_tx_time(now, account.last_tx)
        entry_id = stable_id(key, "adjust")
        meta = {"operator_id": operator_id}
        if points > 0:
            lot_id = "a-" + stable_id(key)
            lot_points, debt_left = settle_debt(points, account.debt)
            lot = Lot(lot_id=lot_id, earned_at=now, expires_at=expires_at or add_months(now, rules.expiry.months),
                      points=points, remaining=lot_points, source=f"adjustment:{entry_id}")
            writes, allocation, debt_delta = (LotWrite(lot, new=True),), ((lot_id, points),), debt_left - account.debt
        else:
            changed, allocation, short = take_from_lots(list(account.lots), -points, now)
            if short:
                raise Conflict(f"cannot remove {-points} points: only {-points - short} available")
            expected = {lot.lot_id: lot.remaining for lot in account.lots}
            writes = tuple(LotWrite(lot, expected_remaining=expected[lot.lot_id]) for lot in changed)
            allocation, debt_delta = tuple(allocation), 0
        entry = LedgerEntry(entry_id=entry_id, type=EntryType.ADJUST, amount=points, recorded_at=t, reason=reason,
                            source=f"operator:{operator_id}", lots=allocation, meta=meta)
        response = {"member_id": member_id, "entry_id": entry_id, "points": points, "balance": account.balance + points}
        change = Change(member_id=member_id, expected_version=account.version, balance_delta=points,
                        debt_delta=debt_delta, last_tx=t, lots=writes, entries=(entry,),
                        idempotency=IdempotencyRecord(key=key, body_hash=request_hash, response=response, member_id=member_id))
        try:
            store.commit(change)
        except AlreadyApplied:
            return attempt()
        return response, True

    return with_retries(attempt)
