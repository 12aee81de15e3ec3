"""What a check-in or an activity plans for the challenges the member is enrolled in
(Change.participants, persisted by the accounts transaction), and the check-in keywords
on every channel with their reply."""
from dataclasses import replace
from datetime import timedelta

import pytest

from loyalty.adapters.memory import MemoryLedgerStore
from loyalty.domain import Account, parse_time
from loyalty.engagement.activities import Activity, record_activity
from loyalty.engagement.challenges import ParticipantCredit, shard_of
from loyalty.engagement.daily_checkins import plan_checkin
from loyalty.engagement.state import CheckinState, Engagement
from loyalty.messaging.conversations import apply_message, checkin_summary
from loyalty.rules import build_rules
from tests.unit.messaging_fakes import NOW, PHONE, RULES, Queues, ledger, member, msgs  # noqa: F401
from tests.unit.test_conversations import inbound

T0 = parse_time("2026-11-23T09:00:00+08:00")
ZONE = "Asia/Shanghai"
ENROLLED = (("q4", "2026-11-01", "2027-01-29", 5), ("q3", "2026-08-01", "2026-10-29", 2),
            ("q4-vip", "2026-11-20", "2026-12-19", 1))


def enrolled(**checkin) -> Account:
    return Account(member_id="m1", version=3, balance=100,
                   engagement=Engagement(checkin=CheckinState(challenges=ENROLLED, **checkin)))


def test_a_check_in_credits_each_challenge_whose_days_hold_its_date():
    change, answer = plan_checkin(RULES, "m1", enrolled(last="2026-11-22", streak=4, days=9), ZONE, T0, T0)
    assert answer["streak"] == 5 and answer["points"] == 10
    assert change.participants == (
        ParticipantCredit("q4", "m1", 5, points=10, month="2026-11", day=23, local_date="2026-11-23", streak=5),
        ParticipantCredit("q4-vip", "m1", 1, points=10, month="2026-11", day=4, local_date="2026-11-23", streak=5))
    # the month and the day are the member's: 01:00 on 1 Dec in Shanghai is still November in UTC
    december = parse_time("2026-12-01T01:00:00+08:00")
    change, _ = plan_checkin(RULES, "m1", enrolled(), ZONE, december, december)
    assert [(p.challenge_id, p.month, p.day, p.streak) for p in change.participants] == [
        ("q4", "2026-12", 31, 1), ("q4-vip", "2026-12", 12, 1)]


def test_a_check_in_outside_every_challenge_or_already_made_plans_no_participant():
    before = parse_time("2026-10-31T09:00:00+08:00")   # between q3's end and q4's start
    change, _ = plan_checkin(RULES, "m1", enrolled(), ZONE, before, before)
    assert change.participants == ()
    change, answer = plan_checkin(RULES, "m1", enrolled(last="2026-11-23", streak=1, days=1), ZONE, T0, T0)
    assert change is None and answer["already_checked_in"] is True


def test_a_check_in_the_cap_leaves_nothing_for_still_marks_the_challenge_day():
    account = enrolled()
    account = replace(account, engagement=replace(account.engagement, counter=replace(
        account.engagement.counter, day="2026-11-23", points=200)))
    change, answer = plan_checkin(RULES, "m1", account, ZONE, T0, T0)
    assert answer["points"] == 0 and change.entries == () and change.lots == ()
    assert [(p.points, p.day) for p in change.participants] == [(0, 23), (0, 4)]


class Capturing(MemoryLedgerStore):
    def __init__(self):
        super().__init__()
        self.changes = []

    def commit(self, change):
        self.changes.append(change)
        super().commit(change)


def test_an_activity_credited_during_a_challenge_adds_its_points_there_without_a_day():
    store = Capturing()
    store.accounts["m1"] = enrolled()
    record_activity(store, RULES, "m1", Activity("a1", "share", T0, None, None, "h1"), T0)
    assert store.changes[-1].participants == (
        ParticipantCredit("q4", "m1", 5, points=10, month="2026-11"),
        ParticipantCredit("q4-vip", "m1", 1, points=10, month="2026-11"))
    record_activity(store, RULES, "m1", Activity("u1", "ugc", T0, None, None, "h2"), T0)   # held: nothing yet
    assert store.changes[-1].participants == ()
    outside = parse_time("2027-02-01T09:00:00+08:00")
    record_activity(store, RULES, "m1", Activity("a2", "share", outside, None, None, "h3"), outside)
    assert store.changes[-1].participants == ()


def test_an_approved_activity_counts_in_the_challenge_when_it_is_credited():
    from loyalty.engagement.reviews import decide_review
    store = Capturing()
    store.accounts["m1"] = enrolled()
    record_activity(store, RULES, "m1", Activity("u1", "ugc", T0, None, None, "h1"), T0)   # held
    [review] = store.reviews.values()
    decide_review(store, RULES, review.review_id, "approve", "fine", "op", T0 + timedelta(days=1))
    assert store.changes[-1].participants == (
        ParticipantCredit("q4", "m1", 5, points=50, month="2026-11"),
        ParticipantCredit("q4-vip", "m1", 1, points=50, month="2026-11"))


def test_the_shard_an_enrolment_names_is_the_one_a_credit_carries():
    account = Account(member_id="m7", engagement=Engagement(checkin=CheckinState(
        challenges=(("q4", "2026-11-01", "2027-01-29", shard_of("m7")),))))
    change, _ = plan_checkin(RULES, "m7", account, ZONE, T0, T0)
    assert change.participants[0].shard == shard_of("m7")


# --- keywords -------------------------------------------------------------------------------------

