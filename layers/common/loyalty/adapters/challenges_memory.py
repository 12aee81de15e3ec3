"""The in-memory fake of the ChallengeStore, with the DynamoDB adapter's conditions
(loyalty.adapters.ledger.challenges): mixed into MemoryLedgerStore, whose commit lands
a Change's participant credits through `check_credits` / `apply_credits`."""
from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Iterator

from ..engagement.challenges import (BoardEntry, ChallengeRecord, Invitation, Participant, score_key, shard_of)
from ..errors import AlreadyApplied, ConcurrentUpdate, ParticipantGone
from ..records import Change, Consent

PAGE = 100   # participants per page (DynamoDB's pages are by size; the callers read every page)


def check_credits(store, change: Change) -> None:
    """As the participant item's condition: every credited participant exists."""
    gone = sorted({c.challenge_id for c in change.participants
                   if _has_writes(c) and (c.challenge_id, c.member_id) not in store.challenge_participants})
    if gone:
        raise ParticipantGone(gone)


def _has_writes(credit) -> bool:
    return bool(credit.points or credit.day is not None or credit.orders or credit.redemptions)


def apply_credits(store, change: Change) -> None:
    for credit in change.participants:
        if not _has_writes(credit):
            continue
        key = (credit.challenge_id, credit.member_id)
        p = store.challenge_participants[key]
        checked, streak, last = p.checked, p.streak, p.last_checkin
        if credit.day is not None:
            bits = list(checked.ljust(max(len(checked), credit.day), "0"))
            bits[credit.day - 1] = "1"
            checked = "".join(bits)
            streak = credit.streak if credit.streak is not None else streak
            last = credit.local_date if credit.local_date is not None else last
        store.challenge_participants[key] = replace(
            p, points=p.points + credit.points, checked=checked, days_checked_in=checked.count("1"), streak=streak,
            last_checkin=last, orders=p.orders + credit.orders, redemptions=p.redemptions + credit.redemptions)
        if credit.points:
            month = (credit.challenge_id, credit.month, credit.member_id)
            store.challenge_scores[month] = store.challenge_scores.get(month, 0) + credit.points


class MemoryChallengeStore:
    """Implements `loyalty.ports.ChallengeStore` in memory (with MemoryAccountStore, which
    holds the participants and month scores its commit credits)."""

    def __init__(self):
        self.challenges: dict[str, ChallengeRecord] = {}
        self.invitations: dict[tuple[str, str], Invitation] = {}   # (member, challenge)

    # --- challenges ---
    def get_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        return self.challenges.get(challenge_id)

    def put_challenge(self, record: ChallengeRecord, expected_version: int, previous_ends_on: str | None) -> None:
        with self._account_lock:
            current = self.challenges.get(record.challenge_id)
            if (current.version if current else 0) != expected_version:
                raise ConcurrentUpdate("challenge moved")
            self.challenges[record.challenge_id] = record

    def active_challenges(self, on: date) -> list[ChallengeRecord]:
        return sorted((r for r in self.challenges.values() if r.spec.starts_on <= on <= r.spec.ends_on),
                      key=lambda r: r.challenge_id)

    # --- invitations ---
    def invitation_status(self, challenge_id: str, member_ids: list[str], shards: int) -> dict[str, str]:
        status = {}
        for m in dict.fromkeys(member_ids):
            known = m in self.accounts or m in getattr(self, "profiles", {})
            status[m] = ("unknown" if not known else "enrolled" if (challenge_id, m) in self.challenge_participants
                         else "invited" if (m, challenge_id) in self.invitations else "new")
        return status

    def add_invitations(self, invitations: list[Invitation]) -> None:
        for i in invitations:
            self.invitations[(i.member_id, i.challenge_id)] = i

    def open_invitations(self, member_id: str, on: date) -> list[Invitation]:
        return sorted((i for (m, _), i in self.invitations.items() if m == member_id and i.ends_on >= on.isoformat()),
                      key=lambda i: i.challenge_id)

    # --- participants ---
    def enrol(self, change: Change, participant: Participant, consent: Consent) -> None:
        with self._account_lock:
            key = (participant.challenge_id, participant.member_id)
            self._check(change)
            if key in self.challenge_participants:
                raise AlreadyApplied(f"{key[0]}#{key[1]}")
            self._apply(change)
            self.challenge_participants[key] = participant
            self.add_consent(consent)

    def leave(self, change: Change, participant: Participant, consent: Consent, months: list[str]) -> None:
        with self._account_lock:
            key = (participant.challenge_id, participant.member_id)
            self._check(change)
            current = self.challenge_participants.get(key)
            if current is None or current.opted_out:
                raise ConcurrentUpdate("participant moved")
            self._apply(change)
            self.challenge_participants[key] = replace(current, opted_out=True)
            for month in months:
                self.challenge_scores.pop((participant.challenge_id, month, participant.member_id), None)
            self.add_consent(consent)

    def participants(self, challenge_id: str, shard: int) -> Iterator[list[Participant]]:
        found = sorted((p for (c, _), p in self.challenge_participants.items() if c == challenge_id and p.shard == shard),
                       key=lambda p: p.member_id)
        for start in range(0, len(found), PAGE):
            yield found[start:start + PAGE]

    def get_participant(self, challenge_id: str, member_id: str, shard: int | None = None) -> Participant | None:
        if challenge_id not in self.challenges:
            return None
        return self.challenge_participants.get((challenge_id, member_id))

    def mark_nudged(self, challenge_id: str, member_id: str, shard: int, on: date) -> None:
        with self._account_lock:
            key = (challenge_id, member_id)
            if key in self.challenge_participants:
                self.challenge_participants[key] = replace(self.challenge_participants[key], nudged_on=on.isoformat())

    def month_points(self, challenge_id: str, member_id: str, shard: int, month: str) -> int:
        return self.challenge_scores.get((challenge_id, month, member_id), 0)

    def profile_names(self, member_ids: list[str]) -> dict[str, str | None]:
        profiles = getattr(self, "profiles", {})
        return {m: profiles[m].name for m in member_ids if m in profiles}

    # --- the leaderboard ---
    def _board(self, challenge_id: str, period: str, shard: int) -> list[tuple[int, BoardEntry]]:
        if period == "all":
            scores = [(p.member_id, p.points) for (c, _), p in self.challenge_participants.items()
                      if c == challenge_id and p.shard == shard and not p.opted_out]
        else:
            scores = [(m, points) for (c, month, m), points in self.challenge_scores.items()
                      if c == challenge_id and month == period
                      and self.challenge_participants[(c, m)].shard == shard]
        return sorted(((score_key(points, m), BoardEntry(m, points)) for m, points in scores),
                      key=lambda kv: kv[0], reverse=True)

    def board_page(self, challenge_id: str, period: str, shard: int, after: BoardEntry | None,
                   limit: int) -> list[BoardEntry]:
        board = self._board(challenge_id, period, shard)
        if after is not None:
            bound = score_key(after.points, after.member_id)
            board = [(k, e) for k, e in board if k < bound]
        return [e for _, e in board[:limit]]

    def count_above(self, challenge_id: str, period: str, shard: int, points: int) -> int:
        return sum(1 for _, e in self._board(challenge_id, period, shard) if e.points > points)


__all__ = ["MemoryChallengeStore", "apply_credits", "check_credits", "shard_of"]
