"""Disputes (MEMBER#<id> / DISPUTE#<id>) and the operators' review queue, a copy of each
open dispute under REVIEW#disputes / <created utc>#<member>#<id>, oldest first."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist

from ...domain import utc_key
from ...errors import AlreadyApplied, ConcurrentUpdate
from ...records import Dispute
from .base import Cancelled, IsoTime, LedgerModel, LedgerTable, Transaction, member_pk, translated

REVIEW_PK = "REVIEW#disputes"


class DisputeItem(LedgerModel):
    dispute_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    entry_id = UnicodeAttribute()
    reason = UnicodeAttribute()
    status = UnicodeAttribute()     # open | upheld | rejected
    created_at = IsoTime()
    points = NumberAttribute()
    outcome_note = UnicodeAttribute(null=True)
    operator_id = UnicodeAttribute(null=True)
    resolved_at = IsoTime(null=True)


class ReviewItem(DisputeItem):
    """An open dispute in the review queue: the dispute's attributes under the queue's key."""


def dispute_sk(dispute_id: str) -> str:
    return f"DISPUTE#{dispute_id}"


def review_sk(d: Dispute) -> str:
    return f"{utc_key(d.created_at)}#{d.member_id}#{d.dispute_id}"


def _fields(d: Dispute) -> dict:
    return dict(dispute_id=d.dispute_id, member_id=d.member_id, entry_id=d.entry_id, reason=d.reason,
                status=d.status, created_at=d.created_at, points=d.points, outcome_note=d.outcome_note or None,
                operator_id=d.operator_id or None, resolved_at=d.resolved_at)


def dispute_of(item: DisputeItem) -> Dispute:
    return Dispute(dispute_id=item.dispute_id, member_id=item.member_id, entry_id=item.entry_id, reason=item.reason,
                   status=item.status, created_at=item.created_at, outcome_note=item.outcome_note,
                   operator_id=item.operator_id, points=int(item.points), resolved_at=item.resolved_at)


class DynamoDisputeStore:
    """Implements `loyalty.ports.DisputeStore`."""

    def __init__(self, table: LedgerTable):
        self.table = table
        self.Dispute = table.bind(DisputeItem)
        self.Review = table.bind(ReviewItem)

    @translated
    def save_dispute(self, dispute: Dispute, expected_status: str | None) -> None:
        """The dispute and its place in the review queue (there while open), in one
        transaction conditional on the dispute's status as read."""
        model = self.Dispute
        tx = Transaction(self.table)
        tx.put("dispute", model(member_pk(dispute.member_id), dispute_sk(dispute.dispute_id), **_fields(dispute)),
               model.pk.does_not_exist() if expected_status is None else model.status == expected_status)
        review = self.Review(REVIEW_PK, review_sk(dispute), **_fields(dispute))
        if dispute.status == "open":
            tx.put("review", review)
        else:
            tx.delete("review", review)
        try:
            tx.commit()
        except Cancelled as cancelled:
            cancelled.reraise(_dispute_error(cancelled, dispute, expected_status))

    @translated
    def get_dispute(self, member_id: str, dispute_id: str) -> Dispute | None:
        try:
            return dispute_of(self.Dispute.get(member_pk(member_id), dispute_sk(dispute_id), consistent_read=True))
        except DoesNotExist:
            return None

    @translated
    def list_disputes(self, member_id: str) -> list[Dispute]:
        found = self.Dispute.query(member_pk(member_id), self.Dispute.sk.startswith("DISPUTE#"))
        return sorted((dispute_of(item) for item in found), key=lambda d: d.created_at, reverse=True)

    @translated
    def open_disputes(self, limit: int) -> list[Dispute]:
        return [dispute_of(item) for item in self.Review.query(REVIEW_PK, limit=limit)]


def _dispute_error(cancelled: Cancelled, dispute: Dispute, expected_status: str | None) -> Exception:
    """The dispute's condition failed: it exists already (AlreadyApplied) or its status
    moved (ConcurrentUpdate); otherwise a conflict or throttling is Transient."""
    if "dispute" in cancelled.failed():
        if expected_status is None:
            return AlreadyApplied(dispute.dispute_id)
        return ConcurrentUpdate("dispute moved")
    return cancelled.otherwise()
