"""Check-in challenge calendar figures (E5): a weekday fan-out over P participants, read
from the emulator shard by shard by the real handler, then every job through the real
dispatcher twice (a re-run of the day)."""
from __future__ import annotations

from collections import Counter
from datetime import date, datetime, timedelta, timezone

from bench.ledger import Context, handler, ledger_store
from bench.logs import say

TUESDAY = date(2027, 3, 2)


def load_participants(aws, participants: int, with_profiles: int):
    """A challenge started on Monday, and `participants` members enrolled, straight into
    the table; the first `with_profiles` with a profile and WhatsApp consent (the members
    whose jobs go through the dispatcher)."""
    from loyalty.adapters.calendar_challenges import DynamoCalendarChallenges, ParticipantItem, _bound, participants_pk
    from loyalty.engagement.challenges import ChallengeRecord, ChallengeSpec, shard_of
    from loyalty.records import Consent, Profile
    table, client = aws.environ["TABLE_NAME"], aws.client("dynamodb")
    store = DynamoCalendarChallenges(table, client=client)
    store.put_challenge(ChallengeRecord("bench-q", ChallengeSpec(name="Bench", starts_on=date(2027, 3, 1)), (),
                                        "2027-02-20T00:00:00Z", "2027-02-20T00:00:00Z"))
    ledger = ledger_store(aws)
    model = _bound(ParticipantItem, table, client)
    with model.batch_write() as batch:
        for i in range(participants):
            member = f"cal-{i:06d}"
            batch.save(model(participants_pk("bench-q", shard_of(member)), f"MEMBER#{member}", participant={
                "challenge_id": "bench-q", "member_id": member, "enrolled_at": "2027-02-25T10:00:00+08:00",
                "source": "api", "points": 10, "streak": 1, "days_checked_in": 1, "last_checkin": "2027-03-01",
                "checked": "1", "shard": shard_of(member)}))
    at = datetime(2027, 2, 25, tzinfo=timezone.utc)
    for i in range(with_profiles):
        member = f"cal-{i:06d}"
        ledger.put_profile(Profile(member, name=f"M{i}", phone=f"+8613{i:09d}", locale="zh-CN",
                                   time_zone="Asia/Shanghai", preferred_channels=("whatsapp",)))
        ledger.add_consent(Consent(member, "whatsapp", "opted_in", "checkout", at))


def weekday_fanout(aws, counter, row, participants: int, dispatched: int = 100) -> None:
    """The plan over all P participants; the messages of the first `dispatched` through the
    dispatcher and the DynamoDB messaging store, twice (the moto emulator takes ~50 ms a
    transaction: all P would take minutes, and each message is decided alone)."""
    from loyalty import wiring
    from loyalty.adapters.calendar_challenges import DynamoCalendarChallenges
    from loyalty.adapters.messaging.store import DynamoMessagingStore
    from loyalty.engagement.challenge_calendar import plan_challenge_day
    from loyalty.engagement.challenges import DEFAULT_SHARDS
    from loyalty.messaging.dispatcher import dispatch_job
    aws.reset()
    wiring.reset()
    import time
    started = time.perf_counter()
    say(f"loading a challenge and {participants} participants ({dispatched} with profiles and consent) ...")
    load_participants(aws, participants, dispatched)
    say(f"  loaded in {time.perf_counter() - started:.0f} s")
    calendar = handler("challenge_calendar")
    planned = datetime(2027, 3, 1, 16, 5, tzinfo=timezone.utc)      # 00:05 on Tuesday in Shanghai
    counter.reset()
    summary = calendar({"time": planned.isoformat()}, Context())
    pages = DEFAULT_SHARDS
    row(f"challenge weekday task, P={participants}: jobs", str(summary["jobs"]), str(participants),
        summary["jobs"] == participants)
    row(f"challenge weekday fan-out, P={participants}: items read", str(counter.items_read),
        f"≤ 1.05·P + one page per shard = {1.05 * participants + pages:.0f}",
        counter.items_read <= 1.05 * participants + pages)
    row("challenge weekday fan-out: Scans / Query calls", f"{counter.calls['Scan']} / {counter.calls['Query']}",
        f"0 / ≤ shards + 2 = {pages + 2}", counter.calls["Scan"] == 0 and counter.calls["Query"] <= pages + 2)
    # every job through the dispatcher at 10:00, then the day re-run ({"on": ...}) and dispatched again
    table, client = aws.environ["TABLE_NAME"], aws.client("dynamodb")
    store = DynamoCalendarChallenges(table)          # the default session's client: counted
    msgs = DynamoMessagingStore(table)
    rules = wiring.rules()

    class Queues:
        sent: Counter = Counter()

        def send(self, name, body, delay_s=0):
            self.sent[body.get("message_id", name)] += 1

    queues = Queues()
    ten = datetime(2027, 3, 2, 2, 0, tzinfo=timezone.utc)
    outcomes = Counter()
    for attempt, at in enumerate((ten, ten + timedelta(hours=1))):
        day = plan_challenge_day(store, store, TUESDAY, at, finish=None, leaderboard=None,
                                 template=rules.messaging.challenge_template)
        jobs_per_member = Counter(job["member_id"] for job in day.jobs)
        if attempt == 0:
            row(f"challenge plan, P={participants}: jobs per participant", f"max {max(jobs_per_member.values())}, "
                f"{len(jobs_per_member)} participants", "≤ 1", max(jobs_per_member.values()) == 1
                and len(jobs_per_member) == participants)
        counter.reset()
        for job in [j for j in day.jobs if int(j["member_id"][4:]) < dispatched]:
            outcomes[dispatch_job(job, msgs, queues, rules, at, store).split(":")[0] + f"#{attempt}"] += 1
        if attempt == 0:
            per_message = counter.total / max(dispatched, 1)
            row("challenge message, dispatcher: DynamoDB calls per message", f"{per_message:.2f}",
                "3 (member, participant, record with its day key)", per_message <= 3)
    # the outbox records and the day keys, read back without counting (a Scan of the bench's table)
    per_member, day_keys = Counter(), 0
    for page in client.get_paginator("scan").paginate(TableName=table):
        for item in page["Items"]:
            if item["SK"]["S"].startswith("SENT#CHALLENGE#"):
                day_keys += 1
            elif item.get("kind", {}).get("S") == "challenge":
                per_member[item["member_id"]["S"]] += 1
    most = max(per_member.values(), default=0)
    row(f"challenge messages a participant a day, {dispatched} dispatched twice (a re-run)",
        f"max {most}; {day_keys} day keys; queued {outcomes['queued#0']}, re-run {outcomes['duplicate#1']} duplicates",
        "≤ 1", most <= 1 and day_keys == dispatched and outcomes["queued#0"] == dispatched
        and outcomes["duplicate#1"] == dispatched)
    aws.reset()
