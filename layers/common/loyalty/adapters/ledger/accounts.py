"""The AccountStore: a member's points (the account on the member's item, lots, entries)
and what is committed with them (order state, idempotency records, redemptions, stock),
every service write being one TransactWriteItems."""
from __future__ import annotations

from datetime import date, datetime
from typing import Iterator

from pynamodb.exceptions import DoesNotExist

from ...domain import Account, LedgerEntry, utc_key
from ...errors import AlreadyApplied, ConcurrentUpdate, Conflict, Invalid, ParticipantGone
from ...records import Change, DueLot, IdempotencyRecord, OrderContext, PendingCredit, Redemption
from .base import Cancelled, LedgerTable, Transaction, member_pk, raw_key, raw_pages, sort_key, translated
from .entries import TX, EntryItem, entry_item, entry_of
from .lots import LotItem, add_lot_write, due_of, lot_of
from .members import PROFILE, MemberItem, account_of, tier_review_keys
from .orders import (IDEM, ORDER, IdempotencyItem, OrderItem, idempotency_item, idempotency_of, idempotency_pk,
                     order_item, order_of, order_pk)
from .pending import PendingItem, add_pending_write, due_key, pending_of, pending_sk, release_key
from .redemptions import (REDEMPTION, STOCK, RedemptionItem, StockItem, redemption_item, redemption_of,
                          redemption_sk, stock_pk)

# A transaction holds at most 100 items.
MAX_ITEMS = 100


