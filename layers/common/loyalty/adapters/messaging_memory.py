"""An in-memory MessagingStore with the DynamoDB adapter's conditions and status ranks,
for unit tests of the dispatcher, the senders and the conversations. tests/messaging_contract.py
runs the same tests on both: the fake is trusted because both pass them.

The member's profile, consents and lots live in the ledger; the DynamoDB adapter reads
them from the same table, this one from `ledger` (any LedgerStore, through its port). It
knows the consent scopes the dispatcher uses (CONSENT_SCOPES), not every channel ever
consented to.

Tests can make the next call of a method fail or race: `faults[name]` holds exceptions
raised before the call does anything, `before[name]` callables run just before it writes
(another writer overtaking this one)."""
from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Callable

from ..domain import utc_key
from ..errors import ConcurrentUpdate
from ..messaging.dispatch import CONTACT, MARKETING_SCOPE, CapCounters, MemberSnapshot
from ..messaging.outbox import RANK, ClaimRefused, OutboxRecord
from ..messaging.ports import DailyMessageTaken, DeferredJob, StoredPush
from ..privacy import mask_phones
from ..messaging.pushes import INBOUND_KEEP_PROCESSED, INBOUND_KEEP_UNPROCESSED, INBOUND_RETRY_AFTER, kind_of, retry_due

CONSENT_SCOPES = tuple(CONTACT) + tuple(MARKETING_SCOPE.values())


def _json(value):
    """What a JSON attribute gives back (tuples come back as lists)."""
    return json.loads(json.dumps(value, ensure_ascii=False, default=str))


@dataclass
class _Push:
    push: StoredPush
    due: datetime | None
    expires: datetime
    processed_at: datetime | None = None
    failed_at: datetime | None = None


