"""The messaging store on the loyalty table, through PynamoDB models (one module per
aggregate: outbox, caps, deferred, inbound, member; tokens apart).

Two calls go through the boto3 client itself, each saying why where it is made, their
items still built by the models (get_update_kwargs_from_instance, ...), none by hand:
- the claim: its refusal answers what the record showed (ReturnValuesOnConditionCheckFailure
  ALL_OLD), which Model.update cannot ask for and PynamoDB's errors do not keep;
- marking sent (an update and a put in one transaction): PynamoDB's TransactWrite sends
  condition checks, deletes, puts, updates in that order, so the put would come first and
  the CancellationReasons would no longer be our items' in our order. The record-and-caps
  transaction is two puts, which it keeps in order: that one is PynamoDB's.
"""
from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.exceptions import PynamoDBException, TransactWriteError
from pynamodb.transactions import TransactWrite

from ...domain import utc_key
from ...errors import ConcurrentUpdate
from ...messaging.dispatch import CapCounters, MemberSnapshot
from ...messaging.outbox import RANK, ClaimRefused, OutboxRecord
from ...messaging.ports import DailyMessageTaken, DeferredJob, StoredPush
from ...messaging.pushes import (INBOUND_KEEP_PROCESSED, INBOUND_KEEP_UNPROCESSED, INBOUND_RETRY_AFTER, kind_of,
                                 retry_due)
from ...privacy import mask_phones
from . import caps as caps_
from . import deferred as deferred_
from . import inbound as inbound_
from . import member as member_
from .base import (CONDITION_FAILED, CONDITION_FAILED_REASON, bind, cancellation_codes, raise_if_transient,
                   response_code, transient)
from .outbox import MessageItem, ProviderAliasItem, alias_key, member_pk, message_item, message_key, outbox_record


class _Models:
    """The models bound to one table and client."""

    def __init__(self, table: str, client: Any):
        self.message = bind(MessageItem, table, client)
        self.alias = bind(ProviderAliasItem, table, client)
        self.caps = bind(caps_.CapsItem, table, client)
        self.daily = bind(caps_.DailyItem, table, client)
        self.deferred = bind(deferred_.DeferredJobItem, table, client)
        self.push = bind(inbound_.StoredPushItem, table, client)
        self.member = bind(member_.MemberPartItem, table, client)
        self.connection = self.message._get_connection().connection   # for TransactWrite: the same client


def _raise(exc: Exception) -> None:
    """Raise `exc` as our error (see base.transient)."""
    raise transient(exc)


