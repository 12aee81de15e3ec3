"""Consent decisions, one item each: MEMBER#<id> / CONSENT#<channel>#<at utc>#<rank>#<digest>.
The keys sort a channel's history by time, an opt-out after an opt-in at the same
instant; the messaging side's member snapshot reads these items too (same attributes)."""
from __future__ import annotations

from pynamodb.attributes import UnicodeAttribute

from ...domain import stable_id, utc_key
from ...records import Consent
from .base import IsoTime, LedgerModel, LedgerTable, member_pk, translated


class ConsentItem(LedgerModel):
    channel = UnicodeAttribute()
    status = UnicodeAttribute()     # opted_in | opted_out
    source = UnicodeAttribute()
    at = IsoTime()
    proof = UnicodeAttribute(null=True)


def consent_sk(consent: Consent) -> str:
    rank = "1" if consent.status == "opted_out" else "0"  # an opt-out wins a tie in time
    digest = stable_id(consent.status, consent.source, consent.proof or "", length=10)
    return f"CONSENT#{consent.channel}#{utc_key(consent.at)}#{rank}#{digest}"


def consent_item(model: type[ConsentItem], consent: Consent) -> ConsentItem:
    """The consent decision as its item: the same decision again is the same key."""
    return model(member_pk(consent.member_id), consent_sk(consent), channel=consent.channel, status=consent.status,
                 source=consent.source, at=consent.at, proof=consent.proof)


def consent_of(member_id: str, item: ConsentItem) -> Consent:
    return Consent(member_id=member_id, channel=item.channel, status=item.status, source=item.source, at=item.at,
                   proof=item.proof)


class DynamoConsentStore:
    """Implements `loyalty.ports.ConsentStore`."""

    def __init__(self, table: LedgerTable):
        self.Consent = table.bind(ConsentItem)

    @translated
    def add_consent(self, consent: Consent) -> None:
        """One unconditional put: the same decision again lands on the same key."""
        consent_item(self.Consent, consent).save()

    @translated
    def consent_history(self, member_id: str, channel: str) -> list[Consent]:
        found = self.Consent.query(member_pk(member_id), self.Consent.sk.startswith(f"CONSENT#{channel}#"),
                                   scan_index_forward=False)
        return [consent_of(member_id, item) for item in found]
