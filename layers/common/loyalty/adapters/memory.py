"""In-memory fakes of the ledger's ports, with the same conditions as the DynamoDB
adapters (loyalty.adapters.ledger), for unit tests of services and property-based tests
of the ledger: one per port, and MemoryLedgerStore, all four in one."""
from __future__ import annotations

import threading
from dataclasses import replace
from datetime import date, datetime
from typing import Iterator

from ..domain import Account, LedgerEntry, Lot, utc_key
from ..errors import AlreadyApplied, ConcurrentUpdate, Conflict, ContactTaken, ParticipantGone
from ..ports import CONTACTS
from ..records import (ActivityContext, Change, Consent, Dispute, DueLot, IdempotencyRecord, OrderContext, OrderState,
                       PendingCredit, Profile, Redemption, Review, Sighting)
from ..services.expiry import index_day, shard_of


class MemoryAccountStore:
    """Implements `loyalty.ports.AccountStore` in memory."""

    def __init__(self, shards: int = 4):
        self.shards = shards
        self._account_lock = threading.Lock()
        self.accounts: dict[str, Account] = {}
        self.lots: dict[str, dict[str, Lot]] = {}
        self.entries: dict[str, dict[str, LedgerEntry]] = {}
        self.idempotency: dict[str, IdempotencyRecord] = {}
        self.orders: dict[str, OrderState] = {}
        self.redemptions: dict[tuple[str, str], Redemption] = {}
        self.stock: dict[str, int] = {}
        self.reviews: dict[str, Review] = {}
        self.sightings: dict[str, Sighting] = {}
        self.pendings: dict[tuple[str, str], PendingCredit] = {}
        # the check-in challenges' participants and month scores (E5), credited by commit
        self.challenge_participants: dict = {}   # (challenge_id, member_id) -> Participant
        self.challenge_scores: dict = {}         # (challenge_id, YYYY-MM, member_id) -> points
        self.draw_entries: dict[str, dict[str, object]] = {}   # lucky draw -> entrant id -> DrawEntry
        self.draws_closed: dict[str, str] = {}   # lucky draws whose run closed them (MemoryResultsStore)

    # --- reads ---
    def load_order_context(self, member_id: str, idempotency_key: str, order_id: str) -> OrderContext:
        return OrderContext(account=self.load_account(member_id, with_lots=False),
                            idempotency=self.idempotency.get(idempotency_key), order=self.orders.get(order_id))

    def load_account(self, member_id: str, *, with_lots: bool = True) -> Account:
        account = self.accounts.get(member_id, Account(member_id=member_id))
        if not with_lots:
            return account
        lots = sorted(self.lots.get(member_id, {}).values(), key=lambda lot: (utc_key(lot.expires_at), lot.lot_id))
        return replace(account, lots=tuple(lots))

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        return self.idempotency.get(key)

    def get_redemption(self, member_id: str, redemption_id: str) -> Redemption | None:
        return self.redemptions.get((member_id, redemption_id))

    def list_redemptions(self, member_id: str) -> list[Redemption]:
        found = [r for (m, _), r in self.redemptions.items() if m == member_id]
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    def due_lots(self, day: date, shard: int, until: datetime,
                 since: datetime | None = None) -> Iterator[list[DueLot]]:
        page = [DueLot(member_id, lot.lot_id, lot.remaining, lot.expires_at)
                for member_id, lots in self.lots.items() if shard_of(member_id, self.shards) == shard
                for lot in lots.values()
                if lot.remaining > 0 and index_day(lot.expires_at) == day and lot.expires_at <= until
                and (since is None or lot.expires_at >= since)]
        if page:
            yield sorted(page, key=lambda d: (utc_key(d.expires_at), d.member_id, d.lot_id))

    def get_pending(self, member_id: str, order_id: str) -> PendingCredit | None:
        return self.pendings.get((member_id, order_id))

    def due_pending(self, day: date, shard: int, until: datetime) -> Iterator[list[tuple[str, str]]]:
        page = sorted((utc_key(p.release_at), p.member_id, p.order_id) for p in self.pendings.values()
                      if p.status == "pending" and shard_of(p.member_id, self.shards) == shard
                      and index_day(p.release_at) == day and p.release_at <= until)
        if page:
            yield [(member, order) for _, member, order in page]

    def tier_reviews(self, day: date, shard: int) -> Iterator[list[Account]]:
        page = [account for member_id, account in sorted(self.accounts.items())
                if account.engagement.tier.check_on == day.isoformat() and shard_of(member_id, self.shards) == shard]
        if page:
            yield page

    def entries_page(self, member_id: str, cursor: str | None, limit: int) -> tuple[list[LedgerEntry], str | None]:
        keyed = sorted(((self._entry_key(e), e) for e in self.entries.get(member_id, {}).values()), reverse=True)
        if cursor:
            keyed = [(k, e) for k, e in keyed if k < cursor]
        page = keyed[:limit]
        return [e for _, e in page], (page[-1][0] if len(keyed) > limit else None)

    def all_entries(self, member_id: str) -> list[LedgerEntry]:
        return list(self.entries.get(member_id, {}).values())

    def member_ids(self) -> Iterator[str]:
        return iter(sorted(set(self.accounts) | set(self.lots)))

    def find_entry(self, member_id: str, entry_id: str) -> LedgerEntry | None:
        return self.entries.get(member_id, {}).get(entry_id)

    def load_activity_context(self, member_id: str, idempotency_key: str | None,
                              sighting_keys: tuple[str, ...] = ()) -> ActivityContext:
        profile = getattr(self, "profiles", {}).get(member_id)
        return ActivityContext(account=self.load_account(member_id, with_lots=False),
                               time_zone=profile.time_zone if profile else None,
                               idempotency=self.idempotency.get(idempotency_key) if idempotency_key else None,
                               sightings={k: self.sightings.get(k, Sighting(key=k)) for k in sighting_keys},
                               member_found=profile is not None or member_id in self.accounts)

    def get_review(self, review_id: str) -> Review | None:
        return self.reviews.get(review_id)

    def reviews_page(self, status: str, cursor: str | None, limit: int) -> tuple[list[Review], str | None]:
        from .ledger.reviews import decoded_cursor, encode_cursor   # the same cursors as DynamoDB's
        keyed = sorted((f"{utc_key(r.created_at)}#{r.review_id}", r) for r in self.reviews.values()
                       if r.status == status)
        if cursor:
            after = decoded_cursor(cursor)
            keyed = [(k, r) for k, r in keyed if k > after]
        page = keyed[:limit]
        return [r for _, r in page], (encode_cursor(page[-1][0]) if len(keyed) > limit else None)

    @staticmethod
    def _entry_key(entry: LedgerEntry) -> str:
        return f"{utc_key(entry.recorded_at)}#{entry.entry_id}"

    # --- the one write ---
    def commit(self, change: Change) -> None:
        with self._account_lock:
            try:
                self._check(change)
            except ParticipantGone as gone:   # as DynamoDB's adapter: committed without those credits
                change = change.without_credits(gone.challenge_ids)
                self._check(change)
            self._apply(change)

    def _check(self, change: Change) -> None:
        member = change.member_id
        if change.idempotency is not None and change.idempotency.key in self.idempotency:
            raise AlreadyApplied(change.idempotency.key)
        if change.redemption is not None:
            current = self.redemptions.get((member, change.redemption.redemption_id))
            if change.redemption_expected_status is None and current is not None:
                raise AlreadyApplied(change.redemption.redemption_id)
            if change.redemption_expected_status is not None and (
                    current is None or current.status != change.redemption_expected_status):
                raise ConcurrentUpdate("redemption moved")
        if change.pending is not None:
            current_pending = self.pendings.get((change.pending.member_id, change.pending.order_id))
            if (current_pending.version if current_pending else 0) != change.pending.version:
                raise ConcurrentUpdate("pending credit moved")
        if change.order is not None:
            current_order = self.orders.get(change.order.order_id)
            if (current_order.version if current_order else 0) != change.order.version:
                raise ConcurrentUpdate("order moved")
        for part in (change,) + change.also:   # the member's review, and another member's (Change.also)
            if part.review is None:
                continue
            current_review = self.reviews.get(part.review.review_id)
            if part.review_expected_status is None and current_review is not None:
                if part is change:
                    raise AlreadyApplied(change.review.review_id)
                raise ConcurrentUpdate("another member's review exists")
            if part.review_expected_status is not None and (
                    current_review is None or current_review.status != part.review_expected_status):
                raise ConcurrentUpdate("review moved")
        for sighting in change.sightings:
            if self.sightings.get(sighting.key, Sighting(key=sighting.key)).version != sighting.version:
                raise ConcurrentUpdate("sighting moved")
        for part in ((change,) if change.touches_account else ()) + change.also:
            member = part.member_id
            account = self.accounts.get(member, Account(member_id=member))
            if part.expected_version is not None and account.version != part.expected_version:
                raise ConcurrentUpdate("account moved")
            if part.expected_version is None and account.last_tx is not None and part.last_tx is not None \
                    and account.last_tx >= part.last_tx:
                raise ConcurrentUpdate("clock behind the member's last entry")
            if part.expected_version is None and part.requires_no_debt and account.debt:
                raise ConcurrentUpdate("a blind credit to a member with a debt")
            lots = self.lots.get(member, {})
            for write in part.lots:
                current_lot = lots.get(write.lot.lot_id)
                if write.new and current_lot is not None:
                    raise ConcurrentUpdate("lot exists")
                if write.expected_remaining is not None and (
                        current_lot is None or current_lot.remaining != write.expected_remaining):
                    raise ConcurrentUpdate("lot moved")
        if change.draw_entry is not None and change.draw_entry.draw_id in self.draws_closed:
            raise Conflict(f"lucky draw {change.draw_entry.draw_id} has run: its entries are closed")
        if change.draw_entry is not None and \
                change.draw_entry.entrant_id in self.draw_entries.get(change.draw_entry.draw_id, {}):
            raise AlreadyApplied(change.draw_entry.entrant_id)
        if change.stock is not None and change.stock.delta > 0 and change.stock.limit is not None:
            if self.stock.get(change.stock.item_id, 0) + change.stock.delta > change.stock.limit:
                raise Conflict(f"{change.stock.item_id} is out of stock")
        if change.participants:
            from .challenges_memory import check_credits
            check_credits(self, change)

    def _apply(self, change: Change) -> None:
        member = change.member_id
        if change.idempotency is not None:
            self.idempotency[change.idempotency.key] = change.idempotency
        if change.redemption is not None:
            self.redemptions[(member, change.redemption.redemption_id)] = change.redemption
        if change.order is not None:
            self.orders[change.order.order_id] = replace(change.order, version=change.order.version + 1)
        if change.stock is not None:
            self.stock[change.stock.item_id] = self.stock.get(change.stock.item_id, 0) + change.stock.delta
        for part in (change,) + change.also:
            if part.review is not None:
                self.reviews[part.review.review_id] = part.review
        for sighting in change.sightings:
            self.sightings[sighting.key] = replace(sighting, version=sighting.version + 1)
        if change.draw_entry is not None:
            self.draw_entries.setdefault(change.draw_entry.draw_id, {})[change.draw_entry.entrant_id] = change.draw_entry
        if change.pending is not None:
            self.pendings[(change.pending.member_id, change.pending.order_id)] = replace(
                change.pending, version=change.pending.version + 1)
        for part in ((change,) if change.touches_account else ()) + change.also:
            self._apply_account(part)
        if change.participants:
            from .challenges_memory import apply_credits
            apply_credits(self, change)

    def _apply_account(self, change: Change) -> None:
        member = change.member_id
        account = self.accounts.get(member, Account(member_id=member))
        self.accounts[member] = replace(account, balance=account.balance + change.balance_delta,
                                        debt=account.debt + change.debt_delta, version=account.version + 1,
                                        last_tx=change.last_tx or account.last_tx,
                                        engagement=change.engagement or account.engagement)
        lots = self.lots.setdefault(member, {})
        for write in change.lots:
            if write.new:
                lots[write.lot.lot_id] = write.lot
            else:
                lots[write.lot.lot_id] = replace(lots[write.lot.lot_id], remaining=write.lot.remaining)
        entries = self.entries.setdefault(member, {})
        for entry in change.entries:
            entries[entry.entry_id] = entry


