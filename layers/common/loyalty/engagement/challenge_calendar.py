"""The challenge's calendar (E5, M12): each day, at most one message per participant, by
priority -

1. the final message, the day after the last day (final points, rank and reward, from
   the results' snapshot, made first that day by the injected `finish`);
2. the monthly leaderboard on the 1st (the past month's top and the participant's place
   in it, read once per challenge through the injected `leaderboard`);
3. the caring nudge, instead of the day's task or summary, for a participant silent for
   `silent_days` days: once per silence (a check-in ends it), never a push to buy; it
   goes on weekends too, being the only message that may go out then;
4. the weekly summary on the summary weekday (Friday), carrying that day's task;
5. the task on the other weekdays. Weekends carry no task.

One run plans a whole member-local date `on` for everyone: the job says "day `on` at
the challenge's send time in the member's own zone", and the dispatcher defers it to
that moment (it reads the member's profile anyway). So the participants are read once a
day, shard by shard (a Query each, never a Scan), whatever the time zones: an hourly run
picking the members whose 10:00 falls in the hour would read every participant 24 times.
The run's time must come before the first 10:00 of `on` anywhere (UTC+14: 20:00 UTC the
day before): the schedule runs at 00:20 programme time (Asia/Shanghai) = 16:20 UTC.

A participant in a western zone may still check in on their day before `on` after the
plan ran: the dispatcher reads the participant again at send time (opted out -> nothing;
a planned nudge whose silence ended -> the day's task or summary the job carries instead).

Re-running a day (`on` in the past) plans the same jobs with the same ids: the outbox
makes each a duplicate, and the store's one-challenge-message-per-member-local-day key
makes a second message that day impossible; nothing is credited here."""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Callable, Iterable, Mapping, Protocol

from .calendar_texts import LOCALES
from .challenges import ChallengeRecord, ChallengeSpec, Participant

CHALLENGE_KIND = "challenge"
TOP_SHOWN = 3


@dataclass(frozen=True)
class Standing:
    """A participant's place in a ranking (ties share a rank)."""

    rank: int
    points: int
    reward: int = 0


class Board(Protocol):
    """A month's leaderboard (CORE's): its top entries and any participant's place."""

    top: tuple[tuple[int, str, int], ...]   # (rank, masked name, points), best first

    def standing(self, member_id: str) -> Standing | None: ...


class ChallengeSource(Protocol):
    """What the calendar reads of the challenge store (ports.ChallengeReader plus the
    challenges running on a day, from an index: no Scan)."""

    def active_challenges(self, on: date) -> list[ChallengeRecord]: ...

    def participants(self, challenge_id: str, shard: int) -> Iterable[list[Participant]]: ...


class NudgeMarks(Protocol):
    """Where the calendar records a participant's caring nudge (Participant.nudged_on)."""

    def mark_nudged(self, challenge_id: str, member_id: str, shard: int, on: date) -> None: ...


# (challenge, now) -> final standings by member: RESULTS' finish_challenge (ranks fixed by
# its snapshot, rewards paid once); called once, the day after the end, before any message.
Finish = Callable[[ChallengeRecord, datetime], Mapping[str, Standing]]
# (challenge_id, "YYYY-MM") -> that month's board: CORE's leaderboard, read once per challenge.
Leaderboard = Callable[[str, str], Board]


def default_streak_points(streak_day: int) -> int:
    """Check-in points on a streak's day n (E4 defaults: 1-7: 10, 8-14: 15, then 20)."""
    return 10 if streak_day <= 7 else 15 if streak_day <= 14 else 20


@dataclass(frozen=True)
class DayPlan:
    on: date
    jobs: tuple[dict, ...]
    challenges: int = 0
    participants_read: int = 0
    pages_read: int = 0
    counts: dict = field(default_factory=dict)   # message kind (or skip reason) -> participants


def silence_due(participant: Participant, spec: ChallengeSpec) -> date:
    """The day a participant silent since their latest check-in (or since joining) is due
    the caring nudge: after `silent_days` whole days without a check-in."""
    if participant.last_checkin:
        last = date.fromisoformat(participant.last_checkin)
    else:
        last = max(spec.starts_on, date.fromisoformat(participant.enrolled_at[:10])) - timedelta(days=1)
    return last + timedelta(days=spec.silent_days + 1)


def nudge_due(participant: Participant, spec: ChallengeSpec, on: date) -> bool:
    """Silent long enough on `on`, and not nudged in this silence yet (a nudge recorded
    on `on` itself is this very plan, re-run)."""
    if spec.day_number(on) is None:
        return False
    due = silence_due(participant, spec)
    if on < due:
        return False
    nudged = date.fromisoformat(participant.nudged_on) if participant.nudged_on else None
    return nudged is None or nudged < due or nudged == on


def _streak_on(checked: str, n: int) -> int:
    streak = 0
    while n - streak >= 1 and checked[n - streak - 1: n - streak] == "1":
        streak += 1
    return streak


def week_figures(participant: Participant, spec: ChallengeSpec, on: date,
                 streak_points: Callable[[int], int] = default_streak_points) -> tuple[int, int]:
    """(days checked in, check-in points) from Monday of `on`'s week to `on`, from the
    participant's `checked` bitmap (the streak tiers give each day's points)."""
    monday = on - timedelta(days=on.weekday())
    days = points = 0
    for offset in range((on - monday).days + 1):
        n = spec.day_number(monday + timedelta(days=offset))
        if n is not None and participant.checked[n - 1: n] == "1":
            days += 1
            points += streak_points(_streak_on(participant.checked, n))
    return days, points


