"""The challenge calendar's plan (E5, M12) over the challenge store's fake: one message
per participant per day by priority, weekends, the caring nudge once per silence, the
texts as configuration, and what is read."""
from datetime import date, datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from loyalty.engagement.calendar_texts import lint_service_text
from loyalty.engagement.challenge_calendar import Standing, nudge_due, plan_challenge_day, week_figures
from loyalty.engagement.challenges import ChallengeSpec
from tests.challenge_fakes import FakeBoard, FakeChallenges, Results

START = date(2027, 1, 4)        # a Monday; 90 days end on 2027-04-03, the final message is on 04-04


def plan(store, on: date, results: Results | None = None, **kw):
    results = results or Results()
    now = datetime.combine(on, datetime.min.time(), timezone.utc) - timedelta(hours=8)   # 00:00 in Shanghai
    return plan_challenge_day(store, store, on, now, finish=results.finish, leaderboard=results.leaderboard,
                              template="challenge_message", **kw)


def by_member(day_plan) -> dict[str, dict]:
    return {job["member_id"]: job for job in day_plan.jobs}


@pytest.fixture
def store():
    store = FakeChallenges()
    store.put("q1", starts_on=START)
    return store


def checked_in(store, member, through: date, days: int):
    """`member` checked in every day up to `through`, `days` days in a row."""
    n = (through - START).days + 1
    bits = ["0"] * n
    for i in range(n - days, n):
        bits[i] = "1"
    store.update("q1", member, last_checkin=through.isoformat(), streak=days, days_checked_in=days,
                 points=10 * days, checked="".join(bits))


def test_a_week_brings_a_task_monday_to_thursday_the_summary_on_friday_and_nothing_at_the_weekend(store):
    store.enrol("q1", "ana")
    kinds = {}
    for offset in range(7):
        day = START + timedelta(days=offset)
        checked_in(store, "ana", day - timedelta(days=1), offset) if offset else None
        kinds[day.strftime("%a")] = [job["message"] for job in plan(store, day).jobs]
    assert kinds == {"Mon": ["task"], "Tue": ["task"], "Wed": ["task"], "Thu": ["task"], "Fri": ["summary"],
                     "Sat": [], "Sun": []}


def test_the_task_text_is_the_day_s_in_each_locale_and_a_day_can_have_its_own(store):
    store.put("q1", starts_on=START, calendar={"task_days": {"3": {"zh-CN": "Day {day}/{days} 第三天的任务", "en":
                                                                  "Day {day} of {days}: a task of its own"}}})
    store.enrol("q1", "ana")
    texts = by_member(plan(store, START + timedelta(days=1)))["ana"]["texts"]
    assert texts["zh-CN"].startswith("Day 2/90 🌟 今天的小任务来啦!") and "回复「签到」完成打卡" in texts["zh-CN"]
    assert texts["en"].startswith("Day 2/90") and texts["zh-HK"].startswith("Day 2/90 🌟 今日嘅小任務")
    texts = by_member(plan(store, START + timedelta(days=2)))["ana"]["texts"]
    assert texts == {"zh-CN": "Day 3/90 第三天的任务", "zh-HK": "Day 3/90 第三天的任务", "en": "Day 3 of 90: a task of its own"}


def test_the_friday_summary_counts_the_week_from_the_check_in_days_and_carries_the_day_s_task(store):
    store.enrol("q1", "ana")
    store.enrol("q1", "bo")
    friday = START + timedelta(days=4)
    checked_in(store, "ana", friday - timedelta(days=1), 4)          # Monday to Thursday: 4 x 10
    store.update("q1", "bo", points=100)
    job = by_member(plan(store, friday))["ana"]
    assert job["message"] == "summary"
    assert "4 check-ins, +40 check-in points, a 4-day streak, rank 2" in job["texts"]["en"]
    assert "rank 2 so far. Day 5/90 🌟" in job["texts"]["en"]          # the day's task after it, on one line
    p = store.get_participant("q1", "ana")
    assert week_figures(p, store.challenges["q1"].spec, friday) == (4, 40)


def test_week_points_follow_the_streak_tiers(store):
    store.enrol("q1", "ana")
    friday = START + timedelta(days=11)                                # day 12, the second Friday
    checked_in(store, "ana", friday - timedelta(days=1), 11)           # days 1-11: streak days 8-11 this week
    assert week_figures(store.get_participant("q1", "ana"), store.challenges["q1"].spec, friday) == (4, 4 * 15)


