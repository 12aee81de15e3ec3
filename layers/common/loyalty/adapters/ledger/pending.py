"""An order's points waiting out the return window (MEMBER#<id> / WAIT#<order_id>), in
the expiry index while pending under their own key (EXP_PK = REL#<utc day>#<shard>,
EXP_SK = <release utc>#<member>#<order_id>): the release reads what is due, never the table."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute

from ...domain import utc_key
from ...records import PendingCredit
from ...services.expiry import index_day, shard_of
from .base import IsoTime, JsonText, LedgerModel, Transaction, member_pk

WAIT = "WAIT#"


class PendingItem(LedgerModel):
    member_id = UnicodeAttribute()
    order_id = UnicodeAttribute()
    lot_id = UnicodeAttribute()
    remaining = NumberAttribute()      # the points still pending (projected into the index)
    release_at = IsoTime()
    earned_at = IsoTime()
    expires_at = IsoTime()
    source = UnicodeAttribute()
    parts = JsonText()
    status = UnicodeAttribute()
    version = NumberAttribute()
    exp_pk = UnicodeAttribute(null=True, attr_name="EXP_PK")
    exp_sk = UnicodeAttribute(null=True, attr_name="EXP_SK")


def pending_sk(order_id: str) -> str:
    return f"{WAIT}{order_id}"


def release_key(day, shard: int) -> str:
    return f"REL#{day.isoformat()}#{shard}"


def add_pending_write(tx: Transaction, model: type[PendingItem], pending: PendingCredit, shards: int) -> None:
    """The record's next state (version + 1) on condition of the version read; in the
    index only while pending."""
    keys = (release_key(index_day(pending.release_at), shard_of(pending.member_id, shards)),
            f"{utc_key(pending.release_at)}#{pending.member_id}#{pending.order_id}") \
        if pending.status == "pending" else (None, None)
    item = model(member_pk(pending.member_id), pending_sk(pending.order_id), member_id=pending.member_id,
                 order_id=pending.order_id, lot_id=pending.lot_id, remaining=pending.points,
                 release_at=pending.release_at, earned_at=pending.earned_at, expires_at=pending.expires_at,
                 source=pending.source, parts=[list(p) for p in pending.parts], status=pending.status,
                 version=pending.version + 1, exp_pk=keys[0], exp_sk=keys[1])
    condition = model.pk.does_not_exist() if pending.version == 0 else model.version == pending.version
    tx.put("pending", item, condition)


def pending_of(item: PendingItem) -> PendingCredit:
    return PendingCredit(member_id=item.member_id, order_id=item.order_id, release_at=item.release_at,
                         lot_id=item.lot_id, earned_at=item.earned_at, expires_at=item.expires_at, source=item.source,
                         parts=tuple((r, int(g), int(k), why) for r, g, k, why in item.parts), status=item.status,
                         version=int(item.version))


def due_key(exp_sk: str) -> tuple[str, str]:
    """(member, order) from an index key (member ids hold no '#'; an order id may)."""
    _, member, order_id = exp_sk.split("#", 2)
    return member, order_id