class DynamoAccountStore:
    """Implements `loyalty.ports.AccountStore` (see the package docstring for the items)."""

    def __init__(self, table: LedgerTable, shards: int):
        self.table, self.shards = table, shards
        self.Member = table.bind(MemberItem)
        self.Lot = table.bind(LotItem)
        self.Entry = table.bind(EntryItem)
        self.Order = table.bind(OrderItem)
        self.Idempotency = table.bind(IdempotencyItem)
        self.Redemption = table.bind(RedemptionItem)
        self.Stock = table.bind(StockItem)
        self.Pending = table.bind(PendingItem)

    # --- reads ---------------------------------------------------------------------
    @translated
    def load_order_context(self, member_id: str, idempotency_key: str, order_id: str) -> OrderContext:
        """The account, the idempotency record and the order in one BatchGetItem."""
        member_key = (member_pk(member_id), PROFILE)
        idem_key = (idempotency_pk(idempotency_key), IDEM)
        order_key = (order_pk(order_id), ORDER)
        found = self.table.batch_get([(self.Member, *member_key), (self.Idempotency, *idem_key),
                                      (self.Order, *order_key)])
        idem, order = found.get(idem_key), found.get(order_key)
        return OrderContext(account=account_of(member_id, found.get(member_key)),
                            idempotency=idempotency_of(idem) if idem else None,
                            order=order_of(order) if order else None)

    @translated
    def load_account(self, member_id: str, *, with_lots: bool = True) -> Account:
        if not with_lots:
            return account_of(member_id, self._member(member_id))
        # One Query from LOT# to PROFILE: the lots (soonest expiry first) and the member's
        # item, two models in one answer, each item read by its own.
        member, lots = None, []
        results = self.Lot.query(member_pk(member_id), self.Lot.sk.between("LOT#", PROFILE), consistent_read=True)
        for page in raw_pages(results):
            for raw in page:
                if sort_key(raw) == PROFILE:
                    member = self.Member.from_raw_data(raw)
                else:
                    lots.append(lot_of(self.Lot.from_raw_data(raw)))
        return account_of(member_id, member, tuple(lots))

    def _member(self, member_id: str) -> MemberItem | None:
        try:
            return self.Member.get(member_pk(member_id), PROFILE, consistent_read=True)
        except DoesNotExist:
            return None

    @translated
    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        try:
            return idempotency_of(self.Idempotency.get(idempotency_pk(key), IDEM, consistent_read=True))
        except DoesNotExist:
            return None

    @translated
    def get_redemption(self, member_id: str, redemption_id: str) -> Redemption | None:
        try:
            return redemption_of(self.Redemption.get(member_pk(member_id), redemption_sk(redemption_id),
                                                     consistent_read=True))
        except DoesNotExist:
            return None

    @translated
    def list_redemptions(self, member_id: str) -> list[Redemption]:
        found = self.Redemption.query(member_pk(member_id), self.Redemption.sk.startswith(REDEMPTION))
        return sorted((redemption_of(item) for item in found), key=lambda r: r.created_at, reverse=True)

    @translated
    def due_lots(self, day: date, shard: int, until: datetime,
                 since: datetime | None = None) -> Iterator[list[DueLot]]:
        """The index's pages for the day and shard, read as they come (one Query each)."""
        bound = utc_key(until) + "$"
        exp_sk = self.Lot.exp_sk
        condition = exp_sk < bound if since is None else exp_sk.between(utc_key(since), bound)
        results = self.Lot.expiry_index.query(f"EXP#{day.isoformat()}#{shard}", condition)
        for page in raw_pages(results):
            yield [due_of(self.Lot.from_raw_data(raw)) for raw in page]

    @translated
    def get_pending(self, member_id: str, order_id: str) -> PendingCredit | None:
        try:
            return pending_of(self.Pending.get(member_pk(member_id), pending_sk(order_id), consistent_read=True))
        except DoesNotExist:
            return None

    @translated
    def due_pending(self, day: date, shard: int, until: datetime) -> Iterator[list[tuple[str, str]]]:
        """(member, order) of the pending credits in the index for `day` and `shard` whose
        release is at or before `until`, page by page (one Query each)."""
        results = self.Lot.expiry_index.query(release_key(day, shard), self.Lot.exp_sk < utc_key(until) + "$")
        for page in raw_pages(results):
            yield [due_key(raw["EXP_SK"]["S"]) for raw in page]

    @translated
    def tier_reviews(self, day: date, shard: int) -> Iterator[list[Account]]:
        """The members whose tier review falls on `day` in `shard`, as the index shows
        them (eventually consistent: a write planned on one checks its version)."""
        results = self.Member.tier_reviews.query(f"TIER#{day.isoformat()}#{shard}")
        for page in raw_pages(results):
            accounts = []
            for raw in page:
                item = self.Member.from_raw_data(raw)
                accounts.append(account_of(item.member_id or item.pk.removeprefix("MEMBER#"), item))
            yield accounts

    @translated
    def entries_page(self, member_id: str, cursor: str | None, limit: int) -> tuple[list[LedgerEntry], str | None]:
        start = None
        if cursor:
            if not cursor.startswith(TX):
                raise Invalid([{"field": "cursor", "problem": "not a cursor this API gave out"}])
            start = raw_key(self.Entry, member_pk(member_id), cursor)
        items = list(self.Entry.query(member_pk(member_id), self.Entry.sk.startswith(TX), scan_index_forward=False,
                                      limit=limit + 1, last_evaluated_key=start))
        page = items[:limit]
        return [entry_of(i) for i in page], (page[-1].sk if len(items) > limit else None)

    @translated
    def all_entries(self, member_id: str) -> list[LedgerEntry]:
        return [entry_of(item) for item in self.Entry.query(member_pk(member_id), self.Entry.sk.startswith(TX))]

    def find_entry(self, member_id: str, entry_id: str) -> LedgerEntry | None:
        """A member's entry by id (a read of the member's entries: disputes are rare)."""
        return next((e for e in self.all_entries(member_id) if e.entry_id == entry_id), None)

    @translated
    def member_ids(self) -> Iterator[str]:
        """A full-table Scan: for the reconcile tool, never on a request path."""
        for item in self.Member.scan(self.Member.sk == PROFILE, attributes_to_get=["PK"]):
            yield item.pk.removeprefix("MEMBER#")

    # --- the one write -------------------------------------------------------------
    @translated
    def commit(self, change: Change) -> None:
        try:
            self._commit(change)
        except ParticipantGone as gone:   # the member left a challenge the change would credit:
            self._commit(change.without_credits(gone.challenge_ids))   # the rest stands without it

    def _commit(self, change: Change) -> None:
        tx = self.transaction(change)
        if len(tx) > MAX_ITEMS:
            raise Conflict("this operation touches more than 100 records; split it")
        try:
            tx.commit()
        except Cancelled as cancelled:
            cancelled.reraise(_commit_error(cancelled, change))

    def transaction(self, change: Change) -> Transaction:
        """Everything `change` writes, as one transaction: idempotency record, order,
        redemption, stock, then the account, its lots and its entries."""
        tx = Transaction(self.table)
        if change.idempotency is not None:
            tx.put("idempotency", idempotency_item(self.Idempotency, change.idempotency),
                   self.Idempotency.pk.does_not_exist())
        if change.order is not None:
            order = self.Order
            tx.put("order", order_item(order, change.order),
                   order.pk.does_not_exist() if change.order.version == 0 else order.version == change.order.version)
        if change.redemption is not None:
            redemption = self.Redemption
            tx.put("redemption", redemption_item(redemption, change.redemption),
                   redemption.pk.does_not_exist() if change.redemption_expected_status is None
                   else redemption.status == change.redemption_expected_status)
        if change.stock is not None:
            stock, move = self.Stock, change.stock
            condition = None
            if move.delta > 0 and move.limit is not None:
                condition = stock.issued.does_not_exist() | (stock.issued <= move.limit - move.delta)
            tx.update("stock", stock(stock_pk(move.item_id), STOCK), [stock.issued.add(move.delta)], condition)
        if change.review is not None or change.sightings:
            from .reviews import add_review_writes
            add_review_writes(tx, self.table, change)
        if change.pending is not None:
            add_pending_write(tx, self.Pending, change.pending, self.shards)
        if change.draw_entry is not None:   # a lucky-draw entry (loyalty.engagement.lucky_draws)
            from .results import add_draw_entry_write
            add_draw_entry_write(tx, self.table, change.draw_entry)
        if change.touches_account:
            self._account_part(tx, change, "account")
        for other in change.also:   # another member's account (a referrer's reward), and a review of theirs
            if other.review is not None:
                from .reviews import add_review_writes
                add_review_writes(tx, self.table, other, f"review:{other.member_id}")
            self._account_part(tx, other, f"account:{other.member_id}")
        if change.participants:     # the challenges' participant items and month scores (E5)
            from .challenges import add_participant_writes
            add_participant_writes(tx, self.table, change.participants)
        return tx

    def _account_part(self, tx: Transaction, change: Change, label) -> None:
        """The member's item (under its version, or after its newest entry when no read
        happened), its lots and its entries."""
        member = self.Member
        actions = [member.balance.add(change.balance_delta), member.debt.add(change.debt_delta),
                   member.version.add(1), member.member_id.set(change.member_id)]
        if change.last_tx is not None:
            actions.append(member.last_tx.set(change.last_tx))
        if change.engagement is not None:
            document = change.engagement.to_document()
            actions.append(member.engagement.set(document) if document else member.engagement.remove())
            review = tier_review_keys(change.member_id, change.engagement, self.shards)   # E7's sparse index
            actions += ([member.tier_pk.set(review[0]), member.tier_sk.set(review[1])] if review
                        else [member.tier_pk.remove(), member.tier_sk.remove()])
        if change.expected_version is None:   # no read: only after the member's newest entry
            condition = member.last_tx.does_not_exist() | (member.last_tx < change.last_tx)
            if change.requires_no_debt:
                condition = condition & (member.debt.does_not_exist() | (member.debt == 0))
        elif change.expected_version == 0:
            condition = member.version.does_not_exist()
        else:
            condition = member.version == change.expected_version
        tx.update(label, member(member_pk(change.member_id), PROFILE), actions, condition)
        for write in change.lots:
            add_lot_write(tx, self.Lot, change.member_id, write, self.shards)
        for entry in change.entries:
            tx.put("entry", entry_item(self.Entry, member_pk(change.member_id), entry))