class _Values(dict):
    """Format values that leave {name} (the member's, filled in at send time) as it is."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _texts(spec: ChallengeSpec, kind: str, day: int | None, values: dict) -> dict[str, str]:
    calendar = spec.calendar
    shown = _Values({k: f"{v:,}" if isinstance(v, int) else v for k, v in values.items()})   # 1,450
    return {locale: calendar.text(kind, locale, day).format_map(shown) for locale in LOCALES}


def _joined(first: dict[str, str], second: dict[str, str]) -> dict[str, str]:
    # one line: a WhatsApp template parameter takes no new line (132018)
    return {locale: first[locale] + " " + second[locale] for locale in first}


def _ranks(participants: list[Participant]) -> Callable[[int], int]:
    points = sorted(p.points for p in participants)

    def rank(own: int) -> int:   # 1 + those with more points: ties share a rank
        return 1 + len(points) - bisect.bisect_right(points, own)

    return rank


def _top_line(board: Board) -> str:
    return " · ".join(f"{rank}. {name} {points:,}" for rank, name, points in board.top[:TOP_SHOWN]) or "—"


def plan_challenge_day(source: ChallengeSource, marks: NudgeMarks, on: date, now: datetime, *,
                       finish: Finish | None, leaderboard: Leaderboard | None, template: str,
                       streak_points: Callable[[int], int] = default_streak_points) -> DayPlan:
    """The challenge messages of member-local date `on`, planned at `now`: one job per
    participant at most (see the module's docstring), nudges recorded on the way.
    Without `finish` the day after the end plans nothing (counted); without `leaderboard`
    the 1st carries the day's own message."""
    challenges = {c.challenge_id: c for c in source.active_challenges(on - timedelta(days=1))}
    challenges.update({c.challenge_id: c for c in source.active_challenges(on)})
    jobs: list[dict] = []
    counts: dict[str, int] = {}
    read = pages = 0
    ran = 0
    for challenge in sorted(challenges.values(), key=lambda c: c.challenge_id):
        spec = challenge.spec
        if not spec.starts_on <= on <= spec.ends_on + timedelta(days=1):
            continue
        ran += 1
        participants: list[Participant] = []
        for shard in range(challenge.shards):
            for page in source.participants(challenge.challenge_id, shard):
                pages += 1
                read += len(page)
                participants.extend(page)
        final = None
        if on == spec.ends_on + timedelta(days=1):
            if finish is None:   # no final message without the results' snapshot
                counts["skipped:results_not_wired"] = counts.get("skipped:results_not_wired", 0) + len(participants)
                continue
            final = finish(challenge, now)
        board = leaderboard(challenge.challenge_id, (on - timedelta(days=1)).strftime("%Y-%m")) \
            if leaderboard is not None and on.day == 1 and on > spec.starts_on else None
        rank = _ranks(participants)
        for participant in participants:
            job = _plan_one(challenge, participant, on, now, final, board, rank, template, streak_points)
            kind = job["message"] if isinstance(job, dict) else job
            counts[kind] = counts.get(kind, 0) + 1
            if isinstance(job, dict):
                if job["message"] == "nudge" and participant.nudged_on != on.isoformat():
                    marks.mark_nudged(challenge.challenge_id, participant.member_id, participant.shard, on)
                jobs.append(job)
    return DayPlan(on=on, jobs=tuple(jobs), challenges=ran, participants_read=read, pages_read=pages, counts=counts)


def _plan_one(challenge: ChallengeRecord, p: Participant, on: date, now: datetime,
              final: Mapping[str, Standing] | None, board: Board | None, rank: Callable[[int], int],
              template: str, streak_points: Callable[[int], int]) -> dict | str:
    """The participant's job for `on`, or why there is none."""
    if p.opted_out:
        return "skipped:opted_out"
    spec = challenge.spec
    n = spec.day_number(on)
    values = {"day": n or spec.days, "days": spec.days, "points": p.points, "streak": p.streak,
              "days_checked_in": p.days_checked_in, "rank": rank(p.points)}
    instead = None
    if final is not None:
        standing = final.get(p.member_id)
        if standing is None:
            return "skipped:not_in_final_snapshot"
        message, texts = "final", _texts(spec, "final", None, {**values, "rank": standing.rank,
                                                               "points": standing.points, "reward": standing.reward})
    else:
        standing = board.standing(p.member_id) if board is not None else None
        weekday = on.weekday()
        daily = None
        if weekday == spec.calendar.summary_weekday:
            week_days, week_points = week_figures(p, spec, on, streak_points)
            daily = ("summary", _joined(_texts(spec, "summary", n, {**values, "week_days": week_days,
                                                                    "week_points": week_points}),
                                        _texts(spec, "task", n, values)))
        elif weekday < 5:
            daily = ("task", _texts(spec, "task", n, values))
        if standing is not None:
            message, texts = "leaderboard", _texts(spec, "leaderboard", n, {
                **values, "month": (on - timedelta(days=1)).strftime("%Y-%m"), "top": _top_line(board),
                "rank": standing.rank, "points": standing.points})
        elif nudge_due(p, spec, on):
            message, texts = "nudge", _texts(spec, "nudge", n, values)
            if daily is not None:
                instead = {"message": daily[0], "texts": daily[1]}
        elif daily is not None:
            message, texts = daily
        else:
            return "none:weekend"
    return {"job_id": f"challenge#{challenge.challenge_id}#{p.member_id}#{on.isoformat()}", "kind": CHALLENGE_KIND,
            "template": template, "member_id": p.member_id, "challenge_id": challenge.challenge_id,
            "shard": p.shard, "on": on.isoformat(), "send_time": spec.calendar.send_time, "message": message,
            "texts": texts, "instead": instead, "last_checkin": p.last_checkin, "planned_at": now.isoformat()}
