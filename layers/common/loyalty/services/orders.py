"""Order callbacks: earning on paid orders, taking points back on refunds and cancellations."""
from __future__ import annotations

from typing import TYPE_CHECKING

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from ..engagement import tiers
from ..domain import (Account, EntryType, LedgerEntry, Lot, LotWrite, add_months, in_sequence, iso, next_tx_time,
                      settle_debt, stable_id, take_from_lots)
from ..errors import AlreadyApplied, Conflict
from ..ports import ReviewStore
from ..engagement.member_day import member_day_bonus
from ..engagement.milestones import REFERRAL_FIRST_ORDER, Bonus, plan_order_milestones, undo_order
from ..errors import ConcurrentUpdate
from ..records import Change, IdempotencyRecord, OrderState, PendingCredit, Redemption, Review
from ._retry import with_retries
from .redemptions import voucher_code

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


def handle_order_event(store: ReviewStore, rules: Rules, event: OrderEvent, now: datetime,
                       notices: list | None = None) -> dict:
    """Apply one order event exactly once and answer {event_id, member_id, points, balance}.

    A retry of the same event answers what the first delivery answered; the same event id
    with another body is a Conflict. What hangs on a payment (milestones, the member day,
    the referrer's reward, an upgrade gift) is credited in the same transaction, and a
    refund takes it back with the order's points. `notices`, when given, receives what the
    event announces beyond the credit (a tier-up), kept with the answer so a retry tells it again.
    """
    key = f"order-event#{event.event_id}"

    def attempt() -> dict:
        context = store.load_order_context(event.member_id, key, event.order_id)
        if context.idempotency is not None:
            return _told(_replay(context.idempotency, event), notices)
        order = context.order
        if order is not None and order.member_id != event.member_id:
            raise Conflict(f"order {event.order_id} belongs to another member")
        if order is not None and order.currency != event.currency:
            raise Conflict(f"order {event.order_id} was recorded in {order.currency}, not {event.currency}")
        referrer = None
        if event.type == "order.paid":
            due = _referrer_due(rules, context.account) if order is None or not order.paid else None
            if due is not None:   # the first paid order of a referred member: its referrer's account too
                referrer = store.load_account(due, with_lots=False)
            change, points, balance = _plan_paid(rules, event, context.account, order, now, referrer)
            change = _counted_in_challenges(change, context.account, event, rules)
        else:
            account, others, gift, held = context.account, {}, None, None
            if order is not None and order.paid:
                account = store.load_account(event.member_id, with_lots=True)
                others = {member: store.load_account(member, with_lots=True)
                          for _, member, _, _ in order.bonuses if member != event.member_id}
                if order.gift is not None:
                    gift = store.get_redemption(event.member_id, order.gift)
                held = _held_first_order(store, account, order)
                if held is not None and held.member_id not in others:
                    others[held.member_id] = store.load_account(held.member_id, with_lots=True)
            waiting = store.get_pending(event.member_id, event.order_id) if order is not None and order.pending else None
            change, points, balance = _plan_refund(rules, event, account, order, now, others, gift, waiting, held)
        response = {"event_id": event.event_id, "member_id": event.member_id, "points": points, "balance": balance,
                    **tiers.tier_up_answer(context.account.engagement, change.engagement, rules, now)}
        if event.type == "order.paid" and referrer is not None:   # the referrer's reward, credited: told too
            credited = [{"event_id": f"{event.event_id}#{part.member_id}", "member_id": part.member_id,
                         "points": part.balance_delta, "balance": referrer.balance + part.balance_delta}
                        for part in change.also if part.member_id == referrer.member_id and part.balance_delta > 0]
            if credited:
                response[CREDITED] = credited
        record = IdempotencyRecord(key=key, body_hash=event.body_hash, response=response, member_id=event.member_id)
        try:
            store.commit(replace(change, idempotency=record))
        except AlreadyApplied:
            found = store.get_idempotency(key)
            if found is None and change.redemption is not None:
                raise ConcurrentUpdate("the order's gift was written by another event of the order") from None
            return _told(_replay(found, event), notices)
        return _told(response, notices)

    return with_retries(attempt)


