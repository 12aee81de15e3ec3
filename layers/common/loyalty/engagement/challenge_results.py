"""A check-in challenge's results (E5): its surprise draws, the final ranking and the
rewards, and its stats.

Draws. A draw runs once its day has ended in the programme's time zone. Its entrants are
the participants who checked in on that day (`checked[day - 1] == "1"`) and have not
left; the winners are `draws.pick_winners(seed, entrants, winners)` over the seed the
challenge committed to. The sorted entrant list is stored (under its hash) before the
result, which is written on condition that none is: a second or concurrent run answers
the first run's record. `make verify-draw` recomputes it from the two answers.

Final ranking. Once the last day has ended: every participant (each shard, page by
page, never a Scan) who has not left is ranked by challenge points, ties sharing a rank
(1, 1, 3). The snapshot is the lines "<rank>\\t<member_id>\\t<points>", sorted by rank then
member id (UTF-8 bytes), and its hash is the hex SHA-256 of those lines joined by "\\n"
(UTF-8, no trailing newline). It is stored, then recorded once with the rewards in force
(conditional write): a re-run pays from the recorded snapshot even if points moved since.

Rewards. Every ranked participant gets `base`; those ranked within the first
ceil(P / 2) places (rank <= ceil(P / 2): a tie at the boundary takes all tied in) with
more than 0 points get `top_half` more; within the first ceil(P / 10) places, `top_tenth`
more again. Each member's reward is one ledger write: its own lot and one CHALLENGE
entry per part ("challenge <id>: base", "... top 50%", "... top 10%") with the
idempotency record `challenge-reward#<challenge>#<member>`, so a re-run or a concurrent
run never pays twice. The write is blind (no read: balance added in place, conditional
on coming after the member's newest entry and on no debt); a member with a debt or a
newer entry is read and planned as any credit (debt settled first). Progress is saved
every page of 100, so a run cut midway resumes where it was."""
from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Callable, Iterator
from zoneinfo import ZoneInfo

from ..domain import EntryType, LedgerEntry, Lot, LotWrite, add_months, in_sequence, iso, next_tx_time, \
    settle_debt, stable_id
from ..errors import AlreadyApplied, ConcurrentUpdate, Conflict, NotFound
from ..records import Change, IdempotencyRecord
from ..services._retry import with_retries
from . import draws
from .challenges import ChallengeRecord, Participant
from .outcomes import DrawResult, FinalRanking, challenge_owner

if TYPE_CHECKING:
    from ..ports import AccountStore, ChallengeReader, ResultsStore
    from ..rules import Rules

PROGRESS_EVERY = 100
HEALTHY = {"daily_checkin_rate": (">60%", 0.60, None), "weekly_retention": (">75%", 0.75, None),
           "redemption_rate": ("30-50%", 0.30, 0.50), "repurchase_conversion": (">20%", 0.20, None)}


# --- shared ------------------------------------------------------------------------------

def day_ended(day: date, time_zone: str, now: datetime) -> bool:
    """Whether `day` is over in `time_zone` at `now`."""
    return now >= datetime.combine(day + timedelta(days=1), time(0), ZoneInfo(time_zone))


def challenge(reader: "ChallengeReader", challenge_id: str) -> ChallengeRecord:
    record = reader.get_challenge(challenge_id)
    if record is None:
        raise NotFound(f"no challenge {challenge_id}")
    return record


def all_participants(reader: "ChallengeReader", record: ChallengeRecord) -> Iterator[Participant]:
    """Every participant, shard by shard, page by page (Queries of one partition each)."""
    for shard in range(record.shards):
        for page in reader.participants(record.challenge_id, shard):
            yield from page


# --- draws -------------------------------------------------------------------------------

def _draw(record: ChallengeRecord, draw_id: str):
    found = next((d for d in record.draws if d.draw_id == draw_id), None)
    if found is None:
        raise NotFound(f"challenge {record.challenge_id} has no draw {draw_id}")
    return found


