"""When the template's schedule expressions fire (infra/local/cron.py)."""
from datetime import datetime, timedelta, timezone

import pytest

from infra.local.cron import ExpressionError, parse_expression

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_rate_fires_on_round_multiples_and_counts_a_year_without_listing_it():
    every_15 = parse_expression("rate(15 minutes)")
    after, until = at("2026-12-01T20:31:00Z"), at("2026-12-01T21:30:00Z")
    assert list(every_15.between(after, until)) == [at("2026-12-01T20:45:00Z"), at("2026-12-01T21:00:00Z"),
                                                    at("2026-12-01T21:15:00Z"), at("2026-12-01T21:30:00Z")]
    assert every_15.count(after, until) == 4
    assert every_15.latest(after, until) == until
    assert every_15.count(after, after + timedelta(days=365)) == 35040
    assert every_15.latest(after, at("2026-12-01T20:44:59Z")) is None
    assert parse_expression("rate(1 day)").count(after, after + timedelta(days=3)) == 3


def test_cron_is_read_in_the_schedules_time_zone():
    daily = parse_expression("cron(55 11 * * ? *)", "Asia/Shanghai")
    after, until = at("2026-12-01T12:00:00+08:00"), at("2026-12-03T12:00:00+08:00")
    assert list(daily.between(after, until)) == [at("2026-12-02T11:55:00+08:00"), at("2026-12-03T11:55:00+08:00")]
    assert daily.latest(after, after + timedelta(days=365)) == at("2027-12-01T11:55:00+08:00")
    assert daily.count(after, after + timedelta(days=365)) == 365


@pytest.mark.parametrize("expression, first_two", [
    ("cron(0/20 9 ? * MON-FRI *)", ["2026-12-01T09:00:00Z", "2026-12-01T09:20:00Z"]),   # a Tuesday
    ("cron(0 10 ? * 2#1 *)", ["2026-12-07T10:00:00Z", "2027-01-04T10:00:00Z"]),         # first Monday
    ("cron(0 10 ? * 6L *)", ["2026-12-25T10:00:00Z", "2027-01-29T10:00:00Z"]),          # last Friday
    ("cron(0 8 L * ? *)", ["2026-12-31T08:00:00Z", "2027-01-31T08:00:00Z"]),            # last day
    ("cron(0 8 1W MAY,AUG ? *)", ["2027-05-03T08:00:00Z", "2027-08-02T08:00:00Z"]),   # nearest weekday
    ("cron(0 8 LW * ? *)", ["2026-12-31T08:00:00Z", "2027-01-29T08:00:00Z"]),           # last weekday
    ("cron(15 6 1 JAN,JUL ? 2027-2028)", ["2027-01-01T06:15:00Z", "2027-07-01T06:15:00Z"]),
])
def test_cron_fields_as_eventbridge_reads_them(expression, first_two):
    times = list(parse_expression(expression).between(at("2026-12-01T00:00:00Z"), at("2028-12-31T00:00:00Z")))
    assert [t.strftime("%Y-%m-%dT%H:%M:%SZ") for t in times[:2]] == first_two


def test_daylight_saving_a_skipped_time_fires_an_hour_later_and_a_repeated_one_once():
    nightly = parse_expression("cron(30 2 * * ? *)", "Europe/Berlin")
    spring = list(nightly.between(at("2027-03-27T00:00:00Z"), at("2027-03-29T00:00:00Z")))
    assert spring == [at("2027-03-27T02:30:00+01:00"), at("2027-03-28T03:30:00+02:00")]
    autumn = list(nightly.between(at("2027-10-30T00:00:00Z"), at("2027-11-01T00:00:00Z")))
    assert autumn == [at("2027-10-30T02:30:00+02:00"), at("2027-10-31T02:30:00+02:00")]


def test_at_fires_once_and_counting_stops_past_the_limit():
    once = parse_expression("at(2027-01-01T09:00:00)", "Asia/Shanghai")
    assert list(once.between(at("2026-12-01T00:00:00Z"), at("2027-12-01T00:00:00Z"))) == [at("2027-01-01T01:00:00Z")]
    every_minute = parse_expression("cron(* * * * ? *)")
    assert every_minute.count(at("2026-12-01T00:00:00Z"), at("2027-12-01T00:00:00Z"), limit=200) == 201


@pytest.mark.parametrize("text", ["rate(0 minutes)", "rate(1 minutes)", "rate(5 weeks)", "cron(0 8 * * * *)",
                                  "cron(0 8 * *)", "cron(0 25 * * ? *)", "cron(0 8 ? * 9 *)", "every day"])
def test_what_cannot_be_read_is_refused(text):
    with pytest.raises(ExpressionError):
        parse_expression(text)