CREDITED = "credited"   # the key of an order's stored answer that carries another member's credit (a referrer's)


def _told(response: dict, notices: list | None) -> dict:
    """The answer as the contract shows it; the points credited to another member (a
    referrer's reward) and the tier-up, if any, handed to `notices` (a retry tells them again)."""
    if CREDITED in response:
        if notices is not None:
            notices.extend({"kind": "points_credited", **credit} for credit in response[CREDITED])
        response = {k: v for k, v in response.items() if k != CREDITED}
    return tiers.told(response, notices)

def _counted_in_challenges(change: Change, account: Account, event: OrderEvent, rules: Rules) -> Change:
    """E5: an order that counts (newly paid), paid during a challenge the member is in,
    counts in that challenge's repurchase conversion (a participant credit of 0 points)."""
    if change.order is None or not change.order.counted or not account.engagement.checkin.challenges:
        return change
    from ..engagement.challenge_counts import during_challenges   # pydantic's models: on first use
    return replace(change, participants=change.participants + during_challenges(
        account.engagement, event.member_id, event.occurred_at, rules.program_timezone, orders=1))


def _referrer_due(rules: Rules, account: Account) -> str | None:
    """The referrer owed a reward on this member's first paid order, if any (when the
    referral was flagged, the reward is held in the referrer's review queue: read too)."""
    progress = account.engagement.progress
    if not progress.referrer or REFERRAL_FIRST_ORDER in progress.rewarded or not rules.referrals.first_order_points:
        return None
    return progress.referrer


def _held_first_order(store: ReviewStore, account: Account, order: OrderState) -> Review | None:
    """The review holding the referrer's reward of this order, when the order was a flagged
    referral's first (it reached the rule without crediting it)."""
    referrer = account.engagement.progress.referrer
    if not referrer or REFERRAL_FIRST_ORDER not in order.rewarded or \
            any(rule == REFERRAL_FIRST_ORDER for rule, _, _, _ in order.bonuses):
        return None
    return store.get_review(first_order_review_id(referrer, order.order_id))


def first_order_review_id(referrer: str, order_id: str) -> str:
    """The review holding a flagged referral's first-order reward (one per order: a first
    order refunded in full lets the next one be the first)."""
    from ..engagement.reviews import review_id_for
    return review_id_for("referral", referrer, f"{REFERRAL_FIRST_ORDER}:order:{order_id}")


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


@dataclass(frozen=True)
class _Credit:
    """One new lot for a member and the entries that fill it (their amounts sum to the lot)."""

    lot: Lot | None
    entries: tuple[LedgerEntry, ...]
    balance_delta: int
    debt_delta: int
    last_tx: datetime | None


def _credit(account: Account, lot_id: str, source: str, earned_at: datetime, expires_at: datetime,
            entries: list[LedgerEntry], event_id: str, now: datetime) -> _Credit:
    """Entries (times set here) into one lot: the points first settle a debt, and points
    whose lifetime is over when they are reported arrive expired."""
    net = sum(e.amount for e in entries)
    if not entries:
        return _Credit(None, (), 0, 0, None)
    lot_points, debt_left = settle_debt(net, account.debt)
    t = next_tx_time(now, account.last_tx)
    entries = [replace(e, recorded_at=t, lots=((lot_id, e.amount),) if e.amount > 0 else e.lots) for e in entries]
    expired = 0
    if expires_at <= now and lot_points:
        expired, lot_points = lot_points, 0
        entries.append(LedgerEntry(entry_id=stable_id(event_id, "expire", *([] if lot_id.startswith("o-") else [lot_id])),
                                   type=EntryType.EXPIRE, amount=-expired, recorded_at=t, reason="expired on arrival",
                                   source=source, lots=((lot_id, expired),)))
    entries = in_sequence(entries)
    lot = Lot(lot_id=lot_id, earned_at=earned_at, expires_at=expires_at, points=net, remaining=lot_points,
              source=source) if net > 0 else None
    return _Credit(lot, entries, net - expired, debt_left - account.debt, entries[-1].recorded_at)


