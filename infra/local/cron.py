"""When a schedule expression fires: EventBridge's rate(), cron() and at(), evaluated.

    expression = parse_expression("cron(55 11 * * ? *)", "Asia/Shanghai")
    expression.count(after, until, limit=200)   # occurrences in (after, until], at most limit + 1
    expression.latest(after, until)             # the last one in (after, until], or None
    list(expression.between(after, until))      # each one, oldest first (aware UTC datetimes)

The local stack uses this to run, when its simulated clock jumps, the schedules that
would have fired meanwhile (schedules.py).

- rate(n minute|minutes|hour|hours|day|days): every n units. Scheduler counts from the
  schedule's creation (or StartDate); locally the count starts at 1970-01-01T00:00Z, as
  for a schedule created on a round time, so rate(15 minutes) fires at :00, :15, :30, :45.
- cron(minutes hours day-of-month month day-of-week year), read in the schedule's time
  zone: numbers, names (JAN-DEC, SUN-SAT; day-of-week 1-7 is SUN-SAT), `*`, `?`,
  ranges, lists, steps (`0/15`, `*/5`, `10-40/10`), `L` (last day of the month, and
  `5L`, the month's last Thursday), `W` (`15W`, the weekday nearest the 15th; `LW`) and
  `#` (`2#1`, the month's first Monday). A local time skipped by a daylight-saving change
  fires at the time the zone maps it to (an hour later), a repeated one fires once.
- at(yyyy-mm-ddThh:mm:ss): once, in the schedule's time zone.

Anything else raises ExpressionError.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_UNITS = {"minute": 60, "minutes": 60, "hour": 3600, "hours": 3600, "day": 86400, "days": 86400}
_MONTHS = {name: number for number, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_WEEKDAYS = {name: number for number, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}


class ExpressionError(ValueError):
    """A schedule expression this module cannot read."""


def parse_expression(text: str, zone_name: str = "UTC") -> RateExpression | CronExpression | AtExpression:
    """The expression of a Schedule / ScheduleV2 event, in its time zone."""
    stripped = text.strip()
    zone = _zone(zone_name)
    if match := re.fullmatch(r"rate\(\s*(\d+)\s+([a-z]+)\s*\)", stripped):
        value, unit = int(match.group(1)), match.group(2)
        if unit not in _UNITS or value < 1 or (value == 1) != (not unit.endswith("s")):
            raise ExpressionError(f"{text!r}: rate() takes a positive value and minute(s), hour(s) or day(s) "
                                  "(1 minute, 5 minutes)")
        return RateExpression(stripped, value * _UNITS[unit])
    if match := re.fullmatch(r"cron\((.*)\)", stripped):
        return CronExpression.parse(stripped, match.group(1), zone)
    if match := re.fullmatch(r"at\((\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})\)", stripped):
        local = datetime.fromisoformat(match.group(1))
        return AtExpression(stripped, _localize(local, zone))
    raise ExpressionError(f"{text!r} is not rate(...), cron(...) or at(...)")


def _zone(name: str) -> timezone | ZoneInfo:
    if name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ExpressionError(f"unknown time zone {name!r}") from None


def _localize(local: datetime, zone: timezone | ZoneInfo) -> datetime:
    """A local wall time in `zone` as UTC (fold=0: a repeated hour counts once, a skipped
    one lands an hour later)."""
    return local.replace(tzinfo=zone).astimezone(timezone.utc)


@dataclass(frozen=True)
class RateExpression:
    """rate(n unit): every `seconds`, counted from the epoch."""

    text: str
    seconds: int

    def _index(self, when: datetime) -> int:
        return int((when - _EPOCH).total_seconds() // self.seconds)

    def count(self, after: datetime, until: datetime, limit: int | None = None) -> int:
        return max(0, self._index(until) - self._index(after))

    def latest(self, after: datetime, until: datetime) -> datetime | None:
        last = _EPOCH + timedelta(seconds=self._index(until) * self.seconds)
        return last if last > after else None

    def between(self, after: datetime, until: datetime) -> Iterator[datetime]:
        for index in range(self._index(after) + 1, self._index(until) + 1):
            yield _EPOCH + timedelta(seconds=index * self.seconds)


@dataclass(frozen=True)
class AtExpression:
    """at(...): one time."""

    text: str
    when: datetime

    def count(self, after: datetime, until: datetime, limit: int | None = None) -> int:
        return 1 if after < self.when <= until else 0

    def latest(self, after: datetime, until: datetime) -> datetime | None:
        return self.when if after < self.when <= until else None

    def between(self, after: datetime, until: datetime) -> Iterator[datetime]:
        if after < self.when <= until:
            yield self.when


@dataclass(frozen=True)
class _DayRule:
    """Day-of-month or day-of-week: a set of values, or one of L, nL, nW, LW, n#k."""

    any: bool = False
    values: frozenset[int] = frozenset()
    last: bool = False          # dom L / dow L (Saturday)
    last_weekday_of: int = 0    # dow nL: the month's last weekday n
    nearest_weekday: int = 0    # dom nW
    last_working_day: bool = False  # dom LW
    nth: tuple[int, int] = (0, 0)   # dow n#k: weekday n, k-th of the month


