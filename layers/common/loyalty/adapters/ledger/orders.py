"""What an order earned and had taken back (ORDER#<order_id> / ORDER), and the answers to
externally triggered writes, kept to answer their retries (IDEM#<key> / IDEM)."""
from __future__ import annotations

from pynamodb.attributes import BooleanAttribute, NumberAttribute, UnicodeAttribute

from ...records import IdempotencyRecord, OrderState
from .base import IsoTime, JsonText, LedgerModel

ORDER = "ORDER"
IDEM = "IDEM"


class OrderItem(LedgerModel):
    order_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    currency = UnicodeAttribute()
    amount_minor = NumberAttribute()
    paid = BooleanAttribute()
    paid_at = IsoTime(null=True)
    points_earned = NumberAttribute()
    lot_id = UnicodeAttribute(null=True)
    refunded_minor = NumberAttribute()
    points_taken_back = NumberAttribute()
    cancelled = BooleanAttribute()
    version = NumberAttribute()     # each write checks the version it read and adds one
    engagement = JsonText(null=True)  # what hung on the payment: counted, bonuses, rewarded, badges, gift


class IdempotencyItem(LedgerModel):
    body_hash = UnicodeAttribute()
    member_id = UnicodeAttribute()
    response = JsonText()


def order_pk(order_id: str) -> str:
    return f"ORDER#{order_id}"


def idempotency_pk(key: str) -> str:
    return f"IDEM#{key}"


def order_item(model: type[OrderItem], order: OrderState) -> OrderItem:
    """The order's next state: its version is the one read plus one."""
    return model(order_pk(order.order_id), ORDER, order_id=order.order_id, member_id=order.member_id,
                 currency=order.currency, amount_minor=order.amount_minor, paid=order.paid, paid_at=order.paid_at,
                 points_earned=order.points_earned, lot_id=order.lot_id, refunded_minor=order.refunded_minor,
                 points_taken_back=order.points_taken_back, cancelled=order.cancelled, version=order.version + 1,
                 engagement=_engagement_document(order))


def _engagement_document(order: OrderState) -> dict | None:
    document = {"counted": order.counted, "bonuses": [list(b) for b in order.bonuses],
                "rewarded": list(order.rewarded), "badges": list(order.badges), "gift": order.gift,
                "pending": order.pending}
    return {k: v for k, v in document.items() if v not in (False, [], None)} or None


def order_of(item: OrderItem) -> OrderState:
    return OrderState(order_id=item.order_id, member_id=item.member_id, currency=item.currency,
                      amount_minor=int(item.amount_minor), paid=item.paid, paid_at=item.paid_at,
                      points_earned=int(item.points_earned), lot_id=item.lot_id,
                      refunded_minor=int(item.refunded_minor), points_taken_back=int(item.points_taken_back),
                      cancelled=item.cancelled, version=int(item.version), **_engagement_of(item.engagement))


def _engagement_of(document: dict | None) -> dict:
    document = document or {}
    return {"counted": bool(document.get("counted", False)),
            "bonuses": tuple((r, m, int(p), lot) for r, m, p, lot in document.get("bonuses", ())),
            "rewarded": tuple(document.get("rewarded", ())), "badges": tuple(document.get("badges", ())),
            "gift": document.get("gift"), "pending": bool(document.get("pending", False))}


def idempotency_item(model: type[IdempotencyItem], record: IdempotencyRecord) -> IdempotencyItem:
    return model(idempotency_pk(record.key), IDEM, body_hash=record.body_hash, member_id=record.member_id,
                 response=record.response)


def idempotency_of(item: IdempotencyItem) -> IdempotencyRecord:
    return IdempotencyRecord(key=item.pk.removeprefix("IDEM#"), body_hash=item.body_hash, response=item.response,
                             member_id=item.member_id)
