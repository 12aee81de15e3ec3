"""The ledger in one DynamoDB table, through the low-level client.

Item layout (PK / SK):
  MEMBER#<id> / PROFILE                   balance, debt, version, last_tx, profile
  MEMBER#<id> / LOT#<expires utc>#<lot>   a lot; EXP_PK/EXP_SK only while points remain
  MEMBER#<id> / TX#<recorded utc>#<entry> a ledger entry (append-only)
  MEMBER#<id> / REDEMPTION#<id>           a redemption
  ORDER#<order_id> / ORDER                what an order earned and had refunded
  IDEM#<key> / IDEM                       the answer to an externally triggered write
  STOCK#<item_id> / STOCK                 how many of a catalog item were issued
  MEMBER#<id> / DISPUTE#<id>              a dispute of one entry
  PHONE#<E.164> / ALIAS, OPENID#<id> / ALIAS   the one member holding that contact
  REVIEW#disputes / <created utc>#<id>    the operators' review queue (open disputes only)
Expiry index: EXP_PK = EXP#<utc day>#<shard>, EXP_SK = <expires utc>#<member>#<lot>.

Every service write is one TransactWriteItems; the low-level client keeps the items in
call order, so a cancellation reason maps back to the item that caused it.
"""
from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any, Iterator

from botocore.exceptions import ClientError

from ..domain import Account, EntryType, LedgerEntry, Lot, parse_time, stable_id, utc_key
from ..errors import AlreadyApplied, ConcurrentUpdate, Conflict, ContactTaken, Invalid, Transient
from ..ports import CONTACTS
from ..records import Change, Consent, Dispute, DueLot, IdempotencyRecord, OrderContext, OrderState, Profile, Redemption
from ..services.expiry import index_day, shard_of
from .table import TRANSIENT_CODES, DynamoTable

EXPIRY_INDEX = "ExpiryIndex"


def _s(value: str) -> dict:
    return {"S": value}


def _n(value: int) -> dict:
    return {"N": str(value)}


def member_pk(member_id: str) -> str:
    return f"MEMBER#{member_id}"


def _alias_key(kind: str, value: str) -> dict:
    return {"PK": _s(f"{kind}#{value}"), "SK": _s("ALIAS")}


def lot_sk(lot: Lot) -> str:
    return f"LOT#{utc_key(lot.expires_at)}#{lot.lot_id}"


