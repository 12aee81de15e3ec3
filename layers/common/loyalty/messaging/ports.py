"""The messaging store: what the dispatcher, the senders, the conversations (receipts and
member pushes) and the schedules need from storage. One real adapter
(`loyalty.adapters.messaging.store.DynamoMessagingStore`), one fake
(`loyalty.adapters.messaging_memory.MemoryMessagingStore`), one contract suite
(tests/messaging_contract.py) that both pass.

Errors, the same for every implementation: `Transient` for what is worth retrying
(throttling, a transaction conflict), `ConcurrentUpdate` when something the caller read
has moved (the caller reads again and decides again). A write whose condition says the
work is done already (a duplicate job, a status that would move back) answers False.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .dispatch import CapCounters, MemberSnapshot
from .outbox import ClaimRefused, OutboxRecord


class DailyMessageTaken(Exception):
    """The member has had their one message of this kind for that member-local day
    (create_message's `daily`): nothing was written."""


@dataclass(frozen=True)
class DeferredJob:
    """A job waiting for its send window; `key` says where it is stored (for its removal)."""

    job_id: str
    job: dict
    not_before: datetime
    key: tuple[str, str]


@dataclass(frozen=True)
class StoredPush:
    """A provider push kept before it was applied (member replies, follow and preference
    events, receipts of a message not yet known). `body` keeps the sender whole: never log
    it. `attempts` counts the failed applications noted on it."""

    provider: str
    dedup_key: str
    kind: str            # message | event | status
    body: dict
    at: datetime         # when it came in
    attempts: int = 0
    error: str | None = None


class MessagingStore(Protocol):
    # --- the member, in one read --------------------------------------------------------
    def member_snapshot(self, member_id: str) -> MemberSnapshot:
        """Caps, the consent in force per channel, lots and profile, in one read."""

    # --- outbox ---------------------------------------------------------------------------
    def create_message(self, record: OutboxRecord, caps: tuple[CapCounters, CapCounters] | None = None,
                       daily: str | None = None) -> bool:
        """Write a new record; False if the message exists (a duplicate job). With `caps`
        (as read, as they become) the member's marketing counters move in the same write:
        ConcurrentUpdate, and nothing written, when they moved since they were read. With
        `daily` (a member-local date), the member's one challenge message of that day is
        taken in the same write: DailyMessageTaken, and nothing written, when another
        message took it."""

    def requeue_deferred(self, record: OutboxRecord, caps: tuple[CapCounters, CapCounters] | None = None,
                         daily: str | None = None) -> bool:
        """Replace a deferred record by `record` (queued); False if it is no longer
        deferred (released already). `caps` and `daily` as for create_message."""

    def message(self, message_id: str) -> OutboxRecord | None: ...

    def claim(self, message_id: str, channel: str, now: datetime, lease_s: int = 120) -> OutboxRecord | ClaimRefused:
        """Take the message for sending on `channel` (queued, dead-lettered, or a lease
        that ran out); else what the record showed, from the same read. The claimed
        record carries its `lease_until`, the claim's token for mark_sent."""

    def release_claim(self, message_id: str, at: datetime, detail: str, *, last: bool = False,
                      quiet: bool = False) -> bool:
        """A transient failure: back to queued (dead_lettered when `last`), the attempt in
        the history unless `quiet`. False if the message is not being sent."""

    def mark_sent(self, message_id: str, provider: str, provider_message_id: str, at: datetime, *,
                  channel: str, lease_until: datetime | None) -> bool:
        """The provider accepted the send made under the claim (`channel`, `lease_until`):
        status sent, the provider's id, and the alias that finds the message from that id.
        False when the record moved on meanwhile (a receipt came first, a failure receipt
        re-routed it, another sender took over): the provider id and the alias are
        recorded all the same and the status is left as it is. Transient when it could
        not be written: the send stands, record it again."""

    def record_status(self, message_id: str, status: str, at: datetime, detail: str = "",
                      channel: str | None = None, provider_message_id: str | None = None) -> bool:
        """Move the status forward (False: unknown message, or not forward). A receipt's
        `channel` and `provider_message_id` make it count only for that channel and
        never for a send that was superseded."""

    def switch_channel(self, message_id: str, channel: str, to: str, at: datetime, detail: str,
                       fallbacks: tuple[str, ...] = (), *, after_receipt: bool = False,
                       payloads: dict | None = None, step: str = "fallback",
                       superseded: str | None = None) -> bool:
        """Queue the message again on `channel`: from `sending` (a failed send) or, with
        `after_receipt`, from the failure a receipt reported (`superseded`: that send's
        provider id, whose late receipts then change nothing)."""

    def message_id_for(self, provider: str, provider_message_id: str) -> str | None: ...

    def member_messages(self, member_id: str, limit: int = 50) -> list[OutboxRecord]:
        """The member's records, newest first."""

    # --- deferred jobs ------------------------------------------------------------------
    def defer(self, job: dict, not_before: datetime) -> None:
        """Keep `job` (with its `job_id`) until `not_before`; the same job twice is kept once."""

    def due_deferred(self, now: datetime, limit: int = 500) -> list[DeferredJob]:
        """Jobs whose time came at or before `now`, however long ago, soonest first per
        store partition, at most `limit`."""

    def remove_deferred(self, deferred: DeferredJob) -> None: ...

    # --- stored pushes ------------------------------------------------------------------
    def store_inbound(self, provider: str, dedup_key: str, body: dict, at: datetime, kind: str | None = None) -> bool:
        """Keep a push before it is applied (False: stored already, a provider's retry). It
        is due for re-application INBOUND_RETRY_AFTER after `at` unless marked processed.
        `kind` (message, event, status) defaults to what the body looks like."""

    def inbound_processed(self, provider: str, dedup_key: str, at: datetime) -> bool:
        """Applied: no longer due, and kept a shorter while (False: no such push)."""

    def inbound_failed(self, provider: str, dedup_key: str, at: datetime, error: str) -> bool:
        """Applying it failed: why (phone numbers masked), one more attempt counted, and
        due again after a back-off (False: no such push)."""

    def due_inbound(self, now: datetime, limit: int = 100) -> list[StoredPush]:
        """Pushes stored and not processed whose re-application is due at `now`."""
