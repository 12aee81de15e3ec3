"""Jobs waiting for their send window, in a few partitions sorted by the time they wait for:

  DEFER#<shard> / <not_before, UTC key>#<job id>     the job

The release asks each partition for everything due at or before its time: a job waiting
three days (or one the release missed for a day) is found as surely as one due now, and
nothing else is read. The shard spreads a burst of deferrals (a campaign in quiet hours)
over partitions; raise DEFERRED_SHARDS, never lower it (a job in a dropped shard would
wait for ever).

Items written by earlier versions under DEFER#<UTC 15-minute slot> / <job id> are still
read as those versions read them (the slots of the last two hours), so that the jobs
waiting when this version is deployed are released too; they were deferred at most
three days ahead, after which LEGACY_SLOTS and legacy_slots can go."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from ...domain import stable_id, utc_key
from .base import IsoTime, JsonText, TableItem

DEFERRED_SHARDS = 4
LEGACY_SLOTS = 8   # what the previous release read: two hours of 15-minute slots


def shard_of(job_id: str) -> int:
    return int(stable_id("defer", job_id, length=8), 16) % DEFERRED_SHARDS


def deferred_key(job_id: str, not_before: datetime) -> tuple[str, str]:
    return f"DEFER#{shard_of(job_id)}", f"{utc_key(not_before)}#{job_id}"


def due_until(now: datetime) -> str:
    """Sort keys below this one are due at `now` (the key starts with a fixed-width time)."""
    return utc_key(now + timedelta(microseconds=1))


def legacy_slots(now: datetime) -> list[str]:
    """The partition keys the previous layout used for the slots up to `now`."""
    utc = now.astimezone(timezone.utc)
    slot = utc.replace(minute=utc.minute - utc.minute % 15, second=0, microsecond=0)
    return [f"DEFER#{(slot - timedelta(minutes=15 * i)).strftime('%Y-%m-%dT%H:%M')}" for i in range(LEGACY_SLOTS + 1)]


class DeferredJobItem(TableItem):
    job = JsonText()
    not_before = IsoTime()