def _bonus_entry(bonus: Bonus, points: int, event: OrderEvent, source: str) -> LedgerEntry:
    return LedgerEntry(entry_id=stable_id(event.event_id, "bonus", bonus.rule_id), type=EntryType.EARN, amount=points,
                       recorded_at=event.occurred_at, reason=bonus.reason, source=source,
                       meta={"rule": bonus.rule_id, "event_id": event.event_id, "order_id": event.order_id})


def _plan_paid(rules: Rules, event: OrderEvent, account: Account, order: OrderState | None,
               now: datetime, referrer: Account | None = None) -> tuple[Change, int, int]:
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
                       points_earned=earned, lot_id=None, refunded_minor=refunded, points_taken_back=taken_back,
                       cancelled=order.cancelled if order else False, version=(order.version if order else 0))

    # What hangs on the payment: an order counts when it earns points (an order below one
    # currency unit does not make a milestone), unless it was refunded in full before its
    # payment was reported (then it never was a purchase).
    counts = earned > 0 and refunded < event.amount_minor
    engagement, bonuses, milestones = account.engagement, [], None
    if counts:
        milestones = plan_order_milestones(rules.milestones, rules.referrals, engagement.progress, event.member_id)
        engagement = replace(engagement, progress=milestones.progress)
        day = member_day_bonus(rules.member_day, rules.program_timezone, event.occurred_at, earned)
        bonuses = ([day] if day else []) + list(milestones.bonuses)
        if referrer is None:   # not read: the referrer's reward is not due (or is held)
            bonuses = [b for b in bonuses if b.member_id is None]

    def kept(points: int) -> int:   # a refund reported before the payment takes its share at once
        return points - _taken_back_target(points, event.amount_minor, refunded)

    source = f"order:{event.order_id}"
    own = [(b, kept(b.points)) for b in bonuses if b.member_id is None]
    total = net + sum(n for _, n in own)
    if total == 0 and not counts:
        return Change(member_id=event.member_id, expected_version=None, order=replace(state, lot_id=None),
                      touches_account=False), 0, account.balance

    entries = []
    if earned:
        entries.append(LedgerEntry(entry_id=stable_id(event.event_id, "earn"), type=EntryType.EARN, amount=base_points,
                                   recorded_at=now, reason="order paid", source=source,
                                   meta={"event_id": event.event_id, "amount_minor": event.amount_minor,
                                         "currency": event.currency}))
    if tier_bonus:   # E7: the tier's multiplier, its own entry in the order's lot (OrderState.points_earned has it)
        entries.append(tiers.bonus_entry(account.engagement, rules, event.event_id, tier_bonus, now, source, lot_id))
    if taken_back:
        entries.append(LedgerEntry(entry_id=stable_id(event.event_id, "refund"), type=EntryType.REFUND,
                                   amount=-taken_back, recorded_at=now, reason="refunded before payment was reported",
                                   source=source, meta={"event_id": event.event_id, "refunded_minor": refunded}))
    entries += [_bonus_entry(b, n, event, source) for b, n in own if n]
    credit = _credit(account, lot_id, source, event.occurred_at, expires_at, entries, event.event_id, now)
    if earned and credit.entries:   # the order's EARN entry names what the order itself put in the lot
        share = max(0, net - tier_bonus)
        credit = replace(credit, entries=tuple(replace(e, lots=((lot_id, share),)) if e.entry_id == entries[0].entry_id
                                               else e for e in credit.entries))
    # E7: what the order credits the member counts towards the tier, in this transaction
    engagement, _ = tiers.qualify(engagement, total, event.occurred_at, rules, now)

    also, recorded = [], [(b.rule_id, event.member_id, b.points, lot_id) for b, _ in own]
    for bonus in (b for b in bonuses if b.member_id is not None):
        their_lot = "b-" + stable_id("order", event.order_id, bonus.rule_id)
        entry = replace(_bonus_entry(bonus, kept(bonus.points), event, source), meta={
            "rule": bonus.rule_id, "event_id": event.event_id, "order_id": event.order_id, "referee": event.member_id})
        theirs = _credit(referrer, their_lot, source, event.occurred_at, expires_at,
                         [entry] if entry.amount else [], event.event_id, now)
        if theirs.entries:
            also.append(Change(member_id=referrer.member_id, expected_version=referrer.version,
                               balance_delta=theirs.balance_delta, debt_delta=theirs.debt_delta,
                               last_tx=theirs.last_tx, lots=(LotWrite(lot=theirs.lot, new=True),) if theirs.lot else (),
                               entries=theirs.entries))
            recorded.append((bonus.rule_id, referrer.member_id, bonus.points, their_lot))

    for bonus, reason in (milestones.held if milestones is not None and referrer is not None else ()):
        # a flagged referral: the referrer's reward waits in their review queue, in their `pending`
        points = kept(bonus.points)
        if points:
            from ..engagement.reviews import hold_for_review
            theirs = Change(member_id=referrer.member_id, expected_version=referrer.version,
                            engagement=referrer.engagement)
            also.append(hold_for_review(theirs, referrer.engagement, Review(
                review_id=first_order_review_id(referrer.member_id, event.order_id), member_id=referrer.member_id,
                kind="referral", points=points, reason=reason, created_at=now, entry_type=EntryType.EARN.value,
                entry_reason=bonus.reason, source=source, earned_at=event.occurred_at,
                meta={"rule": bonus.rule_id, "event_id": event.event_id, "order_id": event.order_id,
                      "referee": event.member_id, "given": bonus.points})))

    gift = None
    if milestones is not None and milestones.gift:
        gift_id = "g-" + stable_id("gift", event.member_id, event.order_id)
        gift = Redemption(redemption_id=gift_id, member_id=event.member_id, item_id=rules.milestones.gift.item_id,
                          points=0, status="completed", code=voucher_code(gift_id), created_at=now,
                          request_hash="gift", history=(("completed", iso(now)),))
    window = rules.pending.return_window_days
    if window and credit.lot is not None and credit.balance_delta > 0:
        # A return window: the member's points wait in a pending credit, in no lot, until
        # the release after the window credits them (what the referrer earns does not wait).
        parts = [("order", earned, net, "order paid")] + [(b.rule_id, b.points, n, b.reason) for b, n in own if n]
        waiting = PendingCredit(member_id=event.member_id, order_id=event.order_id,
                                release_at=event.occurred_at + timedelta(days=window), lot_id=lot_id,
                                earned_at=event.occurred_at, expires_at=expires_at, source=source, parts=tuple(parts))
        engagement = replace(engagement, pending=engagement.pending + waiting.points)
        state = replace(state, lot_id=lot_id, counted=counts, bonuses=tuple(recorded), pending=True,
                        rewarded=milestones.rewarded if milestones else (),
                        badges=milestones.badges if milestones else (), gift=gift.redemption_id if gift else None)
        return Change(member_id=event.member_id, expected_version=account.version, order=state,
                      engagement=engagement, redemption=gift, also=tuple(also), pending=waiting), 0, account.balance
    state = replace(state, lot_id=lot_id if credit.lot else None, counted=counts, bonuses=tuple(recorded),
                    rewarded=milestones.rewarded if milestones else (), badges=milestones.badges if milestones else (),
                    gift=gift.redemption_id if gift else None)
    change = Change(member_id=event.member_id, expected_version=account.version,
                    balance_delta=credit.balance_delta, debt_delta=credit.debt_delta, last_tx=credit.last_tx,
                    lots=(LotWrite(lot=credit.lot, new=True),) if credit.lot else (), entries=credit.entries,
                    order=state, engagement=engagement if counts or total else None, redemption=gift,
                    also=tuple(also))
    return change, credit.balance_delta, account.balance + credit.balance_delta


