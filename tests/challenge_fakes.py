"""Small fakes of the challenge store for the unit tests of the parts that read it: the
results' (draws, final ranking, stats: `FakeChallengeReader`) and the calendar's
(`FakeChallenges`, with `active_challenges` and `mark_nudged`, and its board and results).
Both count what a caller reads, as DynamoDB would bill it: items and Queries. The store's
own fake (loyalty.adapters.challenges_memory) runs the store's contract; these stay
small and countable on purpose."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import Iterator

from loyalty.engagement import draws
from loyalty.engagement.challenge_calendar import Standing
from loyalty.engagement.challenges import ChallengeRecord, ChallengeSpec, DrawRecord, Participant, shard_of


@dataclass
class FakeChallengeReader:
    page_size: int = 100
    challenges: dict[str, ChallengeRecord] = field(default_factory=dict)
    people: dict[str, dict[str, Participant]] = field(default_factory=dict)
    items_read: int = 0
    queries: int = 0

    def get_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        return self.challenges.get(challenge_id)

    def participants(self, challenge_id: str, shard: int) -> Iterator[list[Participant]]:
        found = sorted((p for p in self.people.get(challenge_id, {}).values() if p.shard == shard),
                       key=lambda p: p.member_id)
        self.queries += 1
        for start in range(0, max(len(found), 1), self.page_size):
            page = found[start:start + self.page_size]
            if start:
                self.queries += 1
            self.items_read += len(page)
            if page:
                yield page

    def get_participant(self, challenge_id: str, member_id: str, shard: int | None = None) -> Participant | None:
        return self.people.get(challenge_id, {}).get(member_id)

    # --- set-up (what the challenge store's writes would do) ---
    def put_challenge(self, challenge_id: str, starts_on: str, days: int = 90, draws_: tuple = (),
                      rewards: dict | None = None, shards: int = 8) -> ChallengeRecord:
        spec = ChallengeSpec(name=f"challenge {challenge_id}", starts_on=date.fromisoformat(starts_on), days=days,
                             draws=[{"draw_id": d, "on": on, "winners": n} for d, on, n in draws_],
                             **({"rewards": rewards} if rewards else {}))
        seeds = [draws.new_seed() for _ in spec.draws]
        record = ChallengeRecord(challenge_id=challenge_id, spec=spec, shards=shards,
                                 draws=tuple(DrawRecord(draw_id=d.draw_id, on=d.on, winners=d.winners, seed=s,
                                                        commitment=draws.commitment(s))
                                             for d, s in zip(spec.draws, seeds)),
                                 created_at="2026-01-01T00:00:00+08:00", updated_at="2026-01-01T00:00:00+08:00")
        self.challenges[challenge_id] = record
        return record

    def enrol(self, challenge_id: str, member_id: str, points: int = 0, checked: str = "",
              enrolled_at: str | None = None, **more) -> Participant:
        record = self.challenges[challenge_id]
        p = Participant(challenge_id=challenge_id, member_id=member_id,
                        enrolled_at=enrolled_at or f"{record.spec.starts_on.isoformat()}T09:00:00+08:00",
                        source="api", points=points, checked=checked, shard=shard_of(member_id, record.shards),
                        days_checked_in=checked.count("1"), **more)
        self.people.setdefault(challenge_id, {})[member_id] = p
        return p

    def move(self, challenge_id: str, member_id: str, **changes) -> None:
        people = self.people[challenge_id]
        people[member_id] = replace(people[member_id], **changes)


class FakeChallenges:
    def __init__(self, page_size: int = 100):
        self.page_size = page_size
        self.challenges: dict[str, ChallengeRecord] = {}
        self.people: dict[str, dict[str, Participant]] = {}
        self.pages_read = 0
        self.items_read = 0
        self.gets = 0
        self.nudges: list[tuple[str, str, date]] = []

    def put(self, challenge_id: str, shards: int = 8, **spec) -> ChallengeRecord:
        record = ChallengeRecord(challenge_id, ChallengeSpec(**{"name": challenge_id, **spec}), (),
                                 "2026-01-01T00:00:00Z", "2026-01-01T00:00:00Z", shards=shards)
        self.challenges[challenge_id] = record
        self.people.setdefault(challenge_id, {})
        return record

    def enrol(self, challenge_id: str, member_id: str, enrolled_at: str | None = None, **fields) -> Participant:
        record = self.challenges[challenge_id]
        enrolled = enrolled_at or f"{record.spec.starts_on.isoformat()}T00:00:00+00:00"
        p = Participant(challenge_id, member_id, enrolled, "api", shard=shard_of(member_id, record.shards), **fields)
        self.people[challenge_id][member_id] = p
        return p

    def update(self, challenge_id: str, member_id: str, **fields) -> Participant:
        p = replace(self.people[challenge_id][member_id], **fields)
        self.people[challenge_id][member_id] = p
        return p

    # --- the ports -------------------------------------------------------------------
    def active_challenges(self, on: date) -> list[ChallengeRecord]:
        return [c for c in self.challenges.values() if c.spec.starts_on <= on <= c.spec.ends_on]

    def get_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        return self.challenges.get(challenge_id)

    def participants(self, challenge_id: str, shard: int):
        members = sorted((p for p in self.people.get(challenge_id, {}).values() if p.shard == shard),
                         key=lambda p: p.member_id)
        for start in range(0, max(len(members), 1), self.page_size):
            page = members[start:start + self.page_size]
            self.pages_read += 1
            self.items_read += len(page)
            yield page

    def get_participant(self, challenge_id: str, member_id: str, shard: int | None = None) -> Participant | None:
        self.gets += 1
        return self.people.get(challenge_id, {}).get(member_id)

    def mark_nudged(self, challenge_id: str, member_id: str, shard: int, on: date) -> None:
        self.nudges.append((challenge_id, member_id, on))
        self.update(challenge_id, member_id, nudged_on=on.isoformat())


@dataclass(frozen=True)
class FakeBoard:
    top: tuple[tuple[int, str, int], ...]
    places: dict

    def standing(self, member_id: str) -> Standing | None:
        return self.places.get(member_id)


class Results:
    """RESULTS' finish_challenge and CORE's leaderboard as the calendar calls them, counted."""

    def __init__(self, final: dict | None = None, board: FakeBoard | None = None):
        self.final = final or {}
        self.board = board or FakeBoard((), {})
        self.finished: list[str] = []
        self.boards: list[tuple[str, str]] = []

    def finish(self, challenge, now):
        self.finished.append(challenge.challenge_id)
        return self.final

    def leaderboard(self, challenge_id, period):
        self.boards.append((challenge_id, period))
        return self.board
