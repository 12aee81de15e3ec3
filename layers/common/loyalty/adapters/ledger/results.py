"""The ResultsStore: what the results of challenges and lucky draws keep.

Items (PK / SK), beside the ledger's in the one table (their own PK prefixes, so they
never meet the challenge store's items):
  RESULT#<owner> / DRAW#<draw_id>             a draw's result (conditional: the first run's stays)
  RESULT#<owner> / LIST#<hash>#<part>         a stored list (a draw's sorted entrants, a final
                                              ranking's lines), in parts of <= 300 KB
  RESULT#challenge:<id> / FINAL               the final ranking: snapshot hash, rewards, progress
  LUCKY#<draw_id> / SEED                      a lucky draw's seed (made once, never replaced)
  LUCKY#<draw_id> / ENTRY#<entrant_id>        one entry (written in its redemption's transaction)
"""
from __future__ import annotations

from typing import Iterator

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from ...engagement.outcomes import DrawEntry, DrawResult, FinalRanking
from .base import LedgerModel, LedgerTable, Transaction, raw_pages, translated

DRAW, LIST, FINAL, SEED, ENTRY = "DRAW#", "LIST#", "FINAL", "SEED", "ENTRY#"
PART_BYTES = 300_000   # an item holds at most 400 KB


class DrawItem(LedgerModel):
    owner = UnicodeAttribute()
    draw_id = UnicodeAttribute()
    on = UnicodeAttribute()
    commitment = UnicodeAttribute()
    seed = UnicodeAttribute()
    entrants_hash = UnicodeAttribute()
    entrants = NumberAttribute()
    winners = ListAttribute(of=UnicodeAttribute, null=True)
    winner_members = ListAttribute(of=UnicodeAttribute, null=True)
    run_at = UnicodeAttribute()
    algorithm = UnicodeAttribute()


class ListPartItem(LedgerModel):
    parts = NumberAttribute()        # how many parts the list has
    text = UnicodeAttribute(null=True)   # this part's lines, joined by "\n"


class FinalItem(LedgerModel):
    challenge_id = UnicodeAttribute()
    snapshot_hash = UnicodeAttribute()
    participants = NumberAttribute()
    left = NumberAttribute()
    base = NumberAttribute()
    top_half = NumberAttribute()
    top_tenth = NumberAttribute()
    top_half_rank = NumberAttribute()
    top_tenth_rank = NumberAttribute()
    rewarded = NumberAttribute()
    points = NumberAttribute()
    recorded_at = UnicodeAttribute()
    credited = NumberAttribute()
    done_at = UnicodeAttribute(null=True)


class SeedItem(LedgerModel):
    seed = UnicodeAttribute(null=True)
    closed_at = UnicodeAttribute(null=True)   # set by the draw's run, before it reads the entries


class EntryItem(LedgerModel):
    draw_id = UnicodeAttribute()
    entrant_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    at = UnicodeAttribute()


def result_pk(owner: str) -> str:
    return f"RESULT#{owner}"


def lucky_pk(draw_id: str) -> str:
    return f"LUCKY#{draw_id}"


def add_draw_entry_write(tx: Transaction, table: LedgerTable, entry: DrawEntry) -> None:
    """The entry, in the redemption's transaction: on condition that the draw has not
    closed (label "draw-open": its run closes it before reading the entries) and that the
    entry does not exist yet (label "draw-entry")."""
    model, seed = table.bind(EntryItem), table.bind(SeedItem)
    tx.check("draw-open", seed, lucky_pk(entry.draw_id), SEED, seed.closed_at.does_not_exist())
    tx.put("draw-entry", model(lucky_pk(entry.draw_id), ENTRY + entry.entrant_id, draw_id=entry.draw_id,
                               entrant_id=entry.entrant_id, member_id=entry.member_id, at=entry.at),
           model.pk.does_not_exist())


def split_parts(lines: list[str], limit: int = PART_BYTES) -> list[str]:
    """The lines in parts of at most `limit` bytes each (at least one part)."""
    parts, current, size = [], [], 0
    for line in lines:
        n = len(line.encode("utf-8")) + 1
        if current and size + n > limit:
            parts.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += n
    parts.append("\n".join(current))
    return parts


def _draw_of(item: DrawItem) -> DrawResult:
    return DrawResult(owner=item.owner, draw_id=item.draw_id, on=item.on, commitment=item.commitment, seed=item.seed,
                      entrants_hash=item.entrants_hash, entrants=int(item.entrants), winners=tuple(item.winners or ()),
                      run_at=item.run_at, algorithm=item.algorithm, winner_members=tuple(item.winner_members or ()))


def _final_of(item: FinalItem) -> FinalRanking:
    return FinalRanking(challenge_id=item.challenge_id, snapshot_hash=item.snapshot_hash,
                        participants=int(item.participants), left=int(item.left), base=int(item.base),
                        top_half=int(item.top_half), top_tenth=int(item.top_tenth),
                        top_half_rank=int(item.top_half_rank), top_tenth_rank=int(item.top_tenth_rank),
                        rewarded=int(item.rewarded), points=int(item.points), recorded_at=item.recorded_at,
                        credited=int(item.credited), done_at=item.done_at)


def _conditional_failed(exc: Exception) -> bool:
    return getattr(exc, "cause_response_code", None) == "ConditionalCheckFailedException"


