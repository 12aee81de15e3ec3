"""Order callbacks: earning on paid orders, taking points back on refunds and cancellations."""
from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, replace
from datetime import datetime

from ..engagement import tiers
from ..domain import (Account, EntryType, LedgerEntry, Lot, LotWrite, add_months, in_sequence, next_tx_time,
                      settle_debt, stable_id, take_from_lots)
from ..errors import AlreadyApplied, Conflict
from ..ports import AccountStore
from ..records import Change, IdempotencyRecord, OrderState
from ._retry import with_retries

if TYPE_CHECKING:  # the rules' models load on first use, not at handler import
    from ..rules import Rules


@dataclass(frozen=True)
class OrderEvent:
    """A validated order callback."""

    event_id: str
    type: str              # order.paid | order.refunded | order.cancelled
    occurred_at: datetime
    order_id: str
    member_id: str
    amount_minor: int
    currency: str
    refund_amount_minor: int | None
    body_hash: str


def handle_order_event(store: AccountStore, rules: Rules, event: OrderEvent, now: datetime,
                       notices: list | None = None) -> dict:
    """Apply one order event exactly once and answer {event_id, member_id, points, balance}.

    A retry of the same event answers what the first delivery answered; the same event id
    with another body is a Conflict. `notices`, when given, receives what the event
    announces beyond the credit (a tier-up), kept with the answer so a retry tells it again.
    """
    key = f"order-event#{event.event_id}"

    def attempt() -> dict:
        context = store.load_order_context(event.member_id, key, event.order_id)
        if context.idempotency is not None:
            return tiers.told(_replay(context.idempotency, event), notices)
        order = context.order
        if order is not None and order.member_id != event.member_id:
            raise Conflict(f"order {event.order_id} belongs to another member")
        if order is not None and order.currency != event.currency:
            raise Conflict(f"order {event.order_id} was recorded in {order.currency}, not {event.currency}")
        if event.type == "order.paid":
            change, points, balance = _plan_paid(rules, event, context.account, order, now)
        else:
            account = context.account
            if order is not None and order.paid and order.points_earned > order.points_taken_back:
                account = store.load_account(event.member_id, with_lots=True)
            change, points, balance = _plan_refund(rules, event, account, order, now)
        response = {"event_id": event.event_id, "member_id": event.member_id, "points": points, "balance": balance,
                    **tiers.tier_up_answer(context.account.engagement, change.engagement, rules, now)}
        record = IdempotencyRecord(key=key, body_hash=event.body_hash, response=response, member_id=event.member_id)
        try:
            store.commit(replace(change, idempotency=record))
        except AlreadyApplied:
            return tiers.told(_replay(store.get_idempotency(key), event), notices)
        return tiers.told(response, notices)

    return with_retries(attempt)


def _replay(record: IdempotencyRecord | None, event: OrderEvent) -> dict:
    if record is None:  # the record that stopped us vanished: cannot happen without TTL
        raise Conflict(f"event {event.event_id} is being processed; retry")
    if record.body_hash != event.body_hash:
        raise Conflict(f"event_id {event.event_id} was already used with a different body")
    return record.response


def _taken_back_target(points: int, amount: int, refunded: int) -> int:
    """Points to have taken back in total once `refunded` of `amount` is refunded:
    proportional, rounded in the member's favour, exactly all of it on a full refund."""
    if amount <= 0 or refunded >= amount:
        return points
    return points * refunded // amount


