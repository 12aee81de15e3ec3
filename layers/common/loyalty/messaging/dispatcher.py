"""Dispatch one job: re-check, decide, render, record in the outbox, route to a channel.

Two DynamoDB calls on the way through: one Query for the member (caps, consents, lots,
profile) and one write for the outbox record (with the caps, for marketing). The record's
id comes from the job's id, so a job delivered twice is sent once; a job delivered again
after its record was written but before it was routed is routed then (never lost).
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from ..domain import stable_id
from ..errors import ConcurrentUpdate, Transient
from .dispatch import (CONTACT, CapCounters, Decision, MemberSnapshot, decide_notice, decide_reminder,
                       decide_scheduled)
from .outbox import OutboxRecord
from .ports import DailyMessageTaken

if TYPE_CHECKING:
    from ..rules import Rules
    from .ports import MessagingStore

MAX_QUEUE_DELAY_S = 900
CAPS_ATTEMPTS = 3


class Queues(Protocol):
    def send(self, name: str, body: dict, delay_s: int = 0) -> None: ...


def message_id_for(job_id: str) -> str:
    return "m-" + stable_id("message", job_id, length=24)


def _next_caps(snapshot: MemberSnapshot, local: datetime) -> CapCounters:
    day, month = local.date().isoformat(), local.strftime("%Y-%m")
    caps = snapshot.caps
    return CapCounters(day=day, day_count=(caps.day_count if caps.day == day else 0) + 1,
                       month=month, month_count=(caps.month_count if caps.month == month else 0) + 1)


def dispatch_job(job: dict, store: "MessagingStore", queues: Queues, rules: "Rules", now: datetime,
                 participants=None) -> str:
    """Handle one reminder job; returns what happened (sent to a channel queue, deferred,
    skipped with a reason, or duplicate). Raises Transient when the write could not be
    made now (throttling, a conflict with another transaction): the queue retries.

    When the member's marketing counters moved between the read and the write (another
    message for the same member counted meanwhile), the member is read again and the job
    decided again: the caps may be reached now.

    A challenge job (kind `challenge`) reads the participant again through `participants`
    (a ChallengeReader) when it is decided (messaging.challenge_messages)."""
    for _ in range(CAPS_ATTEMPTS):
        try:
            return _dispatch_once(job, store, queues, rules, now, participants)
        except ConcurrentUpdate:
            continue
    raise Transient("the member's marketing counters kept moving")


def _dispatch_once(job: dict, store: "MessagingStore", queues: Queues, rules: "Rules", now: datetime,
                   participants=None) -> str:
    from zoneinfo import ZoneInfo
    template = rules.template(job["template"])
    message_id = message_id_for(job["job_id"])
    snapshot = store.member_snapshot(job["member_id"])
    existing = store.message(message_id) if job.get("released") else None
    if existing is not None and existing.status != "deferred":
        return "duplicate"
    if job.get("kind") == "notice":
        decision = decide_notice(snapshot, rules, job.get("variables", {}))
    elif job.get("kind") == "challenge":
        from .challenge_messages import decide_challenge
        if participants is None:
            raise LookupError("a challenge job needs the challenge store to read its participant")
        decision = decide_challenge(job, snapshot,
                                    lambda: participants.get_participant(job["challenge_id"], job["member_id"], job.get("shard")),
                                    now, rules)
    elif job.get("kind") == "campaign":
        decision = decide_scheduled(snapshot, now, rules, template.category,
                                    {"link": rules.messaging.link_base + job["member_id"], **job.get("variables", {})})
    else:
        decision = decide_reminder(job, snapshot, now, rules, template.category)
    profile = snapshot.profile
    locale = (profile.locale if profile and profile.locale else "zh-CN")
    channels = [c for c in ((decision.channel,) + decision.fallbacks if decision.channel else ())
                if getattr(template, c) is not None]
    record = OutboxRecord(message_id=message_id, member_id=job["member_id"], kind=job.get("kind", "reminder"),
                          template=job["template"], category=template.category,
                          channel=channels[0] if channels else None,
                          to=getattr(profile, CONTACT[channels[0]]) if channels else None, locale=locale,
                          variables={**decision.variables,
                                     **({"stage_days": job["stage_days"]} if "stage_days" in job else {})},
                          payloads={}, fallbacks=tuple(channels[1:]), status="queued", created_at=now,
                          extra={"job_id": job["job_id"],
                                 "to": {c: getattr(profile, CONTACT[c]) for c in channels}})
    if decision.action == "send" and not channels:
        decision = Decision("skip", "no_template_for_consented_channels")
    if decision.action == "skip":
        skipped = replace(record, status="skipped", history=(("skipped", now.isoformat(), decision.reason),))
        if existing is None:
            return "skipped:" + decision.reason if store.create_message(skipped) else "duplicate"
        store.record_status(message_id, "skipped", now, decision.reason)
        return "skipped:" + decision.reason
    from .templates import render  # pydantic-backed: loaded on the first job, not at import
    payloads = {}
    for channel in channels:
        variables = {**decision.variables, "link_token": job["member_id"]}
        payloads[channel] = render(template, channel, locale, variables, message_id=message_id)
    record = replace(record, payloads=payloads)
    if decision.action == "defer":
        deferred = replace(record, status="deferred", not_before=decision.not_before,
                           history=(("deferred", now.isoformat(), f"until {decision.not_before.isoformat()}"),))
        if existing is None and not store.create_message(deferred):
            # A redelivered job: its first run may have stopped before the release was
            # queued, so queue it again (the release path acts on a deferred record once).
            current = store.message(message_id)
            if current is None or current.status != "deferred":
                return "duplicate"
        released = {**job, "released": True, "not_before": decision.not_before.isoformat()}
        wait = (decision.not_before - now).total_seconds()
        if wait <= MAX_QUEUE_DELAY_S:
            queues.send("jobs", released, delay_s=int(wait) + 1)
        else:
            store.defer(released, decision.not_before)
        return "deferred"
    caps = None
    if template.category == "marketing":
        zone = profile.time_zone if profile and profile.time_zone else rules.program_timezone
        caps = (snapshot.caps, _next_caps(snapshot, now.astimezone(ZoneInfo(zone))))
    earlier = existing.history if existing is not None else ()
    queued = replace(record, created_at=existing.created_at if existing is not None else now,
                     history=earlier + (("queued", now.isoformat(), ""),))
    daily = job["on"] if job.get("kind") == "challenge" else None
    try:
        ok = store.requeue_deferred(queued, caps, daily) if existing is not None else \
            store.create_message(queued, caps, daily)
    except DailyMessageTaken:
        reason = "one_challenge_message_a_day"
        if existing is not None:
            store.record_status(message_id, "skipped", now, reason)
        elif not store.create_message(replace(record, status="skipped", history=(("skipped", now.isoformat(), reason),))):
            return "duplicate"
        return "skipped:" + reason
    if not ok:
        return route_again_if_waiting(store, queues, message_id)
    queues.send(queued.channel, {"message_id": message_id, "channel": queued.channel})
    return "queued:" + queued.channel


def route_again_if_waiting(store: "MessagingStore", queues: Queues, message_id: str) -> str:
    """A job (or a push) seen again after its record was written. If the record still
    waits, queued and never claimed, the first run may have died before routing it:
    route it again. The sender's claim makes a second queue message harmless (sent at
    most once)."""
    current = store.message(message_id)
    if current is not None and current.status == "queued" and current.channel and current.attempts == 0:
        queues.send(current.channel, {"message_id": message_id, "channel": current.channel})
        return "duplicate:requeued"
    return "duplicate"


def release_deferred(store: "MessagingStore", queues: Queues, now: datetime, limit: int = 500) -> int:
    """Jobs whose send window opened by `now`, however long ago, go back to the jobs queue
    (at most `limit`; the rest on the next call). The dispatcher decides each again at its
    time: a member who opted out meanwhile gets nothing. A job released twice (its removal
    failed) is a duplicate there."""
    released = 0
    for deferred in store.due_deferred(now, limit):
        queues.send("jobs", {**deferred.job, "planned_at": now.isoformat()})
        store.remove_deferred(deferred)
        released += 1
    return released


def notice_job(kind_key: str, member_id: str, template: str, variables: dict, at: datetime) -> dict:
    """A job for a notice the member triggered; its id comes from what triggered it."""
    return {"job_id": f"notice#{template}#{kind_key}", "kind": "notice", "member_id": member_id,
            "template": template, "variables": variables, "planned_at": at.isoformat()}


def campaign_jobs(campaign_id: str, template: str, member_ids: list[str], variables: dict, at: datetime) -> list[dict]:
    """One job per member; the ids make a re-sent campaign reach nobody twice."""
    return [{"job_id": f"campaign#{campaign_id}#{member_id}", "kind": "campaign", "member_id": member_id,
             "template": template, "variables": variables, "planned_at": at.isoformat()} for member_id in member_ids]