@dataclass(frozen=True)
class _Taken:
    lots: tuple[LotWrite, ...]
    entries: tuple[LedgerEntry, ...]
    balance_delta: int
    debt_delta: int
    last_tx: datetime | None


def _take_back(rules: Rules, account: Account, takes: list[tuple[LedgerEntry, int, str | None]],
               now: datetime) -> _Taken:
    """Take each (entry, points, own lot) from the member's lots, its own lot first,
    then soonest expiry; what is spent already becomes debt (or is clamped) per policy."""
    lots = {lot.lot_id: lot for lot in account.lots}
    expected = {lot.lot_id: lot.remaining for lot in account.lots}
    entries, balance_delta, debt_delta = [], 0, 0
    t = next_tx_time(now, account.last_tx)
    for entry, points, first in takes:
        if points <= 0:
            continue
        changed, allocation, shortfall = take_from_lots(list(lots.values()), points, now, first=first)
        lots.update({lot.lot_id: lot for lot in changed})
        debt_added = shortfall if rules.refunds.negative_balance == "allow" else 0
        amount_taken = points - shortfall + debt_added
        meta = dict(entry.meta)
        if shortfall:
            meta.update(shortfall=shortfall, policy=rules.refunds.negative_balance)
        entries.append(replace(entry, amount=-amount_taken, recorded_at=t, lots=tuple(allocation), meta=meta))
        balance_delta -= amount_taken
        debt_delta += debt_added
    writes = tuple(LotWrite(lot=lot, expected_remaining=expected[lot_id]) for lot_id, lot in lots.items()
                   if lot.remaining != expected[lot_id])
    entries = in_sequence(entries)
    return _Taken(writes, entries, balance_delta, debt_delta, entries[-1].recorded_at if entries else None)


