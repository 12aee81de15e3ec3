"""What a challenge's results leave behind (E5, E10): a draw's result with its entrant
list, the final ranking's snapshot with the rewards' progress, a lucky draw's seed and
its entries. Shapes only; the rules are in `challenge_results` and `lucky_draws`, the
port is `loyalty.ports.ResultsStore`."""
from __future__ import annotations

from dataclasses import dataclass


def challenge_owner(challenge_id: str) -> str:
    """Whose draws and lists these are: one challenge's."""
    return f"challenge:{challenge_id}"


def lucky_owner(draw_id: str) -> str:
    """A lucky-draw catalog item's draw."""
    return f"lucky:{draw_id}"


@dataclass(frozen=True)
class DrawResult:
    """A draw that has run: the record `make verify-draw` checks. The sorted entrant list
    is stored beside it as the list named `entrants_hash` (ResultsStore.get_list)."""

    owner: str                       # challenge_owner(...) or lucky_owner(...)
    draw_id: str
    on: str                          # the draw's day (programme calendar)
    commitment: str
    seed: str
    entrants_hash: str
    entrants: int
    winners: tuple[str, ...]         # entrant ids in the order drawn
    run_at: str                      # ISO time of the run
    algorithm: str
    winner_members: tuple[str, ...] = ()   # lucky draws: the member holding each winning entry

    def answer(self) -> dict:
        """The run's answer (the DESIGN contract's fields, and what an auditor needs more)."""
        return {"draw_id": self.draw_id, "commitment": self.commitment, "seed": self.seed,
                "entrants_hash": self.entrants_hash, "entrants": self.entrants, "winners": list(self.winners)}


@dataclass(frozen=True)
class FinalRanking:
    """A challenge's final ranking, recorded once (its ranked list is the list named
    `snapshot_hash`), with the rewards fixed at that moment and how far their payment got."""

    challenge_id: str
    snapshot_hash: str
    participants: int                # ranked (not opted out)
    left: int                        # opted out before the end: not ranked, not rewarded
    base: int
    top_half: int
    top_tenth: int
    top_half_rank: int               # rank <= this: in the top 50% (and with points > 0)
    top_tenth_rank: int
    rewarded: int                    # participants whose reward is more than 0 points
    points: int                      # the rewards' total
    recorded_at: str
    credited: int = 0                # ranked entries processed, in snapshot order (progress)
    done_at: str | None = None       # when every reward was paid


@dataclass(frozen=True)
class DrawEntry:
    """One entry in a lucky draw: a redemption of its catalog item (written in the
    redemption's transaction, loyalty.records.Change.draw_entry)."""

    draw_id: str
    entrant_id: str                  # the redemption id: a member may hold several entries
    member_id: str
    at: str                          # ISO time of the redemption
