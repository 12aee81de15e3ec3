"""The review queue of held earnings and the risk sightings, and the one read of an
activity.

Items (PK / SK):
  REVIEW#<review_id> / REVIEW               a review: held points and how approval credits them
  REVIEWS#<status> / <created utc>#<id>     the queue: a copy of each review under its status
                                            (open ones oldest first; approved / rejected kept)
  DEVICE#<hash> / SEEN, IP#<hash> / SEEN    the members seen on one device or IP in the risk
                                            window (keyed hashes, never the raw value; TTL)

A review is written in the transaction that holds its points (the member's `pending`
moves with it, under the account's version check) and decided in the one that credits
or drops them, conditional on the status it was read in.
"""
from __future__ import annotations

import base64
from datetime import timedelta

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist

from ...domain import parse_time, utc_key
from ...errors import Invalid
from ...records import ActivityContext, Change, Review, Sighting
from .base import IsoTime, JsonText, LedgerModel, LedgerTable, Transaction, member_pk, raw_key, translated
from .members import PROFILE, MemberItem, account_of
from .orders import IDEM, IdempotencyItem, idempotency_of, idempotency_pk

REVIEW = "REVIEW"
SEEN = "SEEN"
# A sighting item lives this long after its latest write (the risk window is at most 7 days).
SIGHTING_TTL = timedelta(days=8)


class ReviewItem(LedgerModel):
    review_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    points = NumberAttribute()
    reason = UnicodeAttribute()
    created_at = IsoTime()
    status = UnicodeAttribute()
    entry_type = UnicodeAttribute()
    entry_reason = UnicodeAttribute()
    source = UnicodeAttribute()
    earned_at = IsoTime()
    meta = JsonText(null=True)
    note = UnicodeAttribute(null=True)
    operator_id = UnicodeAttribute(null=True)
    decided_at = IsoTime(null=True)


class QueuedReviewItem(ReviewItem):
    """A review in the queue of its status: the review's attributes under the queue's key."""


class SightingItem(LedgerModel):
    members = JsonText()
    version = NumberAttribute()
    ttl = NumberAttribute(null=True)


def review_pk(review_id: str) -> str:
    return f"REVIEW#{review_id}"


def queue_pk(status: str) -> str:
    return f"REVIEWS#{status}"


def queue_sk(review: Review) -> str:
    return f"{utc_key(review.created_at)}#{review.review_id}"


def _fields(r: Review) -> dict:
    return dict(review_id=r.review_id, member_id=r.member_id, kind=r.kind, points=r.points, reason=r.reason,
                created_at=r.created_at, status=r.status, entry_type=r.entry_type, entry_reason=r.entry_reason,
                source=r.source, earned_at=r.earned_at, meta=r.meta or None, note=r.note or None,
                operator_id=r.operator_id or None, decided_at=r.decided_at)


def review_of(item: ReviewItem) -> Review:
    return Review(review_id=item.review_id, member_id=item.member_id, kind=item.kind, points=int(item.points),
                  reason=item.reason, created_at=item.created_at, entry_type=item.entry_type,
                  entry_reason=item.entry_reason, source=item.source, earned_at=item.earned_at,
                  meta=item.meta or {}, status=item.status, note=item.note, operator_id=item.operator_id,
                  decided_at=item.decided_at)


def sighting_of(key: str, item: SightingItem | None) -> Sighting:
    if item is None:
        return Sighting(key=key)
    return Sighting(key=key, members=tuple(tuple(m) for m in item.members), version=int(item.version))


def add_review_writes(tx: Transaction, table: LedgerTable, change: Change, label: str = "review") -> None:
    """The review (conditional on its status as read, or on not existing yet), its place
    in the queue of its status, and each sighting under its version check. `label`: the
    review's item label ("review" for the change's member; another member's part of the
    change, `Change.also`, labels its own)."""
    review = change.review
    if review is not None:
        model, queued = table.bind(ReviewItem), table.bind(QueuedReviewItem)
        expected = change.review_expected_status
        tx.put(label, model(review_pk(review.review_id), REVIEW, **_fields(review)),
               model.pk.does_not_exist() if expected is None else model.status == expected)
        if expected is not None and expected != review.status:
            tx.delete(f"queue-old:{label}", queued(queue_pk(expected), queue_sk(review)))
        tx.put(f"queue:{label}", queued(queue_pk(review.status), queue_sk(review), **_fields(review)))
    seen = table.bind(SightingItem)
    for sighting in change.sightings:
        latest = max((parse_time(at) for _, at in sighting.members), default=None)
        ttl = int((latest + SIGHTING_TTL).timestamp()) if latest else None
        condition = seen.pk.does_not_exist() if sighting.version == 0 else seen.version == sighting.version
        tx.put("sighting", seen(sighting.key, SEEN, members=[list(m) for m in sighting.members],
                                version=sighting.version + 1, ttl=ttl), condition)


class DynamoReviewStore:
    """Implements `loyalty.ports.ReviewStore`."""

    def __init__(self, table: LedgerTable):
        self.table = table
        self.ReviewRecord = table.bind(ReviewItem)
        self.QueuedReview = table.bind(QueuedReviewItem)
        self.Sighting = table.bind(SightingItem)
        self._Member = table.bind(MemberItem)
        self._Idempotency = table.bind(IdempotencyItem)

    @translated
    def load_activity_context(self, member_id: str, idempotency_key: str | None,
                              sighting_keys: tuple[str, ...] = ()) -> ActivityContext:
        """The member's item (account and time zone), the idempotency record (unless the
        key is None) and the sightings, in one BatchGetItem."""
        member_key = (member_pk(member_id), PROFILE)
        idem_key = (idempotency_pk(idempotency_key), IDEM) if idempotency_key else None   # None: not read
        keys = [(self._Member, *member_key)] + ([(self._Idempotency, *idem_key)] if idem_key else [])
        keys += [(self.Sighting, key, SEEN) for key in sighting_keys]
        found = self.table.batch_get(keys)
        member, idem = found.get(member_key), found.get(idem_key) if idem_key else None
        return ActivityContext(account=account_of(member_id, member),
                               time_zone=(member.profile or {}).get("time_zone") if member is not None else None,
                               idempotency=idempotency_of(idem) if idem else None,
                               sightings={key: sighting_of(key, found.get((key, SEEN))) for key in sighting_keys},
                               member_found=member is not None)

    @translated
    def get_review(self, review_id: str) -> Review | None:
        try:
            return review_of(self.ReviewRecord.get(review_pk(review_id), REVIEW, consistent_read=True))
        except DoesNotExist:
            return None

    @translated
    def reviews_page(self, status: str, cursor: str | None, limit: int) -> tuple[list[Review], str | None]:
        """The queue of `status`, oldest first, and the cursor to continue from."""
        start = None
        if cursor:
            start = raw_key(self.QueuedReview, queue_pk(status), decoded_cursor(cursor))
        items = list(self.QueuedReview.query(queue_pk(status), limit=limit + 1, last_evaluated_key=start,
                                             consistent_read=True))
        page = items[:limit]
        return [review_of(i) for i in page], (encode_cursor(page[-1].sk) if len(items) > limit else None)


def encode_cursor(sk: str) -> str:
    return base64.urlsafe_b64encode(sk.encode()).decode().rstrip("=")


def decoded_cursor(cursor: str) -> str:
    try:
        sk = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid([{"field": "cursor", "problem": "not a cursor this API gave out"}]) from exc
    if "#" not in sk:
        raise Invalid([{"field": "cursor", "problem": "not a cursor this API gave out"}])
    return sk

