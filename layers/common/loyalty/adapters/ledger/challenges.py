"""The check-in challenges (E5): the challenge and the programme's listing of them, the
invitations, the participants (sharded) and their month scores, and the leaderboard
index; the ChallengeStore over them.

Items (PK / SK):
  CHALLENGE#<id> / CHALLENGE                the challenge as put, with its draws' seeds
  CHALLENGES / <ends_on>#<id>               the same, in the programme's listing (active_challenges)
  MEMBER#<mid> / INVITE#<id>                an invitation (the member's open ones: one Query)
  CHALLENGE#<id>#P#<shard> / MEMBER#<mid>   a participant (participants(): one partition per shard)
  CHALLENGE#<id>#P#<shard> / SCORE#<YYYY-MM>#<mid>   the participant's points in one month
Leaderboard index (sparse, keys only): LB_PK = LB#<id>#<all|YYYY-MM>#<shard>, LB_SK =
points * TIE_SCALE + the member's tie-break (a number, so a credit moves it with ADD)."""
from __future__ import annotations

from datetime import date
from typing import Iterator

from pynamodb.attributes import BooleanAttribute, NumberAttribute, NumberSetAttribute, UnicodeAttribute
from pynamodb.exceptions import DoesNotExist, UpdateError
from pynamodb.indexes import GlobalSecondaryIndex, KeysOnlyProjection

from ...engagement.challenges import (TIE_SCALE, BoardEntry, ChallengeRecord, ChallengeSpec, DrawRecord, Invitation,
                                      Participant, ParticipantCredit, points_of_key, score_key, shard_of, tie_break)
from ...errors import AlreadyApplied, ConcurrentUpdate
from ...records import Change, Consent
from .base import (LEADERBOARD_INDEX, Cancelled, JsonText, LedgerModel, LedgerTable, Transaction, member_pk,
                   raw_pages, translated)
from .consents import ConsentItem, consent_item

CHALLENGE = "CHALLENGE"
LISTING = "CHALLENGES"
INVITE = "INVITE#"


def challenge_pk(challenge_id: str) -> str:
    return f"CHALLENGE#{challenge_id}"


def shard_pk(challenge_id: str, shard: int) -> str:
    return f"CHALLENGE#{challenge_id}#P#{shard}"


def board_pk(challenge_id: str, period: str, shard: int) -> str:
    return f"LB#{challenge_id}#{period}#{shard}"


def participant_sk(member_id: str) -> str:
    return f"MEMBER#{member_id}"


def score_sk(month: str, member_id: str) -> str:
    return f"SCORE#{month}#{member_id}"


def member_of_sk(sk: str) -> str:
    """The member of a participant's or a month score's sort key."""
    return sk.removeprefix("MEMBER#") if sk.startswith("MEMBER#") else sk[len("SCORE#YYYY-MM#"):]


class ChallengeItem(LedgerModel):
    challenge_id = UnicodeAttribute()
    spec = JsonText()
    draws = JsonText()
    created_at = UnicodeAttribute()
    updated_at = UnicodeAttribute()
    version = NumberAttribute()
    shards = NumberAttribute()


class InvitationItem(LedgerModel):
    challenge_id = UnicodeAttribute()
    invited_at = UnicodeAttribute()
    ends_on = UnicodeAttribute()
    operator_id = UnicodeAttribute(null=True)


class LeaderboardIndex(GlobalSecondaryIndex):
    """Sparse, keys only: the member is in the base table's SK, the points in LB_SK."""

    class Meta:
        index_name = LEADERBOARD_INDEX
        projection = KeysOnlyProjection()

    lb_pk = UnicodeAttribute(hash_key=True, attr_name="LB_PK")
    lb_sk = NumberAttribute(range_key=True, attr_name="LB_SK")


