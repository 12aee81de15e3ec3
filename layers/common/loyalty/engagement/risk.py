"""Risk control of earnings outside orders (E8), as pure functions over the member's
`DayCounter` and the cross-member `Sighting`s: the daily cap, the hourly rate limit,
bursts, and many members on one device or IP address. Nothing here does I/O; the
service writes what these return in the transaction of the credit they concern."""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from ..domain import parse_time, utc_key
from ..records import Sighting
from .state import DayCounter

# The members a sighting keeps (newest): more than any threshold needs, and small.
SIGHTING_MEMBERS = 50


def local_day(now: datetime, time_zone: str) -> str:
    """The member-local date the daily cap counts in."""
    return now.astimezone(ZoneInfo(time_zone)).date().isoformat()


def take_cap(counter: DayCounter, day: str, points: int, cap: int) -> tuple[DayCounter, int]:
    """Take up to `points` of the daily non-order cap on `day`: the new counter and what
    fit. Written with the credit under the account's version check, so concurrent
    earnings can never take more than the cap between them."""
    today = counter.today(day)
    fit = max(0, min(points, cap - today.points))
    return replace(today, points=today.points + fit), fit


def recent_within(counter: DayCounter, now: datetime, window: timedelta) -> list[str]:
    """The member's recent activities (utc keys) in the `window` up to `now`."""
    since = utc_key(now - window)
    return [at for at in counter.recent if at > since]


def with_activity(counter: DayCounter, now: datetime, keep: int) -> DayCounter:
    """The counter with an activity at `now` (the last hour's, at most `keep` of them)."""
    recent = recent_within(counter, now, timedelta(hours=1)) + [utc_key(now)]
    return replace(counter, recent=tuple(sorted(recent)[-keep:]))


def source_key(kind: str, value: str, salt: str) -> str:
    """A device id or IP address as the key of its sighting: a keyed hash (HMAC-SHA256
    with the deployment's salt), so the table never holds the raw value."""
    digest = hmac.new(salt.encode(), f"{kind}:{value.strip().lower()}".encode(), hashlib.sha256).hexdigest()
    return f"{kind.upper()}#{digest[:32]}"


def seen(sighting: Sighting, member_id: str, now: datetime, window: timedelta) -> Sighting:
    """The sighting with `member_id` seen at `now`, members older than `window` dropped."""
    since = now - window
    members = [(m, at) for m, at in sighting.members if m != member_id and parse_time(at) > since]
    members.append((member_id, utc_key(now)))
    return replace(sighting, members=tuple(members[-SIGHTING_MEMBERS:]))
