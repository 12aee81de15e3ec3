"""Lots (MEMBER#<id> / LOT#<expires utc>#<lot>) and the sparse expiry index over the
ones with points left (EXP_PK = EXP#<utc day>#<shard>, EXP_SK = <expires utc>#<member>#<lot>)."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection

from ...domain import Lot, LotWrite, utc_key
from ...records import DueLot
from ...services.expiry import index_day, shard_of
from .base import EXPIRY_INDEX, IsoTime, LedgerModel, Transaction, member_pk


class ExpiryIndex(GlobalSecondaryIndex):
    """What the nightly expiry and the reminder planning read: the lots due on a day, by shard."""

    class Meta:
        index_name = EXPIRY_INDEX
        projection = IncludeProjection(["member_id", "lot_id", "remaining", "expires_at"])

    exp_pk = UnicodeAttribute(hash_key=True, attr_name="EXP_PK")
    exp_sk = UnicodeAttribute(range_key=True, attr_name="EXP_SK")


class LotItem(LedgerModel):
    """A lot. EXP_PK / EXP_SK only while it has points left: the index stays sparse."""

    member_id = UnicodeAttribute()
    lot_id = UnicodeAttribute()
    earned_at = IsoTime()
    expires_at = IsoTime()
    points = NumberAttribute()
    remaining = NumberAttribute()
    source = UnicodeAttribute()
    exp_pk = UnicodeAttribute(null=True, attr_name="EXP_PK")
    exp_sk = UnicodeAttribute(null=True, attr_name="EXP_SK")

    expiry_index = ExpiryIndex()


def lot_sk(lot: Lot) -> str:
    return f"LOT#{utc_key(lot.expires_at)}#{lot.lot_id}"


def index_keys(member_id: str, lot: Lot, shards: int) -> tuple[str, str]:
    return (f"EXP#{index_day(lot.expires_at).isoformat()}#{shard_of(member_id, shards)}",
            f"{utc_key(lot.expires_at)}#{member_id}#{lot.lot_id}")


def lot_item(model: type[LotItem], member_id: str, lot: Lot, shards: int) -> LotItem:
    """A new lot's item, in the index when it has points."""
    exp_pk, exp_sk = index_keys(member_id, lot, shards) if lot.remaining > 0 else (None, None)
    return model(member_pk(member_id), lot_sk(lot), member_id=member_id, lot_id=lot.lot_id, earned_at=lot.earned_at,
                 expires_at=lot.expires_at, points=lot.points, remaining=lot.remaining, source=lot.source,
                 exp_pk=exp_pk, exp_sk=exp_sk)


def add_lot_write(tx: Transaction, model: type[LotItem], member_id: str, write: LotWrite, shards: int) -> None:
    """A new lot (which must not exist), or a lot's new remainder (on condition that it
    exists, and holds `expected_remaining` when given), leaving the index when empty."""
    lot = write.lot
    if write.new:
        tx.put("lot", lot_item(model, member_id, lot, shards), model.pk.does_not_exist())
        return
    if lot.remaining > 0:
        exp_pk, exp_sk = index_keys(member_id, lot, shards)
        actions = [model.remaining.set(lot.remaining), model.exp_pk.set(exp_pk), model.exp_sk.set(exp_sk)]
    else:
        actions = [model.remaining.set(lot.remaining), model.exp_pk.remove(), model.exp_sk.remove()]
    condition = model.pk.exists()
    if write.expected_remaining is not None:
        condition &= model.remaining == write.expected_remaining
    tx.update("lot", model(member_pk(member_id), lot_sk(lot)), actions, condition)


def lot_of(item: LotItem) -> Lot:
    return Lot(lot_id=item.lot_id, earned_at=item.earned_at, expires_at=item.expires_at, points=int(item.points),
               remaining=int(item.remaining), source=item.source)


def due_of(item: LotItem) -> DueLot:
    """A lot as the index shows it (the projected attributes only)."""
    return DueLot(member_id=item.member_id, lot_id=item.lot_id, remaining=int(item.remaining),
                  expires_at=item.expires_at)
