"""The dispatcher's decision for a challenge message (category `challenge`, planned by
loyalty.engagement.challenge_calendar): the member asked for these by enrolling, so they
are outside the marketing caps, but

- they go on the member's channels whose consent is in force (STOP stops them: the
  decision is made again when a deferred job is released at its time);
- only to a participant still in the challenge (read again here, when it would go);
- at the challenge's send time on the job's member-local date, never in quiet hours,
  and never on another day: a job whose day is over in the member's zone is skipped
  (a re-run of a past day sends nothing late);
- at most one a member-local day: the store takes a (member, date) key in the write that
  queues the message (MessagingStore.create_message's `daily`), so concurrent or re-run
  plans can never queue two."""
from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Callable, Protocol
from zoneinfo import ZoneInfo

from .dispatch import Decision, MemberSnapshot, channels_for, member_zone
from .windows import in_quiet_hours

if TYPE_CHECKING:
    from ..engagement.challenges import Participant
    from ..rules import Rules

CATEGORY = "challenge"


class ParticipantReader(Protocol):
    """ports.ChallengeReader's get_participant: all the dispatcher reads of a challenge."""

    def get_participant(self, challenge_id: str, member_id: str,
                        shard: int | None = None) -> "Participant | None": ...


def daily_key(job: dict) -> str:
    """The member-local date a challenge message counts for (one a day, whatever the challenge)."""
    return job["on"]


def _send_moment(job: dict, zone: str, now: datetime, rules: "Rules") -> datetime | None:
    """The earliest moment at or after `now` and the send time of the job's day, out of
    quiet hours, on that day in the member's zone; None when the day has no such moment left."""
    tz = ZoneInfo(zone)
    day = date.fromisoformat(job["on"])
    hours, minutes = (int(x) for x in job["send_time"].split(":"))
    moment = max(now.astimezone(tz), datetime.combine(day, time(hours, minutes), tz))
    quiet = rules.messaging.quiet_hours
    if in_quiet_hours(moment, quiet.start, quiet.end):
        qh, qm = (int(x) for x in quiet.end.split(":"))
        ends = datetime.combine(moment.date(), time(qh, qm), tz)
        moment = ends if ends > moment else ends + timedelta(days=1)
    return moment if moment.date() == day else None


def decide_challenge(job: dict, snapshot: MemberSnapshot, participant: "Callable[[], Participant | None]",
                     now: datetime, rules: "Rules") -> Decision:
    """Send, defer to the job's send time, or skip (with why). `participant` reads the
    participant, only when the message would go now: a job deferred to its time is
    decided again then, so the plan's run costs no read of it."""
    channels = channels_for(snapshot, rules, CATEGORY)
    if not channels:
        return Decision("skip", "no_consented_channel")
    profile = snapshot.profile
    when = _send_moment(job, member_zone(profile, rules), now, rules)
    if when is None:
        return Decision("skip", "day_over")
    message, texts = job["message"], job["texts"]
    if when <= now:
        current = participant()
        if current is None or current.opted_out:
            return Decision("skip", "not_participating")
        if message == "nudge" and current.last_checkin != job.get("last_checkin"):
            # checked in since the plan: the silence is over, the day's own message instead
            if not job.get("instead"):
                return Decision("skip", "silence_ended")
            message, texts = job["instead"]["message"], job["instead"]["texts"]
    locale = profile.locale if profile and profile.locale else "zh-CN"
    if locale not in texts:
        locale = "zh-CN" if locale.startswith("zh") else "en"
    name = profile.name if profile and profile.name else ""
    from .templates import MEMBER
    text = texts[locale].replace("{name}", name or MEMBER.get(locale, "Member"))
    variables = {"name": name, "text": text, "message": message, "challenge_id": job["challenge_id"], "on": job["on"]}
    if when > now:
        return Decision("defer", "challenge_send_time", channels[0], tuple(channels[1:]), when, variables)
    return Decision("send", "ok", channels[0], tuple(channels[1:]), None, variables)
