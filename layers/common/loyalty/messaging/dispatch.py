"""The dispatcher's decision for one job: send now on a channel, wait for a window, or
not at all. Pure: the handler reads the member once and writes what this decides."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..domain import Lot
from ..records import Consent, Profile
from .windows import next_send_time

if TYPE_CHECKING:
    from ..rules import Rules

CONTACT = {"whatsapp": "phone", "sms": "phone", "wechat": "wechat_openid"}


@dataclass(frozen=True)
class CapCounters:
    """Marketing messages already sent to the member today and this month (local time)."""

    day: str = ""
    day_count: int = 0
    month: str = ""
    month_count: int = 0


@dataclass(frozen=True)
class MemberSnapshot:
    profile: Profile | None
    consents: dict[str, Consent]       # the decision in force per channel
    lots: tuple[Lot, ...] = ()
    caps: CapCounters = CapCounters()


@dataclass(frozen=True)
class Decision:
    action: str                        # send | defer | skip
    reason: str
    channel: str | None = None
    fallbacks: tuple[str, ...] = ()    # other consented channels, in order, for a permanent failure
    not_before: datetime | None = None
    variables: dict = field(default_factory=dict)


# Consent for marketing only, kept beside the channel's own: a WhatsApp member who stops
# marketing messages (user_preferences, error 131050) still gets utility reminders.
MARKETING_SCOPE = {"whatsapp": "whatsapp_marketing"}


def consent_scope(provider: str, code: str | None, channel: str) -> str:
    """Where an opt-out signalled by a provider error belongs: 131050 is WhatsApp's
    "member stopped marketing messages", the rest are the channel's."""
    return MARKETING_SCOPE["whatsapp"] if (provider, str(code)) == ("whatsapp", "131050") else channel


def channels_for(snapshot: MemberSnapshot, rules: "Rules", category: str | None = None) -> list[str]:
    """Consented channels with a contact, the member's preference first; for marketing,
    without the channels whose marketing the member stopped."""
    profile = snapshot.profile
    preferred = list(profile.preferred_channels) if profile else []
    order = preferred + [c for c in rules.messaging.channels_order if c not in preferred]
    usable = []
    for channel in order:
        consent = snapshot.consents.get(channel)
        contact = getattr(profile, CONTACT[channel], None) if profile else None
        if consent is None or consent.status != "opted_in" or not contact:
            continue
        scoped = snapshot.consents.get(MARKETING_SCOPE.get(channel, "")) if category == "marketing" else None
        if scoped is None or scoped.status == "opted_in":
            usable.append(channel)
    return usable


def member_zone(profile: Profile | None, rules: "Rules") -> str:
    """The member's time zone (the profile's), else the programme's: where the member's
    send windows, caps and the dates they read are counted."""
    return profile.time_zone if profile and profile.time_zone else rules.program_timezone


def decide_reminder(job: dict, snapshot: MemberSnapshot, now: datetime, rules: "Rules", category: str) -> Decision:
    """Re-check the ledger, consent, caps and the member's send windows for a reminder.

    The job names the day on the programme's calendar (the expiry index's); the member
    is told the day in their own zone: the earliest of those lots' expiry there."""
    program_zone = ZoneInfo(rules.program_timezone)
    due = [lot for lot in snapshot.lots if lot.spendable(now)
           and lot.expires_at.astimezone(program_zone).date().isoformat() == job["expiry_date"]]
    points = sum(lot.remaining for lot in due)
    if points <= 0:
        return Decision("skip", "points_gone")
    first = min(lot.expires_at for lot in due).astimezone(ZoneInfo(member_zone(snapshot.profile, rules)))
    variables = {"points": points, "expiry_date": first.date().isoformat(),
                 "link": rules.messaging.link_base + job["member_id"]}
    return decide_scheduled(snapshot, now, rules, category, variables)


def decide_scheduled(snapshot: MemberSnapshot, now: datetime, rules: "Rules", category: str,
                     variables: dict) -> Decision:
    """Consent, caps (marketing) and send windows for a message we initiate."""
    channels = channels_for(snapshot, rules, category)
    if not channels:
        return Decision("skip", "no_consented_channel")
    profile = snapshot.profile
    zone = member_zone(profile, rules)
    local = now.astimezone(ZoneInfo(zone))
    if category == "marketing":
        caps = rules.messaging.caps
        day, month = local.date().isoformat(), local.strftime("%Y-%m")
        if (snapshot.caps.day == day and snapshot.caps.day_count >= caps.marketing_per_day) or \
                (snapshot.caps.month == month and snapshot.caps.month_count >= caps.marketing_per_month):
            return Decision("skip", "cap_reached")
    messaging = rules.messaging
    quiet = (messaging.quiet_hours.start, messaging.quiet_hours.end) if category == "marketing" else None
    windows = [(w.start, w.end) for w in messaging.windows]
    when = next_send_time(now, zone, windows, quiet, use_windows=True)
    if when is None:   # rules that allow no moment (refused by validation): never sent
        return Decision("skip", "no_send_window")
    variables = {"name": (profile.name if profile and profile.name else ""), **variables}
    if when > now:
        return Decision("defer", "outside_send_window", channels[0], tuple(channels[1:]), when, variables)
    return Decision("send", "ok", channels[0], tuple(channels[1:]), None, variables)


def decide_notice(snapshot: MemberSnapshot, rules: "Rules", variables: dict) -> Decision:
    """A notice the member triggered (points credited, redemption confirmed): at once, on
    the preferred consented channel; no windows, no caps."""
    channels = channels_for(snapshot, rules)
    if not channels:
        return Decision("skip", "no_consented_channel")
    name = snapshot.profile.name if snapshot.profile and snapshot.profile.name else ""
    return Decision("send", "ok", channels[0], tuple(channels[1:]), None, {"name": name, **variables})
