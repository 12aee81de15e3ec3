"""Send windows and quiet hours as rules: a document under which a message could never
go out (every window inside the quiet hours, no window, a window that never opens) is
refused when the rules are built, and a message is never sent for want of a window."""
from datetime import timedelta

import pytest

from loyalty import wiring
from loyalty.domain import parse_time
from loyalty.errors import Invalid, Misconfigured
from loyalty.messaging.dispatch import decide_reminder, decide_scheduled
from loyalty.messaging.windows import next_send_time
from loyalty.rules import Window, build_rules
from tests.unit.test_dispatch_decision import JOB, snapshot

NIGHT, NOON = parse_time("2027-11-10T22:30:00+08:00"), parse_time("2027-11-10T12:15:00+08:00")


def problems(overrides: dict) -> list[dict]:
    with pytest.raises(Invalid) as refused:
        build_rules(overrides)
    return refused.value.problems


@pytest.mark.parametrize("messaging", [
    {"windows": [{"start": "22:00", "end": "23:30"}]},                                        # all in 21-08
    {"windows": [{"start": "06:00", "end": "08:00"}, {"start": "21:00", "end": "23:59"}]},    # both edges
    {"quiet_hours": {"start": "11:00", "end": "22:00"}},                                      # default windows
    {"quiet_hours": {"start": "08:00", "end": "07:59"}},                                      # quiet all day but 1'
])
def test_rules_whose_every_window_falls_in_the_quiet_hours_are_refused_naming_the_windows(messaging):
    [problem] = problems({"messaging": messaging})
    assert problem["field"] == "messaging.windows"
    assert "quiet hours" in problem["problem"] and "marketing" in problem["problem"]


@pytest.mark.parametrize("windows, field", [
    ([], "messaging.windows"),
    ([{"start": "12:00", "end": "12:00"}], "messaging.windows.0"),                 # never open
    ([{"start": "12:00", "end": "13:00"}, {"start": "22:00", "end": "02:00"}], "messaging.windows.1"),
])
def test_rules_with_no_window_or_one_that_never_opens_are_refused(windows, field):
    found = problems({"messaging": {"windows": windows}})
    assert field in [p["field"] for p in found], found


def test_a_window_partly_outside_the_quiet_hours_is_a_usable_window():
    rules = build_rules({"messaging": {"windows": [{"start": "20:00", "end": "22:00"}]}})
    decision = decide_reminder(JOB, snapshot(), NOON, rules, "marketing")
    assert (decision.action, decision.not_before) == ("defer", parse_time("2027-11-10T20:00:00+08:00"))
    night = decide_reminder(JOB, snapshot(), NIGHT, rules, "marketing")
    assert night.not_before == parse_time("2027-11-11T20:00:00+08:00")


def test_the_default_rules_have_a_window_for_marketing():
    build_rules()


def test_invalid_windows_in_the_merchants_overrides_stop_the_functions_not_the_quiet_hours():
    wiring.reset()
    with pytest.raises(Misconfigured, match="messaging.windows"):
        wiring._built("bad-windows", {"messaging": {"windows": [{"start": "22:00", "end": "23:30"}]}})
    wiring.reset()


def unvalidated(**messaging):
    """Rules as a document that bypassed validation would make them."""
    rules = build_rules()
    return rules.model_copy(update={"messaging": rules.messaging.model_copy(update=messaging)})


@pytest.mark.parametrize("windows", [(Window(start="22:00", end="23:30"),), (), (Window(start="13:00", end="12:00"),)])
@pytest.mark.parametrize("at", [NIGHT, NOON, parse_time("2027-11-10T03:00:00+08:00")])
def test_with_no_usable_window_a_marketing_message_is_never_sent(windows, at):
    decision = decide_reminder(JOB, snapshot(), at, unvalidated(windows=windows), "marketing")
    assert decision.action == "skip" and decision.reason == "no_send_window"
    campaign = decide_scheduled(snapshot(), at, unvalidated(windows=windows), "marketing", {"offer": "x"})
    assert campaign.action == "skip"


def test_next_send_time_says_none_when_no_moment_is_allowed():
    quiet = ("21:00", "08:00")
    assert next_send_time(NIGHT, "Asia/Shanghai", [("22:00", "23:30")], quiet, use_windows=True) is None
    assert next_send_time(NIGHT, "Asia/Shanghai", [], quiet, use_windows=True) is None
    assert next_send_time(NIGHT, "Asia/Shanghai", [("12:00", "13:30")], quiet, use_windows=True) == \
        parse_time("2027-11-11T12:00:00+08:00")
    # quiet hours alone (a notice would use none): the end of the quiet hours
    assert next_send_time(NIGHT, "Asia/Shanghai", [], quiet, use_windows=False) == \
        NIGHT.replace(hour=8, minute=0) + timedelta(days=1)


@pytest.mark.parametrize("locale", ["zh-CN", "zh-HK", "en"])
@pytest.mark.parametrize("phone, provider", [("+8613912340002", "aliyun"), ("+447700900123", "twilio")])
def test_the_default_challenge_invitation_fits_an_sms_with_a_chinese_name(locale, phone, provider):
    # An English invitation to a +86 number counts 67 characters a segment (China's rule)
    # and a Chinese challenge name makes any text UCS-2: it once came to 4 segments of 3,
    # a config error at send, and the member was never invited.
    from loyalty.channels.providers import SmsComposer
    rules = build_rules()
    text = rules.template("challenge_invitation").sms.text[locale].format(challenge="春季90天打卡挑战")
    composed = SmsComposer(rules.messaging.sms).compose(text, provider=provider, phone=phone, locale=locale,
                                                         marketing=True)
    assert composed.segments <= rules.messaging.sms.max_segments
