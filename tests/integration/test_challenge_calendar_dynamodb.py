"""The challenge calendar over DynamoDB in the emulator: participants read shard by
shard, jobs through the real dispatcher and messaging store; the challenge category
outside the marketing caps, and never two challenge messages a member-local day."""
import threading
from datetime import date, datetime, timedelta, timezone

import pytest

from loyalty.adapters.ledger import DynamoLedgerStore
from loyalty.adapters.messaging.store import DynamoMessagingStore
from loyalty.engagement.challenge_calendar import plan_challenge_day
from loyalty.engagement.challenges import ChallengeRecord, ChallengeSpec, Participant, shard_of
from loyalty.messaging.dispatcher import campaign_jobs, dispatch_job, message_id_for, release_deferred
from loyalty.records import Consent, Profile
from loyalty.rules import build_rules
from tests.challenge_seeding import SeededChallenges
from tests.unit.messaging_fakes import Queues

RULES = build_rules()
MARCH = date(2027, 3, 1)          # a Monday


@pytest.fixture
def stores(fresh_aws):
    table, client = fresh_aws.environ["TABLE_NAME"], fresh_aws.client("dynamodb")
    ledger = DynamoLedgerStore(table, shards=4, client=client)
    return ledger, DynamoMessagingStore(table, client=client), SeededChallenges(ledger)


def challenge(challenges, challenge_id="q1", starts_on=MARCH, **spec):
    record = ChallengeRecord(challenge_id, ChallengeSpec(name=challenge_id, starts_on=starts_on, **spec), (),
                             "2027-02-20T00:00:00Z", "2027-02-20T00:00:00Z")
    challenges.put_challenge(record)
    return record


def enrol(ledger, challenges, member_id, challenge_id="q1", zone="Asia/Shanghai", **fields):
    phone = "+86139" + str(int.from_bytes(member_id.encode(), "big") % 10**8).zfill(8)
    ledger.put_profile(Profile(member_id, name=member_id.title(), phone=phone, locale="zh-CN", time_zone=zone,
                               preferred_channels=("whatsapp",)))
    ledger.add_consent(Consent(member_id, "whatsapp", "opted_in", "checkout", datetime(2027, 2, 1, tzinfo=timezone.utc)))
    challenges.put_participant(Participant(challenge_id, member_id, "2027-02-25T10:00:00+08:00", "api",
                                           shard=shard_of(member_id), **fields))


def plan(challenges, on, now):
    return plan_challenge_day(challenges, challenges, on, now, finish=None, leaderboard=None,
                              template="challenge_message")


def test_participants_in_three_zones_each_get_the_task_at_ten_their_time(stores):
    ledger, msgs, challenges = stores
    challenge(challenges)
    zones = {"sh": "Asia/Shanghai", "ld": "Europe/London", "ny": "America/New_York"}
    for member, zone in zones.items():
        enrol(ledger, challenges, member, zone=zone)
    planned = datetime(2027, 2, 28, 16, 5, tzinfo=timezone.utc)              # 00:05 on March 1st in Shanghai
    day = plan(challenges, MARCH, planned)
    assert day.participants_read == 3 and len(day.jobs) == 3
    queues = Queues()
    assert [dispatch_job(j, msgs, queues, RULES, planned, challenges) for j in day.jobs] == ["deferred"] * 3
    tens = {"sh": datetime(2027, 3, 1, 2, tzinfo=timezone.utc), "ld": datetime(2027, 3, 1, 10, tzinfo=timezone.utc),
            "ny": datetime(2027, 3, 1, 15, tzinfo=timezone.utc)}
    for member, ten in tens.items():
        job = next(j for j in day.jobs if j["member_id"] == member)
        assert msgs.message(message_id_for(job["job_id"])).not_before == ten
        released = Queues()
        release_deferred(msgs, released, ten - timedelta(minutes=1))
        assert released.sent == []                                           # not before its time
        release_deferred(msgs, released, ten)
        [(_, body, _)] = released.sent
        assert dispatch_job(body, msgs, queues, RULES, ten, challenges) == "queued:whatsapp"
    record = msgs.message(message_id_for(day.jobs[0]["job_id"]))
    assert record.category == "challenge" and record.payloads["whatsapp"]["name"] == "challenge_update"


