"""A small fake of `loyalty.ports.ChallengeReader` for the results' tests (draws, final
ranking, stats), until the challenge store (built beside this part) is merged: then its
own fake and adapter replace this one. It counts what a caller reads, as DynamoDB would
bill it: items and Queries (one per page, and one per shard that has none)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import Iterator

from loyalty.engagement import draws
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

    def get_participant(self, challenge_id: str, member_id: str) -> Participant | None:
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