def _commit_error(cancelled: Cancelled, change: Change) -> Exception:
    """A cancelled commit, read by the reason of each item: the idempotency record or a
    new redemption already there is a duplicate (AlreadyApplied); the stock's limit is
    Conflict; any other condition (the account's version or last entry, a lot, the order,
    a redemption's status) moved since it was read (ConcurrentUpdate: read again);
    otherwise a conflict with another transaction or throttling is Transient."""
    failed = cancelled.failed()
    from .challenges import gone_participants
    gone = gone_participants(cancelled)
    if gone:
        return ParticipantGone(gone)
    if "idempotency" in failed:
        return AlreadyApplied(change.idempotency.key)
    if "redemption" in failed and change.redemption_expected_status is None:
        return AlreadyApplied(change.redemption.redemption_id)
    if "review" in failed and change.review_expected_status is None:
        return AlreadyApplied(change.review.review_id)
    if "draw-open" in failed:
        return Conflict(f"lucky draw {change.draw_entry.draw_id} has run: its entries are closed")
    if "draw-entry" in failed:
        return AlreadyApplied(change.draw_entry.entrant_id)
    if "stock" in failed:
        return Conflict(f"{change.stock.item_id} is out of stock")
    if failed:
        return ConcurrentUpdate(",".join(sorted(set(failed))))
    return cancelled.otherwise()