def test_a_month_of_challenge_messages_all_go_while_marketing_stops_at_the_cap(stores):
    ledger, msgs, challenges = stores
    challenge(challenges)
    enrol(ledger, challenges, "ana")
    queues = Queues()
    challenge_queued = marketing_queued = 0
    for offset in range(31):
        day = MARCH + timedelta(days=offset)
        midnight = datetime.combine(day, datetime.min.time(), timezone.utc) - timedelta(hours=8)
        ten = midnight + timedelta(hours=10)
        challenges.put_participant(Participant("q1", "ana", "2027-02-25T10:00:00+08:00", "api", shard=shard_of("ana"),
                                               last_checkin=(day - timedelta(days=1)).isoformat()))
        for job in plan(challenges, day, ten).jobs:
            challenge_queued += dispatch_job(job, msgs, queues, RULES, ten, challenges) == "queued:whatsapp"
        [offer] = campaign_jobs(f"offer-{day}", "member_day_offer", ["ana"], {"offer": "x"}, midnight)
        marketing_queued += dispatch_job(offer, msgs, queues, RULES, midnight + timedelta(hours=12)) == "queued:whatsapp"
    assert challenge_queued == 23 and marketing_queued == 6
    assert msgs.member_snapshot("ana").caps.month_count == 6


def test_never_two_challenge_messages_in_a_member_local_day(stores):
    ledger, msgs, challenges = stores
    challenge(challenges, "q1")
    challenge(challenges, "q2")
    enrol(ledger, challenges, "ana", "q1")
    challenges.put_participant(Participant("q2", "ana", "2027-02-25T10:00:00+08:00", "api", shard=shard_of("ana")))
    ten = datetime(2027, 3, 1, 2, tzinfo=timezone.utc)
    jobs = list(plan(challenges, MARCH, ten).jobs)
    assert sorted(j["challenge_id"] for j in jobs) == ["q1", "q2"]
    queues, outcomes = Queues(), []
    threads = [threading.Thread(target=lambda j=j: outcomes.append(dispatch_job(j, msgs, queues, RULES, ten,
                                                                                  challenges))) for j in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["queued:whatsapp", "skipped:one_challenge_message_a_day"]
    # re-running the day (the same jobs) sends nothing more
    for job in plan(challenges, MARCH, ten + timedelta(hours=1)).jobs:
        assert dispatch_job(job, msgs, queues, RULES, ten + timedelta(hours=1), challenges).startswith("duplicate")
    # (a record still waiting for its sender is routed again: the sender's claim sends it once)
    assert len({body["message_id"] for _, body, _ in queues.sent}) == 1
    # the day key is not in the dispatcher's read of the member
    assert msgs.member_snapshot("ana").caps.day_count == 0


def test_the_nudge_is_recorded_on_the_participant(stores):
    ledger, msgs, challenges = stores
    challenge(challenges)
    enrol(ledger, challenges, "ana", last_checkin="2027-03-01")
    friday = date(2027, 3, 5)
    [job] = plan(challenges, friday, datetime(2027, 3, 4, 16, 5, tzinfo=timezone.utc)).jobs
    assert job["message"] == "nudge"
    assert challenges.get_participant("q1", "ana").nudged_on == "2027-03-05"
    assert plan(challenges, date(2027, 3, 8), datetime(2027, 3, 7, 16, 5, tzinfo=timezone.utc)).jobs[0]["message"] \
        == "task"                                                              # once per silence


def test_the_handler_plans_the_schedule_s_day_or_the_day_the_event_names(stores, fresh_aws):
    import json
    from pathlib import Path

    from tests.integration.test_handlers import Context, load_handler
    ledger, msgs, challenges = stores
    challenge(challenges)
    enrol(ledger, challenges, "ana")
    enrol(ledger, challenges, "bo", opted_out=True)
    calendar = load_handler("challenge_calendar")
    tuesday = calendar({"time": "2027-03-01T16:05:00Z"}, Context())            # 00:05 on Tuesday in Shanghai
    assert (tuesday["on"], tuesday["jobs"], tuesday["participants"]) == ("2027-03-02", 1, 2)
    assert tuesday["counts"] == {"task": 1, "skipped:opted_out": 1}
    event = json.loads((Path(__file__).parents[1] / "events" / "challenge_calendar_rerun.json").read_text())
    monday = calendar(event, Context())                                          # a past day, named
    assert (monday["on"], monday["jobs"]) == ("2027-03-01", 1)
    sqs = fresh_aws.client("sqs")
    url = fresh_aws.environ["REMINDER_JOBS_QUEUE_URL"]
    bodies = []
    while True:
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        bodies += [json.loads(m["Body"]) for m in got]
    assert sorted(b["job_id"] for b in bodies) == ["challenge#q1#ana#2027-03-01", "challenge#q1#ana#2027-03-02"]
