"""Redemptions (MEMBER#<id> / REDEMPTION#<id>) and how many of a catalog item were
issued (STOCK#<item_id> / STOCK)."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute

from ...records import Redemption
from .base import IsoTime, JsonText, LedgerModel, member_pk

REDEMPTION = "REDEMPTION#"
STOCK = "STOCK"


class RedemptionItem(LedgerModel):
    redemption_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    item_id = UnicodeAttribute()
    points = NumberAttribute()
    status = UnicodeAttribute()     # completed | pending | fulfilled | cancelled
    code = UnicodeAttribute()
    created_at = IsoTime()
    request_hash = UnicodeAttribute()
    allocation = JsonText()         # [[lot_id, points], ...]
    history = JsonText()            # [[status, ISO time], ...]


class StockItem(LedgerModel):
    issued = NumberAttribute(null=True)


def redemption_sk(redemption_id: str) -> str:
    return f"{REDEMPTION}{redemption_id}"


def stock_pk(item_id: str) -> str:
    return f"STOCK#{item_id}"


def redemption_item(model: type[RedemptionItem], r: Redemption) -> RedemptionItem:
    return model(member_pk(r.member_id), redemption_sk(r.redemption_id), redemption_id=r.redemption_id,
                 member_id=r.member_id, item_id=r.item_id, points=r.points, status=r.status, code=r.code,
                 created_at=r.created_at, request_hash=r.request_hash,
                 allocation=[list(pair) for pair in r.allocation], history=[list(pair) for pair in r.history])


def redemption_of(item: RedemptionItem) -> Redemption:
    return Redemption(redemption_id=item.redemption_id, member_id=item.member_id, item_id=item.item_id,
                      points=int(item.points), status=item.status, code=item.code, created_at=item.created_at,
                      request_hash=item.request_hash, allocation=tuple(tuple(pair) for pair in item.allocation),
                      history=tuple(tuple(pair) for pair in item.history))
