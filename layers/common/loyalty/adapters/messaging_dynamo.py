"""Messaging records in the loyalty table, through the low-level client.

  MSG#<message id> / MSG                  the outbox record (GSI MemberMessages: MM_PK/MM_SK)
  PMSG#<provider>#<provider id> / PMSG    provider id -> our message id (receipts without our id)
  MEMBER#<id> / CAPS                      marketing messages sent today / this month
  DEFER#<UTC 15-minute slot> / <job id>   jobs waiting for their send window
  INBOUND#<provider>#<dedup key> / IN     provider pushes, stored before they are acknowledged,
                                          expiring through the table's `ttl` (see INBOUND_KEEP_*)

The member snapshot is one Query over MEMBER#<id> from CAPS to PROFILE: caps, consent
history, lots and profile come back together, sorted that way by their sort keys.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from botocore.exceptions import ClientError

from ..domain import parse_time, utc_key
from ..messaging.dispatch import CapCounters, MemberSnapshot
from ..messaging.outbox import RANK, ClaimRefused, OutboxRecord
from ..privacy import mask_phones
from ..records import Consent, Profile
from .dynamo import _lot, _n, _s, member_pk
from .table import DynamoTable

MEMBER_MESSAGES = "MemberMessages"

# How long a stored push is kept (DynamoDB TTL, the table's `ttl` attribute, epoch seconds;
# DynamoDB deletes within a day or two after). A processed push is only evidence of what
# came in, a week is enough to look into a complaint; one not (yet) processed keeps a month,
# long enough for the provider's retries or ours to process it after a fault is fixed.
INBOUND_KEEP_PROCESSED = timedelta(days=7)
INBOUND_KEEP_UNPROCESSED = timedelta(days=30)


def slot_of(moment: datetime) -> str:
    """The 15-minute UTC slot a deferred job waits in."""
    utc = moment.astimezone(timezone.utc)
    return utc.replace(minute=utc.minute - utc.minute % 15, second=0, microsecond=0).strftime("%Y-%m-%dT%H:%M")


class DynamoMessagingStore(DynamoTable):
    """The outbox, caps, deferred jobs and stored pushes (see the module docstring)."""

    # --- the member, in one read ----------------------------------------------------
    def member_snapshot(self, member_id: str) -> MemberSnapshot:
        kwargs = dict(TableName=self.table, ConsistentRead=True,
                      KeyConditionExpression="PK = :pk AND SK BETWEEN :lo AND :hi",
                      ExpressionAttributeValues={":pk": _s(member_pk(member_id)), ":lo": _s("CAPS"),
                                                 ":hi": _s("PROFILE")})
        caps, consents, lots, profile = CapCounters(), {}, [], None
        while True:
            page = self._call("query", **kwargs)
            for item in page.get("Items", []):
                sk = item["SK"]["S"]
                if sk == "CAPS":
                    caps = CapCounters(day=item["day"]["S"], day_count=int(item["day_count"]["N"]),
                                       month=item["month"]["S"], month_count=int(item["month_count"]["N"]))
                elif sk.startswith("CONSENT#"):
                    # keys sort by time (an opt-out after an opt-in at the same instant): the last wins
                    consents[item["channel"]["S"]] = Consent(member_id, item["channel"]["S"], item["status"]["S"],
                                                             item["source"]["S"], parse_time(item["at"]["S"]))
                elif sk.startswith("LOT#"):
                    lots.append(_lot(item))
                elif sk == "PROFILE" and "profile" in item:
                    document = json.loads(item["profile"]["S"])
                    document["preferred_channels"] = tuple(document.get("preferred_channels", ()))
                    profile = Profile(member_id=member_id, **document)
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return MemberSnapshot(profile=profile, consents=consents, lots=tuple(lots), caps=caps)

    # --- outbox ------------------------------------------------------------------------
    def create_message(self, record: OutboxRecord, caps: tuple[CapCounters, CapCounters] | None = None) -> bool:
        """Write a new record (False if the message id exists: a duplicate job). With
        `caps` (read, new), the member's marketing counters move in the same write."""
        items = [{"Put": {"TableName": self.table, "Item": _record_item(record),
                          "ConditionExpression": "attribute_not_exists(PK)"}}]
        if caps is not None:
            items.append(_caps_update(self.table, record.member_id, *caps))
        return self._transact(items)

    def requeue_deferred(self, record: OutboxRecord, caps: tuple[CapCounters, CapCounters] | None = None) -> bool:
        """A deferred record released into the queue (False if something else moved it)."""
        items = [{"Put": {"TableName": self.table, "Item": _record_item(record),
                          "ConditionExpression": "#s = :deferred", "ExpressionAttributeNames": {"#s": "status"},
                          "ExpressionAttributeValues": {":deferred": _s("deferred")}}}]
        if caps is not None:
            items.append(_caps_update(self.table, record.member_id, *caps))
        return self._transact(items)

    def _transact(self, items: list[dict]) -> bool:
        try:
            self.client.transact_write_items(TransactItems=items)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "TransactionCanceledException":
                return False
            raise

    def message(self, message_id: str) -> OutboxRecord | None:
        item = self._call("get_item", TableName=self.table, ConsistentRead=True,
                          Key=_msg_key(message_id)).get("Item")
        return _record(item) if item else None

    def claim(self, message_id: str, channel: str, now: datetime,
              lease_s: int = 120) -> OutboxRecord | ClaimRefused:
        """Take the message for sending on `channel`: queued (or dead-lettered, when an
        operator redrives it), or a sending lease that ran out (a sender that died). Otherwise what the record showed (sent, moved to another
        channel, being sent until `lease_until`), from the same call."""
        try:
            item = self._call(
                "update_item", TableName=self.table, Key=_msg_key(message_id),
                UpdateExpression="SET #s = :sending, rank_ = :r, lease_until = :lease, attempts = attempts + :one",
                ConditionExpression="channel = :ch AND "
                                    "(#s IN (:queued, :dead) OR (#s = :sending AND lease_until < :now))",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":sending": _s("sending"), ":queued": _s("queued"), ":ch": _s(channel),
                                           ":dead": _s("dead_lettered"),
                                           ":r": _n(RANK["sending"]), ":one": _n(1),
                                           ":lease": _s(utc_key(now + timedelta(seconds=lease_s))),
                                           ":now": _s(utc_key(now))},
                ReturnValues="ALL_NEW", ReturnValuesOnConditionCheckFailure="ALL_OLD")["Attributes"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                old = exc.response.get("Item") or {}
                lease = old.get("lease_until", {}).get("S")
                return ClaimRefused(status=old.get("status", {}).get("S", "missing"),
                                    channel=old.get("channel", {}).get("S"),
                                    lease_until=parse_time(lease) if lease else None)
            raise
        return _record(item)

    def release_claim(self, message_id: str, at: datetime, detail: str, *, last: bool = False,
                      quiet: bool = False) -> None:
        """A transient failure: back to queued for the queue's retry, the attempt in the
        history. On the last delivery the queue allows, `dead_lettered` instead: the
        message waits in the dead-letter queue, and a redrive can still send it. `quiet`:
        nothing was attempted (our own rate limit), nothing goes into the history."""
        status, note = ("dead_lettered", "dead_lettered") if last else ("queued", "retrying")
        values = {":st": _s(status), ":sending": _s("sending"), ":r": _n(0)}
        update = "SET #s = :st, rank_ = :r"
        if not quiet:
            update += ", history = list_append(history, :h)"
            values[":h"] = _history(note, at, detail)
        self._call("update_item", TableName=self.table, Key=_msg_key(message_id),
                   UpdateExpression=update, ConditionExpression="#s = :sending",
                   ExpressionAttributeNames={"#s": "status"}, ExpressionAttributeValues=values)

    def mark_sent(self, message_id: str, provider: str, provider_message_id: str, at: datetime) -> None:
        """Sent, with the provider's id, and the alias that finds us from that id."""
        entry = _history("sent", at, provider)
        self._transact([
            {"Update": {"TableName": self.table, "Key": _msg_key(message_id),
                        "UpdateExpression": "SET #s = :sent, rank_ = :r, provider = :p, provider_message_id = :pid, "
                                            "history = list_append(history, :h)",
                        "ConditionExpression": "rank_ < :r",
                        "ExpressionAttributeNames": {"#s": "status"},
                        "ExpressionAttributeValues": {":sent": _s("sent"), ":r": _n(RANK["sent"]), ":p": _s(provider),
                                                      ":pid": _s(provider_message_id), ":h": entry}}},
            {"Put": {"TableName": self.table, "Item": {"PK": _s(f"PMSG#{provider}#{provider_message_id}"),
                                                       "SK": _s("PMSG"), "message_id": _s(message_id)}}}])

    def record_status(self, message_id: str, status: str, at: datetime, detail: str = "",
                      channel: str | None = None, provider_message_id: str | None = None) -> bool:
        """Move the status forward (False: unknown message, or not forward). A receipt
        gives its `channel` and `provider_message_id`: it counts only while the message is
        on that channel, and never for a send the message has been re-sent after."""
        condition = "attribute_exists(PK) AND rank_ < :r"
        values = {":st": _s(status), ":r": _n(RANK[status]),
                  ":h": _history(status, at, detail)}
        if channel is not None:
            condition += " AND channel = :ch"
            values[":ch"] = _s(channel)
        update = "SET #s = :st, rank_ = :r, history = list_append(history, :h)"
        if provider_message_id:
            condition += " AND NOT contains(superseded, :pid)"
            values[":pid"] = _s(provider_message_id)
            # a send whose answer timed out learns its provider id from the receipt
            update += ", provider_message_id = if_not_exists(provider_message_id, :pid)"
        return self._call_if("update_item", TableName=self.table, Key=_msg_key(message_id), UpdateExpression=update,
                             ConditionExpression=condition, ExpressionAttributeNames={"#s": "status"},
                             ExpressionAttributeValues=values)

    def switch_channel(self, message_id: str, channel: str, to: str, at: datetime, detail: str,
                       fallbacks: tuple[str, ...] = (), *, after_receipt: bool = False,
                       payloads: dict | None = None, step: str = "fallback",
                       superseded: str | None = None) -> bool:
        """Queue the message again on `channel` (the next consented one, or the same one
        with new `payloads`): from `sending` when the send failed, or (`after_receipt`)
        from the failure a receipt reported (`superseded`: that send's provider id). The
        attempt count starts again; the history keeps a `step` entry."""
        updates = ("SET #s = :queued, rank_ = :zero, channel = :ch, #to = :to, fallbacks = :fb, attempts = :zero, "
                   "history = list_append(history, :h)")
        values = {":queued": _s("queued"), ":zero": _n(0), ":ch": _s(channel), ":to": _s(to),
                  ":fb": _s(json.dumps(list(fallbacks))),
                  ":h": _history(step, at, detail)}
        if payloads is not None:
            updates += ", payloads = :pl"
            values[":pl"] = _s(json.dumps(payloads, ensure_ascii=False))
        if superseded:   # the provider id of the failed send: its late receipts change nothing
            updates += " ADD superseded :sup"
            values[":sup"] = {"SS": [superseded]}
        if after_receipt:
            condition = "#s IN (:failed, :undelivered)"
            values.update({":failed": _s("failed"), ":undelivered": _s("undelivered")})
        else:
            condition = "#s = :sending"
            values[":sending"] = _s("sending")
        return self._call_if("update_item", TableName=self.table, Key=_msg_key(message_id), UpdateExpression=updates,
                             ConditionExpression=condition, ExpressionAttributeNames={"#s": "status", "#to": "to"},
                             ExpressionAttributeValues=values)

    def message_id_for(self, provider: str, provider_message_id: str) -> str | None:
        item = self._call("get_item", TableName=self.table,
                          Key={"PK": _s(f"PMSG#{provider}#{provider_message_id}"), "SK": _s("PMSG")}).get("Item")
        return item["message_id"]["S"] if item else None

    def member_messages(self, member_id: str, limit: int = 50) -> list[OutboxRecord]:
        page = self._call("query", TableName=self.table, IndexName=MEMBER_MESSAGES, ScanIndexForward=False,
                          Limit=limit, KeyConditionExpression="MM_PK = :pk",
                          ExpressionAttributeValues={":pk": _s(member_pk(member_id))})
        return [_record(item) for item in page.get("Items", [])]

    # --- deferred jobs -------------------------------------------------------------------
    def defer(self, job: dict, not_before: datetime) -> None:
        self._call("put_item", TableName=self.table,
                   Item={"PK": _s(f"DEFER#{slot_of(not_before)}"), "SK": _s(job["job_id"]),
                         "job": _s(json.dumps(job, ensure_ascii=False)), "not_before": _s(not_before.isoformat())})

    def due_deferred(self, now: datetime, lookback_slots: int) -> list[tuple[str, str, dict]]:
        """(slot, job id, job) for jobs whose slot started at or before `now`."""
        found = []
        slot = parse_time(slot_of(now) + ":00+00:00")
        for i in range(lookback_slots + 1):
            key = (slot - timedelta(minutes=15 * i)).strftime("%Y-%m-%dT%H:%M")
            page = self._call("query", TableName=self.table, KeyConditionExpression="PK = :pk",
                              ExpressionAttributeValues={":pk": _s(f"DEFER#{key}")})
            found += [(key, item["SK"]["S"], json.loads(item["job"]["S"])) for item in page.get("Items", [])]
        return found

    def remove_deferred(self, slot: str, job_id: str) -> None:
        self._call("delete_item", TableName=self.table, Key={"PK": _s(f"DEFER#{slot}"), "SK": _s(job_id)})

    # --- inbound pushes ------------------------------------------------------------------
    def store_inbound(self, provider: str, dedup_key: str, body: dict, at: datetime) -> bool:
        """Keep a provider push before acknowledging it; False for a provider's retry.

        The body keeps the sender's number whole (processing it again needs it); it is
        never logged or answered as it is: show it through privacy.mask_phones."""
        return self._call_if("put_item", TableName=self.table, ConditionExpression="attribute_not_exists(PK)",
                             Item={**_inbound_key(provider, dedup_key),
                                   "body": _s(json.dumps(body, ensure_ascii=False, default=str)),
                                   "at": _s(at.isoformat()), "ttl": _n(_epoch(at + INBOUND_KEEP_UNPROCESSED))})

    def inbound_processed(self, provider: str, dedup_key: str, at: datetime) -> bool:
        """The push was applied: it now expires INBOUND_KEEP_PROCESSED after `at`
        (False: no such push stored)."""
        return self._call_if("update_item", TableName=self.table, Key=_inbound_key(provider, dedup_key),
                             UpdateExpression="SET processed_at = :at, #ttl = :ttl REMOVE #error",
                             ConditionExpression="attribute_exists(PK)",
                             ExpressionAttributeNames={"#ttl": "ttl", "#error": "error"},
                             ExpressionAttributeValues={":at": _s(at.isoformat()),
                                                        ":ttl": _n(_epoch(at + INBOUND_KEEP_PROCESSED))})

    def inbound_failed(self, provider: str, dedup_key: str, at: datetime, error: str) -> bool:
        """Applying the push failed (the provider is answered 5xx and retries): what went
        wrong, phone numbers masked; the push keeps its longer expiry."""
        return self._call_if("update_item", TableName=self.table, Key=_inbound_key(provider, dedup_key),
                             UpdateExpression="SET #error = :error, failed_at = :at",
                             ConditionExpression="attribute_exists(PK)",
                             ExpressionAttributeNames={"#error": "error"},
                             ExpressionAttributeValues={":error": _s(mask_phones(error)[:1000]),
                                                        ":at": _s(at.isoformat())})


def _inbound_key(provider: str, dedup_key: str) -> dict:
    return {"PK": _s(f"INBOUND#{provider}#{dedup_key}"), "SK": _s("IN")}


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _msg_key(message_id: str) -> dict:
    return {"PK": _s(f"MSG#{message_id}"), "SK": _s("MSG")}


def _history(status: str, at: datetime, detail: str) -> dict:
    """One history entry, as a list to append: (status, ISO time, detail)."""
    return {"L": [{"L": [_s(status), _s(at.isoformat()), _s(detail)]}]}


def _caps_update(table: str, member_id: str, read: CapCounters, new: CapCounters) -> dict:
    if read == CapCounters():
        condition, values = "attribute_not_exists(PK)", {}
    else:
        condition = "#d = :od AND day_count = :odc AND #m = :om AND month_count = :omc"
        values = {":od": _s(read.day), ":odc": _n(read.day_count), ":om": _s(read.month), ":omc": _n(read.month_count)}
    return {"Put": {"TableName": table, "Item": {"PK": _s(member_pk(member_id)), "SK": _s("CAPS"),
                                                 "day": _s(new.day), "day_count": _n(new.day_count),
                                                 "month": _s(new.month), "month_count": _n(new.month_count)},
                    "ConditionExpression": condition,
                    **({"ExpressionAttributeNames": {"#d": "day", "#m": "month"},
                        "ExpressionAttributeValues": values} if values else {})}}


def _record_item(r: OutboxRecord) -> dict:
    item = {"PK": _s(f"MSG#{r.message_id}"), "SK": _s("MSG"), "message_id": _s(r.message_id),
            "member_id": _s(r.member_id), "kind": _s(r.kind), "template": _s(r.template), "category": _s(r.category),
            "locale": _s(r.locale), "status": _s(r.status), "rank_": _n(RANK[r.status]),
            "created_at": _s(r.created_at.isoformat()), "attempts": _n(r.attempts),
            "variables": _s(json.dumps(r.variables, ensure_ascii=False)),
            "payloads": _s(json.dumps(r.payloads, ensure_ascii=False)), "fallbacks": _s(json.dumps(r.fallbacks)),
            "history": {"L": [{"L": [_s(s), _s(at), _s(d)]} for s, at, d in r.history]},
            "extra": _s(json.dumps(r.extra, ensure_ascii=False)),
            "MM_PK": _s(member_pk(r.member_id)), "MM_SK": _s(f"{utc_key(r.created_at)}#{r.message_id}"),
            "lease_until": _s("")}
    for name in ("channel", "to", "provider", "provider_message_id"):
        if getattr(r, name):
            item[name] = _s(getattr(r, name))
    if r.not_before:
        item["not_before"] = _s(r.not_before.isoformat())
    return item


def _record(item: dict) -> OutboxRecord:
    text = lambda name: item[name]["S"] if name in item else None  # noqa: E731
    return OutboxRecord(
        message_id=item["message_id"]["S"], member_id=item["member_id"]["S"], kind=item["kind"]["S"],
        template=item["template"]["S"], category=item["category"]["S"], channel=text("channel"), to=text("to"),
        locale=item["locale"]["S"], variables=json.loads(item["variables"]["S"]),
        payloads=json.loads(item["payloads"]["S"]), fallbacks=tuple(json.loads(item["fallbacks"]["S"])),
        status=item["status"]["S"], created_at=parse_time(item["created_at"]["S"]),
        history=tuple(tuple(x["S"] for x in entry["L"]) for entry in item.get("history", {"L": []})["L"]),
        provider=text("provider"), provider_message_id=text("provider_message_id"),
        not_before=parse_time(item["not_before"]["S"]) if "not_before" in item else None,
        attempts=int(item.get("attempts", {"N": "0"})["N"]), extra=json.loads(item.get("extra", {"S": "{}"})["S"]))