class ParticipantItem(LedgerModel):
    challenge_id = UnicodeAttribute()
    member_id = UnicodeAttribute()
    enrolled_at = UnicodeAttribute()
    source = UnicodeAttribute()
    proof = UnicodeAttribute(null=True)
    points = NumberAttribute(default=0)
    streak = NumberAttribute(null=True)
    days = NumberSetAttribute(null=True)            # the challenge days checked in (a set: a day counts once)
    last_checkin = UnicodeAttribute(null=True)
    nudged_on = UnicodeAttribute(null=True)
    opted_out = BooleanAttribute(null=True)
    shard = NumberAttribute()
    orders = NumberAttribute(null=True)
    redemptions = NumberAttribute(null=True)
    lb_pk = UnicodeAttribute(null=True, attr_name="LB_PK")
    lb_sk = NumberAttribute(null=True, attr_name="LB_SK")

    board = LeaderboardIndex()


class ScoreItem(LedgerModel):
    """A participant's points in one month (its own item, so the month's board is its own
    index partition); made by the first credit of the month."""

    member_id = UnicodeAttribute(null=True)
    month = UnicodeAttribute(null=True)
    points = NumberAttribute(null=True)
    lb_pk = UnicodeAttribute(null=True, attr_name="LB_PK")
    lb_sk = NumberAttribute(null=True, attr_name="LB_SK")


# --- mapping ------------------------------------------------------------------------------

def challenge_item(model: type[ChallengeItem], pk: str, sk: str, record: ChallengeRecord) -> ChallengeItem:
    draws = [{"draw_id": d.draw_id, "on": d.on.isoformat(), "winners": d.winners, "seed": d.seed,
              "commitment": d.commitment} for d in record.draws]
    return model(pk, sk, challenge_id=record.challenge_id, spec=record.spec.model_dump(mode="json"), draws=draws,
                 created_at=record.created_at, updated_at=record.updated_at, version=record.version,
                 shards=record.shards)


def challenge_of(item: ChallengeItem) -> ChallengeRecord:
    draws = tuple(DrawRecord(draw_id=d["draw_id"], on=date.fromisoformat(d["on"]), winners=int(d["winners"]),
                             seed=d["seed"], commitment=d["commitment"]) for d in item.draws)
    return ChallengeRecord(challenge_id=item.challenge_id, spec=ChallengeSpec.model_validate(item.spec), draws=draws,
                           created_at=item.created_at, updated_at=item.updated_at, version=int(item.version),
                           shards=int(item.shards))


def checked_string(days) -> str:
    """The `checked` bitmap of a set of challenge days."""
    days = {int(d) for d in (days or ())}
    return "".join("1" if n in days else "0" for n in range(1, max(days) + 1)) if days else ""


def participant_of(item: ParticipantItem) -> Participant:
    return Participant(challenge_id=item.challenge_id, member_id=item.member_id, enrolled_at=item.enrolled_at,
                       source=item.source, proof=item.proof, points=int(item.points or 0),
                       streak=int(item.streak or 0), days_checked_in=len(item.days or ()),
                       last_checkin=item.last_checkin, nudged_on=item.nudged_on, opted_out=bool(item.opted_out),
                       checked=checked_string(item.days), shard=int(item.shard), orders=int(item.orders or 0),
                       redemptions=int(item.redemptions or 0))


def participant_item(model: type[ParticipantItem], participant: Participant) -> ParticipantItem:
    p = participant
    days = {n + 1 for n, c in enumerate(p.checked) if c == "1"}
    return model(shard_pk(p.challenge_id, p.shard), participant_sk(p.member_id), challenge_id=p.challenge_id,
                 member_id=p.member_id, enrolled_at=p.enrolled_at, source=p.source, proof=p.proof, points=p.points,
                 streak=p.streak or None, days=days or None, last_checkin=p.last_checkin, nudged_on=p.nudged_on,
                 opted_out=p.opted_out or None, shard=p.shard, orders=p.orders or None,
                 redemptions=p.redemptions or None,
                 lb_pk=None if p.opted_out else board_pk(p.challenge_id, "all", p.shard),
                 lb_sk=None if p.opted_out else score_key(p.points, p.member_id))


