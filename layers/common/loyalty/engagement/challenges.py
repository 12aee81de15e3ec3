"""The check-in challenge (E4, E5): its definition as an operator puts it
(`PUT /challenges/{challenge_id}`), and a participant as the calendar, the leaderboard,
the rewards and the draws read it.

Shapes only; the rules that move them are in the modules beside this one: check-ins
(`daily_checkins`), the challenge's set-up and invitations (`challenge_setup`), enrolment
(`enrolment`), the leaderboards (`standings`), the calendar's messages
(`challenge_calendar`, `calendar_texts`), the final ranking, rewards, draws and stats
(`challenge_results`), lucky-draw catalog items (`lucky_draws`)."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .calendar_texts import ChallengeCalendar

ID_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
# Participants are spread over this many partitions, so that no partition of the table
# (or of an index over it) takes all of a challenge's writes; every fan-out reads each.
DEFAULT_SHARDS = 8


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DrawSpec(_Strict):
    """A surprise draw among the participants who checked in on `on`."""

    draw_id: str = Field(pattern=ID_PATTERN)
    on: date
    winners: int = Field(ge=1, le=1000)


class ChallengeRewards(_Strict):
    """Paid once at the end, as entries naming the challenge: every participant gets
    `base`; the top half by points gets `top_half` more, the top tenth `top_tenth` more
    again (ranks fixed by the final snapshot, ties sharing a rank)."""

    base: int = Field(100, ge=0, le=1_000_000)
    top_half: int = Field(200, ge=0, le=1_000_000)
    top_tenth: int = Field(500, ge=0, le=1_000_000)


class ChallengeSpec(_Strict):
    """The body of `PUT /challenges/{challenge_id}` (fields the contract leaves open have
    defaults; an unknown field is refused)."""

    name: str = Field(min_length=1, max_length=120)
    starts_on: date
    days: int = Field(90, ge=1, le=366)
    draws: tuple[DrawSpec, ...] = ()
    rewards: ChallengeRewards = ChallengeRewards()
    silent_days: int = Field(3, ge=1, le=30, description="days without a check-in before the caring nudge")
    calendar: ChallengeCalendar = ChallengeCalendar()

    @property
    def ends_on(self) -> date:
        """The challenge's last day (member-local)."""
        return self.starts_on + timedelta(days=self.days - 1)

    def day_number(self, local_day: date) -> int | None:
        """1 on the first day, `days` on the last; None outside the challenge."""
        n = (local_day - self.starts_on).days + 1
        return n if 1 <= n <= self.days else None

    @model_validator(mode="after")
    def _draws(self) -> "ChallengeSpec":
        ids = [d.draw_id for d in self.draws]
        if len(ids) != len(set(ids)):
            raise ValueError("@draws draw ids are unique within a challenge")
        outside = [d.draw_id for d in self.draws if self.day_number(d.on) is None]
        if outside:
            raise ValueError(f"@draws {', '.join(outside)} are not on a day of the challenge")
        beyond = sorted(day for day in self.calendar.task_days if day > self.days)
        if beyond:
            raise ValueError(f"calendar.task_days: days {', '.join(map(str, beyond))} are after the challenge's "
                             f"last day ({self.days})")
        return self


@dataclass(frozen=True)
class Participant:
    """One enrolled member of one challenge, as its shard holds them."""

    challenge_id: str
    member_id: str
    enrolled_at: str                 # ISO time of the agreement
    source: str                      # keyword:<channel>, api, ...
    proof: str | None = None         # the inbound message id, or what the caller gave
    points: int = 0                  # points earned in the challenge (check-ins, credited activities)
    streak: int = 0
    days_checked_in: int = 0
    last_checkin: str | None = None  # member-local date of the latest check-in
    nudged_on: str | None = None     # the date of the caring nudge since the latest check-in
    opted_out: bool = False          # left the challenge: no message of it any more
    checked: str = ""                # day n of the challenge checked in: checked[n - 1] == "1"
    shard: int = 0
    orders: int = 0                  # paid orders during the challenge (repurchase conversion)
    redemptions: int = 0             # redemptions during the challenge (redemption rate)


@dataclass(frozen=True)
class ParticipantCredit:
    """What one write earns a participant (loyalty.records.Change.participants): the
    participant item's points (overall and the month's) move by `points`; a check-in also
    sets its streak, counts the day and marks day `day` in `checked`."""

    challenge_id: str
    member_id: str
    shard: int
    points: int
    month: str                       # YYYY-MM (member-local) the points count in
    day: int | None = None           # the challenge day checked in (None: not a check-in)
    local_date: str | None = None    # that day's member-local date
    streak: int | None = None
    orders: int = 0                  # a paid order during the challenge (a refund does not take it back)
    redemptions: int = 0             # a redemption during the challenge


@dataclass(frozen=True)
class DrawRecord:
    """One draw of a challenge: the seed is secret until the draw has run."""

    draw_id: str
    on: date
    winners: int
    seed: str
    commitment: str


@dataclass(frozen=True)
class ChallengeRecord:
    """A challenge as stored: the operator's definition, and each draw's seed (made when
    the draw was first put, kept when the challenge is updated)."""

    challenge_id: str
    spec: ChallengeSpec
    draws: tuple[DrawRecord, ...]
    created_at: str
    updated_at: str
    version: int = 1
    shards: int = DEFAULT_SHARDS


def shard_of(member_id: str, shards: int = DEFAULT_SHARDS) -> int:
    """The participant partition a member is in (stable across runs and machines)."""
    return int.from_bytes(hashlib.sha256(member_id.encode("utf-8")).digest()[:4], "big") % shards


# --- enrolment and standings (the challenge store's shapes) ---------------------------------

@dataclass(frozen=True)
class Invitation:
    """An operator's invitation of one member to one challenge (kept on the member, so a
    reply 同意 finds the member's open invitations in one Query)."""

    challenge_id: str
    member_id: str
    invited_at: str                  # ISO time
    ends_on: str                     # the challenge's last day when invited (an ended one is not open)
    operator_id: str | None = None


@dataclass(frozen=True)
class BoardEntry:
    """One participant's score on a leaderboard (overall or one month), as the index holds it."""

    member_id: str
    points: int


# The leaderboard index sorts by one number: points * TIE_SCALE + the member's tie-break,
# so that a credit moves it with an ADD (no read of the score first) and a tie has one
# stable order (by the tie-break, a hash of the member id) in every shard and every store.
TIE_SCALE = 10**12


def tie_break(member_id: str) -> int:
    """The member's place within a tie (0 <= t < TIE_SCALE; the larger first)."""
    return int.from_bytes(hashlib.sha256(b"tie#" + member_id.encode("utf-8")).digest()[:8], "big") % TIE_SCALE


def score_key(points: int, member_id: str) -> int:
    """The number the leaderboard index sorts a score by (descending)."""
    return points * TIE_SCALE + tie_break(member_id)


def points_of_key(key: int) -> int:
    return key // TIE_SCALE
