"""Activities (E1), limited-time tasks (E6) and their risk control (E8).

One activity is one read (the member's item, its idempotency record and the sightings
of its device and IP, in one BatchGetItem) and one TransactWriteItems: the idempotency
record with the answer, the account under its version check with the engagement state
(the daily cap taken, the activity in the rate window), the sightings under theirs, and
either the credit's own lot and ACTIVITY entry, or the review holding the points, or
nothing more (rejected: only the answer is kept)."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..domain import EntryType, LedgerEntry, Lot, LotWrite, add_months, next_tx_time, settle_debt, stable_id
from ..errors import AlreadyApplied, Conflict, Invalid
from ..ports import ReviewStore
from ..records import Change, IdempotencyRecord, Review
from ..services._retry import with_retries
from . import risk
from .reviews import hold_for_review, review_id_for

if TYPE_CHECKING:
    from ..rules import Rules


@dataclass(frozen=True)
class Activity:
    """A validated activity report."""

    activity_id: str
    type: str
    occurred_at: datetime
    ip: str | None
    device_id: str | None
    body_hash: str


def record_activity(store: ReviewStore, rules: "Rules", member_id: str, activity: Activity, now: datetime,
                    notices: list | None = None) -> dict:
    """Apply one activity exactly once and answer {activity_id, type, status, points,
    balance, reason?}: `credited`, `capped` (the daily cap left less: what fit is
    credited), `held` (waiting in the review queue, in `pending`) or `rejected` (why).
    The same activity id again answers the same; with another body it is a Conflict;
    an unknown type is Invalid and changes nothing. `notices`, when given, receives the
    tier-up the credit caused (kept with the answer, so a retry tells it again)."""
    config = rules.activities
    key = f"activity#{member_id}#{activity.activity_id}"
    salt = config.risk.hash_salt
    sources = tuple(risk.source_key(kind, value, salt)
                    for kind, value in (("device", activity.device_id), ("ip", activity.ip)) if value)

    def attempt() -> dict:
        context = store.load_activity_context(member_id, key, sources)
        if context.idempotency is not None:   # a retry is answered as first, even if the rules changed since
            return _replay(context.idempotency, activity)
        _check(config, activity, now)
        change, response = _plan(rules, member_id, activity, context, now)
        from . import tiers
        response = {**response, **tiers.tier_up_answer(context.account.engagement, change.engagement, rules, now)}
        record = IdempotencyRecord(key=key, body_hash=activity.body_hash, response=response, member_id=member_id)
        try:
            store.commit(replace(change, idempotency=record))
        except AlreadyApplied:
            return _replay(store.get_idempotency(key), activity)
        return response

    return _told(with_retries(attempt), key, member_id, notices)


def _told(response: dict, key: str, member_id: str, notices: list | None) -> dict:
    """The answer as the contract shows it; its tier-up, if any, handed to `notices`."""
    from .tiers import TIER_UP
    if TIER_UP not in response:
        return response
    if notices is not None:
        notices.append({"kind": TIER_UP, "event_id": key, "member_id": member_id, **response[TIER_UP]})
    return {k: v for k, v in response.items() if k != TIER_UP}


def _check(config, activity: Activity, now: datetime) -> None:
    """An unknown type, or a time too far from the service's clock, is Invalid (nothing written)."""
    if not config.known(activity.type):
        raise Invalid([{"field": "type", "problem": f"unknown activity type {activity.type!r}; one of "
                        f"{', '.join(sorted(set(config.types) | {t.type for t in config.tasks}))}"}])
    if abs(activity.occurred_at - now) > timedelta(hours=config.risk.max_clock_skew_hours):
        raise Invalid([{"field": "occurred_at", "problem": f"more than {config.risk.max_clock_skew_hours} h "
                        "from the service's clock"}])


def _replay(record: IdempotencyRecord | None, activity: Activity) -> dict:
    if record is None:
        raise Conflict(f"activity {activity.activity_id} is being processed; retry")
    if record.body_hash != activity.body_hash:
        raise Conflict(f"activity_id {activity.activity_id} was already used with a different body")
    return record.response


def _answer(activity: Activity, status: str, points: int, balance: int, reason: str | None) -> dict:
    response = {"activity_id": activity.activity_id, "type": activity.type, "status": status, "points": points,
                "balance": balance}
    if reason:
        response["reason"] = reason
    return response