def add_participant_writes(tx: Transaction, table: LedgerTable, credits: tuple[ParticipantCredit, ...]) -> None:
    """Each credit: one update of the participant item (on condition that it exists; its
    label ("participant", challenge_id) tells a cancellation apart) and, when it carries
    points, one of the month's score item, in the commit's transaction."""
    participant, score = table.bind(ParticipantItem), table.bind(ScoreItem)
    by_participant: dict[tuple[str, str], list[ParticipantCredit]] = {}
    for credit in credits:   # one item is written once in a transaction: a participant's credits merged
        by_participant.setdefault((credit.challenge_id, credit.member_id), []).append(credit)
    for same in by_participant.values():
        credit = same[-1]
        points = sum(c.points for c in same)
        days = {c.day for c in same if c.day is not None}
        checkins = [c for c in same if c.day is not None]
        actions = []
        if points:
            actions += [participant.points.add(points),
                        participant.lb_sk.set((participant.lb_sk | tie_break(credit.member_id)) + points * TIE_SCALE)]
        if days:
            actions.append(participant.days.add(days))
            if checkins[-1].streak is not None:
                actions.append(participant.streak.set(checkins[-1].streak))
            if checkins[-1].local_date is not None:
                actions.append(participant.last_checkin.set(checkins[-1].local_date))
        orders, redemptions = sum(c.orders for c in same), sum(c.redemptions for c in same)
        if orders:
            actions.append(participant.orders.add(orders))
        if redemptions:
            actions.append(participant.redemptions.add(redemptions))
        if not actions:
            continue
        pk = shard_pk(credit.challenge_id, credit.shard)
        tx.update(("participant", credit.challenge_id), participant(pk, participant_sk(credit.member_id)), actions,
                  participant.pk.exists())
        months: dict[str, int] = {}
        for c in same:
            months[c.month] = months.get(c.month, 0) + c.points
        for month, month_points in months.items():
            if month_points:
                tx.update(("score", credit.challenge_id), score(pk, score_sk(month, credit.member_id)),
                          [score.member_id.set(credit.member_id), score.month.set(month),
                           score.points.add(month_points),
                           score.lb_pk.set(board_pk(credit.challenge_id, month, credit.shard)),
                           score.lb_sk.set((score.lb_sk | tie_break(credit.member_id)) + month_points * TIE_SCALE)])


def gone_participants(cancelled: Cancelled) -> list[str]:
    """The challenges whose participant item a cancelled commit did not find."""
    return sorted({label[1] for label in cancelled.failed() if isinstance(label, tuple) and label[0] == "participant"})


# --- the store ----------------------------------------------------------------------------

