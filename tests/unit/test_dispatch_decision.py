"""What the dispatcher decides for a reminder: ledger re-check, consent, caps, windows."""
from datetime import timedelta

from loyalty.domain import Lot, parse_time
from loyalty.messaging.dispatch import CapCounters, MemberSnapshot, decide_reminder
from loyalty.records import Consent, Profile
from loyalty.rules import build_rules

RULES = build_rules()
EXPIRES = parse_time("2027-11-17T15:00:00+08:00")
JOB = {"member_id": "ana", "expiry_date": "2027-11-17", "stage_days": 7}
NOON = parse_time("2027-11-10T12:15:00+08:00")


def snapshot(remaining=520, channels=("whatsapp",), consents=None, caps=CapCounters(), tz="Asia/Shanghai"):
    profile = Profile(member_id="ana", name="Ana", phone="+8613800000000", wechat_openid="oAbCdEf123",
                      time_zone=tz, preferred_channels=tuple(channels))
    at = parse_time("2027-01-01T00:00:00+08:00")
    given = consents if consents is not None else {c: "opted_in" for c in ("whatsapp", "wechat", "sms")}
    return MemberSnapshot(profile=profile,
                          consents={c: Consent("ana", c, s, "test", at) for c, s in given.items()},
                          lots=(Lot("l1", EXPIRES - timedelta(days=365), EXPIRES, 520, remaining, "order:1"),),
                          caps=caps)


def test_inside_a_window_with_consent_it_sends_on_the_preferred_channel_with_the_current_points():
    decision = decide_reminder(JOB, snapshot(remaining=400, channels=("wechat",)), NOON, RULES, "utility")
    assert (decision.action, decision.channel) == ("send", "wechat")
    assert decision.fallbacks == ("whatsapp", "sms")
    assert decision.variables["points"] == 400 and decision.variables["expiry_date"] == "2027-11-17"


def test_nothing_is_sent_when_the_points_are_gone():
    assert decide_reminder(JOB, snapshot(remaining=0), NOON, RULES, "utility").reason == "points_gone"


def test_without_consent_on_any_channel_nothing_is_sent_and_opted_out_channels_are_passed_over():
    out = {"whatsapp": "opted_out", "sms": "opted_out"}
    assert decide_reminder(JOB, snapshot(consents=out), NOON, RULES, "utility").reason == "no_consented_channel"
    decision = decide_reminder(JOB, snapshot(consents={"whatsapp": "opted_out", "sms": "opted_in"}), NOON, RULES,
                               "utility")
    assert decision.channel == "sms"


def test_outside_the_windows_it_is_deferred_to_the_next_window_in_the_members_zone():
    night = parse_time("2027-11-10T22:30:00+08:00")
    decision = decide_reminder(JOB, snapshot(), night, RULES, "marketing")
    assert decision.action == "defer"
    assert decision.not_before == parse_time("2027-11-11T12:00:00+08:00")
    # the same instant is 15:30 in London: the member's evening window opens at 19:00
    london = decide_reminder(JOB, snapshot(tz="Europe/London"), night, RULES, "marketing")
    assert london.not_before == parse_time("2027-11-10T19:00:00+00:00")


def test_marketing_caps_count_per_local_day_and_month():
    used = CapCounters(day="2027-11-10", day_count=1, month="2027-11", month_count=1)
    assert decide_reminder(JOB, snapshot(caps=used), NOON, RULES, "marketing").reason == "cap_reached"
    assert decide_reminder(JOB, snapshot(caps=used), NOON, RULES, "utility").action == "send"
    month_full = CapCounters(day="2027-11-09", day_count=1, month="2027-11", month_count=6)
    assert decide_reminder(JOB, snapshot(caps=month_full), NOON, RULES, "marketing").reason == "cap_reached"
    yesterday = CapCounters(day="2027-11-09", day_count=1, month="2027-11", month_count=2)
    assert decide_reminder(JOB, snapshot(caps=yesterday), NOON, RULES, "marketing").action == "send"


def test_a_whatsapp_marketing_stop_passes_whatsapp_over_for_marketing_only():
    stopped = {"whatsapp": "opted_in", "sms": "opted_in", "whatsapp_marketing": "opted_out"}
    member = snapshot(channels=("whatsapp", "sms"), consents=stopped)
    assert decide_reminder(JOB, member, NOON, RULES, "marketing").channel == "sms"
    assert decide_reminder(JOB, member, NOON, RULES, "utility").channel == "whatsapp"
    resumed = snapshot(channels=("whatsapp", "sms"), consents={**stopped, "whatsapp_marketing": "opted_in"})
    assert decide_reminder(JOB, resumed, NOON, RULES, "marketing").channel == "whatsapp"
    # the marketing choice never stands in for the channel's own consent
    only_marketing = snapshot(channels=("whatsapp",), consents={"whatsapp_marketing": "opted_in"})
    assert decide_reminder(JOB, only_marketing, NOON, RULES, "marketing").reason == "no_consented_channel"
