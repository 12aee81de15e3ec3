"""Challenge messages through the dispatcher and the sender over the fakes: outside the
marketing caps, one a member-local day, at the challenge's send time in each member's
zone, never in quiet hours, only to participants with channel consent."""
import threading
from datetime import date, datetime, timedelta, timezone

import pytest

from loyalty.engagement.challenge_calendar import plan_challenge_day
from loyalty.messaging.dispatcher import dispatch_job, message_id_for, release_deferred
from loyalty.records import Consent, Profile
from loyalty.rules import build_rules
from tests.challenge_fakes import FakeChallenges, Results
from tests.unit.messaging_fakes import Provider, Queues, ledger, msgs, send  # noqa: F401

RULES = build_rules()
MONDAY = date(2027, 1, 4)
PLANNED = datetime(2027, 1, 3, 16, 5, tzinfo=timezone.utc)     # 00:05 in Shanghai on Monday


def person(ledger, member_id, zone="Asia/Shanghai", channels=("whatsapp",), locale="zh-CN"):
    phone = "+86138" + str(int.from_bytes(member_id.encode(), "big") % 10**8).zfill(8)
    ledger.put_profile(Profile(member_id, name=member_id.title(), phone=phone,
                               wechat_openid="o" + member_id, locale=locale, time_zone=zone,
                               preferred_channels=tuple(channels)))
    for channel in channels:
        ledger.add_consent(Consent(member_id, channel, "opted_in", "checkout", PLANNED - timedelta(days=9)))


@pytest.fixture
def challenges():
    store = FakeChallenges()
    store.put("q1", starts_on=MONDAY)
    return store


def day_jobs(challenges, on=MONDAY, now=PLANNED):
    results = Results()
    return {j["member_id"]: j for j in plan_challenge_day(challenges, challenges, on, now, finish=results.finish,
                                                          leaderboard=results.leaderboard,
                                                          template="challenge_message").jobs}


def released_at(msgs, queues, challenges, at):
    """Run the release schedule at `at` and dispatch what it released, at `at`."""
    later = Queues()
    release_deferred(msgs, later, at)
    outcomes = [dispatch_job(body, msgs, queues, RULES, at, challenges) for name, body, _ in later.sent]
    queued = [(name, body, delay) for name, body, delay in queues.sent if name == "jobs"]
    queues.sent = [s for s in queues.sent if s[0] != "jobs"]
    outcomes += [dispatch_job(body, msgs, queues, RULES, at, challenges) for _, body, _ in queued]
    return outcomes


def test_each_member_gets_the_task_at_ten_in_their_own_zone(msgs, ledger, challenges):
    zones = {"shanghai": "Asia/Shanghai", "london": "Europe/London", "newyork": "America/New_York"}
    for member, zone in zones.items():
        person(ledger, member, zone)
        challenges.enrol("q1", member)
    jobs = day_jobs(challenges)
    queues = Queues()
    for job in jobs.values():
        assert dispatch_job(job, msgs, queues, RULES, PLANNED, challenges) == "deferred"
    assert challenges.gets == 0                       # deferred: the participant is read at its time only
    expected = {"shanghai": datetime(2027, 1, 4, 2, tzinfo=timezone.utc),
                "london": datetime(2027, 1, 4, 10, tzinfo=timezone.utc),
                "newyork": datetime(2027, 1, 4, 15, tzinfo=timezone.utc)}
    for member, when in expected.items():
        assert msgs.message(message_id_for(jobs[member]["job_id"])).not_before == when
    sent_at = {}
    for hour in range(0, 17):
        at = datetime(2027, 1, 4, hour, tzinfo=timezone.utc)
        for outcome in released_at(msgs, queues, challenges, at):
            assert outcome == "queued:whatsapp"
        for name, body, _ in queues.sent:
            sent_at.setdefault(msgs.message(body["message_id"]).member_id, at)
    assert sent_at == expected
    assert challenges.gets == 3
    record = msgs.message(message_id_for(jobs["london"]["job_id"]))
    assert record.category == "challenge" and record.kind == "challenge"
    assert record.payloads["whatsapp"]["name"] == "challenge_update"
    assert record.payloads["whatsapp"]["body_params"][0].startswith("Day 1/90 🌟 今天的小任务来啦!")


def test_challenge_messages_are_outside_the_marketing_caps(msgs, ledger, challenges):
    """Every weekday of March has its challenge message (23), while the daily marketing
    offer to the same member stops at the cap of 6 a month."""
    from loyalty.messaging.dispatcher import campaign_jobs
    person(ledger, "ana")
    challenges.enrol("q1", "ana")
    queues = Queues()
    challenge_sent = marketing_sent = 0
    for offset in range(31):
        day = date(2027, 3, 1) + timedelta(days=offset)
        midnight = datetime.combine(day, datetime.min.time(), timezone.utc) - timedelta(hours=8)   # in Shanghai
        challenges.update("q1", "ana", last_checkin=(day - timedelta(days=1)).isoformat())     # never silent
        for job in day_jobs(challenges, day, midnight + timedelta(hours=10)).values():
            challenge_sent += dispatch_job(job, msgs, queues, RULES, midnight + timedelta(hours=10),
                                           challenges) == "queued:whatsapp"
        [offer] = campaign_jobs(f"offer-{day}", "member_day_offer", ["ana"], {"offer": "x"}, midnight)
        marketing_sent += dispatch_job(offer, msgs, queues, RULES, midnight + timedelta(hours=12)) == "queued:whatsapp"
    assert challenge_sent == 23 and marketing_sent == 6
    assert msgs.caps["ana"].month_count == 6                       # only marketing counted


