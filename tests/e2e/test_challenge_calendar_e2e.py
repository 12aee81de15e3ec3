"""A week of the check-in challenge's calendar on a local stack of its own (its clock
moves through the week): members in two time zones on three channels, each getting the
day's message at 10:00 their time through the dispatcher, the release schedule and the
provider sandbox; a silent member's caring nudge; a participant who left and a member
who replied STOP getting nothing more; a re-run day sending nothing twice.

Participants and their check-ins are seeded straight into the table through the
calendar's provisional challenge store (a test-only path: enrolment and check-ins are
the challenge store's and the check-ins' parts, built apart)."""
import uuid
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests

from infra.local.emulator import emulator_client
from infra.local.testing import spawn_local_stack
from loyalty.adapters.ledger import DynamoLedgerStore
from loyalty.engagement.challenges import ChallengeRecord, ChallengeSpec, Participant, shard_of
from tests.challenge_seeding import SeededChallenges
from tests.e2e.conftest import Api, token

MONDAY = date(2027, 1, 4)


@pytest.fixture(scope="module")
def week():
    # The clock jumps hours at a time: each schedule fires once per jump (collapsed) rather
    # than every 15-minute occurrence in between; the releases at 10:00 are asked for.
    with spawn_local_stack(env={"POWERTOOLS_LOG_LEVEL": "WARNING", "LOCAL_SCHEDULE_CATCH_UP": "1"},
                           timeout=120) as running:
        api = Api(running.api_url, token(running.api_url, subject="e2e-calendar", expires_in=86400))
        health = requests.get(running.api_url + "/_local/health", timeout=10).json()
        client = emulator_client("dynamodb", health["emulator_url"])
        [table] = [t for t in client.list_tables()["TableNames"] if "oyalty" in t] or client.list_tables()["TableNames"][:1]
        yield api, SeededChallenges(DynamoLedgerStore(table, shards=4, client=client))


def member(api, name, zone, channel):
    member_id = f"m-{name}-{uuid.uuid4().hex[:6]}"
    phone = ("+86138" if zone == "Asia/Shanghai" else "+44770") + f"{uuid.uuid4().int % 10**8:08d}"[:8 if zone == "Asia/Shanghai" else 7]
    profile = {"name": name.title(), "phone": phone, "locale": "zh-CN" if zone == "Asia/Shanghai" else "en",
               "time_zone": zone, "preferred_channels": [channel]}
    if channel == "wechat":
        profile["wechat_openid"] = f"o{uuid.uuid4().hex[:20]}"
    response = api.put(f"/members/{member_id}", profile)
    assert response.status_code == 200, response.text
    response = api.put(f"/members/{member_id}/consents/{channel}",
                       {"status": "opted_in", "source": "checkout_checkbox", "at": "2026-12-01T00:00:00+08:00"})
    assert response.status_code == 200, response.text
    return member_id, profile


def outbox(api) -> list[dict]:
    response = requests.get(api.base + "/_local/outbox", timeout=30)
    assert response.status_code == 200, response.text
    body = response.json()
    return body if isinstance(body, list) else body["messages"]


def sent(api, member_id):
    response = api.get(f"/members/{member_id}/messages")
    assert response.status_code == 200, response.text
    return [m for m in response.json()["messages"] if m["kind"] == "challenge"]


