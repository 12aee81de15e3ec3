"""The member: its item (MEMBER#<id> / PROFILE, which holds the account and the profile)
and the contact aliases (PHONE#<E.164> / ALIAS, OPENID#<openid> / ALIAS); the
ProfileStore over them."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist
from pynamodb.indexes import GlobalSecondaryIndex, IncludeProjection

from ...domain import Account, Lot
from ...errors import ConcurrentUpdate, ContactTaken
from ...ports import CONTACTS
from ...records import Profile
from .base import (TIER_REVIEW_INDEX, Cancelled, JsonText, LedgerModel, LedgerTable, Transaction, UtcKeyTime,
                   member_pk, translated)

PROFILE = "PROFILE"
ALIAS = "ALIAS"


class TierReviewIndex(GlobalSecondaryIndex):
    """Sparse: the members whose tier the nightly review looks at on a day (TIER#<day>#<shard>,
    the engagement's tier.check_on), with what it decides on projected, so the review reads
    one index item per member and writes on condition of the version it saw."""

    class Meta:
        index_name = TIER_REVIEW_INDEX
        projection = IncludeProjection(["member_id", "version", "engagement", "balance", "debt", "last_tx"])

    tier_pk = UnicodeAttribute(hash_key=True, attr_name="TIER_PK")
    tier_sk = UnicodeAttribute(range_key=True, attr_name="TIER_SK")


class MemberItem(LedgerModel):
    """MEMBER#<id> / PROFILE: the account (written by the ledger's transactions) and the
    profile document (written by profile changes). The messaging side's member snapshot
    reads `profile` as JSON text too."""

    member_id = UnicodeAttribute(null=True)
    balance = NumberAttribute(null=True)
    debt = NumberAttribute(null=True)
    version = NumberAttribute(null=True)
    last_tx = UtcKeyTime(null=True)   # the member's newest entry: a blind write must come after it
    engagement = JsonText(null=True)  # loyalty.engagement.state.Engagement.to_document()
    profile = JsonText(null=True)
    tier_pk = UnicodeAttribute(null=True, attr_name="TIER_PK")   # only while a tier review is due
    tier_sk = UnicodeAttribute(null=True, attr_name="TIER_SK")

    tier_reviews = TierReviewIndex()


def tier_review_keys(member_id: str, engagement, shards: int) -> tuple[str, str] | None:
    """The member's place in the tier review index: the day the review looks next, by shard."""
    from ...services.expiry import shard_of
    day = engagement.tier.check_on if engagement is not None else None
    return (f"TIER#{day}#{shard_of(member_id, shards)}", member_id) if day else None


class AliasItem(LedgerModel):
    """PHONE#<E.164> / ALIAS or OPENID#<openid> / ALIAS: the one member holding that contact."""

    member_id = UnicodeAttribute()


def alias_pk(kind: str, value: str) -> str:
    return f"{kind}#{value}"


def account_of(member_id: str, item: MemberItem | None, lots: tuple[Lot, ...] = ()) -> Account:
    if item is None:
        return Account(member_id=member_id, lots=lots)
    from ...engagement.state import Engagement
    return Account(member_id=member_id, balance=int(item.balance or 0), debt=int(item.debt or 0),
                   version=int(item.version or 0), last_tx=item.last_tx, lots=lots,
                   engagement=Engagement.of_document(item.engagement))


def profile_document(profile: Profile) -> dict:
    """The profile as stored: only the fields that are set."""
    document = {"name": profile.name, "phone": profile.phone, "wechat_openid": profile.wechat_openid,
                "locale": profile.locale, "time_zone": profile.time_zone,
                "preferred_channels": list(profile.preferred_channels), "birthday": profile.birthday,
                "referrer": profile.referrer, "extra": profile.extra}
    return {k: v for k, v in document.items() if v not in (None, [], {})}


def profile_of(member_id: str, document: dict) -> Profile:
    return Profile(member_id=member_id, **{**document,
                                           "preferred_channels": tuple(document.get("preferred_channels", ()))})


class DynamoProfileStore:
    """Implements `loyalty.ports.ProfileStore`: the profile on the member's item and the
    contact aliases that find a member from an inbound message."""

    def __init__(self, table: LedgerTable):
        self.table = table
        self.Member = table.bind(MemberItem)
        self.Alias = table.bind(AliasItem)

    @translated
    def put_profile(self, profile: Profile) -> Profile:
        """The profile and the contact aliases, in one transaction.

        Each contact of the profile is claimed on condition that no other member holds it
        (else ContactTaken, and nothing is written); each contact of the profile read that
        the new one no longer has is released (deleted) on condition that it is still this
        member's; the profile is written on condition that it is still the one read, so a
        concurrent change of the same profile cannot leave an alias behind (ConcurrentUpdate:
        read again). One read of the profile, one of the aliases concerned, one write."""
        me = profile.member_id
        try:
            was = self.Member.get(member_pk(me), PROFILE, consistent_read=True, attributes_to_get=["profile"]).profile
        except DoesNotExist:
            was = None
        old = was or {}
        claims = [(kind, field, getattr(profile, field)) for kind, field in CONTACTS if getattr(profile, field)]
        releases = [(kind, field, old[field]) for kind, field in CONTACTS
                    if old.get(field) and old[field] != getattr(profile, field)]
        holders = self._alias_holders([(kind, value) for kind, _, value in claims + releases])
        taken = [field for kind, field, value in claims if holders.get((kind, value), me) != me]
        if taken:
            raise ContactTaken(taken)

        Member, Alias = self.Member, self.Alias
        tx = Transaction(self.table)
        tx.update(("profile", ""), Member(member_pk(me), PROFILE),
                  [Member.profile.set(profile_document(profile)), Member.member_id.set(me)],
                  Member.profile.does_not_exist() if was is None else Member.profile == was)
        for kind, field, value in claims:
            tx.put(("claim", field), Alias(alias_pk(kind, value), ALIAS, member_id=me),
                   Alias.pk.does_not_exist() | (Alias.member_id == me))
        for kind, field, value in releases:
            if holders.get((kind, value)) != me:
                continue  # not this member's (any more): nothing to release
            tx.delete(("release", field), Alias(alias_pk(kind, value), ALIAS), Alias.member_id == me)
        try:
            tx.commit()
        except Cancelled as cancelled:
            cancelled.reraise(_profile_error(cancelled))
        return profile

    def _alias_holders(self, contacts: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The member holding each contact that someone holds (one consistent read)."""
        if not contacts:
            return {}
        wanted = {alias_pk(kind, value): (kind, value) for kind, value in contacts}
        return {wanted[item.pk]: item.member_id
                for item in self.Alias.batch_get([(pk, ALIAS) for pk in wanted], consistent_read=True)}

    @translated
    def member_for_contact(self, kind: str, value: str) -> str | None:
        """The member a phone number (E.164) or a WeChat OpenID belongs to."""
        try:
            return self.Alias.get(alias_pk(kind, value), ALIAS).member_id
        except DoesNotExist:
            return None

    @translated
    def get_profile(self, member_id: str) -> Profile | None:
        try:
            item = self.Member.get(member_pk(member_id), PROFILE)
        except DoesNotExist:
            return None
        return profile_of(member_id, item.profile) if item.profile is not None else None


def _profile_error(cancelled: Cancelled) -> Exception:
    """A cancelled profile write, read by the reason of each item: a claim whose condition
    failed is a contact another member holds; the profile's or a release's means the
    profile moved since it was read; a conflict with another transaction or throttling is
    transient; anything else is DynamoDB's error as it is."""
    failed = cancelled.failed()
    taken = [field for kind, field in failed if kind == "claim"]
    if taken:
        return ContactTaken(taken)
    if failed:
        return ConcurrentUpdate("the profile moved since it was read")
    return cancelled.otherwise()
