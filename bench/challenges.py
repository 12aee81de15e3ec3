"""Challenge figures (E5): the quarter-end rewards over P participants.

The final ranking reads the participants through loyalty.ports.ChallengeReader. Until the
challenge store is merged they come from the tests' fake reader (tests/challenge_fakes.py),
which counts the items and Queries DynamoDB would bill for them (pages of one shard's
partition); everything the results write and read (the snapshot, the final record, its
progress, each member's reward with its idempotency record) goes to DynamoDB in the
emulator and is counted with botocore hooks."""
from __future__ import annotations

from bench.logs import say
from loyalty.domain import parse_time


def quarter_end_rewards(aws, counter, row, participants: int = 1000) -> None:
    from loyalty.adapters.ledger import DynamoLedgerStore, LedgerTable
    from loyalty.adapters.ledger.results import DynamoResultsStore
    from loyalty.engagement.challenge_results import finish_challenge
    from loyalty.rules import build_rules
    from tests.challenge_fakes import FakeChallengeReader

    aws.reset()
    table = aws.environ["TABLE_NAME"]
    ledger = DynamoLedgerStore(table, 4)            # the layer's boto3 client: counted
    results = DynamoResultsStore(LedgerTable(table))
    rules = build_rules()
    reader = FakeChallengeReader(page_size=1000)    # ~300 B a participant: a 1 MB page holds ~3,000
    reader.put_challenge("bench-q", "2026-01-01", days=90, draws_=(("week-2", "2026-01-14", 3),))
    say(f"enrolling {participants} participants in a challenge of 8 shards ...")
    for i in range(participants):
        reader.enrol("bench-q", f"p-{i:06d}", points=(i * 7919) % 1800, checked="1" * (i % 90))
    shards = reader.challenges["bench-q"].shards
    counter.reset()
    reader.items_read = reader.queries = 0
    done = finish_challenge(reader, results, ledger, rules, "bench-q", parse_time("2026-04-01T00:30:00+08:00"))
    rewarded = done["rewarded"]
    items = reader.items_read + counter.items_read
    transactions = counter.calls["TransactWriteItems"]
    row(f"quarter-end rewards, P={participants}: participants rewarded", str(rewarded), str(participants),
        rewarded == participants and done["status"] == "done")
    row(f"quarter-end rewards, P={participants}: items read (participants {reader.items_read} in "
        f"{reader.queries} pages + results {counter.items_read})", str(items),
        f"≤ 1.05·P + {shards} = {1.05 * participants + shards:.0f}", items <= 1.05 * participants + shards)
    row("quarter-end rewards: Scans", str(counter.calls["Scan"]), "0", counter.calls["Scan"] == 0)
    row("quarter-end rewards: write calls per rewarded participant",
        f"{transactions / max(rewarded, 1):.2f} (+ {counter.writes - transactions} for the snapshot and progress)",
        "1", transactions == rewarded)
    counter.reset()
    reader.items_read = 0
    again = finish_challenge(reader, results, ledger, rules, "bench-q", parse_time("2026-04-02T00:30:00+08:00"))
    row("quarter-end rewards re-run: reward writes / participant items read",
        f"{counter.calls['TransactWriteItems']} / {reader.items_read}", "0 / 0",
        again == done and counter.calls["TransactWriteItems"] == 0 and reader.items_read == 0)

    from loyalty.engagement.challenge_results import run_challenge_draw
    counter.reset()
    reader.items_read = reader.queries = 0
    record = run_challenge_draw(reader, results, rules, "bench-q", "week-2", parse_time("2026-01-15T00:05:00+08:00"))
    items = reader.items_read + counter.items_read
    row(f"challenge draw, P={participants}: items read (participants {reader.items_read}, {record['entrants']} "
        f"entrants)", str(items), f"≤ P + {shards} = {participants + shards}", items <= participants + shards)
    row("challenge draw: write calls (entrant list + conditional record) / Scans",
        f"{counter.writes} / {counter.calls['Scan']}", "2 / 0", counter.writes == 2 and counter.calls["Scan"] == 0)