def test_the_monthly_leaderboard_goes_on_the_first_read_once_for_the_challenge(store):
    for member in ("ana", "bo", "cy"):
        store.enrol("q1", member)
    board = FakeBoard(((1, "B*", 420), (2, "A*", 300), (2, "C*", 300)),
                      {"ana": Standing(2, 300), "bo": Standing(1, 420), "cy": Standing(2, 300)})
    results = Results(board=board)
    first = date(2027, 2, 1)
    jobs = by_member(plan(store, first, results))
    assert results.boards == [("q1", "2027-01")]
    assert {m: j["message"] for m, j in jobs.items()} == {"ana": "leaderboard", "bo": "leaderboard", "cy": "leaderboard"}
    assert jobs["ana"]["texts"]["en"] == ("2027-01 leaderboard 🏆 1. B* 420 · 2. A* 300 · 2. C* 300. "
                                          "You are number 2 with 300 challenge points.")


def test_no_leaderboard_on_a_first_that_is_the_challenge_s_first_day():
    store = FakeChallenges()
    store.put("feb", starts_on=date(2027, 2, 1))
    store.enrol("feb", "ana")
    results = Results()
    assert [j["message"] for j in plan(store, date(2027, 2, 1), results).jobs] == ["task"]
    assert results.boards == []


def test_the_day_after_the_end_brings_the_final_message_from_the_results_once(store):
    store.enrol("q1", "ana")
    store.enrol("q1", "bo", opted_out=True)
    results = Results(final={"ana": Standing(rank=3, points=1450, reward=300), "bo": Standing(1, 2000, 800)})
    day_plan = plan(store, date(2027, 4, 4), results)
    assert results.finished == ["q1"]
    [job] = day_plan.jobs
    assert job["message"] == "final" and job["member_id"] == "ana"
    assert "1,450 challenge points, final rank 3, +300 reward points" in job["texts"]["en"]
    assert plan(store, date(2027, 4, 5), Results()).jobs == ()         # over: not active any more


def test_without_the_results_wired_the_final_day_plans_nothing_and_says_so(store):
    store.enrol("q1", "ana")
    day_plan = plan_challenge_day(store, store, date(2027, 4, 4), datetime(2027, 4, 3, 16, tzinfo=timezone.utc),
                                  finish=None, leaderboard=None, template="challenge_message")
    assert day_plan.jobs == () and day_plan.counts == {"skipped:results_not_wired": 1}


def test_a_silent_participant_gets_one_caring_nudge_instead_of_the_task_and_a_check_in_ends_the_silence(store):
    store.enrol("q1", "ana")
    checked_in(store, "ana", START, 1)                                 # Monday, then silent
    days = {}
    for offset in range(1, 12):
        day = START + timedelta(days=offset)
        job = by_member(plan(store, day)).get("ana")
        days[day.isoformat()] = job and job["message"]
    # silent Tue, Wed, Thu: the nudge on Friday, instead of the summary (which it carries instead)
    assert days["2027-01-08"] == "nudge"
    assert [d for d, kind in days.items() if kind == "nudge"] == ["2027-01-08"]
    assert days["2027-01-11"] == "task" and days["2027-01-09"] is None    # no second nudge, weekends quiet
    assert store.nudges == [("q1", "ana", date(2027, 1, 8))]
    # a check-in on the 12th ends the silence; silent again 13th-15th: a new nudge on Saturday the 16th
    checked_in(store, "ana", date(2027, 1, 12), 1)
    assert by_member(plan(store, date(2027, 1, 15)))["ana"]["message"] == "summary"
    job = by_member(plan(store, date(2027, 1, 16)))["ana"]
    assert job["message"] == "nudge" and job["instead"] is None          # a weekend: no task to fall back on
    assert job["texts"]["zh-CN"] == "看到你最近比较忙,我们为你保留了积分,随时可以回来哦~"
    assert job["texts"]["en"] == "We can see you have been busy: we kept your points for you — come back any time."


def test_a_nudged_friday_job_carries_the_summary_instead_for_a_check_in_after_the_plan(store):
    store.enrol("q1", "ana")
    checked_in(store, "ana", START, 1)
    job = by_member(plan(store, START + timedelta(days=4)))["ana"]
    assert job["message"] == "nudge" and job["instead"]["message"] == "summary"
    assert job["last_checkin"] == START.isoformat()


def test_a_re_run_of_a_nudge_day_plans_the_same_nudge(store):
    store.enrol("q1", "ana")
    checked_in(store, "ana", START, 1)
    friday = START + timedelta(days=4)
    first = plan(store, friday)
    again = plan(store, friday)
    assert first.jobs == again.jobs and [j["message"] for j in first.jobs] == ["nudge"]
    assert store.nudges == [("q1", "ana", friday)]                     # recorded once


def test_never_checked_in_counts_from_the_later_of_the_start_and_the_enrolment(store):
    spec = store.challenges["q1"].spec
    late = store.enrol("q1", "late", enrolled_at="2027-01-06T09:00:00+08:00")
    assert not nudge_due(late, spec, date(2027, 1, 8)) and nudge_due(late, spec, date(2027, 1, 9))
    early = store.enrol("q1", "early")
    assert nudge_due(early, spec, START + timedelta(days=3)) and not nudge_due(early, spec, START + timedelta(days=2))


