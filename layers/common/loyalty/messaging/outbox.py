"""The outbox: one record per message, from queued to read, with its status history.

Statuses only move forward (a late "delivered" never undoes "read"): each has a rank,
and a status update is conditional on the record's rank being lower.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ..privacy import mask_contact

RANK = {"queued": 0, "deferred": 0, "dead_lettered": 0,
        "sending": 1, "sent": 2, "delivered": 3, "failed": 3, "undelivered": 3,
        "read": 4, "skipped": 5, "suppressed": 5}
TERMINAL_BEFORE_SEND = {"skipped", "suppressed"}


@dataclass(frozen=True)
class OutboxRecord:
    message_id: str
    member_id: str
    kind: str                      # reminder | notice | reply | confirmation
    template: str
    category: str                  # utility | marketing | transactional
    channel: str | None
    to: str | None
    locale: str
    variables: dict
    payloads: dict                 # channel -> rendered payload (the chosen one and its fallbacks)
    fallbacks: tuple[str, ...]
    status: str
    created_at: datetime
    history: tuple[tuple[str, str, str], ...] = ()    # (status, ISO time, detail)
    provider: str | None = None
    provider_message_id: str | None = None
    not_before: datetime | None = None
    attempts: int = 0
    extra: dict = field(default_factory=dict)
    lease_until: datetime | None = None           # while a sender holds it: the claim's lease (and token)


@dataclass(frozen=True)
class ClaimRefused:
    """Why a sender could not take a message: what the record showed at that moment."""

    status: str
    channel: str | None
    lease_until: datetime | None = None


def masked(to: str | None) -> str | None:
    """Phone numbers and OpenIDs in views and logs: enough to recognise, not to use."""
    return mask_contact(to)


def message_view(record: OutboxRecord) -> dict:
    return {"message_id": record.message_id, "member_id": record.member_id, "kind": record.kind,
            "template": record.template, "category": record.category, "channel": record.channel,
            "to": masked(record.to), "status": record.status, "provider": record.provider,
            "provider_message_id": record.provider_message_id, "created_at": record.created_at.isoformat(),
            "variables": record.variables,
            "history": [{"status": s, "at": at, **({"detail": d} if d else {})} for s, at, d in record.history]}