class DynamoMessagingStore:
    """Implements loyalty.messaging.ports.MessagingStore (see the modules' docstrings for
    the items)."""

    def __init__(self, table_name: str, client: Any | None = None):
        self.table = table_name
        self._client = client
        self._models: _Models | None = None
        self._lock = threading.Lock()

    @property
    def client(self):
        if self._client is None:
            import boto3  # on first use, not at handler import
            self._client = boto3.client("dynamodb")
        return self._client

    @property
    def m(self) -> _Models:
        if self._models is None:
            with self._lock:
                if self._models is None:
                    self._models = _Models(self.table, self.client)
        return self._models

    # --- calls and their errors ------------------------------------------------------
    @staticmethod
    def _call(operation, *args, **kwargs):
        try:
            return operation(*args, **kwargs)
        except (PynamoDBException, ClientError, BotoCoreError) as exc:
            _raise(exc)

    @staticmethod
    def _if(operation, *args, **kwargs) -> bool:
        """A conditional write: True when done, False when its condition did not hold."""
        try:
            operation(*args, **kwargs)
            return True
        except (PynamoDBException, ClientError, BotoCoreError) as exc:
            if response_code(exc) == CONDITION_FAILED:
                return False
            _raise(exc)

    def _transact(self, items: list[dict]) -> list[dict] | None:
        """Write all of `items` (kwargs the models built) or nothing: None when written,
        else the cancellation reasons, one per item in order, when a condition failed.
        Throttling or a conflict with another transaction is Transient."""
        try:
            # The client: PynamoDB's TransactWrite regroups items by kind (checks, deletes,
            # puts, updates), and the reasons must map to these items in this order.
            self.client.transact_write_items(TransactItems=items)
            return None
        except (ClientError, BotoCoreError) as exc:
            codes = cancellation_codes(exc)
            if codes is None:
                _raise(exc)
            raise_if_transient(codes, exc)
            return exc.response["CancellationReasons"]

    # --- the member, in one read -------------------------------------------------------
    def member_snapshot(self, member_id: str) -> MemberSnapshot:
        part = self.m.member
        items = self._call(lambda: list(part.query(member_pk(member_id), part.SK.between("CAPS", "PROFILE"),
                                                   consistent_read=True)))
        caps, consents, lots, profile = CapCounters(), {}, [], None
        for item in items:
            if item.SK == caps_.CAPS_SK:
                caps = caps_.cap_counters(item)
            elif item.SK.startswith("CONSENT#"):
                # keys sort by time (an opt-out after an opt-in at the same instant): the last wins
                consents[item.channel] = member_.consent(member_id, item)
            elif item.SK.startswith("LOT#"):
                lots.append(member_.lot(item))
            elif item.SK == "PROFILE" and item.profile is not None:
                profile = member_.profile(member_id, item)
        return MemberSnapshot(profile=profile, consents=consents, lots=tuple(lots), caps=caps)

    # --- outbox ------------------------------------------------------------------------
    def create_message(self, record: OutboxRecord, caps: tuple[CapCounters, CapCounters] | None = None,
                       daily: str | None = None) -> bool:
        message = self.m.message
        return self._write_record(message_item(message, record), message.PK.does_not_exist(), record.member_id, caps,
                                  daily)

    def requeue_deferred(self, record: OutboxRecord, caps: tuple[CapCounters, CapCounters] | None = None,
                         daily: str | None = None) -> bool:
        message = self.m.message
        return self._write_record(message_item(message, record), message.status == "deferred", record.member_id,
                                  caps, daily)

    def _write_record(self, item: MessageItem, condition, member_id: str,
                      caps: tuple[CapCounters, CapCounters] | None, daily: str | None = None) -> bool:
        """The record, and the member's counters or their day's challenge key when given,
        in one transaction. All are puts, which PynamoDB's TransactWrite keeps in call
        order: reason 0 is the record's, 1 the counters' or the day key's."""
        try:
            with TransactWrite(connection=self.m.connection) as transaction:
                transaction.save(item, condition=condition)
                if caps is not None:
                    read, new = caps
                    transaction.save(caps_.caps_item(self.m.caps, member_id, new),
                                     condition=caps_.unchanged_since(self.m.caps, read))
                elif daily is not None:
                    transaction.save(caps_.daily_item(self.m.daily, member_id, daily, item.message_id,
                                                      item.created_at),
                                     condition=self.m.daily.PK.does_not_exist())
            return True
        except TransactWriteError as exc:
            codes = cancellation_codes(exc)
            if codes is None:
                _raise(exc)
            raise_if_transient(codes, exc)
            if codes[0] == CONDITION_FAILED_REASON:
                return False                  # the record exists (or is no longer deferred): done before
            if caps is None and daily is not None:
                raise DailyMessageTaken(f"the member's challenge message of {daily} is taken") from exc
            raise ConcurrentUpdate("the member's marketing counters moved since they were read") from exc

    def message(self, message_id: str) -> OutboxRecord | None:
        model = self.m.message
        try:
            item = self._call(model.get, *message_key(message_id), consistent_read=True)
        except model.DoesNotExist:
            return None
        return outbox_record(item)

    def claim(self, message_id: str, channel: str, now: datetime,
              lease_s: int = 120) -> OutboxRecord | ClaimRefused:
        m = self.m.message
        # The token names this call: when its answer is lost after DynamoDB applied it, the
        # SDK's retry fails the condition on this very lease, and the old item shows the token.
        token = uuid.uuid4().hex
        update = m(*message_key(message_id)).get_update_kwargs_from_instance(
            actions=[m.status.set("sending"), m.rank_.set(RANK["sending"]), m.claim_token.set(token),
                     m.lease_until.set(utc_key(now + timedelta(seconds=lease_s))), m.attempts.set(m.attempts + 1)],
            condition=(m.channel == channel) & (m.status.is_in("queued", "dead_lettered")
                                                | ((m.status == "sending") & (m.lease_until < utc_key(now)))),
            return_values_on_condition_failure="ALL_OLD")
        try:
            # The client: a refusal answers what the record showed (ALL_OLD), which Model.update cannot.
            answer = self.client.update_item(ReturnValues="ALL_NEW", **update)
        except (ClientError, BotoCoreError) as exc:
            if response_code(exc) != CONDITION_FAILED:
                _raise(exc)
            old = exc.response.get("Item")
            if not old:
                return ClaimRefused(status="missing", channel=None)
            item = m.from_raw_data(old)
            shown = outbox_record(item)
            if item.status == "sending" and item.claim_token == token:
                return shown                  # our own claim, applied before its answer was lost
            return ClaimRefused(status=shown.status, channel=shown.channel, lease_until=shown.lease_until)
        return outbox_record(m.from_raw_data(answer["Attributes"]))

    def release_claim(self, message_id: str, at: datetime, detail: str, *, last: bool = False,
                      quiet: bool = False) -> bool:
        m = self.m.message
        status, note = ("dead_lettered", "dead_lettered") if last else ("queued", "retrying")
        actions = [m.status.set(status), m.rank_.set(RANK[status])]
        if not quiet:
            actions.append(m.history.set(m.history.append([[note, at.isoformat(), detail]])))
        return self._if(m(*message_key(message_id)).update, actions=actions, condition=m.status == "sending")

    def mark_sent(self, message_id: str, provider: str, provider_message_id: str, at: datetime, *,
                  channel: str, lease_until: datetime | None) -> bool:
        m = self.m.message
        key = message_key(message_id)
        alias = self.m.alias(*alias_key(provider, provider_message_id), message_id=message_id)
        put_alias = {"Put": alias.get_save_kwargs_from_instance()}
        sent = m(*key).get_update_kwargs_from_instance(
            actions=[m.status.set("sent"), m.rank_.set(RANK["sent"]), m.provider.set(provider),
                     m.provider_message_id.set(provider_message_id),
                     m.history.set(m.history.append([["sent", at.isoformat(), provider]]))],
            # still under this sender's claim: the claim's lease is its token
            condition=(m.status == "sending") & (m.channel == channel)
                      & (m.lease_until == (utc_key(lease_until) if lease_until else "")),
            return_values_on_condition_failure="ALL_OLD")
        reasons = self._transact([{"Update": sent}, put_alias])
        if reasons is None:
            return True
        old = reasons[0].get("Item")
        if not old:
            return False   # no such message: nothing to find from the provider's id
        # A receipt came first, a failure receipt re-routed the message, or another sender
        # took it over: the send happened all the same. Keep its id and alias, not its status.
        moved = m.from_raw_data(old).status
        late = m(*key).get_update_kwargs_from_instance(
            actions=[m.provider.set(m.provider | provider),
                     m.provider_message_id.set(m.provider_message_id | provider_message_id),
                     m.history.set(m.history.append([["sent", at.isoformat(), f"{provider} (after {moved})"]]))],
            condition=m.PK.exists())
        self._transact([{"Update": late}, put_alias])
        return False

    def record_status(self, message_id: str, status: str, at: datetime, detail: str = "",
                      channel: str | None = None, provider_message_id: str | None = None) -> bool:
        m = self.m.message
        condition = m.PK.exists() & (m.rank_ < RANK[status])
        actions = [m.status.set(status), m.rank_.set(RANK[status]),
                   m.history.set(m.history.append([[status, at.isoformat(), detail]]))]
        if channel is not None:
            condition &= m.channel == channel
        if provider_message_id:
            condition &= ~m.superseded.contains(provider_message_id)
            # a send whose answer timed out learns its provider id from the receipt
            actions.append(m.provider_message_id.set(m.provider_message_id | provider_message_id))
        return self._if(m(*message_key(message_id)).update, actions=actions, condition=condition)

    def switch_channel(self, message_id: str, channel: str, to: str, at: datetime, detail: str,
                       fallbacks: tuple[str, ...] = (), *, after_receipt: bool = False,
                       payloads: dict | None = None, step: str = "fallback",
                       superseded: str | None = None) -> bool:
        m = self.m.message
        actions = [m.status.set("queued"), m.rank_.set(RANK["queued"]), m.channel.set(channel), m.to.set(to),
                   m.fallbacks.set(list(fallbacks)), m.attempts.set(0),
                   m.history.set(m.history.append([[step, at.isoformat(), detail]]))]
        if payloads is not None:
            actions.append(m.payloads.set(payloads))
        if superseded:   # the provider id of the failed send: its late receipts change nothing
            actions.append(m.superseded.add({superseded}))
        condition = m.status.is_in("failed", "undelivered") if after_receipt else m.status == "sending"
        return self._if(m(*message_key(message_id)).update, actions=actions, condition=condition)

    def message_id_for(self, provider: str, provider_message_id: str) -> str | None:
        model = self.m.alias
        try:
            return self._call(model.get, *alias_key(provider, provider_message_id)).message_id
        except model.DoesNotExist:
            return None

    def member_messages(self, member_id: str, limit: int = 50) -> list[OutboxRecord]:
        index = self.m.message.member_messages
        items = self._call(lambda: list(index.query(member_pk(member_id), scan_index_forward=False, limit=limit)))
        return [outbox_record(item) for item in items]

    # --- deferred jobs -------------------------------------------------------------------
    def defer(self, job: dict, not_before: datetime) -> None:
        item = self.m.deferred(*deferred_.deferred_key(job["job_id"], not_before), job=job, not_before=not_before)
        self._call(item.save)

    def due_deferred(self, now: datetime, limit: int = 500) -> list[DeferredJob]:
        model, found = self.m.deferred, []
        for shard in range(deferred_.DEFERRED_SHARDS):
            if len(found) >= limit:
                break
            items = self._call(lambda: list(model.query(f"DEFER#{shard}", model.SK < deferred_.due_until(now),
                                                        limit=limit - len(found))))
            found += [DeferredJob(job_id=i.job["job_id"], job=i.job, not_before=i.not_before, key=(i.PK, i.SK))
                      for i in items]
        for pk in deferred_.legacy_slots(now):   # jobs deferred by the previous layout (see deferred.py)
            if len(found) >= limit:
                break
            items = self._call(lambda: list(model.query(pk, limit=limit - len(found))))
            found += [DeferredJob(job_id=i.SK, job=i.job, not_before=i.not_before, key=(i.PK, i.SK))
                      for i in items if i.not_before <= now]
        return found

    def remove_deferred(self, deferred: DeferredJob) -> None:
        self._call(self.m.deferred(*deferred.key).delete)

    # --- inbound pushes ------------------------------------------------------------------
    def store_inbound(self, provider: str, dedup_key: str, body: dict, at: datetime, kind: str | None = None) -> bool:
        """The body keeps the sender's number whole (applying it again needs it); it is
        never logged or answered as it is: show it through privacy.mask_phones."""
        push = self.m.push
        pending_pk, pending_sk = inbound_.pending_key(provider, dedup_key, at + INBOUND_RETRY_AFTER)
        item = push(*inbound_.inbound_key(provider, dedup_key), provider=provider, dedup_key=dedup_key,
                    kind=kind or kind_of(body), body=body, at=at,
                    ttl=at + INBOUND_KEEP_UNPROCESSED, attempts=0,
                    PENDING_PK=pending_pk, PENDING_SK=pending_sk)
        return self._if(item.save, condition=push.PK.does_not_exist())

    def inbound_processed(self, provider: str, dedup_key: str, at: datetime) -> bool:
        push = self.m.push
        return self._if(push(*inbound_.inbound_key(provider, dedup_key)).update,
                        actions=[push.processed_at.set(at), push.ttl.set(at + INBOUND_KEEP_PROCESSED),
                                 push.error.remove(), push.PENDING_PK.remove(), push.PENDING_SK.remove()],
                        condition=push.PK.exists())

    def inbound_failed(self, provider: str, dedup_key: str, at: datetime, error: str) -> bool:
        """Applying the push failed (the provider is answered 5xx and may retry; the sweep
        applies it when due): what went wrong, phone numbers masked, one more attempt,
        and the next try backed off. The push keeps its longer expiry."""
        push = self.m.push
        item = push(*inbound_.inbound_key(provider, dedup_key))
        noted = self._if(item.update, actions=[push.error.set(mask_phones(error)[:1000]), push.failed_at.set(at),
                                               push.attempts.set((push.attempts | 0) + 1)],
                         condition=push.PK.exists())
        if not noted:
            return False
        # the attempts are known now (the update answered the whole item): the next due time
        pending_pk, pending_sk = inbound_.pending_key(provider, dedup_key,
                                                      retry_due(at, int(item.attempts or 1)))
        self._if(item.update, actions=[push.PENDING_PK.set(pending_pk), push.PENDING_SK.set(pending_sk)],
                 condition=push.processed_at.does_not_exist())
        return True

    def due_inbound(self, now: datetime, limit: int = 100) -> list[StoredPush]:
        push, found = self.m.push, []
        for shard in range(inbound_.PENDING_SHARDS):
            if len(found) >= limit:
                break
            items = self._call(lambda: list(push.pending.query(
                f"PENDING#{shard}", push.PENDING_SK < deferred_.due_until(now), limit=limit - len(found))))
            found += [inbound_.stored_push(item) for item in items]
        return sorted(found, key=lambda p: p.at)