class DynamoChallengeStore:
    """Implements `loyalty.ports.ChallengeStore` (mixed into DynamoLedgerStore: enrolment
    writes the account part of a Change, built by DynamoAccountStore.transaction)."""

    def __init__(self, table: LedgerTable):
        self.table = table
        self.Challenge = table.bind(ChallengeItem)
        self.Invitation = table.bind(InvitationItem)
        self.Participant = table.bind(ParticipantItem)
        self.Score = table.bind(ScoreItem)

    # --- challenges ---
    @translated
    def get_challenge(self, challenge_id: str) -> ChallengeRecord | None:
        try:
            return challenge_of(self.Challenge.get(challenge_pk(challenge_id), CHALLENGE, consistent_read=True))
        except DoesNotExist:
            return None

    @translated
    def put_challenge(self, record: ChallengeRecord, expected_version: int, previous_ends_on: str | None) -> None:
        model = self.Challenge
        tx = Transaction(self.table)
        condition = model.pk.does_not_exist() if expected_version == 0 else model.version == expected_version
        tx.put("challenge", challenge_item(model, challenge_pk(record.challenge_id), CHALLENGE, record), condition)
        ends_on = record.spec.ends_on.isoformat()
        if previous_ends_on is not None and previous_ends_on != ends_on:
            tx.delete("listing-old", model(LISTING, f"{previous_ends_on}#{record.challenge_id}"))
        tx.put("listing", challenge_item(model, LISTING, f"{ends_on}#{record.challenge_id}", record))
        try:
            tx.commit()
        except Cancelled as cancelled:
            cancelled.reraise(ConcurrentUpdate("challenge moved") if cancelled.failed() else cancelled.otherwise())

    @translated
    def active_challenges(self, on: date) -> list[ChallengeRecord]:
        """One Query of the listing from `on` (the challenges not ended), the upcoming ones
        left out."""
        found = self.Challenge.query(LISTING, self.Challenge.sk >= on.isoformat(), consistent_read=True)
        records = [challenge_of(item) for item in found]
        return sorted((r for r in records if r.spec.starts_on <= on), key=lambda r: r.challenge_id)

    # --- invitations ---
    @translated
    def invitation_status(self, challenge_id: str, member_ids: list[str], shards: int) -> dict[str, str]:
        from .members import PROFILE, MemberItem
        member = self.table.bind(MemberItem)
        status: dict[str, str] = {}
        unique = list(dict.fromkeys(member_ids))
        for start in range(0, len(unique), 33):     # 3 keys a member, 100 keys a BatchGetItem
            chunk = unique[start:start + 33]
            keys = []
            for m in chunk:
                keys += [(member, member_pk(m), PROFILE), (self.Invitation, member_pk(m), INVITE + challenge_id),
                         (self.Participant, shard_pk(challenge_id, shard_of(m, shards)), participant_sk(m))]
            found = self.table.batch_get(keys)
            for m in chunk:
                if (member_pk(m), PROFILE) not in found:
                    status[m] = "unknown"
                elif (shard_pk(challenge_id, shard_of(m, shards)), participant_sk(m)) in found:
                    status[m] = "enrolled"
                elif (member_pk(m), INVITE + challenge_id) in found:
                    status[m] = "invited"
                else:
                    status[m] = "new"
        return status

    @translated
    def add_invitations(self, invitations: list[Invitation]) -> None:
        with self.Invitation.batch_write() as batch:
            for i in invitations:
                batch.save(self.Invitation(member_pk(i.member_id), INVITE + i.challenge_id, challenge_id=i.challenge_id,
                                           invited_at=i.invited_at, ends_on=i.ends_on, operator_id=i.operator_id))

    @translated
    def open_invitations(self, member_id: str, on: date) -> list[Invitation]:
        found = self.Invitation.query(member_pk(member_id), self.Invitation.sk.startswith(INVITE), consistent_read=True)
        return [Invitation(challenge_id=i.challenge_id, member_id=member_id, invited_at=i.invited_at,
                           ends_on=i.ends_on, operator_id=i.operator_id)
                for i in found if i.ends_on >= on.isoformat()]

    # --- participants ---
    @translated
    def enrol(self, change: Change, participant: Participant, consent: Consent) -> None:
        tx = self.transaction(change)   # the account part (DynamoAccountStore)
        model = self.Participant
        tx.put("participant-new", participant_item(model, participant), model.pk.does_not_exist())
        tx.put("consent", consent_item(self.table.bind(ConsentItem), consent))
        try:
            tx.commit()
        except Cancelled as cancelled:
            failed = cancelled.failed()
            if "participant-new" in failed:
                cancelled.reraise(AlreadyApplied(f"{participant.challenge_id}#{participant.member_id}"))
            cancelled.reraise(ConcurrentUpdate(",".join(map(str, failed))) if failed else cancelled.otherwise())

    @translated
    def leave(self, change: Change, participant: Participant, consent: Consent, months: list[str]) -> None:
        tx = self.transaction(change)
        model, pk = self.Participant, shard_pk(participant.challenge_id, participant.shard)
        tx.update("participant-left", model(pk, participant_sk(participant.member_id)),
                  [model.opted_out.set(True), model.lb_pk.remove()],
                  model.pk.exists() & model.opted_out.does_not_exist())
        for month in months:
            tx.delete("score", self.Score(pk, score_sk(month, participant.member_id)))
        tx.put("consent", consent_item(self.table.bind(ConsentItem), consent))
        try:
            tx.commit()
        except Cancelled as cancelled:
            failed = cancelled.failed()
            cancelled.reraise(ConcurrentUpdate(",".join(map(str, failed))) if failed else cancelled.otherwise())

    @translated
    def participants(self, challenge_id: str, shard: int) -> Iterator[list[Participant]]:
        results = self.Participant.query(shard_pk(challenge_id, shard), self.Participant.sk.startswith("MEMBER#"),
                                         consistent_read=True)
        for page in raw_pages(results):
            yield [participant_of(self.Participant.from_raw_data(raw)) for raw in page]

    @translated
    def get_participant(self, challenge_id: str, member_id: str, shard: int | None = None) -> Participant | None:
        if shard is None:
            record = self.get_challenge(challenge_id)
            if record is None:
                return None
            shard = shard_of(member_id, record.shards)
        try:
            return participant_of(self.Participant.get(shard_pk(challenge_id, shard), participant_sk(member_id),
                                                       consistent_read=True))
        except DoesNotExist:
            return None

    @translated
    def mark_nudged(self, challenge_id: str, member_id: str, shard: int, on: date) -> None:
        """The calendar's caring nudge was planned for `on` (once per silence); a
        participant gone meanwhile is left alone."""
        item = self.Participant(shard_pk(challenge_id, shard), participant_sk(member_id))
        try:
            item.update(actions=[self.Participant.nudged_on.set(on.isoformat())],
                        condition=self.Participant.pk.exists())
        except UpdateError as exc:
            if getattr(exc, "cause_response_code", None) != "ConditionalCheckFailedException":
                raise

    @translated
    def month_points(self, challenge_id: str, member_id: str, shard: int, month: str) -> int:
        try:
            item = self.Score.get(shard_pk(challenge_id, shard), score_sk(month, member_id), consistent_read=True)
        except DoesNotExist:
            return 0
        return int(item.points or 0)

    @translated
    def profile_names(self, member_ids: list[str]) -> dict[str, str | None]:
        """The members' profile names, in one BatchGetItem (a page of a leaderboard)."""
        from .members import PROFILE, MemberItem
        member = self.table.bind(MemberItem)
        found = self.table.batch_get([(member, member_pk(m), PROFILE) for m in dict.fromkeys(member_ids)])
        return {item.pk.removeprefix("MEMBER#"): (item.profile or {}).get("name") for item in found.values()}

    # --- the leaderboard index ---
    @translated
    def board_page(self, challenge_id: str, period: str, shard: int, after: BoardEntry | None,
                   limit: int) -> list[BoardEntry]:
        start = None
        if after is not None:
            sk = participant_sk(after.member_id) if period == "all" else score_sk(period, after.member_id)
            start = {"LB_PK": {"S": board_pk(challenge_id, period, shard)},
                     "LB_SK": {"N": str(score_key(after.points, after.member_id))},
                     "PK": {"S": shard_pk(challenge_id, shard)}, "SK": {"S": sk}}
        response = self.table.connection.query(board_pk(challenge_id, period, shard), index_name=LEADERBOARD_INDEX,
                                               scan_index_forward=False, limit=limit, exclusive_start_key=start)
        return [BoardEntry(member_id=member_of_sk(raw["SK"]["S"]), points=points_of_key(int(raw["LB_SK"]["N"])))
                for raw in response.get("Items", [])]

    @translated
    def count_above(self, challenge_id: str, period: str, shard: int, points: int) -> int:
        return self.Participant.board.count(board_pk(challenge_id, period, shard),
                                            self.Participant.lb_sk >= (points + 1) * TIE_SCALE)
