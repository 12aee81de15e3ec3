"""Reminder planning (3-7-1): who has points expiring in 7 days, 3 days and today (30
days for high-value members), read from the expiry index, one job per member per night."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..ports import LedgerStore

if TYPE_CHECKING:
    from ..rules import Rules


@dataclass(frozen=True)
class ReminderJob:
    """One member's reminder for one night: the most urgent stage due, with what expires
    on that stage's day. Its id makes a re-planned night land on the same message."""

    job_id: str
    member_id: str
    stage_days: int
    expiry_date: str          # the programme's local date the points expire on
    points: int               # as planned; the dispatcher re-checks the ledger
    planned_at: str
    template: str
    kind: str = "reminder"

    def as_message(self) -> dict:
        return asdict(self)


def _utc_days(start: datetime, end: datetime) -> list[date]:
    first, last = start.astimezone(timezone.utc).date(), end.astimezone(timezone.utc).date()
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def plan_reminders(store: LedgerStore, rules: "Rules", now: datetime, shards: int) -> list[ReminderJob]:
    """The reminder jobs for the night of `now` (in the programme's time zone).

    For each stage, the lots expiring on that local day are read from the expiry index
    (a range of the index, never a scan). Each member gets at most one job: the most
    urgent eligible stage. Small amounts are reminded at one stage only; the early stage
    is for members with at least `high_value_points` expiring on its day, and for members
    of a tier with `early_reminder` (E7).
    """
    config = rules.messaging.reminders
    zone = ZoneInfo(rules.program_timezone)
    today = now.astimezone(zone).date()
    stages = list(config.stages_days)
    if config.early_stage_days is not None and config.early_stage_days not in stages:
        stages.append(config.early_stage_days)
    found: dict[str, dict[int, tuple[int, date]]] = defaultdict(dict)
    for stage in stages:
        day = today + timedelta(days=stage)
        start = datetime.combine(day, time(0), zone)
        end = datetime.combine(day + timedelta(days=1), time(0), zone) - timedelta(microseconds=1)
        if stage == 0:
            start = max(start, now)  # today: only what has not expired yet
        points: dict[str, int] = defaultdict(int)
        for utc_day in _utc_days(start, end):
            for shard in range(shards):
                for page in store.due_lots(utc_day, shard, end, since=start):
                    for lot in page:
                        points[lot.member_id] += lot.remaining
        for member_id, total in points.items():
            found[member_id][stage] = (total, day)
    early_tiers = {t.name for t in rules.tiers.levels if t.early_reminder}

    def early_by_tier(member_id: str) -> bool:
        # E7 perk: a tier with early_reminder gets the early stage whatever the amount
        # (one read, only for members below the high-value amount at that stage)
        if not early_tiers:
            return False
        from ..engagement.tiers import tier_name
        return tier_name(store.load_account(member_id, with_lots=False).engagement, rules) in early_tiers

    jobs = []
    for member_id, by_stage in sorted(found.items()):
        eligible, early = [], None
        for stage, (total, day) in by_stage.items():
            if stage == config.early_stage_days and stage not in config.stages_days:
                ok = total >= config.high_value_points
                early = None if ok or total <= 0 else (stage, total, day)
            elif total < config.min_points:
                ok = stage == config.small_amount_stage_days
            else:
                ok = True
            if ok and total > 0:
                eligible.append((stage, total, day))
        if not eligible and early is not None and early_by_tier(member_id):
            eligible.append(early)   # the tier is read only when it decides (a nearer stage wins anyway)
        if not eligible:
            continue
        stage, total, day = min(eligible)
        jobs.append(ReminderJob(job_id=f"reminder#{member_id}#{today.isoformat()}", member_id=member_id,
                                stage_days=stage, expiry_date=day.isoformat(), points=total,
                                planned_at=now.isoformat(), template=config.template))
    return jobs
