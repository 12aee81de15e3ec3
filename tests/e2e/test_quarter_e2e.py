"""A whole quarter of the check-in challenge on a local stack of its own, in simulated
time, through the HTTP API and the provider sandbox only: an operator puts a 90-day
challenge with a draw on day 30 and invites five members (WhatsApp, WeChat, SMS); four
agree by replying 同意 / AGREE on their channel, one through the member app's API; then
90 days pass. The clock moves (a schedule call) to 10:01 of each (JUMPS: the calendar
runs at 00:20, programme time, Asia/Shanghai, every member's zone, and the release sends
its messages at 10:00); the members check in every day: ana by 签到 on WhatsApp, bo by
打卡 on WeChat (missing day 20: his streak starts again), dan by CHECKIN on SMS (missing
day 60), cy and eve through the app, eve's Sundays a day late (within the 48 h the
service allows); cy stays silent on days 40-44 (one caring nudge, on day 43), eve
replies STOP on WhatsApp on day 10 (no challenge message after) and keeps playing.
The draw is run on day 31 and recomputed by the project's verifier from the API's
answers; the leaderboards (all and April) and the participant views are compared with
a model of the points the members earned; the day after the last, the calendar pays
the final rewards (balances), a second finish pays nothing, and the stats add up."""
import json
import math
import os
import subprocess
import sys
import uuid
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path

import pytest
import requests

from infra.local.testing import spawn_local_stack
from loyalty.engagement import draws
from tests.e2e.conftest import Api, token

ROOT = Path(__file__).resolve().parents[2]
START = date(2027, 3, 1)                  # a Monday
DAYS = 90
DRAW_DAY = 30
REWARDS = {"base": 50, "top_half": 100, "top_tenth": 300}
MISSED = {"ana": set(), "bo": {20}, "cy": set(range(40, 45)), "dan": {60}, "eve": set()}
STOP_DAY = 10                             # eve replies STOP on WhatsApp after that day's message
NUDGE_DAY = {"cy": 43}                    # silent on 40, 41, 42: nudged on 43, once
OUTBOX_DAYS = {1, 10, 21, 34, 43, 61, 90}   # days whose keyword replies are looked at
# The clock moves to 10:01 of every day and of the day after the end: each move runs that
# day's calendar (00:20) and the other schedules once (LOCAL_SCHEDULE_CATCH_UP=1).
JUMPS = list(range(1, DAYS + 2))


@pytest.fixture(scope="module")
def quarter():
    # One collapsed catch-up per clock jump (see test_challenge_calendar_e2e): a jump a day.
    # The SMS sender is a short code (100 segments a second): the limiter counts real
    # seconds, and at a long code's one a second, shared by the two sender instances, each
    # day's SMS would wait seconds of real time while the simulated clock stands still.
    with spawn_local_stack(env={"POWERTOOLS_LOG_LEVEL": "WARNING", "LOCAL_SCHEDULE_CATCH_UP": "1"},
                           parameters={"TwilioSegmentsPerSecond": "100"}, timeout=120) as running:
        yield Api(running.api_url, token(running.api_url, subject="e2e-quarter", expires_in=86400))


def day_of(n: int) -> date:
    return START + timedelta(days=n - 1)


def streak_points(streak: int) -> int:
    return 10 if streak <= 7 else 15 if streak <= 14 else 20