class DynamoResultsStore:
    """Implements `loyalty.ports.ResultsStore` (items above)."""

    def __init__(self, table: LedgerTable):
        self.table = table
        self.Draw = table.bind(DrawItem)
        self.Part = table.bind(ListPartItem)
        self.Final = table.bind(FinalItem)
        self.Seed = table.bind(SeedItem)
        self.Entry = table.bind(EntryItem)

    @translated
    def put_list(self, owner: str, list_hash: str, lines: list[str]) -> None:
        parts = split_parts(lines)
        for n, text in enumerate(parts):   # the same hash is the same content: a plain put is safe
            self.Part(result_pk(owner), f"{LIST}{list_hash}#{n:05d}", parts=len(parts), text=text or None).save()

    @translated
    def get_list(self, owner: str, list_hash: str) -> list[str] | None:
        found = list(self.Part.query(result_pk(owner), self.Part.sk.startswith(f"{LIST}{list_hash}#"),
                                     consistent_read=True))
        if not found or len(found) != int(found[0].parts):
            return None
        text = "\n".join(item.text or "" for item in found)
        return text.split("\n") if text else []

    @translated
    def record_draw(self, result: DrawResult) -> DrawResult:
        item = self.Draw(result_pk(result.owner), DRAW + result.draw_id, owner=result.owner, draw_id=result.draw_id,
                         on=result.on, commitment=result.commitment, seed=result.seed,
                         entrants_hash=result.entrants_hash, entrants=result.entrants,
                         winners=list(result.winners) or None, winner_members=list(result.winner_members) or None,
                         run_at=result.run_at, algorithm=result.algorithm)
        try:
            item.save(condition=self.Draw.pk.does_not_exist())
        except PutError as exc:
            if not _conditional_failed(exc):
                raise
            return self.get_draw(result.owner, result.draw_id)
        return result

    @translated
    def get_draw(self, owner: str, draw_id: str) -> DrawResult | None:
        try:
            return _draw_of(self.Draw.get(result_pk(owner), DRAW + draw_id, consistent_read=True))
        except DoesNotExist:
            return None

    @translated
    def record_final(self, final: FinalRanking) -> FinalRanking:
        f = final
        item = self.Final(result_pk(f"challenge:{f.challenge_id}"), FINAL, challenge_id=f.challenge_id,
                          snapshot_hash=f.snapshot_hash, participants=f.participants, left=f.left, base=f.base,
                          top_half=f.top_half, top_tenth=f.top_tenth, top_half_rank=f.top_half_rank,
                          top_tenth_rank=f.top_tenth_rank, rewarded=f.rewarded, points=f.points,
                          recorded_at=f.recorded_at, credited=f.credited, done_at=f.done_at)
        try:
            item.save(condition=self.Final.pk.does_not_exist())
        except PutError as exc:
            if not _conditional_failed(exc):
                raise
            return self.get_final(f.challenge_id)
        return final

    @translated
    def get_final(self, challenge_id: str) -> FinalRanking | None:
        try:
            return _final_of(self.Final.get(result_pk(f"challenge:{challenge_id}"), FINAL, consistent_read=True))
        except DoesNotExist:
            return None

    @translated
    def save_progress(self, challenge_id: str, credited: int, done_at: str | None) -> None:
        item = self.Final(result_pk(f"challenge:{challenge_id}"), FINAL)
        actions = [self.Final.credited.set(credited)] + ([self.Final.done_at.set(done_at)] if done_at else [])
        try:   # forward only: a slower concurrent run never moves it back
            item.update(actions=actions, condition=self.Final.pk.exists() & (self.Final.credited <= credited))
        except UpdateError as exc:
            if not _conditional_failed(exc):
                raise

    @translated
    def lucky_seed(self, draw_id: str, seed: str) -> str:
        try:
            self.Seed(lucky_pk(draw_id), SEED).update(actions=[self.Seed.seed.set(seed)],
                                                      condition=self.Seed.seed.does_not_exist())
        except UpdateError as exc:
            if not _conditional_failed(exc):
                raise
            return self.Seed.get(lucky_pk(draw_id), SEED, consistent_read=True).seed
        return seed

    @translated
    def lucky_seeds(self, draw_ids: list[str]) -> dict[str, tuple[str, str | None]]:
        if not draw_ids:
            return {}
        found = self.table.batch_get([(self.Seed, lucky_pk(d), SEED) for d in draw_ids])
        return {item.pk.removeprefix("LUCKY#"): (item.seed, item.closed_at) for item in found.values() if item.seed}

    @translated
    def close_lucky_draw(self, draw_id: str, at: str) -> None:
        item = self.Seed(lucky_pk(draw_id), SEED)
        try:   # the first close stays
            item.update(actions=[self.Seed.closed_at.set(at)], condition=self.Seed.closed_at.does_not_exist())
        except UpdateError as exc:
            if not _conditional_failed(exc):
                raise

    @translated
    def draw_entries(self, draw_id: str) -> Iterator[list[DrawEntry]]:
        results = self.Entry.query(lucky_pk(draw_id), self.Entry.sk.startswith(ENTRY), consistent_read=True)
        for page in raw_pages(results):
            yield [DrawEntry(draw_id=i.draw_id, entrant_id=i.entrant_id, member_id=i.member_id, at=i.at)
                   for i in (self.Entry.from_raw_data(raw) for raw in page)]
