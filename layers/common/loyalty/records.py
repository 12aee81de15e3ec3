"""Records that sit beside the ledger: idempotency records, order state, redemptions,
and the `Change` a service hands to the store to commit atomically."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING

from .domain import LedgerEntry, LotWrite

if TYPE_CHECKING:
    from .domain import Account
    from .engagement.challenges import ParticipantCredit
    from .engagement.outcomes import DrawEntry
    from .engagement.state import Engagement


@dataclass(frozen=True)
class IdempotencyRecord:
    """The answer given to an externally triggered write, kept to answer its retries."""

    key: str            # e.g. "order-event#<event_id>"
    body_hash: str
    response: dict
    member_id: str


@dataclass(frozen=True)
class OrderState:
    """What the ledger knows of one order: what it earned and what was taken back."""

    order_id: str
    member_id: str
    currency: str
    amount_minor: int = 0
    paid: bool = False
    paid_at: datetime | None = None
    points_earned: int = 0
    lot_id: str | None = None
    refunded_minor: int = 0
    points_taken_back: int = 0
    cancelled: bool = False
    version: int = 0
    # What hung on the order's payment (loyalty.engagement.milestones), reversed with its refund:
    counted: bool = False                          # counted in the member's paid orders (E2)
    bonuses: tuple[tuple[str, str, int, str], ...] = ()   # (rule id, member credited, points, lot id)
    rewarded: tuple[str, ...] = ()                 # once-per-member rules this order reached
    badges: tuple[str, ...] = ()
    gift: str | None = None                        # the upgrade gift's redemption id
    pending: bool = False                          # its points wait out the return window (PendingCredit)


@dataclass(frozen=True)
class PendingCredit:
    """An order's points waiting out the return window (L5): in no lot, not spendable, in
    the member's `Engagement.pending`, until the release after `release_at` credits them
    (one lot, one entry per part). A refund inside the window takes from `kept`."""

    member_id: str
    order_id: str
    release_at: datetime
    lot_id: str
    earned_at: datetime
    expires_at: datetime
    source: str
    parts: tuple[tuple[str, int, int, str], ...]   # (rule id or "order", points given, points kept, reason)
    status: str = "pending"                        # pending | released | refunded
    version: int = 0

    @property
    def points(self) -> int:
        return sum(kept for _, _, kept, _ in self.parts) if self.status == "pending" else 0


@dataclass(frozen=True)
class Redemption:
    redemption_id: str
    member_id: str
    item_id: str
    points: int
    status: str                    # completed | pending | fulfilled | cancelled
    code: str
    created_at: datetime
    request_hash: str
    allocation: tuple[tuple[str, int], ...] = ()
    history: tuple[tuple[str, str], ...] = ()   # (status, ISO time)


@dataclass(frozen=True)
class StockMove:
    item_id: str
    delta: int
    limit: int | None   # checked when delta > 0


@dataclass(frozen=True)
class Change:
    """Everything one operation writes, committed all-or-nothing.

    `expected_version` None means "no read happened" (the nightly expiry): the balance is
    adjusted in place and the lots' `expected_remaining` conditions guard the write.
    """

    member_id: str
    expected_version: int | None
    balance_delta: int = 0
    debt_delta: int = 0
    last_tx: datetime | None = None
    lots: tuple[LotWrite, ...] = ()
    entries: tuple[LedgerEntry, ...] = ()
    idempotency: IdempotencyRecord | None = None
    order: OrderState | None = None            # written with a check on its version
    redemption: Redemption | None = None
    redemption_expected_status: str | None = None   # None: must not exist yet
    stock: StockMove | None = None
    touches_account: bool = True
    # Other members' accounts written in the same transaction (a referrer's reward): each a
    # Change of the account part only (no idempotency record, order, redemption or stock),
    # with its engagement state and a review of its own (a referrer's held share), each
    # under its own check (the account's version, the review's status).
    also: tuple["Change", ...] = ()
    # An order's pending points (L5), written on condition of the version read (0: new).
    pending: PendingCredit | None = None
    # The member's new engagement state (loyalty.engagement.state), written with the account
    # under its version check: only with an expected_version (a change planned on a read).
    engagement: "Engagement | None" = None
    # A review record (points held for an operator's decision, loyalty.engagement.reviews):
    # `review_expected_status` None: must not exist yet; otherwise its status as read.
    review: "Review | None" = None
    review_expected_status: str | None = None
    # Cross-member sightings of a device or IP (risk control), each under its version check.
    sightings: tuple["Sighting", ...] = ()
    # What the change earns the member in the check-in challenges they are enrolled in
    # (loyalty.engagement.challenges): each participant item updated in the same transaction.
    participants: tuple["ParticipantCredit", ...] = ()
    # A lucky-draw entry (loyalty.engagement.lucky_draws): the redemption's entry in its draw,
    # written with the redemption (must not exist yet).
    draw_entry: "DrawEntry | None" = None
    # A blind credit (expected_version None, no read) is right only when the member owes
    # nothing (new points settle a debt first): then it is conditional on no debt too, and
    # a member with a debt answers ConcurrentUpdate (the caller reads and plans again).
    requires_no_debt: bool = False

    def without_credits(self, challenge_ids) -> "Change":
        """This change without its credits of the challenges named (the member left them:
        loyalty.errors.ParticipantGone); what the stores commit instead."""
        gone = set(challenge_ids)
        return replace(self, participants=tuple(c for c in self.participants if c.challenge_id not in gone))

    def __post_init__(self):
        if self.engagement is not None and (self.expected_version is None or not self.touches_account):
            raise ValueError("the engagement state is written only with the account it was read with")
        for other in self.also:
            if (other.idempotency, other.order, other.redemption, other.stock, other.pending, other.also) != \
                    (None,) * 5 + ((),) \
                    or not other.touches_account or other.member_id == self.member_id:
                raise ValueError("another member's part of a change is its account, lots and entries only")


@dataclass(frozen=True)
class OrderContext:
    """What one read returns for an order event."""

    account: "Account"  # without lots
    idempotency: IdempotencyRecord | None
    order: OrderState | None


@dataclass(frozen=True)
class DueLot:
    """A lot as the expiry index shows it."""

    member_id: str
    lot_id: str
    remaining: int
    expires_at: datetime


@dataclass(frozen=True)
class Profile:
    member_id: str
    name: str | None = None
    phone: str | None = None
    wechat_openid: str | None = None
    locale: str | None = None
    time_zone: str | None = None
    preferred_channels: tuple[str, ...] = ()
    birthday: str | None = None
    referrer: str | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Consent:
    """One consent decision for one channel, as given (the history is all of them)."""

    member_id: str
    channel: str
    status: str          # opted_in | opted_out
    source: str          # checkout_checkbox, keyword, api, wechat_unfollow, ...
    at: datetime
    proof: str | None = None


@dataclass(frozen=True)
class Dispute:
    """A member's objection to one ledger entry, waiting in the operators' review queue
    until resolved; an upheld dispute is settled by a new ADJUST entry."""

    dispute_id: str
    member_id: str
    entry_id: str
    reason: str
    status: str                  # open | upheld | rejected
    created_at: datetime
    outcome_note: str | None = None
    operator_id: str | None = None
    points: int = 0
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class Review:
    """Points held for an operator's decision (the review queue): an activity that needs
    review, an earning risk control flagged, a referral ring... `kind` says which. Held,
    the points are in the member's `pending` and in no lot; approved, they are credited
    as the entry (`entry_type`, `entry_reason`, `source`, `meta`) and lot (earned at
    `earned_at`) the earning would have made; rejected, they are dropped."""

    review_id: str
    member_id: str
    kind: str                      # activity | risk | referral | ...
    points: int
    reason: str
    created_at: datetime
    entry_type: str                # loyalty.domain.EntryType value of the credit on approval
    entry_reason: str
    source: str
    earned_at: datetime
    meta: dict = field(default_factory=dict)
    status: str = "open"           # open | approved | rejected
    note: str | None = None
    operator_id: str | None = None
    decided_at: datetime | None = None


@dataclass(frozen=True)
class Sighting:
    """The members seen on one device or IP address (by its keyed hash, never the raw
    value) within the risk window: (member_id, utc key of their latest activity), oldest
    first. Written with a check on `version` (0: must not exist yet)."""

    key: str                       # DEVICE#<hash> | IP#<hash>
    members: tuple[tuple[str, str], ...] = ()
    version: int = 0


@dataclass(frozen=True)
class ActivityContext:
    """What one read returns for an activity: the account (no lots), the member's time
    zone (None: the programme's), the idempotency record and the sightings asked for."""

    account: "Account"
    time_zone: str | None
    idempotency: IdempotencyRecord | None
    sightings: dict[str, Sighting]
    member_found: bool = True      # the member's item exists (a profile or an account)
