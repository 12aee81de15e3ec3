"""Challenge figures (E5), all over DynamoDB in the emulator, counted with botocore hooks:
a leaderboard page of L entries among P participants through the members API's handler,
whatever P; the quarter-end rewards and a draw over P participants; and the calendar's
weekday fan-out over P participants, read shard by shard by the real handler, then jobs
through the real dispatcher."""
from __future__ import annotations

import json
from collections import Counter
from datetime import date, datetime, timedelta, timezone

from bench.ledger import Context, handler, ledger_store
from bench.logs import say
from loyalty.domain import parse_time


def load_participants(store, challenge_id: str, scores: dict[str, int], shards: int) -> None:
    """Each participant as enrolment and credits leave it (its overall score in the
    leaderboard index), and the member's profile with a name, 25 items to a BatchWriteItem."""
    from loyalty.adapters.ledger.base import member_pk
    from loyalty.adapters.ledger.challenges import participant_item
    from loyalty.adapters.ledger.members import PROFILE
    from loyalty.engagement.challenges import Participant, shard_of
    with store.Participant.batch_write() as batch:
        for member, points in scores.items():
            batch.save(participant_item(store.Participant, Participant(
                challenge_id=challenge_id, member_id=member, enrolled_at="2027-01-01T09:00:00+08:00", source="api",
                points=points, shard=shard_of(member, shards))))
    with store.Member.batch_write() as batch:
        for member in scores:
            batch.save(store.Member(member_pk(member), PROFILE, member_id=member, version=1,
                                    profile={"name": f"Member {member}"}))


def leaderboard_event(challenge_id: str, limit: int) -> dict:
    path = f"/challenges/{challenge_id}/leaderboard"
    route = "GET /challenges/{challenge_id}/leaderboard"
    return {"version": "2.0", "routeKey": route, "rawPath": path, "rawQueryString": f"period=all&limit={limit}",
            "queryStringParameters": {"period": "all", "limit": str(limit)}, "headers": {},
            "pathParameters": {"challenge_id": challenge_id},
            "requestContext": {"requestId": "bench", "stage": "$default", "routeKey": route,
                               "http": {"method": "GET", "path": path},
                               "authorizer": {"jwt": {"claims": {"sub": "bench-app", "scope": "loyalty/members.read"},
                                                      "scopes": ["loyalty/members.read"]}}},
            "isBase64Encoded": False}


def leaderboard_pages(aws, counter, row, sizes: tuple[int, ...] = (100, 2000), limit: int = 10) -> None:
    from loyalty.engagement.challenge_setup import put_challenge
    from loyalty.engagement.challenges import ChallengeSpec
    members_api = handler("members_api")
    for participants in sizes:
        aws.reset()
        from loyalty import wiring
        wiring.reset()
        store = ledger_store(aws)
        challenge_id = f"bench-{participants}"
        put_challenge(store, challenge_id, ChallengeSpec(name="Bench 90", starts_on=date(2027, 1, 1)),
                      parse_time("2026-12-20T10:00:00+08:00"), "Asia/Shanghai")
        shards = store.get_challenge(challenge_id).shards
        # scores with ties: 0..499, every value held by several participants once P > 500
        scores = {f"lb-{i:05d}": (i * 7919) % 500 for i in range(participants)}
        say(f"loading {participants} participants of one challenge ...")
        load_participants(store, challenge_id, scores, shards)
        counter.reset()
        answer = members_api(leaderboard_event(challenge_id, limit), Context())
        assert answer["statusCode"] == 200, answer
        entries = json.loads(answer["body"])["entries"]
        expected = sorted(scores.values(), reverse=True)[:limit]
        names = counter.calls["BatchGetItem"] and len(entries)
        index_items = counter.items_read - 1 - names     # the challenge's item and the names apart
        row(f"leaderboard page, L={limit}, P={participants}: the top L", str([e["points"] for e in entries][:3]) + "…",
            "the L highest, ties sharing a rank", [e["points"] for e in entries] == expected
            and all(e["rank"] == 1 + sum(1 for x in expected if x > e["points"]) for e in entries))
        row(f"leaderboard page, L={limit}, P={participants}: index items read", str(index_items),
            f"≤ L + shards = {limit + shards}", index_items <= limit + shards)
        row(f"leaderboard page, L={limit}, P={participants}: other reads",
            f"{counter.calls['GetItem']} GetItem (challenge) + {counter.calls['BatchGetItem']} BatchGetItem "
            f"({names} names)", "1 + 1", counter.calls["GetItem"] == 1 and counter.calls["BatchGetItem"] == 1
            and counter.calls["Scan"] == 0)
        # one participant's standing: its rank is counted from the scores above it
        last = min(scores, key=lambda m: (scores[m], m))
        counter.reset()
        view = members_api(participant_event(challenge_id, last), Context())
        assert view["statusCode"] == 200, view
        rank = json.loads(view["body"])["rank"]
        row(f"participant view, P={participants}, rank {rank}: items read", str(counter.items_read),
            f"≤ rank + 1 = {rank + 1} (grows with the rank)", counter.items_read <= rank + 1
            and rank == 1 + sum(1 for v in scores.values() if v > scores[last]))