@dataclass(frozen=True)
class CronExpression:
    """cron(minutes hours day-of-month month day-of-week year) in `zone`."""

    text: str
    zone: timezone | ZoneInfo
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: _DayRule
    months: frozenset[int]
    days_of_week: _DayRule
    years: frozenset[int] | None  # None: every year

    @classmethod
    def parse(cls, text: str, body: str, zone: timezone | ZoneInfo) -> CronExpression:
        fields = body.split()
        if len(fields) != 6:
            raise ExpressionError(f"{text!r}: cron() has six fields: minutes hours day-of-month month "
                                  "day-of-week year")
        minute, hour, dom, month, dow, year = (field.upper() for field in fields)
        if (dom == "?") == (dow == "?"):
            raise ExpressionError(f"{text!r}: one of day-of-month and day-of-week must be ?, not both")
        return cls(text=text, zone=zone,
                   minutes=tuple(sorted(_values(minute, 0, 59, {}, text))),
                   hours=tuple(sorted(_values(hour, 0, 23, {}, text))),
                   days_of_month=_day_rule(dom, 1, 31, {}, text, of_week=False),
                   months=frozenset(_values(month, 1, 12, _MONTHS, text)),
                   days_of_week=_day_rule(dow, 1, 7, _WEEKDAYS, text, of_week=True),
                   years=None if year == "*" else frozenset(_values(year, 1970, 2199, {}, text)))

    def _fires_on(self, day: date) -> bool:
        if day.month not in self.months or (self.years is not None and day.year not in self.years):
            return False
        return _matches_dom(self.days_of_month, day) and _matches_dow(self.days_of_week, day)

    def _times_on(self, day: date) -> Iterator[datetime]:
        for hour in self.hours:
            for minute in self.minutes:
                yield _localize(datetime.combine(day, time(hour, minute)), self.zone)

    def _days(self, first: date, last: date, backwards: bool = False) -> Iterator[date]:
        step = timedelta(days=-1 if backwards else 1)
        day, end = (last, first) if backwards else (first, last)
        while (day >= end) if backwards else (day <= end):
            if self._fires_on(day):
                yield day
            day += step

    def _span(self, after: datetime, until: datetime) -> tuple[date, date]:
        # One day either side: a local date and its UTC instants can straddle midnight.
        return (after.astimezone(self.zone).date() - timedelta(days=1),
                until.astimezone(self.zone).date() + timedelta(days=1))

    def between(self, after: datetime, until: datetime) -> Iterator[datetime]:
        seen: set[datetime] = set()
        for day in self._days(*self._span(after, until)):
            for when in self._times_on(day):
                if after < when <= until and when not in seen:
                    seen.add(when)
                    yield when

    def count(self, after: datetime, until: datetime, limit: int | None = None) -> int:
        """How many fire in (after, until]; stops counting past `limit`."""
        total = 0
        for _ in self.between(after, until):
            total += 1
            if limit is not None and total > limit:
                break
        return total

    def latest(self, after: datetime, until: datetime) -> datetime | None:
        for day in self._days(*self._span(after, until), backwards=True):
            times = [when for when in self._times_on(day) if after < when <= until]
            if times:
                return max(times)
        return None


