"""The ports the services need, one per aggregate of the ledger side. Each has one real
adapter (DynamoDB, loyalty.adapters.ledger) and one fake (loyalty.adapters.memory)."""
from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Iterator, Protocol

from .domain import Account, LedgerEntry
from .records import (ActivityContext, Change, Consent, Dispute, DueLot, IdempotencyRecord, OrderContext,
                      PendingCredit, Profile, Redemption, Review)

if TYPE_CHECKING:   # pydantic-backed shapes: loaded on first use, not at a handler's import
    from .engagement.challenges import BoardEntry, ChallengeRecord, Invitation, Participant
    from .engagement.outcomes import DrawEntry, DrawResult, FinalRanking

# The contacts one member at a time may hold: the kind `member_for_contact` takes, and the
# profile field that holds it.
CONTACTS = (("PHONE", "phone"), ("OPENID", "wechat_openid"))


class AccountStore(Protocol):
    """A member's points: the account (balance, debt, version), its lots and entries, and
    what is committed together with them (order state, idempotency records, redemptions,
    stock). Every change is one `commit`."""

    def load_order_context(self, member_id: str, idempotency_key: str, order_id: str) -> OrderContext:
        """Account (no lots), idempotency record and order state, in one read."""

    def load_account(self, member_id: str, *, with_lots: bool = True) -> Account:
        """The member's account; lots soonest expiry first when asked."""

    def get_idempotency(self, key: str) -> IdempotencyRecord | None: ...

    def get_redemption(self, member_id: str, redemption_id: str) -> Redemption | None: ...

    def list_redemptions(self, member_id: str) -> list[Redemption]: ...

    def commit(self, change: Change) -> None:
        """Write all of `change` or nothing. Raises AlreadyApplied when its idempotency
        record or redemption exists, ConcurrentUpdate when a checked version or lot moved,
        Conflict when stock is exhausted, Transient when DynamoDB says to try later."""

    def due_lots(self, day: date, shard: int, until: datetime,
                 since: datetime | None = None) -> Iterator[list[DueLot]]:
        """Pages of lots in the expiry index for `day` and `shard` that expire at or
        before `until` (and at or after `since`, when given)."""

    def get_pending(self, member_id: str, order_id: str) -> PendingCredit | None:
        """An order's points waiting out the return window (L5)."""

    def due_pending(self, day: date, shard: int, until: datetime) -> Iterator[list[tuple[str, str]]]:
        """Pages of (member, order) whose pending points are due for release on `day` in
        `shard`, at or before `until` (the index, not the table)."""

    def tier_reviews(self, day: date, shard: int) -> Iterator[list[Account]]:
        """Pages of the accounts (without lots) whose tier the nightly review looks at on
        `day` (their engagement's tier.check_on) in `shard`."""

    def entries_page(self, member_id: str, cursor: str | None, limit: int) -> tuple[list[LedgerEntry], str | None]:
        """Entries newest first, and the key to continue from."""

    def all_entries(self, member_id: str) -> list[LedgerEntry]: ...

    def find_entry(self, member_id: str, entry_id: str) -> LedgerEntry | None: ...

    def member_ids(self) -> Iterator[str]:
        """Every member with a ledger (operator tools only: a full read)."""


class ProfileStore(Protocol):
    """A member's profile and the contacts (phone, WeChat OpenID) one member at a time holds."""

    def put_profile(self, profile: Profile) -> Profile:
        """Replace the member's profile and keep its contact aliases in step, in one write:
        claims its phone and OpenID (ContactTaken, and nothing written, when another member
        holds one), releases those it no longer has. ConcurrentUpdate when the member's
        profile changed meanwhile (the caller retries)."""

    def get_profile(self, member_id: str) -> Profile | None: ...

    def member_for_contact(self, kind: str, value: str) -> str | None:
        """The member holding a contact: kind PHONE (E.164) or OPENID."""


class ConsentStore(Protocol):
    """Each channel's consent history."""

    def add_consent(self, consent: Consent) -> None:
        """Append to the channel's consent history (the same decision twice is stored once)."""

    def consent_history(self, member_id: str, channel: str) -> list[Consent]:
        """Newest decision first; on a tie in time, an opt-out counts as the later one."""


class DisputeStore(Protocol):
    """Members' disputes of entries and the operators' review queue of the open ones."""

    def save_dispute(self, dispute: Dispute, expected_status: str | None) -> None:
        """Write the dispute and keep the review queue in step (open disputes are in it).
        `expected_status` None: must not exist yet (else AlreadyApplied); otherwise the
        current status must match (else ConcurrentUpdate)."""

    def get_dispute(self, member_id: str, dispute_id: str) -> Dispute | None: ...

    def list_disputes(self, member_id: str) -> list[Dispute]: ...

    def open_disputes(self, limit: int) -> list[Dispute]:
        """The operators' review queue, oldest first."""


class ReviewStore(AccountStore, Protocol):
    """Held earnings waiting for an operator (the review queue) and the cross-member risk
    sightings; both are written by `AccountStore.commit` (Change.review, Change.sightings)
    in the transaction of the points they concern."""

    def load_activity_context(self, member_id: str, idempotency_key: str | None,
                              sighting_keys: tuple[str, ...] = ()) -> ActivityContext:
        """The account (no lots) with the member's time zone, the idempotency record (none
        read when the key is None) and the sightings of `sighting_keys` (empty ones for
        those never seen), in one read; `member_found` says whether the member exists."""

    def get_review(self, review_id: str) -> Review | None: ...

    def reviews_page(self, status: str, cursor: str | None, limit: int) -> tuple[list[Review], str | None]:
        """Reviews of `status` oldest first, and the cursor to continue from."""