class MemoryProfileStore:
    """Implements `loyalty.ports.ProfileStore` in memory."""

    def __init__(self):
        self._profile_lock = threading.Lock()
        self.profiles: dict[str, Profile] = {}
        self.aliases: dict[tuple[str, str], str] = {}   # (kind, contact) -> the member holding it

    def put_profile(self, profile: Profile) -> Profile:
        """As the DynamoDB adapter: claim the profile's contacts (ContactTaken when another
        member holds one, nothing changed), release the ones it no longer has."""
        me = profile.member_id
        with self._profile_lock:
            taken = [field for kind, field in CONTACTS
                     if getattr(profile, field) and self.aliases.get((kind, getattr(profile, field)), me) != me]
            if taken:
                raise ContactTaken(taken)
            old = self.profiles.get(me)
            for kind, field in CONTACTS:
                was, wanted = (getattr(old, field) if old else None), getattr(profile, field)
                if was and was != wanted and self.aliases.get((kind, was)) == me:
                    del self.aliases[(kind, was)]
                if wanted:
                    self.aliases[(kind, wanted)] = me
            self.profiles[me] = profile
        return profile

    def member_for_contact(self, kind: str, value: str) -> str | None:
        return self.aliases.get((kind, value))

    def get_profile(self, member_id: str) -> Profile | None:
        return self.profiles.get(member_id)