def record_draw(results: "ResultsStore", owner: str, draw_id: str, on: date, seed: str, commitment: str,
                entrants: list[str], winners: int, now: datetime,
                members: dict[str, str] | None = None) -> DrawResult:
    """Draw and record (the entrant list first, then the result, on condition that none
    is recorded): the record stored, this run's or an earlier one's."""
    ordered = draws.sorted_entrants(entrants)
    digest = draws.entrants_hash(ordered)
    won = tuple(draws.pick_winners(seed, ordered, winners))
    result = DrawResult(owner=owner, draw_id=draw_id, on=on.isoformat(), commitment=commitment, seed=seed,
                        entrants_hash=digest, entrants=len(ordered), winners=won, run_at=iso(now),
                        algorithm=draws.ALGORITHM,
                        winner_members=tuple(members[w] for w in won) if members is not None else ())
    results.put_list(owner, digest, ordered)
    return results.record_draw(result)


def run_challenge_draw(reader: "ChallengeReader", results: "ResultsStore", rules: "Rules", challenge_id: str,
                       draw_id: str, now: datetime) -> dict:
    """Run a challenge's draw once and answer {draw_id, commitment, seed, entrants_hash,
    entrants, winners}; again, the same. NotFound: no such challenge or draw; Conflict:
    the draw's day has not ended (programme time zone)."""
    record = challenge(reader, challenge_id)
    draw = _draw(record, draw_id)
    owner = challenge_owner(challenge_id)
    existing = results.get_draw(owner, draw_id)
    if existing is not None:
        return existing.answer()
    if not day_ended(draw.on, rules.program_timezone, now):
        raise Conflict(f"draw {draw_id} is on {draw.on.isoformat()}: it runs once that day has ended "
                       f"({rules.program_timezone})")
    day = record.spec.day_number(draw.on)
    entrants = [p.member_id for p in all_participants(reader, record)
                if not p.opted_out and day is not None and p.checked[day - 1:day] == "1"]
    return record_draw(results, owner, draw_id, draw.on, draw.seed, draw.commitment, entrants, draw.winners,
                       now).answer()


def draw_entrants(reader: "ChallengeReader", results: "ResultsStore", challenge_id: str, draw_id: str) -> dict:
    """{draw_id, entrant_ids} of a draw that has run (sorted as the algorithm orders them);
    Conflict before the run."""
    _draw(challenge(reader, challenge_id), draw_id)
    return entrants_answer(results, challenge_owner(challenge_id), draw_id)


def entrants_answer(results: "ResultsStore", owner: str, draw_id: str) -> dict:
    result = results.get_draw(owner, draw_id)
    if result is None:
        raise Conflict(f"draw {draw_id} has not run yet: its entrants are fixed when it runs")
    listed = results.get_list(owner, result.entrants_hash)
    if listed is None:   # the list is written before the result: only a fault of the store
        raise Conflict(f"draw {draw_id}'s entrant list is missing")
    return {"draw_id": draw_id, "entrant_ids": listed}


def draw_result_view(results: "ResultsStore", challenge_id: str, draw_id: str) -> dict | None:
    """A draw's result fields for the challenge's own view (GET /challenges/{id}), once
    it has run: seed, entrants_hash, entrants, winners, run_at, algorithm; None before."""
    result = results.get_draw(challenge_owner(challenge_id), draw_id)
    if result is None:
        return None
    return {**result.answer(), "run_at": result.run_at, "algorithm": result.algorithm}


# --- the final ranking -------------------------------------------------------------------

def ranked(standings: list[tuple[str, int]]) -> list[tuple[int, str, int]]:
    """(rank, member_id, points), most points first, ties sharing a rank (1, 1, 3), then
    by member id."""
    ordered = sorted(standings, key=lambda s: (-s[1], s[0].encode("utf-8")))
    out, rank = [], 0
    for i, (member, points) in enumerate(ordered):
        if i == 0 or points != ordered[i - 1][1]:
            rank = i + 1
        out.append((rank, member, points))
    return out


def snapshot_lines(ranking: list[tuple[int, str, int]]) -> list[str]:
    return [f"{rank}\t{member}\t{points}" for rank, member, points in ranking]


