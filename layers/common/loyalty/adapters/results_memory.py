"""In-memory fake of `loyalty.ports.ResultsStore`, with the DynamoDB adapter's conditions
(loyalty.adapters.ledger.results). The lucky-draw entries are those the ledger fake's
commits wrote (MemoryAccountStore.draw_entries), as in DynamoDB they share the table."""
from __future__ import annotations

import threading
from dataclasses import replace
from typing import Iterator

from ..engagement.outcomes import DrawEntry, DrawResult, FinalRanking


class MemoryResultsStore:
    """Implements `loyalty.ports.ResultsStore` in memory."""

    def __init__(self, ledger=None):
        self._lock = threading.Lock()
        self._ledger = ledger
        self.lists: dict[tuple[str, str], tuple[str, ...]] = {}
        self.draws: dict[tuple[str, str], DrawResult] = {}
        self.finals: dict[str, FinalRanking] = {}
        self.seeds: dict[str, str] = {}
        self.writes = 0   # conditional or not, as DynamoDB would count them (tests of re-runs)

    def put_list(self, owner: str, list_hash: str, lines: list[str]) -> None:
        with self._lock:
            self.writes += 1
            self.lists[(owner, list_hash)] = tuple(lines)

    def get_list(self, owner: str, list_hash: str) -> list[str] | None:
        found = self.lists.get((owner, list_hash))
        return None if found is None else list(found)

    def record_draw(self, result: DrawResult) -> DrawResult:
        with self._lock:
            self.writes += 1
            return self.draws.setdefault((result.owner, result.draw_id), result)

    def get_draw(self, owner: str, draw_id: str) -> DrawResult | None:
        return self.draws.get((owner, draw_id))

    def record_final(self, final: FinalRanking) -> FinalRanking:
        with self._lock:
            self.writes += 1
            return self.finals.setdefault(final.challenge_id, final)

    def get_final(self, challenge_id: str) -> FinalRanking | None:
        return self.finals.get(challenge_id)

    def save_progress(self, challenge_id: str, credited: int, done_at: str | None) -> None:
        with self._lock:
            self.writes += 1
            current = self.finals.get(challenge_id)
            if current is not None and current.credited <= credited:
                self.finals[challenge_id] = replace(current, credited=credited, done_at=done_at or current.done_at)

    def lucky_seed(self, draw_id: str, seed: str) -> str:  # noqa: D102 - as the port
        with self._lock:
            self.writes += 1
            return self.seeds.setdefault(draw_id, seed)

    def lucky_seeds(self, draw_ids: list[str]) -> dict[str, tuple[str, str | None]]:
        closed = self._closed()
        return {d: (self.seeds[d], closed.get(d)) for d in draw_ids if d in self.seeds}

    def close_lucky_draw(self, draw_id: str, at: str) -> None:
        with self._lock:
            self.writes += 1
            self._closed().setdefault(draw_id, at)

    def _closed(self) -> dict[str, str]:
        # kept by the ledger fake, whose commits refuse entries to a closed draw
        if self._ledger is None:
            self._ledger = type("Ledger", (), {"draws_closed": {}, "draw_entries": {}})()
        return self._ledger.draws_closed

    def draw_entries(self, draw_id: str) -> Iterator[list[DrawEntry]]:
        entries = getattr(self._ledger, "draw_entries", {}).get(draw_id, {})
        page = [entries[k] for k in sorted(entries)]
        if page:
            yield page
