"""The ledger side of the loyalty table, on PynamoDB: one module per aggregate, each
with its item models (mapped to the frozen domain types at the boundary; no model
leaves this package) and the store of its port.

Item layout (PK / SK):
  MEMBER#<id> / PROFILE                   balance, debt, version, last_tx, profile   members.py
  PHONE#<E.164> / ALIAS, OPENID#<id> / ALIAS   the one member holding that contact   members.py
  MEMBER#<id> / LOT#<expires utc>#<lot>   a lot; EXP_PK/EXP_SK only while points remain lots.py
  MEMBER#<id> / TX#<recorded utc>#<entry> a ledger entry (append-only)               entries.py
  ORDER#<order_id> / ORDER                what an order earned and had refunded      orders.py
  IDEM#<key> / IDEM                       the answer to an externally triggered write orders.py
  MEMBER#<id> / REDEMPTION#<id>           a redemption (an upgrade gift's too)       redemptions.py
  MEMBER#<id> / WAIT#<order_id>           order points in the return window (L5)     pending.py
  STOCK#<item_id> / STOCK                 how many of a catalog item were issued     redemptions.py
  MEMBER#<id> / CONSENT#<channel>#...     one consent decision                       consents.py
  MEMBER#<id> / DISPUTE#<id>              a dispute of one entry                     disputes.py
  REVIEW#disputes / <created utc>#<id>    the operators' review queue (open disputes) disputes.py
  REVIEW#<id> / REVIEW, REVIEWS#<status> / <created utc>#<id>   held earnings' reviews   reviews.py
  DEVICE#<hash> / SEEN, IP#<hash> / SEEN  members seen on one device / IP (risk, TTL)  reviews.py
  CHALLENGE#<id> / CHALLENGE, CHALLENGES / <ends_on>#<id>, MEMBER#<id> / INVITE#<challenge>,
  CHALLENGE#<id>#P#<shard> / MEMBER#<mid> | SCORE#<month>#<mid>   check-in challenges  challenges.py
Expiry index: EXP_PK = EXP#<utc day>#<shard>, EXP_SK = <expires utc>#<member>#<lot>; and,
for pending credits while pending, EXP_PK = REL#<utc day>#<shard>, EXP_SK = <release utc>#<member>#<order>.

Stores: DynamoAccountStore (accounts.py), DynamoProfileStore (members.py),
DynamoConsentStore (consents.py), DynamoDisputeStore (disputes.py), and
DynamoLedgerStore, all four over one table and one connection (base.py).
"""
from __future__ import annotations

from typing import Any

from .accounts import DynamoAccountStore
from .base import LedgerTable
from .challenges import DynamoChallengeStore
from .consents import DynamoConsentStore
from .disputes import DynamoDisputeStore
from .members import DynamoProfileStore
from .reviews import DynamoReviewStore


class DynamoLedgerStore(DynamoAccountStore, DynamoProfileStore, DynamoConsentStore, DynamoDisputeStore,
                        DynamoReviewStore, DynamoChallengeStore):
    """Implements `loyalty.ports.LedgerStore`: the four stores over one table, for callers
    that take the whole ledger side (the messaging side, the operator tools). The table
    name is the settings' unless given; `client` (tests, the benchmark) replaces the
    layer's boto3 client."""

    def __init__(self, table_name: str | None, shards: int, client: Any | None = None):
        table = LedgerTable(table_name, client)
        DynamoAccountStore.__init__(self, table, shards)
        DynamoProfileStore.__init__(self, table)
        DynamoConsentStore.__init__(self, table)
        DynamoDisputeStore.__init__(self, table)
        DynamoReviewStore.__init__(self, table)
        DynamoChallengeStore.__init__(self, table)


__all__ = ["DynamoAccountStore", "DynamoChallengeStore", "DynamoConsentStore", "DynamoDisputeStore", "DynamoLedgerStore",
           "DynamoProfileStore", "DynamoReviewStore", "LedgerTable"]