class MemoryConsentStore:
    """Implements `loyalty.ports.ConsentStore` in memory."""

    def __init__(self):
        self.consents: dict[tuple[str, str], set[Consent]] = {}

    def add_consent(self, consent: Consent) -> None:
        self.consents.setdefault((consent.member_id, consent.channel), set()).add(consent)

    def consent_history(self, member_id: str, channel: str) -> list[Consent]:
        found = self.consents.get((member_id, channel), set())
        return sorted(found, key=lambda c: (utc_key(c.at), c.status == "opted_out", c.source), reverse=True)


class MemoryDisputeStore:
    """Implements `loyalty.ports.DisputeStore` in memory."""

    def __init__(self):
        self._dispute_lock = threading.Lock()
        self.disputes: dict[tuple[str, str], Dispute] = {}

    def save_dispute(self, dispute: Dispute, expected_status: str | None) -> None:
        with self._dispute_lock:
            current = self.disputes.get((dispute.member_id, dispute.dispute_id))
            if expected_status is None and current is not None:
                raise AlreadyApplied(dispute.dispute_id)
            if expected_status is not None and (current is None or current.status != expected_status):
                raise ConcurrentUpdate("dispute moved")
            self.disputes[(dispute.member_id, dispute.dispute_id)] = dispute

    def get_dispute(self, member_id: str, dispute_id: str) -> Dispute | None:
        return self.disputes.get((member_id, dispute_id))

    def list_disputes(self, member_id: str) -> list[Dispute]:
        found = [d for (m, _), d in self.disputes.items() if m == member_id]
        return sorted(found, key=lambda d: d.created_at, reverse=True)

    def open_disputes(self, limit: int) -> list[Dispute]:
        found = [d for d in self.disputes.values() if d.status == "open"]
        return sorted(found, key=lambda d: (d.created_at, d.dispute_id))[:limit]


from .challenges_memory import MemoryChallengeStore  # noqa: E402 - beside the ledger's fakes


class MemoryLedgerStore(MemoryAccountStore, MemoryProfileStore, MemoryConsentStore, MemoryDisputeStore,
                        MemoryChallengeStore):
    """Implements `loyalty.ports.LedgerStore` in memory: the four fakes in one (and the
    challenges' store)."""

    def __init__(self, shards: int = 4):
        MemoryAccountStore.__init__(self, shards)
        MemoryProfileStore.__init__(self)
        MemoryConsentStore.__init__(self)
        MemoryDisputeStore.__init__(self)
        MemoryChallengeStore.__init__(self)