class MemoryMessagingStore:
    """Implements loyalty.messaging.ports.MessagingStore in memory; thread-safe."""

    def __init__(self, ledger=None):
        self.ledger = ledger
        self._lock = threading.RLock()
        self.records: dict[str, OutboxRecord] = {}
        self.superseded: dict[str, set[str]] = defaultdict(set)
        self.aliases: dict[tuple[str, str], str] = {}
        self.caps: dict[str, CapCounters] = {}
        self.daily: dict[tuple[str, str], str] = {}    # (member, local date) -> the message that took it
        self.deferred: dict[str, DeferredJob] = {}
        self.pushes: dict[tuple[str, str], _Push] = {}
        self.faults: dict[str, list[Exception]] = defaultdict(list)
        self.before: dict[str, list[Callable[[], None]]] = defaultdict(list)

    def _enter(self, name: str) -> None:
        """Injected faults and races, outside the lock (a racer calls this store too)."""
        if self.faults[name]:
            raise self.faults[name].pop(0)
        while self.before[name]:
            self.before[name].pop(0)()

    # --- the member, in one read --------------------------------------------------------
    def member_snapshot(self, member_id: str) -> MemberSnapshot:
        self._enter("member_snapshot")
        if self.ledger is None:
            return MemberSnapshot(profile=None, consents={}, caps=self.caps.get(member_id, CapCounters()))
        consents = {}
        for scope in CONSENT_SCOPES:
            history = self.ledger.consent_history(member_id, scope)
            if history:
                consents[scope] = history[0]
        return MemberSnapshot(profile=self.ledger.get_profile(member_id), consents=consents,
                              lots=self.ledger.load_account(member_id).lots,
                              caps=self.caps.get(member_id, CapCounters()))

    # --- outbox ---------------------------------------------------------------------------
    @staticmethod
    def _stored(record: OutboxRecord) -> OutboxRecord:
        return replace(record, variables=_json(record.variables), payloads=_json(record.payloads),
                       extra=_json(record.extra), fallbacks=tuple(record.fallbacks),
                       history=tuple(tuple(h) for h in record.history))

    def _write_record(self, record: OutboxRecord, caps, may_write: Callable[[OutboxRecord | None], bool],
                      daily: str | None = None) -> bool:
        with self._lock:
            if not may_write(self.records.get(record.message_id)):
                return False
            if daily is not None and (record.member_id, daily) in self.daily:
                raise DailyMessageTaken(f"the member's challenge message of {daily} is taken")
            if caps is not None:
                read, new = caps
                if self.caps.get(record.member_id, CapCounters()) != read or \
                        (read == CapCounters() and record.member_id in self.caps):
                    raise ConcurrentUpdate("the member's marketing counters moved since they were read")
                self.caps[record.member_id] = new
            if daily is not None:
                self.daily[(record.member_id, daily)] = record.message_id
            self.records[record.message_id] = self._stored(record)
            return True

    def create_message(self, record: OutboxRecord, caps: tuple[CapCounters, CapCounters] | None = None,
                       daily: str | None = None) -> bool:
        self._enter("create_message")
        return self._write_record(record, caps, lambda current: current is None, daily)

    def requeue_deferred(self, record: OutboxRecord, caps: tuple[CapCounters, CapCounters] | None = None,
                         daily: str | None = None) -> bool:
        self._enter("requeue_deferred")
        return self._write_record(record, caps, lambda current: current is not None and current.status == "deferred",
                                  daily)

    def message(self, message_id: str) -> OutboxRecord | None:
        self._enter("message")
        with self._lock:
            return self.records.get(message_id)

    def _append(self, message_id: str, entry: tuple[str, str, str] | None, **changes) -> OutboxRecord:
        record = self.records[message_id]
        history = record.history + ((entry,) if entry else ())
        self.records[message_id] = replace(record, history=history, **changes)
        return self.records[message_id]

    def claim(self, message_id: str, channel: str, now: datetime, lease_s: int = 120) -> OutboxRecord | ClaimRefused:
        self._enter("claim")
        with self._lock:
            record = self.records.get(message_id)
            if record is None:
                return ClaimRefused(status="missing", channel=None)
            lapsed = record.status == "sending" and record.lease_until is not None and record.lease_until < now
            if record.channel != channel or not (record.status in ("queued", "dead_lettered") or lapsed):
                return ClaimRefused(status=record.status, channel=record.channel, lease_until=record.lease_until)
            return self._append(message_id, None, status="sending", attempts=record.attempts + 1,
                                lease_until=now + timedelta(seconds=lease_s))

    def release_claim(self, message_id: str, at: datetime, detail: str, *, last: bool = False,
                      quiet: bool = False) -> bool:
        self._enter("release_claim")
        status, note = ("dead_lettered", "dead_lettered") if last else ("queued", "retrying")
        with self._lock:
            record = self.records.get(message_id)
            if record is None or record.status != "sending":
                return False
            self._append(message_id, None if quiet else (note, at.isoformat(), detail), status=status)
            return True

    def mark_sent(self, message_id: str, provider: str, provider_message_id: str, at: datetime, *,
                  channel: str, lease_until: datetime | None) -> bool:
        self._enter("mark_sent")
        with self._lock:
            record = self.records.get(message_id)
            if record is None:
                return False
            self.aliases[(provider, provider_message_id)] = message_id
            if record.status == "sending" and record.channel == channel and record.lease_until == lease_until:
                self._append(message_id, ("sent", at.isoformat(), provider), status="sent", provider=provider,
                             provider_message_id=provider_message_id)
                return True
            self._append(message_id, ("sent", at.isoformat(), f"{provider} (after {record.status})"),
                         provider=record.provider or provider,
                         provider_message_id=record.provider_message_id or provider_message_id)
            return False

    def record_status(self, message_id: str, status: str, at: datetime, detail: str = "",
                      channel: str | None = None, provider_message_id: str | None = None) -> bool:
        self._enter("record_status")
        with self._lock:
            record = self.records.get(message_id)
            if record is None or RANK[record.status] >= RANK[status] or \
                    (channel is not None and record.channel != channel) or \
                    (provider_message_id and provider_message_id in self.superseded[message_id]):
                return False
            changes = {"status": status}
            if provider_message_id and not record.provider_message_id:
                changes["provider_message_id"] = provider_message_id
            self._append(message_id, (status, at.isoformat(), detail), **changes)
            return True

    def switch_channel(self, message_id: str, channel: str, to: str, at: datetime, detail: str,
                       fallbacks: tuple[str, ...] = (), *, after_receipt: bool = False,
                       payloads: dict | None = None, step: str = "fallback",
                       superseded: str | None = None) -> bool:
        self._enter("switch_channel")
        with self._lock:
            record = self.records.get(message_id)
            allowed = ("failed", "undelivered") if after_receipt else ("sending",)
            if record is None or record.status not in allowed:
                return False
            changes = {"status": "queued", "channel": channel, "to": to, "fallbacks": tuple(fallbacks), "attempts": 0}
            if payloads is not None:
                changes["payloads"] = _json(payloads)
            if superseded:
                self.superseded[message_id].add(superseded)
            self._append(message_id, (step, at.isoformat(), detail), **changes)
            return True

    def message_id_for(self, provider: str, provider_message_id: str) -> str | None:
        self._enter("message_id_for")
        with self._lock:
            return self.aliases.get((provider, provider_message_id))

    def member_messages(self, member_id: str, limit: int = 50) -> list[OutboxRecord]:
        self._enter("member_messages")
        with self._lock:
            mine = [r for r in self.records.values() if r.member_id == member_id]
        mine.sort(key=lambda r: (utc_key(r.created_at), r.message_id), reverse=True)
        return mine[:limit]

    # --- deferred jobs ------------------------------------------------------------------
    def defer(self, job: dict, not_before: datetime) -> None:
        self._enter("defer")
        key = ("DEFER", f"{utc_key(not_before)}#{job['job_id']}")
        with self._lock:
            self.deferred[key[1]] = DeferredJob(job_id=job["job_id"], job=_json(job), not_before=not_before, key=key)

    def due_deferred(self, now: datetime, limit: int = 500) -> list[DeferredJob]:
        self._enter("due_deferred")
        with self._lock:
            due = [d for d in self.deferred.values() if d.not_before <= now]
        return sorted(due, key=lambda d: d.key)[:limit]

    def remove_deferred(self, deferred: DeferredJob) -> None:
        self._enter("remove_deferred")
        with self._lock:
            self.deferred.pop(deferred.key[1], None)

    # --- stored pushes ------------------------------------------------------------------
    def store_inbound(self, provider: str, dedup_key: str, body: dict, at: datetime, kind: str | None = None) -> bool:
        self._enter("store_inbound")
        with self._lock:
            if (provider, dedup_key) in self.pushes:
                return False
            push = StoredPush(provider=provider, dedup_key=dedup_key, kind=kind or kind_of(body), body=_json(body),
                              at=at)
            self.pushes[(provider, dedup_key)] = _Push(push, due=at + INBOUND_RETRY_AFTER,
                                                       expires=at + INBOUND_KEEP_UNPROCESSED)
            return True

    def inbound_processed(self, provider: str, dedup_key: str, at: datetime) -> bool:
        self._enter("inbound_processed")
        with self._lock:
            held = self.pushes.get((provider, dedup_key))
            if held is None:
                return False
            held.push = replace(held.push, error=None)
            held.due, held.processed_at, held.expires = None, at, at + INBOUND_KEEP_PROCESSED
            return True

    def inbound_failed(self, provider: str, dedup_key: str, at: datetime, error: str) -> bool:
        self._enter("inbound_failed")
        with self._lock:
            held = self.pushes.get((provider, dedup_key))
            if held is None:
                return False
            held.push = replace(held.push, error=mask_phones(error)[:1000], attempts=held.push.attempts + 1)
            held.failed_at = at
            if held.processed_at is None:
                held.due = retry_due(at, held.push.attempts)
            return True

    def due_inbound(self, now: datetime, limit: int = 100) -> list[StoredPush]:
        self._enter("due_inbound")
        with self._lock:
            due = [h.push for h in self.pushes.values() if h.due is not None and h.due <= now]
        return sorted(due, key=lambda p: p.at)[:limit]