def inbound(api, channel, sender, text) -> dict:
    answer = requests.post(api.base + "/_local/inbound", json={"channel": channel, "from": sender, "text": text},
                           timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == 200, answer.json()
    return answer.json()


def outbox(api, to: str) -> list[dict]:
    response = requests.get(api.base + "/_local/outbox", timeout=60)
    assert response.status_code == 200, response.text
    key = to.lstrip("+")[-10:]
    return [m for m in response.json() if (m["to"] or "").lstrip("+").endswith(key)]


def challenge_messages(api, member_id) -> list[dict]:
    response = api.get(f"/members/{member_id}/messages", params={"limit": 200})
    assert response.status_code == 200, response.text
    return [m for m in response.json()["messages"] if m["kind"] == "challenge"]


def expected_message(name: str, n: int) -> str | None:
    """What the calendar sends `name` on challenge day n (91: the day after the end)."""
    if name == "eve" and n > STOP_DAY:
        return None
    if n == DAYS + 1:
        return "final"
    on = day_of(n)
    if on.day == 1 and n > 1:
        return "leaderboard"
    if NUDGE_DAY.get(name) == n:
        return "nudge"
    return {4: "summary", 5: None, 6: None}.get(on.weekday(), "task")


@pytest.mark.timeout(600)   # about 340 s alone; beside another worker, more
def test_a_quarter_of_the_check_in_challenge(quarter):
    api = quarter
    app = Api(api.base, token(api.base, subject="member-app", expires_in=86400,
                              scopes=["loyalty/members.read", "loyalty/members.write"]))
    api.schedule("ReleaseDeferredFunction", "2027-02-26T10:00:00+08:00")      # the clock: three days before

    # the operator's challenge
    cid = f"q-{uuid.uuid4().hex[:8]}"
    body = {"name": "春季90天打卡挑战", "starts_on": START.isoformat(), "days": DAYS, "rewards": REWARDS,
            "draws": [{"draw_id": "d30", "on": day_of(DRAW_DAY).isoformat(), "winners": 2}]}
    created = api.put(f"/challenges/{cid}", body)
    assert created.status_code == 201, created.text
    commitment = api.get(f"/challenges/{cid}").json()["draws"][0]["commitment"]
    assert len(commitment) == 64

    # five members with consent on their channel
    tag = uuid.uuid4().int
    people = {"ana": ("whatsapp", f"+8529{tag % 10**7:07d}"), "bo": ("wechat", f"+8528{tag % 10**7:07d}"),
              "cy": ("sms", f"+447700{tag % 10**6:06d}"), "dan": ("sms", f"+447701{tag % 10**6:06d}"),
              "eve": ("whatsapp", f"+8526{tag % 10**7:07d}")}
    ids, openid = {}, f"o{uuid.uuid4().hex[:20]}"
    for name, (channel, phone) in people.items():
        member_id = ids[name] = f"m-{name}-{uuid.uuid4().hex[:6]}"
        profile = {"name": name.title(), "phone": phone, "locale": "zh-CN" if name in ("ana", "bo") else "en",
                   "time_zone": "Asia/Shanghai", "preferred_channels": [channel]}
        if channel == "wechat":
            profile["wechat_openid"] = openid
        assert api.put(f"/members/{member_id}", profile).status_code == 200
        consent = api.put(f"/members/{member_id}/consents/{channel}",
                          {"status": "opted_in", "source": "checkout_checkbox", "at": "2026-12-01T00:00:00+08:00"})
        assert consent.status_code == 200, consent.text
    invited = api.post(f"/challenges/{cid}/invitations", {"member_ids": list(ids.values())})
    assert invited.status_code == 200 and invited.json()["invited"] == 5, invited.text

    # enrolment: 同意 on WhatsApp (ana, eve) and WeChat (bo), AGREE on SMS (dan), the app (cy)
    sender = {"ana": people["ana"][1].lstrip("+"), "eve": people["eve"][1].lstrip("+"), "bo": openid,
              "dan": people["dan"][1], "cy": people["cy"][1]}
    provider = {"ana": "whatsapp", "eve": "whatsapp", "bo": "wechat", "dan": "twilio", "cy": "twilio"}
    for name, word in (("ana", "同意"), ("eve", "同意"), ("bo", "同意"), ("dan", "AGREE")):
        inbound(api, provider[name], sender[name], word)
    api.post("/_local/drain")
    clock = requests.get(api.base + "/_local/health", timeout=10).json()["clock"]
    enrolled = app.post(f"/challenges/{cid}/enrolments", {"member_id": ids["cy"], "agreed_at": clock,
                                                         "source": "app", "proof": "data-use-notice-002"})
    assert enrolled.status_code == 200, enrolled.text
    for name in ("ana", "eve", "bo", "dan"):
        view = api.get(f"/challenges/{cid}/participants/{ids[name]}")
        assert view.status_code == 200, (name, view.text)
        assert (view.json()["points"], view.json()["days_checked_in"]) == (0, 0)

    # the model: points by member, by month; streaks
    streak = defaultdict(int)
    points = defaultdict(int)
    monthly = defaultdict(lambda: defaultdict(int))
    checked_days = defaultdict(int)

    late = []   # (member, day): eve's Sunday, checked in through the app the next morning
    streak_on = {}   # (member, day) -> the streak that day's check-in makes

    def app_check_in(name: str, n: int, at: str) -> None:
        checkin = app.post(f"/members/{ids[name]}/checkins", {"at": at})
        assert checkin.status_code == 200, checkin.text
        answer = checkin.json()
        assert (answer["date"], answer["streak"], answer["points"]) == (
            day_of(n).isoformat(), streak_on[name, n], streak_points(streak_on[name, n])), (name, n)

    def check_in_day(n: int) -> None:
        """Day n's check-ins, by keyword on the members' channels or through the app."""
        on = day_of(n)
        for name in people:
            if n in MISSED[name]:
                streak[name] = 0
                continue
            streak[name] += 1
            streak_on[name, n] = streak[name]
            earned = streak_points(streak[name])
            points[name] += earned
            monthly[name][on.strftime("%Y-%m")] += earned
            checked_days[name] += 1
            if name == "ana":
                inbound(api, "whatsapp", sender["ana"], "签到")
                if n in OUTBOX_DAYS:
                    api.post("/_local/drain")
                    replies = [m["text"] for m in outbox(api, sender["ana"]) if f"Day {n}/90" in (m.get("text") or "")]
                    assert len(replies) == 1 and f"+{earned}" in replies[0], replies
            elif name == "bo":
                answer = inbound(api, "wechat", openid, "打卡")
                if n in OUTBOX_DAYS:
                    assert f"+{earned}" in answer["body"], answer["body"]
            elif name == "dan":
                inbound(api, "twilio", sender["dan"], "CHECKIN")
            elif name == "eve" and on.weekday() == 6 and n < DAYS:
                late.append((name, n))
            else:
                app_check_in(name, n, f"{on.isoformat()}T10:05:00+08:00")

    draw = None
    for jump in JUMPS:            # the clock moves to 10:01 of each day (see the module's docstring)
        at = f"{day_of(jump).isoformat()}T10:01:00+08:00"
        caught_up = api.schedule("ReleaseDeferredFunction", at)["caught_up"]
        [calendar] = [c for c in caught_up["schedules"] if c["function"] == "ChallengeCalendarFunction"]
        assert [r["result"]["on"] for r in calendar["runs"]] == [day_of(jump).isoformat()], calendar
        if jump == DAYS + 1:
            break
        if jump > DRAW_DAY and draw is None:     # the draw's day has ended, its check-ins in
            draw = api.post(f"/challenges/{cid}/draws/d30/run")
            assert draw.status_code == 200, draw.text
        while late:               # yesterday evening's, 13 h late
            name, n = late.pop()
            app_check_in(name, n, f"{day_of(n).isoformat()}T21:00:00+08:00")
        check_in_day(jump)
        if jump == STOP_DAY:
            inbound(api, "whatsapp", sender["eve"], "STOP")
        if jump in (21, 61):      # the missed day reset the streak
            who = "bo" if jump == 21 else "dan"
            view = api.get(f"/challenges/{cid}/participants/{ids[who]}").json()
            assert (view["streak"], view["points"]) == (1, points[who]), (who, view)

    # the calendar's messages: what the model says, at most one a day, none after STOP
    for name, member_id in ids.items():
        by_day = defaultdict(list)
        for message in challenge_messages(api, member_id):
            if message["status"] != "skipped":
                by_day[message["variables"]["on"]].append(message["variables"]["message"])
        assert all(len(kinds) == 1 for kinds in by_day.values()), (name, by_day)
        expected = {day_of(n).isoformat(): expected_message(name, n) for n in JUMPS}
        assert {on: kinds[0] for on, kinds in by_day.items()} == {k: v for k, v in expected.items() if v}, name
    nudges = [m for m in challenge_messages(api, ids["cy"]) if m["variables"]["message"] == "nudge"]
    assert len(nudges) == 1 and nudges[0]["variables"]["on"] == day_of(43).isoformat()
    to_eve = [m for m in outbox(api, sender["eve"]) if m.get("template") == "challenge_update"]
    assert len(to_eve) == sum(1 for n in JUMPS if n <= STOP_DAY and expected_message("eve", n))

    # the draw: published before, verified after from the API's answers
    record = draw.json()
    assert record["commitment"] == commitment == draws.commitment(record["seed"])
    assert record["entrants"] == 5 and len(record["winners"]) == 2 and set(record["winners"]) <= set(ids.values())
    assert api.post(f"/challenges/{cid}/draws/d30/run").json() == record
    listed = api.get(f"/challenges/{cid}/draws/d30/entrants")
    assert listed.status_code == 200, listed.text
    assert sorted(listed.json()["entrant_ids"]) == sorted(ids.values())
    verified = subprocess.run([sys.executable, "-m", "loyalty.engagement.verify_draw", "/dev/stdin"],
                              input=json.dumps({**record, **listed.json()}), capture_output=True, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT / "layers" / "common")}, timeout=60)
    assert verified.returncode == 0 and verified.stdout.startswith("OK d30: 5 entrants"), verified.stdout

    # the leaderboards and the participant views against the model (ties share a rank)
    def ranks(scores: dict[str, int]) -> dict[str, int]:
        return {name: 1 + sum(1 for other in scores.values() if other > score) for name, score in scores.items()}

    assert points == {"ana": 1695, "bo": 1570, "cy": 1490, "dan": 1570, "eve": 1695}
    overall = ranks(dict(points))
    board = api.get(f"/challenges/{cid}/leaderboard", params={"period": "all", "limit": 10})
    assert board.status_code == 200, board.text
    names = {member_id: name for name, member_id in ids.items()}
    assert {names[e["member_id"]]: (e["rank"], e["points"]) for e in board.json()["entries"]} == {
        name: (overall[name], points[name]) for name in people}
    assert [e["points"] for e in board.json()["entries"]] == sorted(points.values(), reverse=True)
    assert {e["name"] for e in board.json()["entries"]} == {f"{name[0].upper()}*" for name in people}
    april = {name: monthly[name]["2027-04"] for name in people}
    page = api.get(f"/challenges/{cid}/leaderboard", params={"period": "2027-04", "limit": 3}).json()["entries"]
    assert [(e["rank"], e["points"]) for e in page] == sorted(((ranks(april)[n], april[n]) for n in people),
                                                               key=lambda rp: rp[0])[:3]
    final_streak = {"ana": 90, "bo": 70, "cy": 46, "dan": 30, "eve": 90}
    for name, member_id in ids.items():
        view = api.get(f"/challenges/{cid}/participants/{member_id}").json()
        assert {k: view[k] for k in ("points", "rank", "streak", "days_checked_in")} == {
            "points": points[name], "rank": overall[name], "streak": final_streak[name],
            "days_checked_in": checked_days[name]}, name

    # the final rewards, paid once by the calendar the day after the end
    half, tenth = math.ceil(len(people) / 2), math.ceil(len(people) / 10)
    reward = {name: REWARDS["base"] + (REWARDS["top_half"] if overall[name] <= half else 0)
              + (REWARDS["top_tenth"] if overall[name] <= tenth else 0) for name in people}
    balances = {name: api.balance(member_id) for name, member_id in ids.items()}
    assert balances == {name: points[name] + reward[name] for name in people}
    results = api.get(f"/challenges/{cid}/results", params={"member_id": ids["bo"]}).json()
    assert results["status"] == "done" and results["participants"] == 5 and results["rewarded"] == 5, results
    assert (results["member"]["rank"], results["member"]["reward"]) == (overall["bo"], reward["bo"])
    assert results["points"] == sum(reward.values())
    again = api.post(f"/challenges/{cid}/finish")
    assert again.status_code == 200 and again.json()["snapshot_hash"] == results["snapshot_hash"], again.text
    assert {name: api.balance(member_id) for name, member_id in ids.items()} == balances
    final = [m for m in outbox(api, sender["ana"]) if m.get("template") == "challenge_update"][-1]
    assert str(reward["ana"]) in final["variables"][0], final

    # the stats: 443 check-ins of 450 participant-days, everyone active every week
    stats = api.get(f"/challenges/{cid}/stats")
    assert stats.status_code == 200, stats.text
    s = stats.json()
    assert (s["participants"], s["left"], s["days_so_far"]) == (5, 0, 90)
    assert s["daily_checkin_rate"]["value"] == round(sum(checked_days.values()) / 450, 4)
    assert s["daily_checkin_rate"]["is_healthy"] is True
    assert [d["checked_in"] for d in s["daily_checkin_rate"]["days"]][19:21] == [4, 5]
    assert s["weekly_retention"]["value"] == 1.0 and len(s["weekly_retention"]["weeks"]) == 12
    assert s["redemption_rate"]["participants"] == 0 and s["repurchase_conversion"]["participants"] == 0
