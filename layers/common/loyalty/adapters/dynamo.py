"""The ledger adapter's former module, kept only for what still imports it: the messaging
adapter (messaging_dynamo.py takes `_lot`, `_n`, `_s` and `member_pk` from here) and
tests written against `DynamoLedgerStore` here. The ledger adapter is
`loyalty.adapters.ledger` (PynamoDB models, one module per aggregate); delete this module
once nothing imports it."""
from __future__ import annotations

from ..domain import Lot
from .ledger import DynamoLedgerStore
from .ledger.base import member_pk
from .ledger.lots import LotItem, lot_of

__all__ = ["DynamoLedgerStore", "member_pk"]


def _s(value: str) -> dict:
    from boto3.dynamodb.types import TypeSerializer
    return TypeSerializer().serialize(value)


def _n(value: int) -> dict:
    from boto3.dynamodb.types import TypeSerializer
    return TypeSerializer().serialize(value)


def _lot(item: dict) -> Lot:
    """A lot from its item as DynamoDB answered it."""
    return lot_of(LotItem.from_raw_data(item))