def participant_event(challenge_id: str, member_id: str) -> dict:
    path = f"/challenges/{challenge_id}/participants/{member_id}"
    route = "GET /challenges/{challenge_id}/participants/{member_id}"
    return {"version": "2.0", "routeKey": route, "rawPath": path, "rawQueryString": "", "headers": {},
            "pathParameters": {"challenge_id": challenge_id, "member_id": member_id},
            "requestContext": {"requestId": "bench", "stage": "$default", "routeKey": route,
                               "http": {"method": "GET", "path": path},
                               "authorizer": {"jwt": {"claims": {"sub": "bench-app", "scope": "loyalty/members.read"},
                                                      "scopes": ["loyalty/members.read"]}}},
            "isBase64Encoded": False}


def quarter_end_rewards(aws, counter, row, participants: int = 1000) -> None:
    """The final ranking and rewards over P participants, and a draw among a day's
    check-ins: participants, the snapshot, the records and the rewards all in DynamoDB
    in the emulator, read and written by the real store, counted with botocore hooks."""
    from loyalty.adapters.ledger import LedgerTable
    from loyalty.adapters.ledger.challenges import participant_item
    from loyalty.adapters.ledger.results import DynamoResultsStore
    from loyalty.engagement import draws
    from loyalty.engagement.challenge_results import finish_challenge, run_challenge_draw
    from loyalty.engagement.challenges import ChallengeRecord, ChallengeSpec, DrawRecord, Participant, shard_of
    from loyalty.rules import build_rules

    aws.reset()
    table = aws.environ["TABLE_NAME"]
    from loyalty.adapters.ledger import DynamoLedgerStore
    ledger = DynamoLedgerStore(table, 4)            # the layer's boto3 client: counted
    results = DynamoResultsStore(LedgerTable(table))
    rules = build_rules()
    spec = ChallengeSpec(name="Bench quarter", starts_on=date(2026, 1, 1),
                         draws=[{"draw_id": "week-2", "on": "2026-01-14", "winners": 3}])
    seed = draws.new_seed()
    record = ChallengeRecord("bench-q", spec, (DrawRecord("week-2", date(2026, 1, 14), 3, seed, draws.commitment(seed)),),
                             "2026-01-01T00:00:00+08:00", "2026-01-01T00:00:00+08:00")
    ledger.put_challenge(record, 0, None)
    say(f"enrolling {participants} participants in a challenge of {record.shards} shards ...")
    with ledger.Participant.batch_write() as batch:
        for i in range(participants):
            member, checked = f"p-{i:06d}", "1" * (i % 90)
            batch.save(participant_item(ledger.Participant, Participant(
                challenge_id="bench-q", member_id=member, enrolled_at="2026-01-01T09:00:00+08:00", source="api",
                points=(i * 7919) % 1800, checked=checked, days_checked_in=checked.count("1"),
                shard=shard_of(member, record.shards))))
    shards = record.shards
    counter.reset()
    done = finish_challenge(ledger, results, ledger, rules, "bench-q", parse_time("2026-04-01T00:30:00+08:00"))
    rewarded = done["rewarded"]
    transactions = counter.calls["TransactWriteItems"]
    row(f"quarter-end rewards, P={participants}: participants rewarded", str(rewarded), str(participants),
        rewarded == participants and done["status"] == "done")
    row(f"quarter-end rewards, P={participants}: items read", str(counter.items_read),
        f"≤ 1.05·P + {shards} = {1.05 * participants + shards:.0f}", counter.items_read <= 1.05 * participants + shards)
    row("quarter-end rewards: Scans", str(counter.calls["Scan"]), "0", counter.calls["Scan"] == 0)
    row("quarter-end rewards: write calls per rewarded participant",
        f"{transactions / max(rewarded, 1):.2f} (+ {counter.writes - transactions} for the snapshot and progress)",
        "1", transactions == rewarded)
    counter.reset()
    again = finish_challenge(ledger, results, ledger, rules, "bench-q", parse_time("2026-04-02T00:30:00+08:00"))
    row("quarter-end rewards re-run: reward writes / items read",
        f"{counter.calls['TransactWriteItems']} / {counter.items_read}", "0 / ≤ 3 (the challenge and the final record)",
        again == done and counter.calls["TransactWriteItems"] == 0 and counter.items_read <= 3)

    counter.reset()
    drawn = run_challenge_draw(ledger, results, rules, "bench-q", "week-2", parse_time("2026-01-15T00:05:00+08:00"))
    row(f"challenge draw, P={participants}: items read ({drawn['entrants']} entrants)", str(counter.items_read),
        f"≤ 1.05·P + {shards} = {1.05 * participants + shards:.0f}",
        counter.items_read <= 1.05 * participants + shards)
    row("challenge draw: write calls (entrant list + conditional record) / Scans",
        f"{counter.writes} / {counter.calls['Scan']}", "2 / 0", counter.writes == 2 and counter.calls["Scan"] == 0)


