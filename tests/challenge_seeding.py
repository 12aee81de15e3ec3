"""Test and bench support: the challenge store (loyalty.adapters.ledger.challenges) with
two shortcuts for seeding, a challenge put as it is and a participant written as
enrolment and credits leave it, so that calendar tests can set up days of history at
once. Everything else is the store itself."""
from __future__ import annotations

from loyalty.adapters.ledger.challenges import participant_item
from loyalty.engagement.challenges import ChallengeRecord, Participant


class SeededChallenges:
    def __init__(self, store):
        self.store = store

    def __getattr__(self, name):
        return getattr(self.store, name)

    def put_challenge(self, record: ChallengeRecord) -> None:
        current = self.store.get_challenge(record.challenge_id)
        previous = current.spec.ends_on.isoformat() if current is not None else None
        self.store.put_challenge(record, current.version if current is not None else 0, previous)

    def put_participant(self, participant: Participant) -> None:
        participant_item(self.store.Participant, participant).save()
