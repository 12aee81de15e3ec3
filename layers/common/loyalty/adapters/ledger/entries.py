"""Ledger entries: MEMBER#<id> / TX#<recorded utc>#<entry>, append-only. Keyed by a
per-member strictly increasing time, so a member's entries read in the order written."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute

from ...domain import EntryType, LedgerEntry, utc_key
from .base import IsoTime, JsonText, LedgerModel

TX = "TX#"


class EntryItem(LedgerModel):
    entry_id = UnicodeAttribute()
    type = UnicodeAttribute()
    amount = NumberAttribute()
    recorded_at = IsoTime()
    reason = UnicodeAttribute()
    source = UnicodeAttribute()
    lots = JsonText()               # [[lot_id, points], ...]
    meta = JsonText(null=True)


def entry_sk(entry: LedgerEntry) -> str:
    return f"{TX}{utc_key(entry.recorded_at)}#{entry.entry_id}"


def entry_item(model: type[EntryItem], pk: str, entry: LedgerEntry) -> EntryItem:
    return model(pk, entry_sk(entry), entry_id=entry.entry_id, type=entry.type.value, amount=entry.amount,
                 recorded_at=entry.recorded_at, reason=entry.reason, source=entry.source,
                 lots=[list(pair) for pair in entry.lots], meta=entry.meta or None)


def entry_of(item: EntryItem) -> LedgerEntry:
    return LedgerEntry(entry_id=item.entry_id, type=EntryType(item.type), amount=int(item.amount),
                       recorded_at=item.recorded_at, reason=item.reason, source=item.source,
                       lots=tuple(tuple(pair) for pair in item.lots), meta=item.meta or {})