def _plan_paid(rules: Rules, event: OrderEvent, account: Account, order: OrderState | None,
               now: datetime) -> tuple[Change, int, int]:
    if order is not None and order.paid:
        # Paid twice under different event ids: the order earns once.
        return Change(member_id=event.member_id, expected_version=None, touches_account=False), 0, account.balance
    base_points = rules.earn.points_for(event.amount_minor, event.currency)
    tier_bonus = tiers.order_bonus(account.engagement, base_points, rules)   # E7: the tier's multiplier
    earned = base_points + tier_bonus
    refunded = order.refunded_minor if order else 0
    if order is not None and order.cancelled:
        refunded = event.amount_minor
    refunded = min(refunded, event.amount_minor)
    taken_back = _taken_back_target(earned, event.amount_minor, refunded)
    net = earned - taken_back
    lot_id = "o-" + stable_id("order", event.order_id)
    expires_at = add_months(event.occurred_at, rules.expiry.months)
    state = OrderState(order_id=event.order_id, member_id=event.member_id, currency=event.currency,
                       amount_minor=event.amount_minor, paid=True, paid_at=event.occurred_at,
                       points_earned=earned, lot_id=lot_id if net > 0 else None,
                       refunded_minor=refunded, points_taken_back=taken_back,
                       cancelled=order.cancelled if order else False, version=(order.version if order else 0))
    if earned == 0:
        return Change(member_id=event.member_id, expected_version=None, order=state, touches_account=False), 0, account.balance

    t = next_tx_time(now, account.last_tx)
    source = f"order:{event.order_id}"
    entries = [LedgerEntry(entry_id=stable_id(event.event_id, "earn"), type=EntryType.EARN, amount=earned,
                           recorded_at=t, reason="order paid", source=source,
                           meta={"event_id": event.event_id, "amount_minor": event.amount_minor, "currency": event.currency})]
    if tier_bonus:
        entries[0] = replace(entries[0], amount=base_points)
        entries.append(tiers.bonus_entry(account.engagement, rules, event.event_id, tier_bonus, t, source, lot_id))
    if taken_back:
        entries.append(LedgerEntry(entry_id=stable_id(event.event_id, "refund"), type=EntryType.REFUND,
                                   amount=-taken_back, recorded_at=t, reason="refunded before payment was reported",
                                   source=source, meta={"event_id": event.event_id, "refunded_minor": refunded}))
    lot_points, debt_left = settle_debt(net, account.debt)
    expired = 0
    if expires_at <= now and lot_points:
        # An order reported after its points' lifetime: they arrive already expired.
        expired, lot_points = lot_points, 0
        entries.append(LedgerEntry(entry_id=stable_id(event.event_id, "expire"), type=EntryType.EXPIRE,
                                   amount=-expired, recorded_at=t, reason="expired on arrival", source=source,
                                   lots=((lot_id, expired),)))
    lot = Lot(lot_id=lot_id, earned_at=event.occurred_at, expires_at=expires_at, points=net,
              remaining=lot_points, source=source)
    entries = in_sequence([replace(e, lots=((lot_id, max(0, net - tier_bonus)),)) if e.type is EntryType.EARN and not e.lots
                           else e for e in entries])
    engagement, _ = tiers.qualify(account.engagement, net, event.occurred_at, rules, now)
    change = Change(member_id=event.member_id, expected_version=account.version,
                    balance_delta=net - expired, debt_delta=debt_left - account.debt, last_tx=entries[-1].recorded_at,
                    lots=(LotWrite(lot=lot, new=True),) if net > 0 else (), entries=entries, order=state,
                    engagement=engagement)
    return change, net - expired, account.balance + net - expired


def _plan_refund(rules: Rules, event: OrderEvent, account: Account, order: OrderState | None,
                 now: datetime) -> tuple[Change, int, int]:
    cancelled = event.type == "order.cancelled"
    amount = order.amount_minor if order is not None and order.paid else event.amount_minor
    previous = order.refunded_minor if order else 0
    if cancelled:
        refunded = max(amount, previous)
    else:
        refunded = previous + (event.refund_amount_minor or 0)
        if refunded > amount:
            raise Conflict(f"refunds of order {event.order_id} would total {refunded}, above its amount {amount}")
    base = order or OrderState(order_id=event.order_id, member_id=event.member_id, currency=event.currency,
                               amount_minor=event.amount_minor)
    state = replace(base, refunded_minor=refunded, cancelled=base.cancelled or cancelled)
    if not base.paid:
        # Refund reported before payment: remembered, applied when the payment arrives.
        return Change(member_id=event.member_id, expected_version=None, order=state, touches_account=False), 0, account.balance

    target = _taken_back_target(base.points_earned, amount, refunded)
    to_take = target - base.points_taken_back
    state = replace(state, points_taken_back=target)
    if to_take <= 0:
        return Change(member_id=event.member_id, expected_version=None, order=state, touches_account=False), 0, account.balance

    changed, allocation, shortfall = take_from_lots(list(account.lots), to_take, now, first=base.lot_id)
    debt_added = shortfall if rules.refunds.negative_balance == "allow" else 0
    amount_taken = to_take - shortfall + debt_added
    t = next_tx_time(now, account.last_tx)
    meta = {"event_id": event.event_id, "refunded_minor": refunded, "order_amount_minor": amount}
    if shortfall:
        meta["shortfall"] = shortfall
        meta["policy"] = rules.refunds.negative_balance
    entry = LedgerEntry(entry_id=stable_id(event.event_id, "refund"), type=EntryType.REFUND, amount=-amount_taken,
                        recorded_at=t, reason="order cancelled" if cancelled else "order refunded",
                        source=f"order:{event.order_id}", lots=tuple(allocation), meta=meta)
    expected = {lot.lot_id: lot.remaining for lot in account.lots}
    # E7: the refunded share leaves the qualifying bucket of the day the order was paid
    engagement, _ = tiers.qualify(account.engagement, -to_take, base.paid_at or now, rules, now)
    change = Change(member_id=event.member_id, expected_version=account.version, balance_delta=-amount_taken,
                    debt_delta=debt_added, last_tx=t,
                    lots=tuple(LotWrite(lot=lot, expected_remaining=expected[lot.lot_id]) for lot in changed),
                    entries=(entry,), order=state, engagement=engagement)
    return change, -amount_taken, account.balance - amount_taken