def test_one_challenge_message_a_member_local_day_even_from_two_challenges_at_once(msgs, ledger, challenges):
    challenges.put("q2", starts_on=MONDAY)
    person(ledger, "ana")
    challenges.enrol("q1", "ana")
    challenges.enrol("q2", "ana")
    results = Results()
    plan = plan_challenge_day(challenges, challenges, MONDAY, PLANNED, finish=results.finish,
                              leaderboard=results.leaderboard, template="challenge_message")
    jobs = list(plan.jobs)
    assert len(jobs) == 2
    ten = datetime(2027, 1, 4, 2, tzinfo=timezone.utc)
    queues = Queues()
    outcomes = []
    threads = [threading.Thread(target=lambda j=j: outcomes.append(dispatch_job(j, msgs, queues, RULES, ten,
                                                                                  challenges))) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["queued:whatsapp", "skipped:one_challenge_message_a_day"]
    assert [name for name, _, _ in queues.sent] == ["whatsapp"]
    # re-runs of the day change nothing
    for job in jobs:
        assert dispatch_job(job, msgs, queues, RULES, ten, challenges).startswith("duplicate")


def test_a_re_run_of_a_past_day_sends_nothing_more(msgs, ledger, challenges):
    person(ledger, "ana")
    challenges.enrol("q1", "ana")
    ten = datetime(2027, 1, 4, 2, tzinfo=timezone.utc)
    queues = Queues()
    assert dispatch_job(day_jobs(challenges)["ana"], msgs, queues, RULES, ten, challenges) == "queued:whatsapp"
    send(msgs, Provider(), queues, message_id=message_id_for("challenge#q1#ana#2027-01-04"))
    next_day = datetime(2027, 1, 5, 3, tzinfo=timezone.utc)
    again = day_jobs(challenges, MONDAY, next_day)["ana"]               # {"on": "2027-01-04"} the day after
    assert dispatch_job(again, msgs, queues, RULES, next_day, challenges) == "duplicate"


def test_a_day_that_was_never_planned_is_not_sent_late(msgs, ledger, challenges):
    person(ledger, "ana")
    challenges.enrol("q1", "ana")
    next_day = datetime(2027, 1, 5, 3, tzinfo=timezone.utc)
    job = day_jobs(challenges, MONDAY, next_day)["ana"]
    assert dispatch_job(job, msgs, Queues(), RULES, next_day, challenges) == "skipped:day_over"


def test_never_in_quiet_hours_a_late_send_time_is_held_to_the_next_morning_so_that_day_is_over(msgs, ledger, challenges):
    challenges.put("q1", starts_on=MONDAY, calendar={"send_time": "22:30"})
    person(ledger, "ana")
    challenges.enrol("q1", "ana")
    evening = datetime(2027, 1, 4, 14, 30, tzinfo=timezone.utc)           # 22:30 in Shanghai: quiet hours
    assert dispatch_job(day_jobs(challenges)["ana"], msgs, Queues(), RULES, evening, challenges) == "skipped:day_over"
    challenges.put("q1", starts_on=MONDAY, calendar={"send_time": "07:00"})
    early = datetime(2027, 1, 3, 23, 0, tzinfo=timezone.utc)              # 07:00 in Shanghai
    job = {**day_jobs(challenges)["ana"], "job_id": "challenge#q1#ana#early"}
    assert dispatch_job(job, msgs, Queues(), RULES, early, challenges) == "deferred"
    assert msgs.message(message_id_for(job["job_id"])).not_before == datetime(2027, 1, 4, 0, tzinfo=timezone.utc)


def test_stop_after_the_plan_stops_the_message_at_its_time(msgs, ledger, challenges):
    person(ledger, "ana")
    challenges.enrol("q1", "ana")
    queues = Queues()
    assert dispatch_job(day_jobs(challenges)["ana"], msgs, queues, RULES, PLANNED, challenges) == "deferred"
    ledger.add_consent(Consent("ana", "whatsapp", "opted_out", "keyword:STOP", PLANNED + timedelta(hours=1)))
    ten = datetime(2027, 1, 4, 2, tzinfo=timezone.utc)
    assert released_at(msgs, queues, challenges, ten) == ["skipped:no_consented_channel"]
    assert [n for n, _, _ in queues.sent if n != "jobs"] == []


def test_a_participant_who_left_after_the_plan_gets_nothing(msgs, ledger, challenges):
    person(ledger, "ana")
    challenges.enrol("q1", "ana")
    queues = Queues()
    dispatch_job(day_jobs(challenges)["ana"], msgs, queues, RULES, PLANNED, challenges)
    challenges.update("q1", "ana", opted_out=True)
    assert released_at(msgs, queues, challenges, datetime(2027, 1, 4, 2, tzinfo=timezone.utc)) == \
        ["skipped:not_participating"]


def test_whatsapp_marketing_stop_does_not_stop_what_the_member_enrolled_for(msgs, ledger, challenges):
    person(ledger, "ana")
    ledger.add_consent(Consent("ana", "whatsapp_marketing", "opted_out", "provider:whatsapp:131050", PLANNED))
    challenges.enrol("q1", "ana")
    ten = datetime(2027, 1, 4, 2, tzinfo=timezone.utc)
    assert dispatch_job(day_jobs(challenges)["ana"], msgs, Queues(), RULES, ten, challenges) == "queued:whatsapp"


def test_a_nudge_whose_silence_ended_after_the_plan_sends_the_day_s_message_instead(msgs, ledger, challenges):
    person(ledger, "ana", zone="America/Los_Angeles", locale="en")
    challenges.enrol("q1", "ana", last_checkin="2027-01-04")
    friday = date(2027, 1, 8)
    planned = datetime(2027, 1, 7, 16, 5, tzinfo=timezone.utc)           # Thursday 08:05 in Los Angeles
    job = day_jobs(challenges, friday, planned)["ana"]
    assert job["message"] == "nudge"
    challenges.update("q1", "ana", last_checkin="2027-01-07")            # checks in on Thursday afternoon
    ten = datetime(2027, 1, 8, 18, tzinfo=timezone.utc)                  # Friday 10:00 in Los Angeles
    queues = Queues()
    assert dispatch_job(job, msgs, queues, RULES, ten, challenges) == "queued:whatsapp"
    record = msgs.message(message_id_for(job["job_id"]))
    assert record.variables["message"] == "summary" and record.variables["text"].startswith("Your week")


def test_sms_and_wechat_forms(msgs, ledger, challenges):
    person(ledger, "wei", channels=("wechat",))
    person(ledger, "sam", channels=("sms",), locale="en")
    for member in ("wei", "sam"):
        challenges.enrol("q1", member)
    ten = datetime(2027, 1, 4, 2, tzinfo=timezone.utc)
    queues = Queues()
    jobs = day_jobs(challenges)
    assert dispatch_job(jobs["wei"], msgs, queues, RULES, ten, challenges) == "queued:wechat"
    assert dispatch_job(jobs["sam"], msgs, queues, RULES, ten, challenges) == "queued:sms"
    wechat = msgs.message(message_id_for(jobs["wei"]["job_id"])).payloads["wechat"]
    assert wechat["type"] == "subscription" and len(wechat["data"]["thing1"]) <= 20
    sms = msgs.message(message_id_for(jobs["sam"]["job_id"])).payloads["sms"]
    assert sms["text"].startswith("Day 1/90 🌟 Today's task") and sms["template_code"] == "SMS_CHALLENGE_UPDATE"


def test_a_challenge_template_declares_whatsapp_utility():
    from pydantic import ValidationError
    from loyalty.messaging.templates import MessageTemplate
    with pytest.raises(ValidationError, match="UTILITY"):
        MessageTemplate(category="challenge", whatsapp={"name": "x", "body": ["text"]})


def test_the_sender_checks_the_consent_again_a_stop_after_queueing_suppresses_it(msgs, ledger, challenges):
    person(ledger, "ana")
    challenges.enrol("q1", "ana")
    ten = datetime(2027, 1, 4, 2, tzinfo=timezone.utc)
    queues = Queues()
    job = day_jobs(challenges)["ana"]
    assert dispatch_job(job, msgs, queues, RULES, ten, challenges) == "queued:whatsapp"
    ledger.add_consent(Consent("ana", "whatsapp", "opted_out", "keyword:STOP", ten + timedelta(seconds=1)))
    provider = Provider()
    outcome = send(msgs, provider, queues, message_id=message_id_for(job["job_id"]), now=ten + timedelta(seconds=2),
                   ledger=ledger)
    assert outcome == "suppressed:consent_withdrawn" and provider.calls == 0
    assert msgs.message(message_id_for(job["job_id"])).status == "suppressed"


def test_the_sender_sends_a_challenge_message_whose_consent_holds(msgs, ledger, challenges):
    person(ledger, "ana")
    challenges.enrol("q1", "ana")
    ten = datetime(2027, 1, 4, 2, tzinfo=timezone.utc)
    job = day_jobs(challenges)["ana"]
    queues = Queues()
    dispatch_job(job, msgs, queues, RULES, ten, challenges)
    provider = Provider()
    assert send(msgs, provider, queues, message_id=message_id_for(job["job_id"]), now=ten, ledger=ledger) == \
        "sent:whatsapp" and provider.calls == 1