def snapshot_hash(lines: list[str]) -> str:
    """The hex SHA-256 of the snapshot's lines joined by "\\n" (UTF-8, no trailing newline)."""
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def cutoffs(participants: int) -> tuple[int, int]:
    """The last rank in the top 50% and in the top 10%: ceil(P / 2), ceil(P / 10)."""
    return (participants + 1) // 2, (participants + 9) // 10


def reward_parts(final: FinalRanking, rank: int, points: int) -> list[tuple[str, int]]:
    """What one ranked participant is paid: (part, points), zero parts left out."""
    parts = [("base", final.base)]
    if points > 0 and rank <= final.top_half_rank:
        parts.append(("top 50%", final.top_half))
    if points > 0 and rank <= final.top_tenth_rank:
        parts.append(("top 10%", final.top_tenth))
    return [(part, n) for part, n in parts if n > 0]


def _parse(line: str) -> tuple[int, str, int]:
    rank, member, points = line.split("\t")
    return int(rank), member, int(points)


def _record_final(reader, results, rules, record: ChallengeRecord, now: datetime) -> tuple[FinalRanking, list[str]]:
    owner = challenge_owner(record.challenge_id)
    standings, left = [], 0
    for p in all_participants(reader, record):
        if p.opted_out:
            left += 1
        else:
            standings.append((p.member_id, p.points))
    lines = snapshot_lines(ranked(standings))
    digest = snapshot_hash(lines)
    half, tenth = cutoffs(len(lines))
    rewards = record.spec.rewards
    final = FinalRanking(challenge_id=record.challenge_id, snapshot_hash=digest, participants=len(lines), left=left,
                         base=rewards.base, top_half=rewards.top_half, top_tenth=rewards.top_tenth,
                         top_half_rank=half, top_tenth_rank=tenth, rewarded=0, points=0, recorded_at=iso(now))
    paid = [sum(n for _, n in reward_parts(final, *_parse(line)[::2])) for line in lines]
    final = replace(final, rewarded=sum(1 for n in paid if n), points=sum(paid))
    results.put_list(owner, digest, lines)
    return results.record_final(final), lines


def finish_challenge(reader: "ChallengeReader", results: "ResultsStore", accounts: "AccountStore", rules: "Rules",
                     challenge_id: str, now: datetime, *, max_credits: int | None = None,
                     should_stop: Callable[[], bool] | None = None) -> dict:
    """Rank a challenge whose last day has ended and pay its rewards, once; re-runnable
    and resumable (a run cut midway, or stopped after `max_credits` reward writes or when
    `should_stop()` says so, e.g. a Lambda's remaining time, continues where the recorded
    progress says). Answers results_answer(...) with "status": "done" or "in_progress".
    NotFound: no such challenge; Conflict: its last day has not ended (programme time zone)."""
    record = challenge(reader, challenge_id)
    final = results.get_final(challenge_id)
    lines = None
    if final is None:
        if not day_ended(record.spec.ends_on, rules.program_timezone, now):
            raise Conflict(f"challenge {challenge_id} ends on {record.spec.ends_on.isoformat()}: it is finished "
                           f"once that day has ended ({rules.program_timezone})")
        final, ours = _record_final(reader, results, rules, record, now)
        lines = ours if snapshot_hash(ours) == final.snapshot_hash else None
    if final.done_at is not None:
        return results_answer(final)
    if lines is None:
        lines = results.get_list(challenge_owner(challenge_id), final.snapshot_hash)
        if lines is None:
            raise Conflict(f"challenge {challenge_id}'s ranking snapshot is missing")
    done, writes = final.credited, 0
    for line in lines[final.credited:]:
        if (max_credits is not None and writes >= max_credits) or (should_stop is not None and should_stop()):
            break
        rank, member, points = _parse(line)
        parts = reward_parts(final, rank, points)
        if parts:
            credit_reward(accounts, rules, final, member, rank, points, parts, now)
            writes += 1
        done += 1
        if done % PROGRESS_EVERY == 0 and done < len(lines):
            results.save_progress(challenge_id, done, None)
    finished = iso(now) if done == len(lines) else None
    if done > final.credited or finished:
        results.save_progress(challenge_id, done, finished)
    return results_answer(results.get_final(challenge_id) or replace(final, credited=done, done_at=finished))


