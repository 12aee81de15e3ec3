"""Time passes locally as in AWS: a schedule run that moves the clock forward first fires
what the template's schedules would have fired meanwhile (infra/local/schedules.py)."""
from datetime import datetime, timezone
from pathlib import Path

import pytest

from infra.local.schedules import ScheduleRunner, SimulatedClock, catch_up_limit_from_env
from infra.local.template import load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


class FakeRuntime:
    """Records what ran; ReleaseDeferredFunction "sends" (to the queue) at `sends_at`."""

    endpoint_url = "http://127.0.0.1:9"

    def __init__(self, sends_at=()):
        self.calls: list[tuple[str, str]] = []
        self.sends_at = set(sends_at)
        self.sends = 0

    def invoke(self, logical_id, event):
        self.calls.append((logical_id, event["time"]))
        if event["time"] in self.sends_at:
            self.sends += 1
        return {"time": event["time"], "released": int(event["time"] in self.sends_at)}


@pytest.fixture(scope="module")
def model():
    loaded = load_template(TEMPLATE)
    # The push sweep (ReapplyPushesFunction) is left out: these tests count the runs of
    # the other schedules, occurrence by occurrence.
    loaded.functions.pop("ReapplyPushesFunction", None)
    return loaded


def runner_at(model, start: str, limit: int = 200, sends_at=()):
    runtime, drains = FakeRuntime(sends_at), []
    runner = ScheduleRunner(model, runtime, drain=lambda: drains.append(1) or {"drained": True},
                            clock=SimulatedClock(start=at(start)), catch_up_limit=limit,
                            queue_sends=lambda: runtime.sends)
    return runner, runtime, drains


def test_a_night_planned_reminder_is_released_at_noon_when_a_later_run_passes_noon(model):
    # given the clock at 04:30 (Shanghai) after a night run
    runner, runtime, drains = runner_at(model, "2027-03-10T04:30:00+08:00", sends_at={"2027-03-10T04:00:00Z"})

    # when the planner is run at 12:05
    answer = runner.run("ReminderScanFunction", "2027-03-10T12:05:00+08:00")

    # then every 15-minute release ran, in order, the 11:55 planning too, then the requested run
    releases = [t for f, t in runtime.calls if f == "ReleaseDeferredFunction"]
    assert releases[0] == "2027-03-09T20:45:00Z" and releases[-1] == "2027-03-10T04:00:00Z" and len(releases) == 30
    assert runtime.calls[-3:] == [("ReminderScanFunction", "2027-03-10T03:55:00Z"),
                                  ("ReleaseDeferredFunction", "2027-03-10T04:00:00Z"),
                                  ("ReminderScanFunction", "2027-03-10T04:05:00Z")]
    caught_up = answer["caught_up"]
    assert (caught_up["from"], caught_up["mode"], caught_up["due"], caught_up["ran"], caught_up["failed"]) == \
        ("2027-03-09T20:30:00Z", "each", 31, 31, 0)
    release = next(s for s in caught_up["schedules"] if s["function"] == "ReleaseDeferredFunction")
    assert {k: v for k, v in release.items() if k != "runs"} == {
        "function": "ReleaseDeferredFunction", "event": "Every15Minutes", "expression": "rate(15 minutes)",
        "due": 30, "ran": 30, "failed": 0}
    assert release["runs"][0] == {"time": "2027-03-09T20:45:00Z",
                                  "result": {"time": "2027-03-09T20:45:00Z", "released": 0}}
    assert release["runs"][-1] == {"time": "2027-03-10T04:00:00Z",
                                   "result": {"time": "2027-03-10T04:00:00Z", "released": 1}}
    assert answer["time"] == "2027-03-10T04:05:00Z" and runner.clock.simulated == at("2027-03-10T04:05:00Z")
    # drained after the one run that fed a queue, and once after the requested run
    assert len(drains) == 2


def test_the_requested_run_is_its_own_occurrence_at_the_new_time(model):
    runner, runtime, _ = runner_at(model, "2027-03-10T11:00:00Z")
    answer = runner.run("ReleaseDeferredFunction", "2027-03-10T12:00:00Z")
    assert runtime.calls == [("ReleaseDeferredFunction", t) for t in
                             ("2027-03-10T11:15:00Z", "2027-03-10T11:30:00Z", "2027-03-10T11:45:00Z",
                              "2027-03-10T12:00:00Z")]
    assert answer["caught_up"]["due"] == 3


def test_moving_the_clock_back_or_not_at_all_runs_nothing_else(model):
    runner, runtime, _ = runner_at(model, "2027-03-10T12:00:00Z")
    back = runner.run("ExpiryScanFunction", "2027-03-01T00:05:00+08:00")
    same = runner.run("ExpiryScanFunction", "2027-03-01T00:05:00+08:00")
    assert runtime.calls == [("ExpiryScanFunction", "2027-02-28T16:05:00Z")] * 2
    for answer in (back, same):
        assert answer["caught_up"] == {"from": answer["caught_up"]["from"], "mode": "none", "due": 0, "ran": 0,
                                       "failed": 0, "schedules": []}


def test_a_year_collapses_into_one_run_per_schedule_at_its_latest_occurrence(model):
    runner, runtime, _ = runner_at(model, "2026-12-01T12:00:00+08:00")
    answer = runner.run("ExpiryScanFunction", "2027-12-02T00:05:00+08:00")
    assert runtime.calls == [("TierReviewFunction", "2027-11-30T16:15:00Z"),
                             ("ChallengeCalendarFunction", "2027-11-30T16:20:00Z"),
                             ("ReminderScanFunction", "2027-12-01T03:55:00Z"),
                             ("ReleaseDeferredFunction", "2027-12-01T16:00:00Z"),
                             ("ExpiryScanFunction", "2027-12-01T16:05:00Z")]
    caught_up = answer["caught_up"]
    assert caught_up["mode"] == "collapsed" and caught_up["ran"] == 4 and caught_up["due"] > 35000


def test_the_limit_decides_between_each_and_collapsed(model, monkeypatch):
    runner, runtime, _ = runner_at(model, "2027-03-10T11:00:00Z", limit=2)
    assert runner.run("ReleaseDeferredFunction", "2027-03-10T12:00:00Z")["caught_up"]["mode"] == "collapsed"
    assert runtime.calls == [("ReleaseDeferredFunction", "2027-03-10T12:00:00Z")]
    monkeypatch.setenv("LOCAL_SCHEDULE_CATCH_UP", "35")
    assert catch_up_limit_from_env() == 35
    monkeypatch.setenv("LOCAL_SCHEDULE_CATCH_UP", "-1")
    with pytest.raises(ValueError):
        catch_up_limit_from_env()