def test_a_week_of_the_calendar(week):
    api, challenges = week
    challenges.put_challenge(ChallengeRecord("wk", ChallengeSpec(name="Week", starts_on=MONDAY), (),
                                             "2026-12-01T00:00:00Z", "2026-12-01T00:00:00Z"))
    ana, ana_profile = member(api, "ana", "Asia/Shanghai", "whatsapp")      # checks in every day
    ben, _ = member(api, "ben", "Europe/London", "sms")                     # checks in every day
    chen, _ = member(api, "chen", "Asia/Shanghai", "wechat")                # never checks in: the nudge
    dora, _ = member(api, "dora", "Asia/Shanghai", "whatsapp")              # leaves on Tuesday
    eve, eve_profile = member(api, "eve", "Asia/Shanghai", "whatsapp")      # replies STOP on Tuesday
    people = (ana, ben, chen, dora, eve)

    def participant(member_id, **fields):
        challenges.put_participant(Participant("wk", member_id, "2027-01-01T09:00:00+08:00", "api",
                                               shard=shard_of(member_id), **fields))

    for member_id in people:
        participant(member_id)
    for offset in range(7):
        day = MONDAY + timedelta(days=offset)
        if offset:        # ana and ben checked in every day so far (test-only path)
            for member_id in (ana, ben):
                participant(member_id, last_checkin=(day - timedelta(days=1)).isoformat(), streak=offset,
                            days_checked_in=offset, points=10 * offset, checked="1" * offset)
        if offset == 1:
            participant(dora, opted_out=True)
            inbound = requests.post(api.base + "/_local/inbound", json={"channel": "whatsapp", "text": "STOP",
                                                                         "from": eve_profile["phone"].lstrip("+")},
                                    timeout=30)
            assert inbound.status_code == 200, inbound.text
        planned = datetime.combine(day, datetime.min.time(), timezone.utc) - timedelta(hours=7, minutes=40)
        summary = api.schedule("ChallengeCalendarFunction", planned.isoformat())   # 00:20 in Shanghai
        assert summary["result"]["on"] == day.isoformat() and summary["result"]["participants"] == 5
        for hour in (2, 10):                                                        # 10:00 Shanghai, 10:00 London
            api.schedule("ReleaseDeferredFunction",
                         (datetime.combine(day, datetime.min.time(), timezone.utc) + timedelta(hours=hour, minutes=1))
                         .isoformat())

    def local_days(member_id, zone):
        days = {}
        for message in sent(api, member_id):
            queued = [h["at"] for h in message["history"] if h["status"] == "queued"]
            if message["status"] == "skipped":
                continue
            assert message["status"] in ("sent", "delivered", "read"), (message["status"], message["history"])
            local = datetime.fromisoformat(queued[0]).astimezone(ZoneInfo(zone))
            assert local.hour == 10, (member_id, queued)
            days[message["variables"]["on"]] = message["variables"]["message"]
            assert local.date().isoformat() == message["variables"]["on"]
        return days

    weekdays = [(MONDAY + timedelta(days=i)).isoformat() for i in range(5)]
    assert local_days(ana, "Asia/Shanghai") == dict(zip(weekdays, ["task"] * 4 + ["summary"]))
    assert local_days(ben, "Europe/London") == dict(zip(weekdays, ["task"] * 4 + ["summary"]))
    assert local_days(chen, "Asia/Shanghai") == dict(zip(weekdays, ["task"] * 3 + ["nudge", "summary"]))
    assert local_days(dora, "Asia/Shanghai") == {weekdays[0]: "task"}
    assert local_days(eve, "Asia/Shanghai") == {weekdays[0]: "task"}
    # what the providers were given
    to_ana = [m for m in outbox(api) if m["to"] == ana_profile["phone"].lstrip("+")]
    assert len(to_ana) == 5 and {m["template"] for m in to_ana} == {"challenge_update"}
    assert to_ana[0]["variables"][0].startswith("Day 1/90 🌟 今天的小任务来啦!")
    assert to_ana[4]["variables"][0].startswith("本周小结 📋 你本周打卡 4 天,打卡积分 +40,连续打卡 4 天")
    nudge = [m for m in sent(api, chen) if m["variables"]["message"] == "nudge"]
    assert nudge[0]["variables"]["text"] == "看到你最近比较忙,我们为你保留了积分,随时可以回来哦~"

    # Wednesday again ({"on": ...} through the schedule's time): nothing is sent twice
    before = len(outbox(api))
    wednesday = MONDAY + timedelta(days=2)
    again = datetime.combine(wednesday, datetime.min.time(), timezone.utc) - timedelta(hours=7, minutes=40)
    api.schedule("ChallengeCalendarFunction", again.isoformat())
    api.schedule("ReleaseDeferredFunction", (again + timedelta(hours=10)).isoformat())
    assert len(outbox(api)) == before
    assert local_days(ana, "Asia/Shanghai") == dict(zip(weekdays, ["task"] * 4 + ["summary"]))
