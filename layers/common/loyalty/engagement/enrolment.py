"""Enrolment in a check-in challenge (E5): a member agrees (through the API, or by replying
同意 / AGREE to an invitation on any channel) and becomes a participant.

One enrolment is one TransactWriteItems: the participant item (in the member's shard;
it must not exist yet), the consent record for channel "challenge:<id>" with how and
when the member agreed (their consent history shows it), and the member's item under
its version check with the challenge added to `Engagement.checkin.challenges` (so a
check-in or an earning credits the participant without reading it). Enrolling again
answers the first enrolment."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from ..errors import AlreadyApplied, Conflict, Invalid, NotFound
from ..records import Change, Consent
from ..services._retry import with_retries
from .challenge_setup import get_challenge, program_day, status_of
from .challenges import ChallengeRecord, Participant, shard_of

MAX_SKEW = timedelta(hours=48)


def consent_channel(challenge_id: str) -> str:
    return f"challenge:{challenge_id}"


def enrolment_view(participant: Participant, record: ChallengeRecord) -> dict:
    return {"challenge_id": participant.challenge_id, "member_id": participant.member_id,
            "enrolled_at": participant.enrolled_at, "source": participant.source,
            "starts_on": record.spec.starts_on.isoformat(), "ends_on": record.spec.ends_on.isoformat()}


def enrol(store, challenge_id: str, member_id: str, agreed_at: datetime, source: str, proof: str | None,
          now: datetime, zone: str) -> dict:
    """Enrol a member who agreed at `agreed_at` -> {challenge_id, member_id, enrolled_at,
    source, starts_on, ends_on}. Invalid when `agreed_at` is more than 48 h from `now`;
    NotFound for an unknown challenge or member; Conflict once the challenge has ended
    (before that, an upcoming or active challenge takes enrolments)."""
    if abs(agreed_at - now) > MAX_SKEW:
        raise Invalid([{"field": "agreed_at", "problem": "more than 48 h from the service's clock"}])
    record = get_challenge(store, challenge_id)
    today = program_day(now, zone)
    shard = shard_of(member_id, record.shards)

    def attempt() -> Participant:
        existing = store.get_participant(challenge_id, member_id, shard)
        if existing is not None and existing.opted_out:
            raise Conflict(f"{member_id} left the challenge {challenge_id}")
        if existing is not None:
            return existing
        if status_of(record.spec, today) == "ended":
            raise Conflict(f"the challenge {challenge_id} has ended")
        account = store.load_account(member_id, with_lots=False)
        if account.version == 0 and store.get_profile(member_id) is None:
            raise NotFound(f"no member {member_id}")
        engagement = account.engagement
        checkin = engagement.checkin
        listed = (challenge_id, record.spec.starts_on.isoformat(), record.spec.ends_on.isoformat(), shard)
        # the challenges that ended more than a day ago leave the listing (nothing credits them)
        kept = tuple(c for c in checkin.challenges
                     if c[0] != challenge_id and c[2] >= (today - timedelta(days=1)).isoformat())
        engagement = replace(engagement, checkin=replace(checkin, challenges=kept + (listed,)))
        participant = Participant(challenge_id=challenge_id, member_id=member_id, enrolled_at=agreed_at.isoformat(),
                                  source=source, proof=proof, shard=shard)
        consent = Consent(member_id=member_id, channel=consent_channel(challenge_id), status="opted_in",
                          source=source, at=agreed_at, proof=proof)
        try:
            store.enrol(Change(member_id=member_id, expected_version=account.version, engagement=engagement),
                        participant, consent)
        except AlreadyApplied:
            return store.get_participant(challenge_id, member_id, shard)
        return participant

    return enrolment_view(with_retries(attempt), record)


def enrol_by_reply(store, member_id: str, channel: str, message_id: str, text: str, at: datetime, now: datetime,
                   zone: str) -> list[ChallengeRecord]:
    """A reply 同意 / AGREE: enrol the member in each challenge they have an open
    invitation to and are not in yet (source "keyword:<channel>", proof: the inbound
    message's id and text). The challenges enrolled in by this reply, its retries included
    (none: the reply is the channel's opt-in as before)."""
    today = program_day(now, zone)
    enrolled = []
    for invitation in store.open_invitations(member_id, today):
        record = store.get_challenge(invitation.challenge_id)
        if record is None or status_of(record.spec, today) == "ended":
            continue
        existing = store.get_participant(record.challenge_id, member_id, shard_of(member_id, record.shards))
        if existing is not None:
            # the provider's retry of the very reply that enrolled them (its first try failed
            # before the confirmation was made): enrolled by it, so it is confirmed again
            if not existing.opted_out and (existing.proof or "").split(" ")[0] == message_id:
                enrolled.append(record)
            continue
        try:
            enrol(store, record.challenge_id, member_id, at, f"keyword:{channel}",
                  f"{message_id} {text.strip()[:64]}", now, zone)
        except (Invalid, Conflict, NotFound):   # a reply applied days late, a member who left: not enrolled
            continue
        enrolled.append(record)
    return enrolled


def without_credits(change: Change, challenge_ids: list[str]) -> Change:
    """`change` without its credits of the participants named (loyalty.errors.ParticipantGone):
    what a service commits again when the member is no longer in those challenges."""
    return change.without_credits(challenge_ids)


def months_of(record: ChallengeRecord) -> list[str]:
    """The months (YYYY-MM) the challenge's days fall in."""
    months, day = [], record.spec.starts_on.replace(day=1)
    while day <= record.spec.ends_on:
        months.append(day.strftime("%Y-%m"))
        day = (day + timedelta(days=32)).replace(day=1)
    return months


def leave(store, challenge_id: str, member_id: str, source: str, now: datetime) -> dict:
    """The member leaves the challenge: no message of it any more (Participant.opted_out),
    off the leaderboards (overall and monthly), no more credits (the challenge is off the
    member's enrolments), and an opt-out consent record for "challenge:<id>". The
    participant item stays, opted out, for the challenge's counts. Leaving again answers
    the same; NotFound when the member is not a participant. A member who left may not
    enrol again (Conflict from `enrol`)."""
    record = get_challenge(store, challenge_id)
    shard = shard_of(member_id, record.shards)

    def attempt() -> Participant:
        participant = store.get_participant(challenge_id, member_id, shard)
        if participant is None:
            raise NotFound(f"{member_id} is not a participant of {challenge_id}")
        if participant.opted_out:
            return participant
        account = store.load_account(member_id, with_lots=False)
        engagement = account.engagement
        checkin = engagement.checkin
        engagement = replace(engagement, checkin=replace(checkin, challenges=tuple(
            c for c in checkin.challenges if c[0] != challenge_id)))
        consent = Consent(member_id=member_id, channel=consent_channel(challenge_id), status="opted_out",
                          source=source, at=now)
        store.leave(Change(member_id=member_id, expected_version=account.version, engagement=engagement),
                    participant, consent, months_of(record))
        return replace(participant, opted_out=True)

    participant = with_retries(attempt)
    return {"challenge_id": challenge_id, "member_id": member_id, "opted_out": participant.opted_out}
