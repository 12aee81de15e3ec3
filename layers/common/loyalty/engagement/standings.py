"""A challenge's standings (E5): the leaderboard, overall or of one month, and one
participant's place.

The leaderboard is read live from a sparse index keyed per (challenge, period, shard),
sorted by points (one number: points and a tie-break, moved by ADD in each credit's
transaction, so a check-in shows at once): a lazy k-way merge over the shards reads
the head of each shard (Query, Limit=1) and, each time a head is taken, refills only
that shard. A page of L entries reads at most L + shards index items, whatever the
number of participants; the names are one BatchGet of the L profiles."""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import Invalid
from .challenge_setup import get_challenge
from .challenges import BoardEntry, score_key, shard_of

PERIOD = re.compile(r"^(all|\d{4}-(0[1-9]|1[0-2]))$")
MAX_LIMIT = 100


def check_period(period: str | None) -> str:
    period = period or "all"
    if not PERIOD.match(period):
        raise Invalid([{"field": "period", "problem": "all, or a month as YYYY-MM"}])
    return period


def check_limit(limit: str | None, default: int = 10) -> int:
    if limit is None or limit == "":
        return default
    if not limit.isdigit() or not 1 <= int(limit) <= MAX_LIMIT:
        raise Invalid([{"field": "limit", "problem": f"an integer from 1 to {MAX_LIMIT}"}])
    return int(limit)


def masked(name: str | None) -> str:
    """A name as the leaderboard shows it: the first character and "*" ("X*"); no name "*"."""
    name = (name or "").strip()
    return f"{name[0]}*" if name else "*"


def top_entries(store, challenge_id: str, period: str, shards: int, limit: int) -> list[BoardEntry]:
    """The `limit` highest scores across the shards, highest first (ties in the tie-break's order)."""
    heads: dict[int, BoardEntry] = {}
    for shard in range(shards):
        page = store.board_page(challenge_id, period, shard, None, 1)
        if page:
            heads[shard] = page[0]
    taken: list[BoardEntry] = []
    while heads and len(taken) < limit:
        shard = max(heads, key=lambda s: score_key(heads[s].points, heads[s].member_id))
        entry = heads.pop(shard)
        taken.append(entry)
        if len(taken) < limit:
            page = store.board_page(challenge_id, period, shard, entry, 1)
            if page:
                heads[shard] = page[0]
    return taken


def ranked(entries: list[BoardEntry]) -> list[tuple[int, BoardEntry]]:
    """Ranks from the top: ties share a rank (1, 1, 3)."""
    out, rank = [], 0
    for i, entry in enumerate(entries):
        if i == 0 or entry.points != entries[i - 1].points:
            rank = i + 1
        out.append((rank, entry))
    return out


def leaderboard(store, challenge_id: str, period: str, limit: int) -> dict:
    """{"challenge_id", "period", "entries": [{rank, member_id, name (masked), points}]}."""
    record = get_challenge(store, challenge_id)
    entries = top_entries(store, challenge_id, period, record.shards, limit)
    names = store.profile_names([e.member_id for e in entries]) if entries else {}
    return {"challenge_id": challenge_id, "period": period,
            "entries": [{"rank": rank, "member_id": e.member_id, "name": masked(names.get(e.member_id)),
                         "points": e.points} for rank, e in ranked(entries)]}


def rank_of(store, challenge_id: str, period: str, shards: int, points: int) -> int:
    """1 + the participants with more points: a Select=COUNT Query per shard, which reads
    the index items above the score (its cost grows with the rank, not with P)."""
    return 1 + sum(store.count_above(challenge_id, period, shard, points) for shard in range(shards))


def participant_view(store, challenge_id: str, member_id: str) -> dict:
    """{"challenge_id", "member_id", "points", "rank", "streak", "days_checked_in",
    "enrolled_at", "last_checkin"}; NotFound when the member is not a participant."""
    from ..errors import NotFound
    record = get_challenge(store, challenge_id)
    participant = store.get_participant(challenge_id, member_id, shard_of(member_id, record.shards))
    if participant is None:
        raise NotFound(f"{member_id} is not a participant of {challenge_id}")
    return {"challenge_id": challenge_id, "member_id": member_id, "points": participant.points,
            "rank": None if participant.opted_out else rank_of(store, challenge_id, "all", record.shards,
                                                               participant.points),
            "streak": participant.streak, "days_checked_in": participant.days_checked_in,
            "enrolled_at": participant.enrolled_at, "last_checkin": participant.last_checkin}


@dataclass(frozen=True)
class MonthBoard:
    """A month's whole board, as the calendar's 1st of the month tells it: the top entries
    (masked names) and every participant's place (engagement.challenge_calendar.Board)."""

    top: tuple[tuple[int, str, int], ...]
    places: dict

    def standing(self, member_id: str):
        from .challenge_calendar import Standing
        place = self.places.get(member_id)
        return Standing(rank=place[0], points=place[1]) if place else None


MONTH_PAGE = 1000   # index items per Query (keys only, ~100 B each)


def month_board(store, challenge_id: str, month: str, shown: int = 3) -> MonthBoard:
    """The whole board of `month`, read once: every shard's index partition in pages
    (the month's scorers, keys only, about 100 B each), ranked with ties sharing a rank; a
    participant who scored nothing that month has no place on it."""
    record = get_challenge(store, challenge_id)
    entries: list[BoardEntry] = []
    for shard in range(record.shards):
        after = None
        while True:
            page = store.board_page(challenge_id, month, shard, after, MONTH_PAGE)
            entries.extend(page)
            if len(page) < MONTH_PAGE:
                break
            after = page[-1]
    entries.sort(key=lambda e: (-e.points, e.member_id))
    places = ranked(entries)
    top = places[:shown]
    names = store.profile_names([e.member_id for _, e in top]) if top else {}
    return MonthBoard(top=tuple((rank, masked(names.get(e.member_id)), e.points) for rank, e in top),
                      places={e.member_id: (rank, e.points) for rank, e in places})