def _plan(rules: "Rules", member_id: str, activity: Activity, context, now: datetime) -> tuple[Change, dict]:
    config, limits = rules.activities, rules.activities.risk
    account = context.account
    engagement = account.engagement
    counter = engagement.counter
    kind = config.types.get(activity.type)
    live = {task.task_id for task in config.tasks if now < _end(task)}
    tasks = [task for task in config.tasks if task.type == activity.type and task.open_at(activity.occurred_at)
             and task.task_id not in counter.tasks]
    had_task = any(task.type == activity.type and task.open_at(activity.occurred_at) for task in config.tasks)
    nothing = Change(member_id=member_id, expected_version=None, touches_account=False)

    if kind is None and not had_task:
        return nothing, _answer(activity, "rejected", 0, account.balance, "outside the task's window")
    if kind is None and not tasks:
        return nothing, _answer(activity, "rejected", 0, account.balance, "the task's bonus was already credited")
    if len(risk.recent_within(counter, now, timedelta(hours=1))) >= limits.per_hour:
        return nothing, _answer(activity, "rejected", 0, account.balance,
                                f"rate limit: {limits.per_hour} activities an hour")

    points = (kind.points if kind else 0) + sum(task.bonus for task in tasks)
    day = risk.local_day(now, context.time_zone or rules.program_timezone)
    counter = risk.with_activity(counter, now, max(limits.per_hour, limits.burst_count))
    counter, fit = risk.take_cap(counter, day, points, limits.daily_cap)
    counter = replace(counter, tasks=tuple(t for t in counter.tasks if t in live) + tuple(t.task_id for t in tasks))
    engagement = replace(engagement, counter=counter)

    window = timedelta(hours=limits.source_window_hours)
    sightings = tuple(risk.seen(context.sightings[k], member_id, now, window) for k in sorted(context.sightings))
    held = []
    if (kind is not None and kind.needs_review) or any(task.needs_review for task in tasks):
        held.append(f"{activity.type} needs review")
    burst = risk.recent_within(account.engagement.counter, now, timedelta(seconds=limits.burst_seconds))
    if len(burst) + 1 >= limits.burst_count:
        held.append(f"burst: {len(burst) + 1} activities within {limits.burst_seconds} s")
    for sighting in sightings:
        if len(sighting.members) >= limits.members_per_source:
            what = "device" if sighting.key.startswith("DEVICE#") else "IP address"
            held.append(f"{what} shared by {len(sighting.members)} members within {limits.source_window_hours} h")
    capped = f"daily cap: {fit} of {points} points fit" if fit < points else None

    change = Change(member_id=member_id, expected_version=account.version, engagement=engagement,
                    sightings=sightings)
    task_ids = [task.task_id for task in tasks]
    reason = f"activity: {activity.type}" + (f" + task {', '.join(task_ids)}" if task_ids else "")
    meta = {"activity_id": activity.activity_id, "type": activity.type,
            **({"tasks": task_ids} if task_ids else {}), **({"capped_from": points} if fit < points else {})}
    source = f"activity:{activity.activity_id}"
    if points == 0:
        return change, _answer(activity, "credited", 0, account.balance, None)
    if fit == 0:
        return change, _answer(activity, "capped", 0, account.balance,
                               f"daily cap of {limits.daily_cap} points reached")
    if held:
        review = Review(review_id=review_id_for("activity", member_id, activity.activity_id), member_id=member_id,
                        kind="activity" if len(held) == 1 and held[0].endswith("needs review") else "risk",
                        points=fit, reason="; ".join(held + ([capped] if capped else [])), created_at=now,
                        entry_type=EntryType.ACTIVITY.value, entry_reason=reason, source=source,
                        earned_at=activity.occurred_at, meta=meta)
        return hold_for_review(change, engagement, review), _answer(activity, "held", 0, account.balance,
                                                                    review.reason)

    lot_id = "ac-" + stable_id("activity-lot", member_id, activity.activity_id)
    lot_points, debt_left = settle_debt(fit, account.debt)
    t = next_tx_time(now, account.last_tx)
    lot = Lot(lot_id=lot_id, earned_at=activity.occurred_at, expires_at=add_months(activity.occurred_at,
              rules.expiry.months), points=fit, remaining=lot_points, source=source)
    entry = LedgerEntry(entry_id=stable_id("activity", member_id, activity.activity_id), type=EntryType.ACTIVITY,
                        amount=fit, recorded_at=t, reason=reason, source=source, lots=((lot_id, fit),), meta=meta)
    from . import tiers   # E7: what a member earns counts towards the tier, in the credit's write
    qualified, _ = tiers.qualify(change.engagement, fit, activity.occurred_at, rules, now)
    # E5: what the member earns during a challenge they are enrolled in counts in it, in this write
    from .daily_checkins import challenge_credits, local_date
    participants = challenge_credits(account.engagement.checkin, member_id,
                                     local_date(activity.occurred_at, context.time_zone or rules.program_timezone), fit)
    change = replace(change, balance_delta=fit, debt_delta=debt_left - account.debt, last_tx=t,
                     lots=(LotWrite(lot=lot, new=True),), entries=(entry,), engagement=qualified,
                     participants=participants)
    return change, _answer(activity, "capped" if capped else "credited", fit, account.balance + fit, capped)


def _end(task) -> datetime:
    from ..domain import parse_time
    return parse_time(task.ends_at)
