"""Setting a check-in challenge up (E5): the operator puts it (`PUT /challenges/{id}`),
anyone reads it with its draws' commitments, and the operator invites members.

What may change once the challenge has started (its first day has begun in the
programme's time zone): the name, the caring nudge's silent days, and the draws on
days still to come (added, moved, resized or removed). What may not (409): starts_on,
days and the rewards (the members were told them when they agreed), and any draw whose
day has begun: its entrants are being decided, so its day, its winners and its seed
stay as they were published (a draw runs on or after its day, so a draw that has run
never changes)."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime
from zoneinfo import ZoneInfo

from ..errors import Conflict, Invalid, NotFound
from ..messaging.dispatcher import campaign_jobs
from ..services._retry import with_retries
from . import draws as draw_algorithm
from .challenges import DEFAULT_SHARDS, ChallengeRecord, ChallengeSpec, DrawRecord, Invitation

MAX_INVITATIONS = 500
INVITATION_TEMPLATE = "challenge_invitation"


def program_day(now: datetime, zone: str) -> date:
    return now.astimezone(ZoneInfo(zone)).date()


def status_of(spec: ChallengeSpec, today: date) -> str:
    """upcoming | active | ended, on the programme's calendar."""
    if today < spec.starts_on:
        return "upcoming"
    return "active" if today <= spec.ends_on else "ended"


def put_challenge(store, challenge_id: str, spec: ChallengeSpec, now: datetime, zone: str) -> tuple[dict, bool]:
    """Create or update a challenge; (its view, created). Putting the same body again
    changes nothing. Each draw gets its secret seed when it is first put and keeps it;
    Conflict for what may not change any more (see the module's docstring)."""
    today = program_day(now, zone)

    def attempt() -> tuple[ChallengeRecord, bool]:
        current = store.get_challenge(challenge_id)
        if current is None:
            record = ChallengeRecord(challenge_id=challenge_id, spec=spec, draws=_draws(spec, {}),
                                     created_at=now.isoformat(), updated_at=now.isoformat(), version=1,
                                     shards=DEFAULT_SHARDS)
            store.put_challenge(record, 0, None)
            return record, True
        if current.spec == spec:
            return current, False
        _check_update(current, spec, today)
        record = replace(current, spec=spec, draws=_draws(spec, {d.draw_id: d for d in current.draws}),
                         updated_at=now.isoformat(), version=current.version + 1)
        store.put_challenge(record, current.version, current.spec.ends_on.isoformat())
        return record, False

    record, created = with_retries(attempt)
    return challenge_view(record, now, zone), created


def _draws(spec: ChallengeSpec, kept: dict[str, DrawRecord]) -> tuple[DrawRecord, ...]:
    out = []
    for d in spec.draws:
        seed = kept[d.draw_id].seed if d.draw_id in kept else draw_algorithm.new_seed()
        out.append(DrawRecord(draw_id=d.draw_id, on=d.on, winners=d.winners, seed=seed,
                              commitment=draw_algorithm.commitment(seed)))
    return tuple(out)


def _check_update(current: ChallengeRecord, spec: ChallengeSpec, today: date) -> None:
    old = current.spec
    if today < old.starts_on:
        return   # not started: anything may change
    fixed = [name for name in ("starts_on", "days", "rewards") if getattr(old, name) != getattr(spec, name)]
    if fixed:
        raise Conflict(f"the challenge has started: {', '.join(fixed)} may not change")
    new_draws = {d.draw_id: d for d in spec.draws}
    for d in old.draws:
        if d.on <= today and (new_draws.get(d.draw_id) is None or new_draws[d.draw_id] != d):
            raise Conflict(f"draws.{d.draw_id}: its day has begun; it may not change or be removed")
    old_ids = {d.draw_id for d in old.draws}
    for d in spec.draws:
        if d.draw_id not in old_ids and d.on <= today:
            raise Conflict(f"draws.{d.draw_id}: a draw added now must be on a day still to come")


def draw_view(record: ChallengeRecord, draw: DrawRecord, results=None) -> dict:
    """A draw as GET /challenges/{id} shows it: never its seed before it has run. Once run
    (`results`, the ResultsStore, given) it shows what the run answered: the seed, the
    entrants hash and count, and `winners` as the winners drawn (the number asked for is
    then `winners_asked`)."""
    view = {"draw_id": draw.draw_id, "on": draw.on.isoformat(), "winners": draw.winners,
            "commitment": draw.commitment}
    if results is not None:
        from .challenge_results import draw_result_view
        ran = draw_result_view(results, record.challenge_id, draw.draw_id)
        if ran is not None:
            view.update({**ran, "winners_asked": draw.winners})
    return view


def challenge_view(record: ChallengeRecord, now: datetime, zone: str, results=None) -> dict:
    spec = record.spec
    return {"challenge_id": record.challenge_id, "name": spec.name, "starts_on": spec.starts_on.isoformat(),
            "days": spec.days, "ends_on": spec.ends_on.isoformat(),
            "status": status_of(spec, program_day(now, zone)),
            "draws": [draw_view(record, d, results) for d in record.draws],
            "rewards": spec.rewards.model_dump(), "silent_days": spec.silent_days,
            "created_at": record.created_at, "updated_at": record.updated_at}


def get_challenge(store, challenge_id: str) -> ChallengeRecord:
    record = store.get_challenge(challenge_id)
    if record is None:
        raise NotFound(f"no challenge {challenge_id}")
    return record


def invite(store, queues, challenge_id: str, member_ids: list[str], operator_id: str, now: datetime,
           zone: str) -> dict:
    """Invite members (at most 500 a call): each new invitation is recorded and one
    invitation message (the data-use notice, template `challenge_invitation`) queued to
    the dispatcher, which applies consent, caps and windows as for any campaign. Inviting
    again records and sends nothing again; unknown members, members already enrolled or
    invited are reported, not fatal. -> {"invited": n, "skipped": [{member_id, reason}]}."""
    if not 1 <= len(member_ids) <= MAX_INVITATIONS:
        raise Invalid([{"field": "member_ids", "problem": f"1 to {MAX_INVITATIONS} member ids"}])
    record = get_challenge(store, challenge_id)
    if status_of(record.spec, program_day(now, zone)) == "ended":
        raise Conflict(f"the challenge {challenge_id} has ended")
    unique = list(dict.fromkeys(member_ids))
    status = store.invitation_status(challenge_id, unique, record.shards)
    new = [m for m in unique if status[m] == "new"]
    skipped = [{"member_id": m, "reason": {"unknown": "unknown_member", "enrolled": "already_enrolled",
                                           "invited": "already_invited"}[status[m]]}
               for m in unique if status[m] != "new"]
    store.add_invitations([Invitation(challenge_id=challenge_id, member_id=m, invited_at=now.isoformat(),
                                      ends_on=record.spec.ends_on.isoformat(), operator_id=operator_id)
                           for m in new])
    spec = record.spec
    variables = {"challenge": spec.name, "days": spec.days, "starts_on": spec.starts_on.isoformat()}
    # The job ids come from the challenge and the member, so the dispatcher sends each once:
    # the members invited before are queued again (a first call may have written their
    # invitations and lost its queueing), and receive nothing twice.
    again = [m for m in unique if status[m] == "invited"]
    for job in campaign_jobs(f"challenge-invitation#{challenge_id}", INVITATION_TEMPLATE, new + again, variables,
                             now):
        queues.send("jobs", job)
    return {"invited": len(new), "skipped": skipped}
