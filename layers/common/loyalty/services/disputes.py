"""Disputes: a member objects to an entry; an operator upholds (with a correcting
ADJUST entry) or rejects it. Entries are never edited."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from ..domain import stable_id
from ..errors import AlreadyApplied, Conflict, Invalid, NotFound
from ..ports import AccountStore, DisputeStore
from ..records import Dispute
from .adjustments import adjust_points

if TYPE_CHECKING:
    from ..rules import Rules


def open_dispute(disputes: DisputeStore, accounts: AccountStore, member_id: str, entry_id: str, reason: str,
                 idempotency_key: str, now: datetime) -> tuple[Dispute, bool]:
    """File a dispute of one of the member's entries (once per idempotency key)."""
    dispute_id = "d-" + stable_id("dispute", member_id, idempotency_key)
    existing = disputes.get_dispute(member_id, dispute_id)
    if existing is not None:
        if existing.entry_id != entry_id:
            raise Conflict(f"idempotency_key {idempotency_key!r} was already used for entry {existing.entry_id}")
        return existing, False
    if accounts.find_entry(member_id, entry_id) is None:
        raise Invalid([{"field": "entry_id", "problem": f"member {member_id} has no entry {entry_id!r}"}])
    dispute = Dispute(dispute_id=dispute_id, member_id=member_id, entry_id=entry_id, reason=reason, status="open",
                      created_at=now)
    try:
        disputes.save_dispute(dispute, expected_status=None)
    except AlreadyApplied:
        return disputes.get_dispute(member_id, dispute_id), False
    return dispute, True


def resolve_dispute(disputes: DisputeStore, accounts: AccountStore, rules: "Rules", member_id: str, dispute_id: str,
                    outcome: str, points: int, operator_id: str, note: str, now: datetime) -> Dispute:
    """Uphold (optionally moving `points` with an ADJUST entry) or reject. Resolving again
    with the same outcome answers the resolution; another outcome is a Conflict."""
    dispute = disputes.get_dispute(member_id, dispute_id)
    if dispute is None:
        raise NotFound(f"member {member_id} has no dispute {dispute_id}")
    if dispute.status != "open":
        if dispute.status == outcome and dispute.points == points:
            return dispute
        raise Conflict(f"dispute {dispute_id} was already resolved as {dispute.status}")
    if outcome == "rejected" and points:
        raise Invalid([{"field": "points", "problem": "a rejected dispute moves no points"}])
    if points:
        # Keyed by the dispute: a retried resolution cannot adjust twice.
        adjust_points(accounts, rules, member_id, points, f"dispute {dispute_id}: {note}", operator_id,
                      f"dispute#{dispute_id}", stable_id(str(points), note), now)
    resolved = replace(dispute, status=outcome, points=points, operator_id=operator_id, outcome_note=note,
                       resolved_at=now)
    disputes.save_dispute(resolved, expected_status="open")
    return resolved


def dispute_view(d: Dispute) -> dict:
    body = {"dispute_id": d.dispute_id, "member_id": d.member_id, "entry_id": d.entry_id, "reason": d.reason,
            "status": d.status, "created_at": d.created_at.isoformat()}
    if d.status != "open":
        body.update({"points": d.points, "operator_id": d.operator_id, "note": d.outcome_note,
                     "resolved_at": d.resolved_at.isoformat() if d.resolved_at else None})
    return body
