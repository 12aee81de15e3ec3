"""When a message may go out, in the member's own time zone.

Marketing never goes out in quiet hours; scheduled messages (reminders, campaigns) wait
for the next preferred window; notices the member just triggered go out at once. A job
outside its window is deferred to the window's start, never dropped. Rules under which
no moment is allowed are refused when they are built (rules.MessagingRules); should one
get this far all the same, nothing is sent (next_send_time answers None).
"""
from __future__ import annotations

from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo


def _parse(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def in_quiet_hours(local: datetime, start: str, end: str) -> bool:
    """Quiet hours wrap midnight when start > end (21:00-08:00)."""
    t, a, b = local.time(), _parse(start), _parse(end)
    return (a <= t or t < b) if a > b else (a <= t < b)


def next_send_time(now: datetime, zone: str, windows: list[tuple[str, str]], quiet: tuple[str, str] | None,
                   *, use_windows: bool) -> datetime | None:
    """`now` if a message may go out now, else the earliest moment it may (aware, in the
    member's zone), or None when no moment in the next days is allowed (every window in
    the quiet hours, no window): the caller sends nothing. With `use_windows`, only
    inside a window; always outside quiet hours."""
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    candidates = []
    for day in range(0, 3):
        date = (local + timedelta(days=day)).date()
        spans = windows if use_windows else [("00:00", "23:59")]
        for start, end in spans:
            opens = datetime.combine(date, _parse(start), tz)
            closes = datetime.combine(date, _parse(end), tz) if end != "23:59" else \
                datetime.combine(date + timedelta(days=1), time(0, 0), tz)
            moment = max(opens, local)
            while moment < closes:
                if quiet is None or not in_quiet_hours(moment, *quiet):
                    candidates.append(moment)
                    break
                # jump to the end of the quiet hours
                quiet_end = datetime.combine(moment.date(), _parse(quiet[1]), tz)
                if quiet_end <= moment:
                    quiet_end += timedelta(days=1)
                moment = quiet_end
        if candidates:
            break
    if not candidates:
        return None
    best = min(candidates)
    return now if best <= local else best