TUESDAY = date(2027, 3, 2)


def load_calendar_participants(aws, participants: int, with_profiles: int):
    """A challenge started on Monday, and `participants` members enrolled, straight into
    the table; the first `with_profiles` with a profile and WhatsApp consent (the members
    whose jobs go through the dispatcher)."""
    from loyalty.adapters.ledger.challenges import participant_item
    from loyalty.engagement.challenges import ChallengeRecord, ChallengeSpec, Participant, shard_of
    from loyalty.records import Consent, Profile
    ledger = ledger_store(aws)
    ledger.put_challenge(ChallengeRecord("bench-q", ChallengeSpec(name="Bench", starts_on=date(2027, 3, 1)), (),
                                         "2027-02-20T00:00:00Z", "2027-02-20T00:00:00Z"), 0, None)
    with ledger.Participant.batch_write() as batch:
        for i in range(participants):
            member = f"cal-{i:06d}"
            batch.save(participant_item(ledger.Participant, Participant(
                challenge_id="bench-q", member_id=member, enrolled_at="2027-02-25T10:00:00+08:00", source="api",
                points=10, streak=1, days_checked_in=1, last_checkin="2027-03-01", checked="1",
                shard=shard_of(member))))
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
    from loyalty.adapters.ledger import DynamoLedgerStore
    from loyalty.adapters.messaging.store import DynamoMessagingStore
    from loyalty.engagement.challenge_calendar import plan_challenge_day
    from loyalty.engagement.challenges import DEFAULT_SHARDS
    from loyalty.messaging.dispatcher import dispatch_job
    aws.reset()
    wiring.reset()
    import time
    started = time.perf_counter()
    say(f"loading a challenge and {participants} participants ({dispatched} with profiles and consent) ...")
    load_calendar_participants(aws, participants, dispatched)
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
    store = DynamoLedgerStore(table, 4)              # the default session's client: counted
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