class LedgerStore(ReviewStore, ProfileStore, ConsentStore, DisputeStore, Protocol):
    """The whole ledger side as one store, for callers that span its aggregates (the
    messaging side, the operator tools)."""


class ChallengeReader(Protocol):
    """What the calendar, the rewards and the draws read of a check-in challenge (E5).
    The store that writes challenges and participants (enrolment, check-ins) extends it."""

    def get_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        """The challenge as last put, with its draws' commitments and results."""

    def participants(self, challenge_id: str, shard: int) -> Iterator[list[Participant]]:
        """Pages of the participants in `shard` (a Query of one partition, never a Scan)."""

    def get_participant(self, challenge_id: str, member_id: str, shard: int | None = None) -> Participant | None: ...


class ChallengeStore(ChallengeReader, Protocol):
    """The challenges, their invitations and participants, and the leaderboard index (E5);
    a participant's credits land with the accounts transaction (Change.participants)."""

    def put_challenge(self, record: ChallengeRecord, expected_version: int, previous_ends_on: str | None) -> None:
        """Create (expected_version 0: must not exist) or replace the challenge as read
        (its version); the programme's listing of challenges moves with it. ConcurrentUpdate
        when it moved."""

    def active_challenges(self, on: date) -> list[ChallengeRecord]:
        """The challenges whose days include `on` (one Query of the listing, no Scan)."""

    def invitation_status(self, challenge_id: str, member_ids: list[str], shards: int) -> dict[str, str]:
        """Per member: "unknown" (no profile), "enrolled", "invited" or "new", read in
        BatchGets (profile, invitation and participant of each member)."""

    def add_invitations(self, invitations: list[Invitation]) -> None:
        """Record invitations (BatchWriteItem; writing one again changes nothing that matters)."""

    def open_invitations(self, member_id: str, on: date) -> list[Invitation]:
        """The member's invitations to challenges not ended on `on` (one Query)."""

    def enrol(self, change: Change, participant: Participant, consent: Consent) -> None:
        """One transaction: the member's account part of `change` (the engagement listing the
        challenge, under the account's version check), the participant (must not exist yet:
        AlreadyApplied) and the consent record with its proof."""

    def leave(self, change: Change, participant: Participant, consent: Consent, months: list[str]) -> None:
        """One transaction: the account part of `change` (the challenge off the member's
        enrolments, under the version check), the participant marked opted out and off the
        overall board (on condition that it is still in), its month scores of `months`
        deleted, and the opt-out consent record. ConcurrentUpdate when either moved."""

    def board_page(self, challenge_id: str, period: str, shard: int, after: BoardEntry | None,
                   limit: int) -> list[BoardEntry]:
        """The next `limit` scores of one shard's board (period "all" or YYYY-MM), highest
        first, after `after` (one Query of the leaderboard index)."""

    def count_above(self, challenge_id: str, period: str, shard: int, points: int) -> int:
        """How many scores of one shard's board are above `points` (a Select=COUNT Query)."""

    def month_points(self, challenge_id: str, member_id: str, shard: int, month: str) -> int: ...

    def profile_names(self, member_ids: list[str]) -> dict[str, str | None]:
        """The members' profile names (one BatchGet): what a leaderboard shows, masked."""


class ResultsStore(Protocol):
    """What the results of a challenge and of lucky draws keep (loyalty.engagement.outcomes):
    draw results and their entrant lists, the final ranking and its progress, lucky-draw
    seeds and entries. Every first write is conditional, so a re-run or a concurrent run
    finds what the first one recorded."""

    def put_list(self, owner: str, list_hash: str, lines: list[str]) -> None:
        """Store a list of lines under its hash (in parts of at most a few hundred KB);
        writing the same list again changes nothing."""

    def get_list(self, owner: str, list_hash: str) -> list[str] | None:
        """The list stored under `list_hash` (None: not stored)."""

    def record_draw(self, result: "DrawResult") -> "DrawResult":
        """Record a draw's result unless one is recorded: answers the one that is."""

    def get_draw(self, owner: str, draw_id: str) -> "DrawResult | None": ...

    def record_final(self, final: "FinalRanking") -> "FinalRanking":
        """Record a challenge's final ranking unless one is recorded: answers the one that is."""

    def get_final(self, challenge_id: str) -> "FinalRanking | None": ...

    def save_progress(self, challenge_id: str, credited: int, done_at: str | None) -> None:
        """Move the rewards' progress forward (never back); `done_at` once all are paid."""

    def lucky_seed(self, draw_id: str, seed: str) -> str:
        """The lucky draw's seed: `seed` if none was stored yet (stored now), else the stored one."""

    def lucky_seeds(self, draw_ids: list[str]) -> dict[str, tuple[str, str | None]]:
        """(seed, closed_at) of these lucky draws, in one read (those without a seed left out)."""

    def close_lucky_draw(self, draw_id: str, at: str) -> None:
        """Close the draw to entries (the first close stays): a redemption committed after
        this is refused (Conflict), so the entries read after it are all there will be."""

    def draw_entries(self, draw_id: str) -> Iterator[list["DrawEntry"]]:
        """Pages of a lucky draw's entries (one partition's Query, never a Scan)."""
