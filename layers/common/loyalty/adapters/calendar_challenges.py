"""PROVISIONAL: the challenge store as the calendar reads it, on the loyalty table, for
the calendar's own integration, end-to-end and bench runs while CORE's challenge store
(challenges, enrolment, participants) is built on another branch. At merge, CORE's store
replaces this module (wiring.challenge_store), keeping the calendar's calls:
`active_challenges(on)`, `participants(challenge_id, shard)` (a Query of one shard's
partition, never a Scan), `get_participant`, `get_challenge` and `mark_nudged`.

Items (provisional):
- CHALLENGES / <ends_on>#<challenge_id>: a challenge's definition; `active_challenges`
  is one Query of this partition from the day on (the challenges not over yet);
- CHALLENGE#<id>#P#<shard> / MEMBER#<member_id>: a participant (its fields as a JSON
  document) and `nudged_on` beside it, which the calendar sets.
`put_challenge` and `put_participant` are for tests and tools only (CORE's enrolment
writes participants)."""
from __future__ import annotations

from dataclasses import asdict, replace
from datetime import date
from functools import lru_cache
from typing import Any, Iterator

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.exceptions import PynamoDBException

from ..engagement.challenges import ChallengeRecord, ChallengeSpec, Participant, shard_of
from .messaging.base import JsonText, TableItem, bind, response_code, transient

CHALLENGES_PK = "CHALLENGES"
PAGE = 200


class ChallengeItem(TableItem):
    challenge_id = UnicodeAttribute()
    spec = JsonText()
    shards = NumberAttribute()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()


class ParticipantItem(TableItem):
    participant = JsonText()
    nudged_on = UnicodeAttribute(null=True)


def participants_pk(challenge_id: str, shard: int) -> str:
    return f"CHALLENGE#{challenge_id}#P#{shard}"


def _record(item: ChallengeItem) -> ChallengeRecord:
    return ChallengeRecord(item.challenge_id, ChallengeSpec.model_validate(item.spec), (), item.created_at,
                           item.updated_at, shards=int(item.shards))


def _participant(item: ParticipantItem) -> Participant:
    fields = dict(item.participant)
    if item.nudged_on is not None:
        fields["nudged_on"] = item.nudged_on
    return Participant(**fields)


class DynamoCalendarChallenges:
    """The calendar's view of the challenge store (see the module's docstring)."""

    def __init__(self, table_name: str, client: Any | None = None):
        self.table = table_name
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import boto3
            self._client = boto3.client("dynamodb")
        return self._client

    @property
    def _challenge(self):
        return _bound(ChallengeItem, self.table, self.client)

    @property
    def _participant(self):
        return _bound(ParticipantItem, self.table, self.client)

    @staticmethod
    def _call(operation):
        try:
            return operation()
        except (PynamoDBException, ClientError, BotoCoreError) as exc:
            raise transient(exc) from exc

    def active_challenges(self, on: date) -> list[ChallengeRecord]:
        model = self._challenge
        items = self._call(lambda: list(model.query(CHALLENGES_PK, model.SK >= on.isoformat())))
        return [r for r in map(_record, items) if r.spec.starts_on <= on <= r.spec.ends_on]

    def get_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        model = self._challenge
        items = self._call(lambda: list(model.query(CHALLENGES_PK, model.SK >= "")))
        return next((_record(i) for i in items if i.challenge_id == challenge_id), None)

    def participants(self, challenge_id: str, shard: int) -> Iterator[list[Participant]]:
        model = self._participant
        results = model.query(participants_pk(challenge_id, shard), model.SK.startswith("MEMBER#"), page_size=PAGE,
                              consistent_read=False)
        page: list[Participant] = []
        try:
            for item in results:
                page.append(_participant(item))
                if len(page) == PAGE:
                    yield page
                    page = []
        except (PynamoDBException, ClientError, BotoCoreError) as exc:
            raise transient(exc) from exc
        yield page

    def get_participant(self, challenge_id: str, member_id: str, shards: int | None = None) -> Participant | None:
        from ..engagement.challenges import DEFAULT_SHARDS
        model = self._participant
        key = (participants_pk(challenge_id, shard_of(member_id, shards or DEFAULT_SHARDS)), f"MEMBER#{member_id}")
        try:
            return _participant(self._call(lambda: model.get(*key, consistent_read=True)))
        except model.DoesNotExist:
            return None

    def mark_nudged(self, challenge_id: str, member_id: str, shard: int, on: date) -> None:
        model = self._participant
        item = model(participants_pk(challenge_id, shard), f"MEMBER#{member_id}")
        try:
            item.update(actions=[model.nudged_on.set(on.isoformat())], condition=model.PK.exists())
        except (PynamoDBException, ClientError, BotoCoreError) as exc:
            if response_code(exc) == "ConditionalCheckFailedException":
                return          # left meanwhile: nothing to mark
            raise transient(exc) from exc

    # --- tests and tools only ---------------------------------------------------------
    def put_challenge(self, record: ChallengeRecord) -> None:
        spec = record.spec
        self._call(lambda: self._challenge(CHALLENGES_PK, f"{spec.ends_on.isoformat()}#{record.challenge_id}",
                                           challenge_id=record.challenge_id, spec=spec.model_dump(mode="json"),
                                           shards=record.shards, created_at=record.created_at,
                                           updated_at=record.updated_at).save())

    def put_participant(self, participant: Participant) -> None:
        fields = asdict(replace(participant, nudged_on=None))
        self._call(lambda: self._participant(participants_pk(participant.challenge_id, participant.shard),
                                             f"MEMBER#{participant.member_id}", participant=fields,
                                             nudged_on=participant.nudged_on).save())


@lru_cache(maxsize=32)
def _bound(model, table: str, client):
    return bind(model, table, client)

