"""The outbox record and its provider-id alias.

  MSG#<message id> / MSG                  the record; MM_PK/MM_SK put it in the member's
                                          MemberMessages index (newest first)
  PMSG#<provider>#<provider id> / PMSG    provider id -> our message id, for receipts that
                                          carry only the provider's id (WeChat)

`rank_` mirrors the status's rank (loyalty.messaging.outbox.RANK) so that a receipt's
update can be conditional on moving forward. `lease_until` is "" until a sender claims
the message; a claim's lease is also its token (see the store's mark_sent)."""
from __future__ import annotations

from pynamodb.attributes import ListAttribute, NumberAttribute, UnicodeAttribute, UnicodeSetAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex

from ...domain import parse_time, utc_key
from ...messaging.outbox import RANK, OutboxRecord
from .base import IsoTime, JsonText, TableItem

MEMBER_MESSAGES = "MemberMessages"


def member_pk(member_id: str) -> str:
    return f"MEMBER#{member_id}"


def message_key(message_id: str) -> tuple[str, str]:
    return f"MSG#{message_id}", "MSG"


def alias_key(provider: str, provider_message_id: str) -> tuple[str, str]:
    return f"PMSG#{provider}#{provider_message_id}", "PMSG"


class MemberMessagesIndex(GlobalSecondaryIndex):
    class Meta:
        index_name = MEMBER_MESSAGES
        projection = AllProjection()

    MM_PK = UnicodeAttribute(hash_key=True)
    MM_SK = UnicodeAttribute(range_key=True)


class MessageItem(TableItem):
    message_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    kind = UnicodeAttribute()
    template = UnicodeAttribute()
    category = UnicodeAttribute()
    locale = UnicodeAttribute()
    status = UnicodeAttribute()
    rank_ = NumberAttribute()
    created_at = IsoTime()
    attempts = NumberAttribute(default=0)
    variables = JsonText()
    payloads = JsonText()
    fallbacks = JsonText()
    history = ListAttribute(default=list)       # [[status, ISO time, detail], ...]
    extra = JsonText(default=dict)
    lease_until = UnicodeAttribute(default="")   # utc_key of the claim's lease, "" before any
    claim_token = UnicodeAttribute(null=True)   # which claim call holds the lease (its retry knows itself)
    channel = UnicodeAttribute(null=True)
    to = UnicodeAttribute(null=True)
    provider = UnicodeAttribute(null=True)
    provider_message_id = UnicodeAttribute(null=True)
    not_before = IsoTime(null=True)
    superseded = UnicodeSetAttribute(null=True)  # provider ids of sends whose receipts no longer count
    MM_PK = UnicodeAttribute()
    MM_SK = UnicodeAttribute()

    member_messages = MemberMessagesIndex()


class ProviderAliasItem(TableItem):
    message_id = UnicodeAttribute()


def message_item(model: type[MessageItem], r: OutboxRecord) -> MessageItem:
    pk, sk = message_key(r.message_id)
    return model(pk, sk, message_id=r.message_id, member_id=r.member_id, kind=r.kind, template=r.template,
                 category=r.category, locale=r.locale, status=r.status, rank_=RANK[r.status],
                 created_at=r.created_at, attempts=r.attempts, variables=r.variables, payloads=r.payloads,
                 fallbacks=list(r.fallbacks), history=[list(h) for h in r.history], extra=r.extra,
                 lease_until=utc_key(r.lease_until) if r.lease_until else "",
                 channel=r.channel or None, to=r.to or None, provider=r.provider or None,
                 provider_message_id=r.provider_message_id or None, not_before=r.not_before,
                 MM_PK=member_pk(r.member_id), MM_SK=f"{utc_key(r.created_at)}#{r.message_id}")


def outbox_record(item: MessageItem) -> OutboxRecord:
    return OutboxRecord(
        message_id=item.message_id, member_id=item.member_id, kind=item.kind, template=item.template,
        category=item.category, channel=item.channel, to=item.to, locale=item.locale,
        variables=item.variables, payloads=item.payloads, fallbacks=tuple(item.fallbacks), status=item.status,
        created_at=item.created_at, history=tuple(tuple(entry) for entry in item.history or ()),
        provider=item.provider, provider_message_id=item.provider_message_id, not_before=item.not_before,
        attempts=int(item.attempts or 0), extra=item.extra if item.extra is not None else {},
        lease_until=parse_time(item.lease_until) if item.lease_until else None)
