"""The member's partition as the dispatcher reads it: MEMBER#<id> from CAPS to PROFILE in
one Query, so caps, consent history, lots and profile come back together, sorted that way
by their sort keys (CAPS < CONSENT#... < LOT#... < PROFILE; disputes in between are
skipped).

The ledger adapter writes the consent, lot and profile items; this is a
read-only view of the attributes the snapshot needs, one model for the mixed page of a
single Query. It must follow the ledger's layout: tests/messaging_contract.py checks the
snapshot against what the ledger adapter wrote."""
from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute

from ...domain import Lot
from ...records import Consent, Profile
from .base import IsoTime, JsonText, TableItem


class MemberPartItem(TableItem):
    # CAPS
    day = UnicodeAttribute(null=True)
    day_count = NumberAttribute(null=True)
    month = UnicodeAttribute(null=True)
    month_count = NumberAttribute(null=True)
    # CONSENT#<channel>#<time>#<rank>#<digest>
    channel = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    source = UnicodeAttribute(null=True)        # a consent's source, or a lot's ("order:1001")
    at = IsoTime(null=True)
    proof = UnicodeAttribute(null=True)
    # LOT#<expires>#<lot id>
    lot_id = UnicodeAttribute(null=True)
    earned_at = IsoTime(null=True)
    expires_at = IsoTime(null=True)
    points = NumberAttribute(null=True)
    remaining = NumberAttribute(null=True)
    # PROFILE
    profile = JsonText(null=True)


def consent(member_id: str, item: MemberPartItem) -> Consent:
    return Consent(member_id, item.channel, item.status, item.source, item.at, proof=item.proof)


def lot(item: MemberPartItem) -> Lot:
    return Lot(lot_id=item.lot_id, earned_at=item.earned_at, expires_at=item.expires_at, points=int(item.points),
               remaining=int(item.remaining), source=item.source)


def profile(member_id: str, item: MemberPartItem) -> Profile:
    document = dict(item.profile)
    document["preferred_channels"] = tuple(document.get("preferred_channels", ()))
    return Profile(member_id=member_id, **document)
