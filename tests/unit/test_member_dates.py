"""Dates a member reads are in the member's own time zone (the profile's time_zone, else
the programme's): points expiring at 2027-03-01T02:00+08:00 expire on 28 February for a
member in Los Angeles, in reminders, in the answer to 我的积分 and in what is rendered."""
from datetime import timedelta

import pytest

from loyalty.domain import Lot, parse_time
from loyalty.messaging.conversations import _balance_variables
from loyalty.messaging.dispatch import MemberSnapshot, decide_reminder
from loyalty.messaging.templates import format_date, render
from loyalty.records import Consent, Profile
from loyalty.rules import build_rules

RULES = build_rules()
EXPIRES = parse_time("2027-03-01T02:00:00+08:00")       # = 2027-02-28T10:00-08:00 in Los Angeles
JOB = {"member_id": "ana", "expiry_date": "2027-03-01", "stage_days": 7}   # planned on Shanghai's calendar
# 2027-02-22 12:15 in Shanghai, 2027-02-21 20:15 in Los Angeles: both inside a send window
NOW = parse_time("2027-02-22T12:15:00+08:00")


def snapshot(zone: str | None, locale: str = "en") -> MemberSnapshot:
    profile = Profile(member_id="ana", name="Ana", phone="+14155550123", locale=locale, time_zone=zone,
                      preferred_channels=("sms",))
    lot = Lot("l1", EXPIRES - timedelta(days=365), EXPIRES, 520, 520, "order:1")
    return MemberSnapshot(profile=profile, consents={"sms": Consent("ana", "sms", "opted_in", "test", NOW)},
                          lots=(lot,))


@pytest.mark.parametrize("zone, day", [("America/Los_Angeles", "2027-02-28"), ("Asia/Shanghai", "2027-03-01"),
                                       (None, "2027-03-01")])   # no zone of their own: the programme's
def test_a_reminder_gives_the_expiry_date_of_the_members_zone(zone, day):
    decision = decide_reminder(JOB, snapshot(zone), NOW, RULES, "utility")
    assert (decision.action, decision.variables["points"], decision.variables["expiry_date"]) == ("send", 520, day)


@pytest.mark.parametrize("locale, shown", [("en", "28 Feb 2027"), ("zh-CN", "2027年2月28日"), ("zh-HK", "2027年2月28日")])
def test_the_reminder_a_los_angeles_member_reads_says_28_february(locale, shown):
    decision = decide_reminder(JOB, snapshot("America/Los_Angeles", locale), NOW, RULES, "utility")
    variables = {**decision.variables, "link_token": "ana"}
    template = RULES.template("points_expiring")
    assert render(template, "whatsapp", locale, variables, message_id="m")["body_params"][2] == shown
    assert render(template, "wechat", locale, variables, message_id="m")["data"]["date3"] == shown
    sms = render(template, "sms", locale, variables, message_id="m")
    assert shown in sms["text"] and sms["params"]["expiry_date"] == shown


@pytest.mark.parametrize("zone, shown", [("America/Los_Angeles", "28 Feb 2027"), ("Asia/Shanghai", "1 Mar 2027")])
def test_the_answer_to_my_points_gives_the_members_date(zone, shown):
    variables = _balance_variables(snapshot(zone), RULES, NOW)
    assert variables["expiring"] == f"520 expire on {shown}. "


def test_format_date_reads_an_instant_in_the_zone_it_is_given():
    assert format_date(EXPIRES, "en", "America/Los_Angeles") == "28 Feb 2027"
    assert format_date(EXPIRES, "zh-CN", "Asia/Shanghai") == "2027年3月1日"
    assert format_date("2027-03-01", "en") == "1 Mar 2027"          # a calendar date is shown as it is
    with pytest.raises(ValueError):
        format_date(EXPIRES, "en")                                   # an instant needs a zone