def _unreturned(rules: Rules, entries: tuple[LedgerEntry, ...]) -> list[str]:
    """The rules whose take-back fell short and was clamped (not recorded as a debt)."""
    if rules.refunds.negative_balance != "clamp":
        return []
    return [e.meta["rule"] for e in entries if e.meta.get("shortfall") and e.meta.get("rule")]


def _plan_refund(rules: Rules, event: OrderEvent, account: Account, order: OrderState | None,
                 now: datetime, others: dict[str, Account] | None = None,
                 gift: Redemption | None = None, waiting: PendingCredit | None = None,
                 held: Review | None = None) -> tuple[Change, int, int]:
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
    source = f"order:{event.order_id}"
    reason = "order cancelled" if cancelled else "order refunded"
    meta = {"event_id": event.event_id, "refunded_minor": refunded, "order_amount_minor": amount}
    takes: dict[str, list] = {event.member_id: [(LedgerEntry(
        entry_id=stable_id(event.event_id, "refund"), type=EntryType.REFUND, amount=0, recorded_at=now,
        reason=reason, source=source, meta=meta), to_take, base.lot_id)]}
    for rule_id, member, points, lot_id in base.bonuses:
        due = _taken_back_target(points, amount, refunded) - _taken_back_target(points, amount, previous)
        takes.setdefault(member, []).append((LedgerEntry(
            entry_id=stable_id(event.event_id, "refund", rule_id), type=EntryType.REFUND, amount=0, recorded_at=now,
            reason=f"{rule_id} taken back: {reason}", source=source, meta={**meta, "rule": rule_id}), due, lot_id))

    closed = None
    if held is not None and (others or {}).get(held.member_id) is not None:
        # A flagged referral's first order: the referrer's reward, held for review, shrinks
        # with the refund (closed, rejected, at a full one) while open, in this transaction,
        # so no approval can credit what was refunded; once approved, it is taken back as
        # a credited share is (from its lot, in proportion).
        given = int(held.meta.get("given", held.points))
        if held.status == "open":
            left = given - _taken_back_target(given, amount, refunded)
            if left < held.points:
                review = replace(held, points=left) if left else replace(
                    held, status="rejected", note=f"{reason}: the referee's first order", decided_at=now,
                    operator_id=f"order-event:{event.event_id}")
                referrer = others[held.member_id]
                closed = Change(member_id=held.member_id, expected_version=referrer.version,
                                engagement=replace(referrer.engagement,
                                                   pending=max(0, referrer.engagement.pending - (held.points - left))),
                                review=review, review_expected_status="open")
        elif held.status == "approved":
            due = _taken_back_target(given, amount, refunded) - _taken_back_target(given, amount, previous)
            takes.setdefault(held.member_id, []).append((LedgerEntry(
                entry_id=stable_id(event.event_id, "refund", REFERRAL_FIRST_ORDER), type=EntryType.REFUND, amount=0,
                recorded_at=now, reason=f"{REFERRAL_FIRST_ORDER} taken back: {reason}", source=source,
                meta={**meta, "rule": REFERRAL_FIRST_ORDER, "review_id": held.review_id}),
                due, "rv-" + stable_id("review-lot", held.review_id)))

    # A full refund or cancellation: the order no longer counts toward milestones, and
    # its upgrade gift (if still unused) is withdrawn.
    became_full = refunded >= amount > previous
    engagement = None
    withdrawn = None
    if became_full and gift is not None and gift.status == "completed":
        withdrawn = replace(gift, status="cancelled", history=gift.history + (("cancelled", iso(now)),))

    mine = takes.pop(event.member_id)
    qualifying_back = sum(points for _, points, _ in mine if points > 0)   # E7: what the member's window loses
    if became_full and base.counted:
        # what could not be taken back (spent, clamped) stays rewarded: see undo_order
        in_window = waiting is not None and waiting.status == "pending"   # taken from the pending credit: in full
        kept = frozenset(() if in_window else _unreturned(rules, _take_back(rules, account, mine, now).entries)) | frozenset(
            rule for member, member_takes in takes.items() if (others or {}).get(member) is not None
            for rule in _unreturned(rules, _take_back(rules, others[member], member_takes, now).entries))
        badges = frozenset(m.badge for m in rules.milestones.orders if m.rule_id in kept and m.badge)
        engagement = replace(account.engagement, progress=undo_order(account.engagement.progress, base, kept, badges))
        state = replace(state, counted=False)
    left = None
    if waiting is not None and waiting.status == "pending":
        # Inside the return window: the member's points are taken from the pending credit
        # (never a debt); nothing of theirs is in a lot yet.
        parts = tuple((rule, given, given - _taken_back_target(given, amount, refunded), why)
                      for rule, given, _, why in waiting.parts)
        left = replace(waiting, parts=parts, status="refunded" if not any(k for _, _, k, _ in parts) else "pending")
        pending = account.engagement.pending - (waiting.points - left.points)
        engagement = replace(engagement or account.engagement, pending=pending)
        mine = []
    if qualifying_back:
        engagement, _ = tiers.qualify(engagement or account.engagement, -qualifying_back, base.paid_at or now, rules, now)
    own = _take_back(rules, account, mine, now)
    also = []
    for member, member_takes in takes.items():
        other = (others or {}).get(member)
        theirs = _take_back(rules, other, member_takes, now) if other is not None else None
        if theirs is not None and theirs.entries:
            also.append(Change(member_id=member, expected_version=other.version, balance_delta=theirs.balance_delta,
                               debt_delta=theirs.debt_delta, last_tx=theirs.last_tx, lots=theirs.lots,
                               entries=theirs.entries))
    if closed is not None:
        also.append(closed)
    if not own.entries and not also and engagement is None and withdrawn is None and left is None:
        return Change(member_id=event.member_id, expected_version=None, order=state, touches_account=False), 0, account.balance
    change = Change(member_id=event.member_id, expected_version=account.version, balance_delta=own.balance_delta,
                    debt_delta=own.debt_delta, last_tx=own.last_tx, lots=own.lots, entries=own.entries, order=state,
                    engagement=engagement, redemption=withdrawn,
                    redemption_expected_status="completed" if withdrawn else None, also=tuple(also), pending=left)
    return change, own.balance_delta, account.balance + own.balance_delta