def _values(field: str, low: int, high: int, names: dict[str, int], text: str) -> set[int]:
    found: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        if step_text and not step_text.isdigit():
            raise ExpressionError(f"{text!r}: bad step in {part!r}")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ExpressionError(f"{text!r}: bad step in {part!r}")
        if base in ("*", "?"):
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _number(first, names, text), _number(last, names, text)
        else:
            start = _number(base, names, text)
            end = high if step_text else start
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise ExpressionError(f"{text!r}: {part!r} is outside {low}-{high}")
        found.update(range(start, end + 1, step))
    return found


def _number(token: str, names: dict[str, int], text: str) -> int:
    if token in names:
        return names[token]
    if not token.isdigit():
        raise ExpressionError(f"{text!r}: the local stack cannot read {token!r} in a cron field")
    return int(token)


def _day_rule(field: str, low: int, high: int, names: dict[str, int], text: str, of_week: bool) -> _DayRule:
    if field in ("?", "*"):
        return _DayRule(any=True)
    if not of_week:
        if field == "L":
            return _DayRule(last=True)
        if field == "LW":
            return _DayRule(last_working_day=True)
        if match := re.fullmatch(r"(\d{1,2})W", field):
            return _DayRule(nearest_weekday=int(match.group(1)))
    else:
        if field == "L":
            return _DayRule(values=frozenset({7}))  # L alone in day-of-week: Saturday
        if match := re.fullmatch(r"([1-7]|[A-Z]{3})L", field):
            return _DayRule(last_weekday_of=_number(match.group(1), names, text))
        if match := re.fullmatch(r"([1-7]|[A-Z]{3})#([1-5])", field):
            return _DayRule(nth=(_number(match.group(1), names, text), int(match.group(2))))
    return _DayRule(values=frozenset(_values(field, low, high, names, text)))


def _weekday(day: date) -> int:
    """EventBridge's day-of-week number: SUN=1 ... SAT=7."""
    return (day.isoweekday() % 7) + 1


def _matches_dom(rule: _DayRule, day: date) -> bool:
    if rule.any:
        return True
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    if rule.last:
        return day.day == days_in_month
    if rule.last_working_day:
        last = date(day.year, day.month, days_in_month)
        while last.isoweekday() > 5:
            last -= timedelta(days=1)
        return day == last
    if rule.nearest_weekday:
        target = min(rule.nearest_weekday, days_in_month)
        wanted = date(day.year, day.month, target)
        if wanted.isoweekday() == 6:      # Saturday: Friday, or Monday if that leaves the month
            wanted = wanted - timedelta(days=1) if target > 1 else wanted + timedelta(days=2)
        elif wanted.isoweekday() == 7:    # Sunday: Monday, or Friday if that leaves the month
            wanted = wanted + timedelta(days=1) if target < days_in_month else wanted - timedelta(days=2)
        return day == wanted
    return day.day in rule.values


def _matches_dow(rule: _DayRule, day: date) -> bool:
    if rule.any:
        return True
    weekday = _weekday(day)
    if rule.last_weekday_of:
        days_in_month = calendar.monthrange(day.year, day.month)[1]
        return weekday == rule.last_weekday_of and day.day + 7 > days_in_month
    if rule.nth != (0, 0):
        wanted, nth = rule.nth
        return weekday == wanted and (day.day - 1) // 7 + 1 == nth
    return weekday in rule.values