def final_standings(results: "ResultsStore", challenge_id: str) -> dict[str, tuple[int, int, int]]:
    """member -> (rank, points, reward) as the recorded final ranking fixed them (empty
    before it is recorded): what the final message tells each participant."""
    final = results.get_final(challenge_id)
    lines = results.get_list(challenge_owner(challenge_id), final.snapshot_hash) if final is not None else None
    standings = {}
    for line in lines or ():
        rank, member, points = _parse(line)
        standings[member] = (rank, points, sum(n for _, n in reward_parts(final, rank, points)))
    return standings


def reward_key(challenge_id: str, member_id: str) -> str:
    return f"challenge-reward#{challenge_id}#{member_id}"


def credit_reward(accounts: "AccountStore", rules: "Rules", final: FinalRanking, member_id: str, rank: int,
                  points: int, parts: list[tuple[str, int]], now: datetime) -> bool:
    """Pay one member's reward in one write; False when it was paid already."""
    cid, total = final.challenge_id, sum(n for _, n in parts)
    lot_id = "ch-" + stable_id("challenge-reward", cid, member_id)
    source = f"challenge:{cid}"
    answer = {"challenge_id": cid, "member_id": member_id, "rank": rank, "points": points, "reward": total,
              "parts": dict(parts), "snapshot_hash": final.snapshot_hash}
    record = IdempotencyRecord(key=reward_key(cid, member_id), body_hash=final.snapshot_hash, response=answer,
                               member_id=member_id)

    def change(t: datetime, version: int | None, debt: int) -> Change:
        entries = in_sequence([LedgerEntry(entry_id=stable_id("challenge-reward", cid, member_id, part),
                                           type=EntryType.CHALLENGE, amount=n, recorded_at=t,
                                           reason=f"challenge {cid}: {part}", source=source, lots=((lot_id, n),),
                                           meta={"challenge_id": cid, "reward": part, "rank": rank,
                                                 "challenge_points": points})
                               for part, n in parts])
        lot_points, debt_left = settle_debt(total, debt)
        lot = Lot(lot_id=lot_id, earned_at=now, expires_at=add_months(now, rules.expiry.months), points=total,
                  remaining=lot_points, source=source)
        return Change(member_id=member_id, expected_version=version, balance_delta=total,
                      debt_delta=debt_left - debt, last_tx=entries[-1].recorded_at,
                      lots=(LotWrite(lot=lot, new=True),), entries=entries, idempotency=record,
                      requires_no_debt=version is None)

    try:
        accounts.commit(change(now, None, 0))   # blind: no read (conditional on no debt, after the newest entry)
        return True
    except AlreadyApplied:
        return False
    except ConcurrentUpdate:
        pass

    def planned() -> bool:   # a debt to settle, or an entry newer than `now`: read and plan
        account = accounts.load_account(member_id, with_lots=False)
        try:
            accounts.commit(change(next_tx_time(now, account.last_tx), account.version, account.debt))
        except AlreadyApplied:
            return False
        return True

    return with_retries(planned)


def results_answer(final: FinalRanking) -> dict:
    return {"challenge_id": final.challenge_id, "status": "done" if final.done_at else "in_progress",
            "participants": final.participants, "left": final.left, "snapshot_hash": final.snapshot_hash,
            "rewarded": final.rewarded, "points": final.points, "credited": final.credited,
            "rewards": {"base": final.base, "top_half": final.top_half, "top_tenth": final.top_tenth},
            "top_half_rank": final.top_half_rank, "top_tenth_rank": final.top_tenth_rank,
            "recorded_at": final.recorded_at, "done_at": final.done_at}