@pytest.mark.parametrize("word", ["签到", "打卡", "CHECKIN", "check in", "Check-In", "ＣＨＥＣＫＩＮ", "簽到！"])
def test_the_check_in_keywords_check_the_member_in_and_reply(msgs, ledger, word):
    member(ledger)
    queues = Queues()
    assert apply_message(inbound(word), ledger, msgs, queues, RULES, NOW).handled == "reply:checkin_reply"
    assert ledger.load_account("ana", with_lots=False).engagement.checkin.streak == 1
    [reply] = msgs.member_messages("ana")
    assert (reply.template, reply.category, reply.channel) == ("checkin_reply", "utility", "whatsapp")
    assert reply.payloads["whatsapp"] == {"type": "text", "body": "Day 1 of your streak +10 points · Balance 10",
                                          "preview_url": True}


def test_a_second_check_in_by_keyword_says_it_was_made_with_the_streak(msgs, ledger):
    member(ledger)
    queues = Queues()
    apply_message(inbound("签到", "wamid.A", at=NOW - timedelta(days=1)), ledger, msgs, queues, RULES,
                  NOW - timedelta(days=1))
    apply_message(inbound("签到", "wamid.B", at=NOW), ledger, msgs, queues, RULES, NOW)
    apply_message(inbound("打卡", "wamid.C", at=NOW + timedelta(hours=2)), ledger, msgs, queues, RULES, NOW)
    bodies = {m.provider_message_id or m.message_id: m.payloads["whatsapp"]["body"] for m in msgs.member_messages("ana")}
    assert sorted(bodies.values()) == ["Already checked in today · 2-day streak · Balance 20",
                                       "Day 1 of your streak +10 points · Balance 10",
                                       "Day 2 of your streak +10 points · Balance 20"]
    assert ledger.load_account("ana", with_lots=False).balance == 20


def test_in_a_challenge_the_reply_reads_day_n_of_n_in_the_members_locale(msgs, ledger):
    member(ledger)
    ledger.put_profile(replace(ledger.get_profile("ana"), locale="zh-CN"))
    ledger.accounts["ana"] = Account(member_id="ana", engagement=Engagement(checkin=CheckinState(
        last="2026-11-22", streak=4, days=20, challenges=(("q4", "2026-11-01", "2027-01-29", 3),))))
    apply_message(inbound("签到"), ledger, msgs, Queues(), RULES, NOW)
    [reply] = msgs.member_messages("ana")
    assert reply.payloads["whatsapp"]["body"] == "Day 23/90 ✅ +10 积分 · 连续 5 天 · 余额 10"


def test_the_summary_outside_a_challenge_when_capped_and_in_each_locale():
    answer = {"date": "2026-11-23", "streak": 5, "points": 1500, "balance": 9, "already_checked_in": False}
    assert checkin_summary(answer, None, "zh-CN") == "连续签到第 5 天 +1,500 积分"
    assert checkin_summary(answer, None, "zh-HK") == "連續簽到第 5 天 +1,500 積分"
    assert checkin_summary({**answer, "points": 5, "capped": True}, (23, 90), "en") == \
        "Day 23/90 ✅ +5 points · 5-day streak (today's points limit reached)"
    assert checkin_summary({**answer, "already_checked_in": True}, (23, 90), "zh-CN") == "Day 23/90 ✅ 今天已签到 · 连续 5 天"


def test_wechat_and_sms_get_the_check_in_reply_in_their_own_form(msgs, ledger):
    member(ledger, channels=("wechat", "sms"))
    answer = apply_message(inbound("签到", "wx1", provider="wechat", sender="oAna"), ledger, msgs, Queues(), RULES,
                           NOW)
    assert answer.reply == "Day 1 of your streak +10 points · Balance 10"
    queues = Queues()
    later = NOW + timedelta(days=1)
    assert apply_message(inbound("CHECKIN", "SM1", provider="twilio", sender=PHONE, at=later), ledger, msgs, queues,
                         RULES, later).handled == "reply:checkin_reply"
    sms = next(m for m in msgs.member_messages("ana") if m.channel == "sms")
    assert sms.payloads["sms"]["text"] == "Day 2 of your streak +10 points · Balance 20"
    aliyun = apply_message(inbound("打卡", "AL1", provider="aliyun", sender=PHONE.lstrip("+"),
                                   at=later + timedelta(days=1)),
                           ledger, msgs, Queues(), RULES, later + timedelta(days=1))
    assert aliyun.handled == "reply:checkin_reply"
    assert ledger.load_account("ana", with_lots=False).engagement.checkin.streak == 3


def test_a_check_in_message_applied_too_late_counts_nothing_and_gets_no_reply(msgs, ledger):
    member(ledger)
    old = inbound("签到", at=NOW - timedelta(days=3))
    assert apply_message(old, ledger, msgs, Queues(), RULES, NOW).handled == "ignored:checkin_too_late"
    assert msgs.member_messages("ana") == [] and ledger.load_account("ana", with_lots=False).balance == 0


def test_the_reply_template_is_a_service_message_on_every_channel():
    template = build_rules().template("checkin_reply")
    assert template.category == "utility" and template.whatsapp is not None and template.sms is not None
    assert template.text is not None and set(template.text) == {"zh-CN", "zh-HK", "en"}


def test_the_service_clock_of_a_request_is_when_api_gateway_received_it():
    from datetime import datetime, timezone
    from loyalty.web.api import request_time
    now = datetime(2026, 11, 23, 4, 0, tzinfo=timezone.utc)
    assert request_time({"requestContext": {"timeEpoch": 1751335200000}}, now) == \
        datetime(2025, 7, 1, 2, 0, tzinfo=timezone.utc)
    assert request_time({"requestContext": {}}, now) == request_time({}, now) == now