def test_opted_out_participants_get_nothing(store):
    store.enrol("q1", "ana")
    store.enrol("q1", "gone", opted_out=True)
    day_plan = plan(store, START)
    assert list(by_member(day_plan)) == ["ana"] and day_plan.counts["skipped:opted_out"] == 1


def test_the_plan_reads_each_shard_once_whatever_the_number_of_participants(store):
    for i in range(1000):
        store.enrol("q1", f"m{i:04d}")
    day_plan = plan(store, START + timedelta(days=1))
    assert len(day_plan.jobs) == 1000 and len({j["job_id"] for j in day_plan.jobs}) == 1000
    assert store.items_read == 1000 and day_plan.participants_read == 1000
    assert store.pages_read <= 8 + 1000 // store.page_size
    assert store.gets == 0                                                # no read per participant


def test_jobs_name_the_challenge_member_and_day_and_the_send_time(store):
    store.put("q1", starts_on=START, calendar={"send_time": "09:30"})
    store.enrol("q1", "ana")
    job = plan(store, START).jobs[0]
    assert job["job_id"] == "challenge#q1#ana#2027-01-04" and job["kind"] == "challenge"
    assert job["on"] == "2027-01-04" and job["send_time"] == "09:30" and job["template"] == "challenge_message"


@pytest.mark.parametrize("text, why", [
    ("【品牌促销】今日打卡送积分!", "reads as an ad (促销)"),
    ("点击链接购买享受8折!", "names a price or a discount"),
    ("Day {day}: see https://shop.example/x", "has a link"),
    ("Visit www.example.com", "has a link"),
    ("BUY NOW and save", "reads as an ad (buy now)"),
    ("20% off today", "names a price or a discount"),
    ("满100元送积分", "names a price or a discount"),
    ("Hi {nickname}", "unknown placeholders {nickname}"),
    ("Hi {name!r}", "format or conversion"),
    ("x" * 301, "longer than 300"),
    ("an open { brace", "brace"),
    ("two\nlines", "new line"),
])
def test_the_lint_refuses_what_is_not_a_service_message(text, why):
    assert why in lint_service_text(text)


def test_the_seed_s_good_example_and_the_defaults_pass_the_lint():
    assert lint_service_text("Day 23/90 🌟 今天的小任务来啦!分享你最近一次使用我们产品的心情,完成打卡+15积分~记得查看你的积分余额哦!") is None
    ChallengeSpec(name="q", starts_on=START)                               # the defaults validate


def test_a_bad_text_in_the_challenge_s_definition_names_its_field():
    with pytest.raises(ValidationError) as caught:
        ChallengeSpec(name="q", starts_on=START, calendar={"task": {"zh-CN": "今日折扣!", "en": "ok"}})
    [error] = caught.value.errors()
    assert error["loc"] == ("calendar", "task") and "task.zh-CN" in error["msg"]
    with pytest.raises(ValidationError) as caught:
        ChallengeSpec(name="q", starts_on=START, calendar={"nudge": {"zh-CN": "回来吧"}})
    assert "a text for en is needed" in str(caught.value)
    with pytest.raises(ValidationError) as caught:
        ChallengeSpec(name="q", starts_on=START, calendar={"send_time": "25:00"})
    assert caught.value.errors()[0]["loc"] == ("calendar", "send_time")


def test_the_default_texts_fit_the_sms_segments_even_the_friday_summary_with_its_task(store):
    """Every default message, with large figures, fits the SMS cap (rules.messaging.sms.max_segments)
    with the brand signature, on the domestic and the international count."""
    from loyalty.messaging.sms import segments
    from loyalty.rules import build_rules
    sms = build_rules().messaging.sms
    store.enrol("q1", "ana")
    friday = START + timedelta(days=88)                                  # day 89 of 90, a Friday
    store.update("q1", "ana", points=123456, streak=88, days_checked_in=88, last_checkin=(friday - timedelta(days=1))
                 .isoformat(), checked="1" * 88)
    jobs = [by_member(plan(store, friday))["ana"]]
    jobs.append(by_member(plan(store, date(2027, 4, 4), Results(final={"ana": Standing(1000, 123456, 1800)})))["ana"])
    jobs.append(by_member(plan(store, date(2027, 3, 1), Results(board=FakeBoard(
        ((1, "张*", 123456), (2, "李*", 120000), (3, "王*", 110000)), {"ana": Standing(1000, 99999)}))))["ana"])
    store.update("q1", "ana", last_checkin="2027-03-20")
    jobs.append(by_member(plan(store, date(2027, 3, 24)))["ana"])         # a nudge
    assert [j["message"] for j in jobs] == ["summary", "final", "leaderboard", "nudge"]
    for job in jobs:
        for locale, text in job["texts"].items():
            signed = f"【{sms.brand}】{text}"
            assert segments(signed, domestic_cn=True) <= sms.max_segments, (job["message"], locale, text)
            assert segments(signed) <= sms.max_segments, (job["message"], locale, text)