def results_view(reader: "ChallengeReader", results: "ResultsStore", accounts: "AccountStore", challenge_id: str,
                 member_id: str | None = None) -> dict:
    """The final results as an operator or a member reads them: the snapshot's hash and
    counts (status "not_final" before the ranking is recorded) and, with `member_id`,
    that member's rank and reward (from their reward's record: two GetItems at most)."""
    record = challenge(reader, challenge_id)
    final = results.get_final(challenge_id)
    if final is None:
        view = {"challenge_id": challenge_id, "status": "not_final", "ends_on": record.spec.ends_on.isoformat()}
    else:
        view = results_answer(final)
    if member_id is not None:
        paid = accounts.get_idempotency(reward_key(challenge_id, member_id)) if final is not None else None
        view["member"] = ({k: paid.response[k] for k in ("member_id", "rank", "points", "reward", "parts")}
                          if paid is not None else {"member_id": member_id, "rank": None, "reward": 0})
    return view


# --- stats -------------------------------------------------------------------------------

def _rate(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def _healthy(name: str, value: float | None) -> dict:
    text, low, high = HEALTHY[name]
    ok = None if value is None else (value >= low if high is None else low <= value <= high)
    return {"value": value, "healthy": text, "is_healthy": ok}


def challenge_stats(reader: "ChallengeReader", rules: "Rules", challenge_id: str, now: datetime) -> dict:
    """The challenge's health beside seed 002's healthy values, from its participants'
    items (P items read: every shard, page by page): the daily check-in rate (per day so
    far: of the participants enrolled by that day, those who checked in), the weekly
    retention (per week w >= 2: of those active in week w - 1, those active in w too),
    the redemption rate and the repurchase conversion (participants with a redemption /
    a paid order during the challenge). Participants who left count as enrolled: leaving
    is what retention measures."""
    record = challenge(reader, challenge_id)
    spec, zone = record.spec, ZoneInfo(rules.program_timezone)
    today = now.astimezone(zone).date()
    days = max(0, min(spec.days, (today - spec.starts_on).days + 1))
    people = list(all_participants(reader, record))

    def enrolled_day(p: Participant) -> int:
        from ..domain import parse_time
        local = parse_time(p.enrolled_at).astimezone(zone).date()
        return max(1, (local - spec.starts_on).days + 1)

    joined = [enrolled_day(p) for p in people]
    daily, checked_total, enrolled_total = [], 0, 0
    for d in range(1, days + 1):
        enrolled = sum(1 for j in joined if j <= d)
        checked = sum(1 for p, j in zip(people, joined) if j <= d and p.checked[d - 1:d] == "1")
        checked_total, enrolled_total = checked_total + checked, enrolled_total + enrolled
        daily.append({"day": d, "date": (spec.starts_on + timedelta(days=d - 1)).isoformat(),
                      "participants": enrolled, "checked_in": checked, "rate": _rate(checked, enrolled)})

    def active(p: Participant, week: int) -> bool:
        return "1" in p.checked[7 * (week - 1):7 * week]

    weekly, kept_total, base_total = [], 0, 0
    for w in range(2, (days + 6) // 7 + 1):
        before = [p for p in people if active(p, w - 1)]
        kept = sum(1 for p in before if active(p, w))
        kept_total, base_total = kept_total + kept, base_total + len(before)
        weekly.append({"week": w, "active_before": len(before), "retained": kept, "rate": _rate(kept, len(before))})

    n = len(people)
    redeemed = sum(1 for p in people if p.redemptions > 0)
    ordered = sum(1 for p in people if p.orders > 0)
    return {"challenge_id": challenge_id, "participants": n, "left": sum(1 for p in people if p.opted_out),
            "days_so_far": days,
            "daily_checkin_rate": {**_healthy("daily_checkin_rate", _rate(checked_total, enrolled_total)),
                                   "days": daily},
            "weekly_retention": {**_healthy("weekly_retention", _rate(kept_total, base_total)), "weeks": weekly},
            "redemption_rate": {**_healthy("redemption_rate", _rate(redeemed, n)), "participants": redeemed},
            "repurchase_conversion": {**_healthy("repurchase_conversion", _rate(ordered, n)), "participants": ordered}}
