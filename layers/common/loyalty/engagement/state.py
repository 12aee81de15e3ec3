"""A member's engagement state: what the rules of earning beyond orders need to know
about the member, kept on the member's item beside the account and written in the same
transaction as the credit it concerns, under the account's version check. So the daily
cap is taken in the same write as the points (E8), a milestone is credited once (E2),
and the tier moves with the earning that crosses its threshold (E7).

Each part belongs to one rule family; each reads from and writes to a plain JSON
document (only what is set is stored, so a member who never earned beyond orders has
no document at all)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace


def _compact(document: dict) -> dict:
    return {k: v for k, v in document.items() if v not in (None, 0, (), [], {}, "")}


@dataclass(frozen=True)
class DayCounter:
    """Risk control (E8): what the member earned outside orders on one member-local day,
    and when their latest activities came (for the hourly rate limit)."""

    day: str | None = None            # member-local date (YYYY-MM-DD) the counter is for
    points: int = 0                   # non-order points credited or held that day
    recent: tuple[str, ...] = ()      # utc keys of the latest activities, newest last
    tasks: tuple[str, ...] = ()       # limited-time tasks whose bonus the member had (pruned once ended)

    def today(self, day: str) -> "DayCounter":
        """The counter for `day`: a new day starts at 0 (recent activities are kept)."""
        return self if self.day == day else replace(self, day=day, points=0)


@dataclass(frozen=True)
class Progress:
    """Milestones and referrals (E2, E3): counts and the rules already rewarded."""

    orders_paid: int = 0
    rewarded: tuple[str, ...] = ()    # ids of once-per-member rules already credited
    badges: tuple[str, ...] = ()
    referrer: str | None = None       # who referred this member (fixed at join)
    gifts: int = 0                    # upgrade gifts given (one per `every_orders` paid orders)
    referred: tuple[str, ...] = ()    # utc keys of this member's referrals as referrer, last 24 h
    # A flagged referral's shares sent to review (rule id, member it belongs to, points, reason):
    # the record and the flag (milestones.referral_flag); the points are in each member's review
    # (loyalty.engagement.reviews) and `pending`, not here.
    held: tuple[tuple[str, str, int, str], ...] = ()


@dataclass(frozen=True)
class TierState:
    """Tiers (E7): points earned per member-local day over the rolling window."""

    name: str | None = None
    since: str | None = None          # ISO time of the latest tier change
    qualifying: tuple[tuple[str, int], ...] = ()   # (date, points earned that day), oldest first
    review_on: str | None = None      # the date the window may fall below the tier's threshold
    warned_on: str | None = None      # the date a downgrade warning was sent for review_on
    check_on: str | None = None       # the next day the nightly review looks at the member (indexed)
    # per-member catalog counts (E10): (item_id, redemptions not cancelled), for items with a limit
    redeemed: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class CheckinState:
    """Daily check-ins (E4): the streak as of the latest check-in."""

    last: str | None = None           # member-local date of the latest check-in
    streak: int = 0                   # consecutive days up to `last`
    days: int = 0                     # days checked in, ever
    # The challenges the member is enrolled in (E5), so a check-in or an earning credits the
    # participant without reading it: (challenge_id, starts_on, ends_on, shard).
    challenges: tuple[tuple[str, str, str, int], ...] = ()


@dataclass(frozen=True)
class Engagement:
    counter: DayCounter = field(default_factory=DayCounter)
    progress: Progress = field(default_factory=Progress)
    tier: TierState = field(default_factory=TierState)
    pending: int = 0                  # held points (review queue, return window): in no lot, not spendable
    checkin: CheckinState = field(default_factory=CheckinState)

    def to_document(self) -> dict:
        document = {"counter": _compact(asdict(self.counter)), "progress": _compact(asdict(self.progress)),
                    "tier": _compact(asdict(self.tier)), "pending": self.pending,
                    "checkin": _compact(asdict(self.checkin))}
        return _compact(document)

    @classmethod
    def of_document(cls, document: dict | None) -> "Engagement":
        document = document or {}

        def part(kind, values: dict | None):
            names = {f.name for f in fields(kind)}
            values = {k: (tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v)
                      for k, v in (values or {}).items() if k in names}
            return kind(**values)

        return cls(counter=part(DayCounter, document.get("counter")), progress=part(Progress, document.get("progress")),
                   tier=part(TierState, document.get("tier")), pending=int(document.get("pending", 0)),
                   checkin=part(CheckinState, document.get("checkin")))