class DynamoLedgerStore(DynamoTable):
    """Implements `loyalty.ports.LedgerStore` over one table (see the module docstring)."""

    def __init__(self, table_name: str, shards: int, client: Any | None = None):
        super().__init__(table_name, client)
        self.shards = shards

    # --- reads ---------------------------------------------------------------------
    def load_order_context(self, member_id: str, idempotency_key: str, order_id: str) -> OrderContext:
        keys = [{"PK": _s(member_pk(member_id)), "SK": _s("PROFILE")},
                {"PK": _s(f"IDEM#{idempotency_key}"), "SK": _s("IDEM")},
                {"PK": _s(f"ORDER#{order_id}"), "SK": _s("ORDER")}]
        items = self._batch_get(keys)
        profile = items.get((member_pk(member_id), "PROFILE"))
        idem = items.get((f"IDEM#{idempotency_key}", "IDEM"))
        order = items.get((f"ORDER#{order_id}", "ORDER"))
        return OrderContext(account=_account(member_id, profile, ()),
                            idempotency=_idempotency(idem) if idem else None,
                            order=_order(order) if order else None)

    def load_account(self, member_id: str, *, with_lots: bool = True) -> Account:
        if not with_lots:
            item = self._call("get_item", TableName=self.table, ConsistentRead=True,
                              Key={"PK": _s(member_pk(member_id)), "SK": _s("PROFILE")}).get("Item")
            return _account(member_id, item, ())
        profile, lots = None, []
        for item in self._query(KeyConditionExpression="PK = :pk AND SK BETWEEN :lo AND :hi", ConsistentRead=True,
                                ExpressionAttributeValues={":pk": _s(member_pk(member_id)), ":lo": _s("LOT#"),
                                                           ":hi": _s("PROFILE")}):
            if item["SK"]["S"] == "PROFILE":
                profile = item
            else:
                lots.append(_lot(item))
        return _account(member_id, profile, tuple(lots))

    def get_idempotency(self, key: str) -> IdempotencyRecord | None:
        item = self._call("get_item", TableName=self.table, ConsistentRead=True,
                          Key={"PK": _s(f"IDEM#{key}"), "SK": _s("IDEM")}).get("Item")
        return _idempotency(item) if item else None

    def get_redemption(self, member_id: str, redemption_id: str) -> Redemption | None:
        item = self._call("get_item", TableName=self.table, ConsistentRead=True,
                          Key={"PK": _s(member_pk(member_id)), "SK": _s(f"REDEMPTION#{redemption_id}")}).get("Item")
        return _redemption(item) if item else None

    def list_redemptions(self, member_id: str) -> list[Redemption]:
        items = self._query(KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
                            ExpressionAttributeValues={":pk": _s(member_pk(member_id)), ":p": _s("REDEMPTION#")})
        return sorted((_redemption(i) for i in items), key=lambda r: r.created_at, reverse=True)

    def due_lots(self, day: date, shard: int, until: datetime,
                 since: datetime | None = None) -> Iterator[list[DueLot]]:
        values = {":pk": _s(f"EXP#{day.isoformat()}#{shard}"), ":bound": _s(utc_key(until) + "$")}
        condition = "EXP_PK = :pk AND EXP_SK < :bound"
        if since is not None:
            condition = "EXP_PK = :pk AND EXP_SK BETWEEN :from AND :bound"
            values[":from"] = _s(utc_key(since))
        kwargs = dict(TableName=self.table, IndexName=EXPIRY_INDEX, KeyConditionExpression=condition,
                      ExpressionAttributeValues=values)
        while True:
            page = self._call("query", **kwargs)
            yield [DueLot(member_id=i["member_id"]["S"], lot_id=i["lot_id"]["S"], remaining=int(i["remaining"]["N"]),
                          expires_at=parse_time(i["expires_at"]["S"])) for i in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def entries_page(self, member_id: str, cursor: str | None, limit: int) -> tuple[list[LedgerEntry], str | None]:
        kwargs = dict(TableName=self.table, ScanIndexForward=False, Limit=limit + 1,
                      KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
                      ExpressionAttributeValues={":pk": _s(member_pk(member_id)), ":p": _s("TX#")})
        if cursor:
            if not cursor.startswith("TX#"):
                raise Invalid([{"field": "cursor", "problem": "not a cursor this API gave out"}])
            kwargs["ExclusiveStartKey"] = {"PK": _s(member_pk(member_id)), "SK": _s(cursor)}
        items = self._call("query", **kwargs).get("Items", [])
        page = items[:limit]
        return [_entry(i) for i in page], (page[-1]["SK"]["S"] if len(items) > limit else None)

    def all_entries(self, member_id: str) -> list[LedgerEntry]:
        return [_entry(i) for i in self._query(KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
                                               ExpressionAttributeValues={":pk": _s(member_pk(member_id)),
                                                                          ":p": _s("TX#")})]

    def member_ids(self) -> Iterator[str]:
        """A full-table Scan: for the reconcile tool, never on a request path."""
        kwargs = dict(TableName=self.table, FilterExpression="SK = :sk", ProjectionExpression="PK",
                      ExpressionAttributeValues={":sk": _s("PROFILE")})
        while True:
            page = self._call("scan", **kwargs)
            for item in page.get("Items", []):
                yield item["PK"]["S"].removeprefix("MEMBER#")
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def put_profile(self, profile: Profile) -> Profile:
        """The profile, and the contact aliases that find the member from an inbound
        message (PHONE#<E.164>, OPENID#<openid> / ALIAS), in one transaction.

        Each contact of the profile is claimed on condition that no other member holds it
        (else ContactTaken, and nothing is written); each contact of the profile read that
        the new one no longer has is released (deleted) on condition that it is still this
        member's; the profile is written on condition that it is still the one read, so a
        concurrent change of the same profile cannot leave an alias behind (ConcurrentUpdate:
        read again). One read of the profile, one of the aliases concerned, one write."""
        me = profile.member_id
        key = {"PK": _s(member_pk(me)), "SK": _s("PROFILE")}
        item = self._call("get_item", TableName=self.table, ConsistentRead=True, Key=key,
                          ProjectionExpression="profile").get("Item") or {}
        was = item["profile"]["S"] if "profile" in item else None
        old = json.loads(was) if was else {}
        claims = [(kind, field, getattr(profile, field)) for kind, field in CONTACTS if getattr(profile, field)]
        releases = [(kind, field, old[field]) for kind, field in CONTACTS
                    if old.get(field) and old[field] != getattr(profile, field)]
        holders = self._alias_holders([(kind, value) for kind, _, value in claims + releases])
        taken = [field for kind, field, value in claims if holders.get((kind, value), me) != me]
        if taken:
            raise ContactTaken(taken)

        document = {k: v for k, v in _profile_doc(profile).items() if v not in (None, [], {})}
        values = {":p": _s(json.dumps(document, ensure_ascii=False)), ":m": _s(me)}
        if was is None:
            condition = "attribute_not_exists(profile)"
        else:
            condition = "profile = :was"
            values[":was"] = _s(was)
        items = [{"Update": {"TableName": self.table, "Key": key, "ConditionExpression": condition,
                             "UpdateExpression": "SET profile = :p, member_id = :m",
                             "ExpressionAttributeValues": values}}]
        kinds = [("profile", "")]
        for kind, field, value in claims:
            items.append({"Put": {"TableName": self.table, "Item": {**_alias_key(kind, value), "member_id": _s(me)},
                                  "ConditionExpression": "attribute_not_exists(PK) OR member_id = :m",
                                  "ExpressionAttributeValues": {":m": _s(me)}}})
            kinds.append(("claim", field))
        for kind, field, value in releases:
            if holders.get((kind, value)) != me:
                continue  # not this member's (any more): nothing to release
            items.append({"Delete": {"TableName": self.table, "Key": _alias_key(kind, value),
                                     "ConditionExpression": "member_id = :m",
                                     "ExpressionAttributeValues": {":m": _s(me)}}})
            kinds.append(("release", field))
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "TransactionCanceledException":
                _raise_for_contacts(exc, kinds)
            if code in TRANSIENT_CODES:
                raise Transient(code) from exc
            raise
        return profile

    def _alias_holders(self, contacts: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The member holding each contact that someone holds (one consistent read)."""
        if not contacts:
            return {}
        found = self._batch_get([_alias_key(kind, value) for kind, value in contacts])
        return {(kind, value): found[(f"{kind}#{value}", "ALIAS")]["member_id"]["S"]
                for kind, value in contacts if (f"{kind}#{value}", "ALIAS") in found}

    def member_for_contact(self, kind: str, value: str) -> str | None:
        """The member a phone number (E.164) or a WeChat OpenID belongs to."""
        item = self._call("get_item", TableName=self.table, Key=_alias_key(kind, value)).get("Item")
        return item["member_id"]["S"] if item else None

    def get_profile(self, member_id: str) -> Profile | None:
        item = self._call("get_item", TableName=self.table,
                          Key={"PK": _s(member_pk(member_id)), "SK": _s("PROFILE")}).get("Item")
        if not item or "profile" not in item:
            return None
        document = json.loads(item["profile"]["S"])
        document["preferred_channels"] = tuple(document.get("preferred_channels", ()))
        return Profile(member_id=member_id, **document)

    def add_consent(self, consent: Consent) -> None:
        rank = "1" if consent.status == "opted_out" else "0"  # an opt-out wins a tie in time
        digest = stable_id(consent.status, consent.source, consent.proof or "", length=10)
        item = {"PK": _s(member_pk(consent.member_id)),
                "SK": _s(f"CONSENT#{consent.channel}#{utc_key(consent.at)}#{rank}#{digest}"),
                "channel": _s(consent.channel), "status": _s(consent.status), "source": _s(consent.source),
                "at": _s(consent.at.isoformat())}
        if consent.proof:
            item["proof"] = _s(consent.proof)
        self._call("put_item", TableName=self.table, Item=item)

    def consent_history(self, member_id: str, channel: str) -> list[Consent]:
        items = self._query(KeyConditionExpression="PK = :pk AND begins_with(SK, :p)", ScanIndexForward=False,
                            ExpressionAttributeValues={":pk": _s(member_pk(member_id)), ":p": _s(f"CONSENT#{channel}#")})
        return [Consent(member_id=member_id, channel=i["channel"]["S"], status=i["status"]["S"],
                        source=i["source"]["S"], at=parse_time(i["at"]["S"]),
                        proof=i["proof"]["S"] if "proof" in i else None) for i in items]

    def find_entry(self, member_id: str, entry_id: str) -> LedgerEntry | None:
        """A member's entry by id (a read of the member's entries: disputes are rare)."""
        return next((e for e in self.all_entries(member_id) if e.entry_id == entry_id), None)

    def save_dispute(self, dispute: Dispute, expected_status: str | None) -> None:
        item = _dispute_item(dispute)
        put = {"TableName": self.table, "Item": item}
        if expected_status is None:
            put["ConditionExpression"] = "attribute_not_exists(PK)"
        else:
            put.update(ConditionExpression="#s = :s", ExpressionAttributeNames={"#s": "status"},
                       ExpressionAttributeValues={":s": _s(expected_status)})
        review_key = {"PK": _s("REVIEW#disputes"),
                      "SK": _s(f"{utc_key(dispute.created_at)}#{dispute.member_id}#{dispute.dispute_id}")}
        review = ({"Put": {"TableName": self.table, "Item": {**item, **review_key}}} if dispute.status == "open"
                  else {"Delete": {"TableName": self.table, "Key": review_key}})
        try:
            self.client.transact_write_items(TransactItems=[{"Put": put}, review])
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "TransactionCanceledException":
                raise
            if expected_status is None:
                raise AlreadyApplied(dispute.dispute_id) from exc
            raise ConcurrentUpdate("dispute moved") from exc

    def get_dispute(self, member_id: str, dispute_id: str) -> Dispute | None:
        item = self._call("get_item", TableName=self.table, ConsistentRead=True,
                          Key={"PK": _s(member_pk(member_id)), "SK": _s(f"DISPUTE#{dispute_id}")}).get("Item")
        return _dispute(item) if item else None

    def list_disputes(self, member_id: str) -> list[Dispute]:
        items = self._query(KeyConditionExpression="PK = :pk AND begins_with(SK, :p)",
                            ExpressionAttributeValues={":pk": _s(member_pk(member_id)), ":p": _s("DISPUTE#")})
        return sorted((_dispute(i) for i in items), key=lambda d: d.created_at, reverse=True)

    def open_disputes(self, limit: int) -> list[Dispute]:
        page = self._call("query", TableName=self.table, Limit=limit, KeyConditionExpression="PK = :pk",
                          ExpressionAttributeValues={":pk": _s("REVIEW#disputes")})
        return [_dispute(i) for i in page.get("Items", [])]

    # --- the one write -------------------------------------------------------------
    def commit(self, change: Change) -> None:
        items, kinds = self._transaction(change)
        if not items:
            return
        if len(items) > 100:
            raise Conflict("this operation touches more than 100 records; split it")
        try:
            self.client.transact_write_items(TransactItems=items)
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "TransactionCanceledException":
                reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
                _raise_for(reasons, kinds, change, exc)
            if code in TRANSIENT_CODES:
                raise Transient(code) from exc
            raise

    def _transaction(self, change: Change) -> tuple[list[dict], list[str]]:
        items: list[dict] = []
        kinds: list[str] = []
        pk = member_pk(change.member_id)

        def add(kind: str, item: dict) -> None:
            items.append(item)
            kinds.append(kind)

        if change.idempotency is not None:
            record = change.idempotency
            add("idempotency", {"Put": {"TableName": self.table, "ConditionExpression": "attribute_not_exists(PK)",
                                        "Item": {"PK": _s(f"IDEM#{record.key}"), "SK": _s("IDEM"),
                                                 "body_hash": _s(record.body_hash), "member_id": _s(record.member_id),
                                                 "response": _s(json.dumps(record.response, ensure_ascii=False))}}})
        if change.order is not None:
            order = change.order
            condition = ("attribute_not_exists(PK)" if order.version == 0 else "version = :v")
            put = {"TableName": self.table, "Item": _order_item(order), "ConditionExpression": condition}
            if order.version:
                put["ExpressionAttributeValues"] = {":v": _n(order.version)}
            add("order", {"Put": put})
        if change.redemption is not None:
            put = {"TableName": self.table, "Item": _redemption_item(change.redemption)}
            if change.redemption_expected_status is None:
                put["ConditionExpression"] = "attribute_not_exists(PK)"
            else:
                put["ConditionExpression"] = "#s = :s"
                put["ExpressionAttributeNames"] = {"#s": "status"}
                put["ExpressionAttributeValues"] = {":s": _s(change.redemption_expected_status)}
            add("redemption", {"Put": put})
        if change.stock is not None:
            update = {"TableName": self.table, "Key": {"PK": _s(f"STOCK#{change.stock.item_id}"), "SK": _s("STOCK")},
                      "UpdateExpression": "ADD issued :d", "ExpressionAttributeValues": {":d": _n(change.stock.delta)}}
            if change.stock.delta > 0 and change.stock.limit is not None:
                update["ConditionExpression"] = "attribute_not_exists(issued) OR issued <= :max"
                update["ExpressionAttributeValues"][":max"] = _n(change.stock.limit - change.stock.delta)
            add("stock", {"Update": update})
        if not change.touches_account:
            return items, kinds

        values = {":b": _n(change.balance_delta), ":d": _n(change.debt_delta), ":one": _n(1),
                  ":m": _s(change.member_id)}
        update = "ADD balance :b, debt :d, version :one SET member_id = :m"
        if change.last_tx is not None:
            update += ", last_tx = :t"
            values[":t"] = _s(utc_key(change.last_tx))
        if change.expected_version is None:
            condition = "attribute_not_exists(last_tx) OR last_tx < :t"
        elif change.expected_version == 0:
            condition = "attribute_not_exists(version)"
        else:
            condition = "version = :v"
            values[":v"] = _n(change.expected_version)
        add("account", {"Update": {"TableName": self.table, "Key": {"PK": _s(pk), "SK": _s("PROFILE")},
                                   "UpdateExpression": update, "ConditionExpression": condition,
                                   "ExpressionAttributeValues": values}})
        for write in change.lots:
            add("lot", self._lot_write(change.member_id, write))
        for entry in change.entries:
            add("entry", {"Put": {"TableName": self.table, "Item": _entry_item(pk, entry)}})
        return items, kinds

    def _lot_write(self, member_id: str, write) -> dict:
        lot, pk = write.lot, member_pk(member_id)
        index = {"EXP_PK": _s(f"EXP#{index_day(lot.expires_at).isoformat()}#{shard_of(member_id, self.shards)}"),
                 "EXP_SK": _s(f"{utc_key(lot.expires_at)}#{member_id}#{lot.lot_id}")}
        if write.new:
            item = {"PK": _s(pk), "SK": _s(lot_sk(lot)), "member_id": _s(member_id), "lot_id": _s(lot.lot_id),
                    "earned_at": _s(lot.earned_at.isoformat()), "expires_at": _s(lot.expires_at.isoformat()),
                    "points": _n(lot.points), "remaining": _n(lot.remaining), "source": _s(lot.source)}
            if lot.remaining > 0:
                item.update(index)
            return {"Put": {"TableName": self.table, "Item": item, "ConditionExpression": "attribute_not_exists(PK)"}}
        values = {":r": _n(lot.remaining)}
        if lot.remaining > 0:
            expression = "SET remaining = :r, EXP_PK = :epk, EXP_SK = :esk"
            values.update({":epk": index["EXP_PK"], ":esk": index["EXP_SK"]})
        else:
            expression = "SET remaining = :r REMOVE EXP_PK, EXP_SK"
        condition = "attribute_exists(PK)"
        if write.expected_remaining is not None:
            condition += " AND remaining = :was"
            values[":was"] = _n(write.expected_remaining)
        return {"Update": {"TableName": self.table, "Key": {"PK": _s(pk), "SK": _s(lot_sk(lot))},
                           "UpdateExpression": expression, "ConditionExpression": condition,
                           "ExpressionAttributeValues": values}}

    # --- plumbing ------------------------------------------------------------------
    def _query(self, **kwargs) -> Iterator[dict]:
        kwargs["TableName"] = self.table
        while True:
            page = self._call("query", **kwargs)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def _batch_get(self, keys: list[dict]) -> dict[tuple[str, str], dict]:
        found: dict[tuple[str, str], dict] = {}
        request = {self.table: {"Keys": keys, "ConsistentRead": True}}
        for _ in range(8):
            response = self._call("batch_get_item", RequestItems=request)
            for item in response.get("Responses", {}).get(self.table, []):
                found[(item["PK"]["S"], item["SK"]["S"])] = item
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
        raise Transient("BatchGetItem left keys unprocessed")


# Cancellation reasons that say "try again later", not "your condition did not hold".
_RETRY_LATER_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded",
                        "RequestLimitExceeded"}


def _raise_for_contacts(exc: ClientError, kinds: list[tuple[str, str]]) -> None:
    """Read a cancelled profile write by its reasons, item by item: a claim whose condition
    failed is a contact another member holds; the profile's or a release's means the
    profile moved since it was read; a conflict with another transaction or throttling is
    transient. Anything else is left to the caller to re-raise as it is."""
    reasons = [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
    failed = [(kind, field) for (kind, field), reason in zip(kinds, reasons) if reason == "ConditionalCheckFailed"]
    taken = [field for kind, field in failed if kind == "claim"]
    if taken:
        raise ContactTaken(taken) from exc
    if failed:
        raise ConcurrentUpdate("the profile moved since it was read") from exc
    if any(reason in _RETRY_LATER_REASONS for reason in reasons):
        raise Transient(",".join(reasons)) from exc


def _raise_for(reasons: list[str], kinds: list[str], change: Change, exc: Exception) -> None:
    for reason, kind in zip(reasons, kinds):
        if reason == "ConditionalCheckFailed":
            if kind == "idempotency" or (kind == "redemption" and change.redemption_expected_status is None):
                raise AlreadyApplied(kind) from exc
            if kind == "stock":
                raise Conflict(f"{change.stock.item_id} is out of stock") from exc
    if any(r in ("ThrottlingError", "ProvisionedThroughputExceeded") for r in reasons):
        raise Transient("throttled") from exc
    raise ConcurrentUpdate(",".join(reasons)) from exc


# --- item <-> domain -------------------------------------------------------------------

def _account(member_id: str, item: dict | None, lots: tuple[Lot, ...]) -> Account:
    if not item:
        return Account(member_id=member_id, lots=lots)
    last = item.get("last_tx", {}).get("S")
    return Account(member_id=member_id, balance=int(item.get("balance", {"N": "0"})["N"]),
                   debt=int(item.get("debt", {"N": "0"})["N"]), version=int(item.get("version", {"N": "0"})["N"]),
                   last_tx=parse_time(last) if last else None, lots=lots)


def _lot(item: dict) -> Lot:
    return Lot(lot_id=item["lot_id"]["S"], earned_at=parse_time(item["earned_at"]["S"]),
               expires_at=parse_time(item["expires_at"]["S"]), points=int(item["points"]["N"]),
               remaining=int(item["remaining"]["N"]), source=item["source"]["S"])


def _entry_item(pk: str, entry: LedgerEntry) -> dict:
    item = {"PK": _s(pk), "SK": _s(f"TX#{utc_key(entry.recorded_at)}#{entry.entry_id}"),
            "entry_id": _s(entry.entry_id), "type": _s(entry.type.value), "amount": _n(entry.amount),
            "recorded_at": _s(entry.recorded_at.isoformat()), "reason": _s(entry.reason), "source": _s(entry.source),
            "lots": _s(json.dumps(entry.lots))}
    if entry.meta:
        item["meta"] = _s(json.dumps(entry.meta, ensure_ascii=False))
    return item


def _entry(item: dict) -> LedgerEntry:
    return LedgerEntry(entry_id=item["entry_id"]["S"], type=EntryType(item["type"]["S"]), amount=int(item["amount"]["N"]),
                       recorded_at=parse_time(item["recorded_at"]["S"]), reason=item["reason"]["S"],
                       source=item["source"]["S"], lots=tuple(tuple(x) for x in json.loads(item["lots"]["S"])),
                       meta=json.loads(item["meta"]["S"]) if "meta" in item else {})


def _idempotency(item: dict) -> IdempotencyRecord:
    return IdempotencyRecord(key=item["PK"]["S"].removeprefix("IDEM#"), body_hash=item["body_hash"]["S"],
                             response=json.loads(item["response"]["S"]), member_id=item["member_id"]["S"])


def _order_item(order: OrderState) -> dict:
    item = {"PK": _s(f"ORDER#{order.order_id}"), "SK": _s("ORDER"), "order_id": _s(order.order_id),
            "member_id": _s(order.member_id), "currency": _s(order.currency), "amount_minor": _n(order.amount_minor),
            "paid": {"BOOL": order.paid}, "points_earned": _n(order.points_earned),
            "refunded_minor": _n(order.refunded_minor), "points_taken_back": _n(order.points_taken_back),
            "cancelled": {"BOOL": order.cancelled}, "version": _n(order.version + 1)}
    if order.paid_at is not None:
        item["paid_at"] = _s(order.paid_at.isoformat())
    if order.lot_id is not None:
        item["lot_id"] = _s(order.lot_id)
    return item


def _order(item: dict) -> OrderState:
    return OrderState(order_id=item["order_id"]["S"], member_id=item["member_id"]["S"], currency=item["currency"]["S"],
                      amount_minor=int(item["amount_minor"]["N"]), paid=item["paid"]["BOOL"],
                      paid_at=parse_time(item["paid_at"]["S"]) if "paid_at" in item else None,
                      points_earned=int(item["points_earned"]["N"]),
                      lot_id=item["lot_id"]["S"] if "lot_id" in item else None,
                      refunded_minor=int(item["refunded_minor"]["N"]),
                      points_taken_back=int(item["points_taken_back"]["N"]), cancelled=item["cancelled"]["BOOL"],
                      version=int(item["version"]["N"]))


def _redemption_item(r: Redemption) -> dict:
    return {"PK": _s(member_pk(r.member_id)), "SK": _s(f"REDEMPTION#{r.redemption_id}"),
            "redemption_id": _s(r.redemption_id), "member_id": _s(r.member_id), "item_id": _s(r.item_id),
            "points": _n(r.points), "status": _s(r.status), "code": _s(r.code), "created_at": _s(r.created_at.isoformat()),
            "request_hash": _s(r.request_hash), "allocation": _s(json.dumps(r.allocation)),
            "history": _s(json.dumps(r.history))}


def _redemption(item: dict) -> Redemption:
    return Redemption(redemption_id=item["redemption_id"]["S"], member_id=item["member_id"]["S"],
                      item_id=item["item_id"]["S"], points=int(item["points"]["N"]), status=item["status"]["S"],
                      code=item["code"]["S"], created_at=parse_time(item["created_at"]["S"]),
                      request_hash=item["request_hash"]["S"],
                      allocation=tuple(tuple(x) for x in json.loads(item["allocation"]["S"])),
                      history=tuple(tuple(x) for x in json.loads(item["history"]["S"])))


def _profile_doc(profile: Profile) -> dict:
    return {"name": profile.name, "phone": profile.phone, "wechat_openid": profile.wechat_openid,
            "locale": profile.locale, "time_zone": profile.time_zone,
            "preferred_channels": list(profile.preferred_channels), "birthday": profile.birthday,
            "referrer": profile.referrer, "extra": profile.extra}


def _dispute_item(d: Dispute) -> dict:
    item = {"PK": _s(member_pk(d.member_id)), "SK": _s(f"DISPUTE#{d.dispute_id}"), "dispute_id": _s(d.dispute_id),
            "member_id": _s(d.member_id), "entry_id": _s(d.entry_id), "reason": _s(d.reason), "status": _s(d.status),
            "created_at": _s(d.created_at.isoformat()), "points": _n(d.points)}
    for name in ("outcome_note", "operator_id"):
        if getattr(d, name):
            item[name] = _s(getattr(d, name))
    if d.resolved_at:
        item["resolved_at"] = _s(d.resolved_at.isoformat())
    return item


def _dispute(item: dict) -> Dispute:
    text = lambda name: item[name]["S"] if name in item else None  # noqa: E731
    return Dispute(dispute_id=item["dispute_id"]["S"], member_id=item["member_id"]["S"], entry_id=item["entry_id"]["S"],
                   reason=item["reason"]["S"], status=item["status"]["S"], created_at=parse_time(item["created_at"]["S"]),
                   outcome_note=text("outcome_note"), operator_id=text("operator_id"), points=int(item["points"]["N"]),
                   resolved_at=parse_time(item["resolved_at"]["S"]) if "resolved_at" in item else None)
