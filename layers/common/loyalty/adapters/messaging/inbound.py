"""Provider pushes, stored before they are applied:

  INBOUND#<provider>#<dedup key> / IN      the push (`body` keeps the sender whole)

While a push is not processed it also carries PENDING_PK = PENDING#<shard> and
PENDING_SK = <due, UTC key>#<provider>#<dedup key>, which put it in the sparse
PendingPushes index: the sweep (reapply_pushes) reads only the pushes due again, however
old, and a processed push leaves the index when those attributes go. Each failed
application pushes its due time back (loyalty.messaging.pushes.retry_due), so a push
that keeps failing never holds up the others.

The table's `ttl` deletes a push INBOUND_KEEP_PROCESSED after it was processed, or
INBOUND_KEEP_UNPROCESSED after it came in while it is not (loyalty.messaging.pushes: the
policy, the same for every store)."""
from __future__ import annotations

from datetime import datetime

from pynamodb.attributes import NumberAttribute, TTLAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex

from ...domain import stable_id, utc_key
from ...messaging.ports import StoredPush
from ...messaging.pushes import kind_of
from .base import IsoTime, JsonText, TableItem

PENDING_PUSHES = "PendingPushes"
PENDING_SHARDS = 4


def inbound_key(provider: str, dedup_key: str) -> tuple[str, str]:
    return f"INBOUND#{provider}#{dedup_key}", "IN"


def pending_key(provider: str, dedup_key: str, due: datetime) -> tuple[str, str]:
    shard = int(stable_id("inbound", provider, dedup_key, length=8), 16) % PENDING_SHARDS
    return f"PENDING#{shard}", f"{utc_key(due)}#{provider}#{dedup_key}"


class PendingPushesIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = PENDING_PUSHES
        projection = AllProjection()

    PENDING_PK = UnicodeAttribute(hash_key=True)
    PENDING_SK = UnicodeAttribute(range_key=True)


class StoredPushItem(TableItem):
    provider = UnicodeAttribute(null=True)     # also in the key; absent on pushes stored by earlier versions
    dedup_key = UnicodeAttribute(null=True)
    kind = UnicodeAttribute(null=True)
    body = JsonText()
    at = IsoTime()
    ttl = TTLAttribute()
    processed_at = IsoTime(null=True)
    failed_at = IsoTime(null=True)
    error = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    PENDING_PK = UnicodeAttribute(null=True)
    PENDING_SK = UnicodeAttribute(null=True)

    pending = PendingPushesIndex()


def stored_push(item: StoredPushItem) -> StoredPush:
    return StoredPush(provider=item.provider, dedup_key=item.dedup_key, kind=item.kind or kind_of(item.body),
                      body=item.body, at=item.at, attempts=int(item.attempts or 0), error=item.error)
