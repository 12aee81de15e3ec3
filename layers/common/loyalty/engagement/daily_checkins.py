"""Daily check-ins (E4): one per member-local day, points by streak day, a missed day
resetting the streak, inside the daily non-order cap (E8), and what a check-in (or an
activity) earns the member in the challenges they are enrolled in (E5).

One check-in is one read (the member's item: account, engagement and time zone, in one
BatchGetItem) and one TransactWriteItems: the day's record (IDEM#checkin#<member>#<local
date>, which must not exist yet), the account under its version check with the new
engagement state (the streak, the cap taken), and the check-in's own lot and CHECKIN
entry; the participant items of the challenges the day falls in go in the same
transaction (Change.participants). So neither a retry nor a concurrent duplicate for the
same local day can credit twice: the version check makes one of them win, the loser reads
the day as checked in, and the day's key refuses a second record whatever happens to the
version."""
from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..domain import Account, EntryType, LedgerEntry, Lot, LotWrite, add_months, next_tx_time, settle_debt, stable_id
from ..errors import AlreadyApplied, Conflict, Invalid, NotFound
from ..records import Change, IdempotencyRecord
from ..services._retry import with_retries
from . import risk
from .challenges import ParticipantCredit
from .state import CheckinState

if TYPE_CHECKING:
    from ..ports import ReviewStore
    from ..rules import Rules


def checkin_key(member_id: str, day: date) -> str:
    """The key of the member's check-in record for one member-local day."""
    return f"checkin#{member_id}#{day.isoformat()}"


def local_date(at: datetime, time_zone: str) -> date:
    """The member-local date of an instant."""
    return at.astimezone(ZoneInfo(time_zone)).date()


@dataclass(frozen=True)
class CheckinOutcome:
    """A check-in's answer and the member's enrolments as read (for a reply's "Day n/N")."""

    answer: dict
    challenges: tuple[tuple[str, str, str, int], ...] = ()

    def progress(self) -> tuple[int, int] | None:
        """(day number, days) of the first enrolled challenge the check-in's date is in."""
        day = date.fromisoformat(self.answer["date"])
        for _, starts_on, ends_on, _ in self.challenges:
            starts, ends = date.fromisoformat(starts_on), date.fromisoformat(ends_on)
            if starts <= day <= ends:
                return (day - starts).days + 1, (ends - starts).days + 1
        return None


def record_checkin(store: "ReviewStore", rules: "Rules", member_id: str, at: datetime, now: datetime,
                   notices: list | None = None) -> dict:
    """The answer of `check_in` (below)."""
    return check_in(store, rules, member_id, at, now, notices).answer


def check_in(store: "ReviewStore", rules: "Rules", member_id: str, at: datetime, now: datetime,
             notices: list | None = None) -> CheckinOutcome:
    """Check the member in at `at` and answer {date, streak, points, balance,
    already_checked_in} (plus `capped` and `reason` when the daily cap left less than the
    streak day's points: what fit is credited, the streak counts anyway).

    `date` is member-local (the profile's time zone, else the programme's). A second
    check-in the same local day answers already_checked_in with points 0, the current
    streak and balance, and writes nothing; so does one for an earlier day that was
    checked in. One for an earlier day that was not is a Conflict (a later day is checked
    in: the streak cannot go back, and a late credit would rewrite what is settled). `at`
    more than the risk rules' clock skew (48 h) from `now`, or on a member-local day after
    today's (it would lock out today's), is Invalid; an unknown member is NotFound; none
    of these writes anything. `notices`, when given, receives the tier-up the credit caused."""
    skew = rules.activities.risk.max_clock_skew_hours
    if abs(at - now) > timedelta(hours=skew):
        raise Invalid([{"field": "at", "problem": f"more than {skew} h from the service's clock"}])

    def attempt() -> CheckinOutcome:
        context = store.load_activity_context(member_id, None)
        if not context.member_found:
            raise NotFound(f"no member {member_id}")
        zone = context.time_zone or rules.program_timezone
        account, enrolled = context.account, context.account.engagement.checkin.challenges
        if local_date(at, zone) > local_date(now, zone):
            # A day that has not begun yet for the member (a device clock ahead): counted, it
            # would lock out the member's real check-ins until that day.
            raise Invalid([{"field": "at", "problem": "a member-local day after today's"}])
        try:
            change, answer = plan_checkin(rules, member_id, account, zone, at, now)
        except Conflict:
            # A day before the latest check-in that the streak does not cover: checked in
            # if its record exists (an extra read, on this rare path only).
            day = local_date(at, zone)
            if store.get_idempotency(checkin_key(member_id, day)) is None:
                raise
            change, answer = None, _answer(day, account.engagement.checkin.streak, 0, account.balance, True)
        if change is None:
            return CheckinOutcome(answer, enrolled)
        try:
            store.commit(change)
        except AlreadyApplied:
            # The day's record exists: the day was checked in meanwhile (the version check
            # lets no two credits through; this key stands behind it whatever the version).
            account = store.load_account(member_id, with_lots=False)
            return CheckinOutcome(_answer(local_date(at, zone), account.engagement.checkin.streak, 0, account.balance,
                                          True), account.engagement.checkin.challenges)
        return CheckinOutcome(answer, enrolled)

    outcome = with_retries(attempt)
    from .tiers import TIER_UP
    answer = outcome.answer
    if TIER_UP in answer:
        if notices is not None:
            notices.append({"kind": TIER_UP, "event_id": checkin_key(member_id, date.fromisoformat(answer["date"])),
                            "member_id": member_id, **answer[TIER_UP]})
        outcome = replace(outcome, answer={k: v for k, v in answer.items() if k != TIER_UP})
    return outcome


def _answer(day: date, streak: int, points: int, balance: int, already: bool) -> dict:
    return {"date": day.isoformat(), "streak": streak, "points": points, "balance": balance,
            "already_checked_in": already}


def plan_checkin(rules: "Rules", member_id: str, account: Account, time_zone: str, at: datetime,
                 now: datetime) -> tuple[Change | None, dict]:
    """What a check-in at `at` writes (None: nothing) and answers, on the account as read.

    The daily cap is taken on the member-local day of `now`, as an activity's is: the
    day the points are credited, so a late check-in can never reopen a past day's cap."""
    engagement = account.engagement
    state = engagement.checkin
    day = local_date(at, time_zone)
    if state.last is not None:
        last = date.fromisoformat(state.last)
        if day <= last:
            if (last - day).days < state.streak:   # that day is in the streak: checked in
                return None, _answer(day, state.streak, 0, account.balance, True)
            raise Conflict(f"a later day ({state.last}) is already checked in")
        streak = state.streak + 1 if (day - last).days == 1 else 1
    else:
        streak = 1
    points = rules.checkins.points_for(streak)
    cap = rules.activities.risk.daily_cap
    counter, fit = risk.take_cap(engagement.counter, risk.local_day(now, time_zone), points, cap)
    checkin = replace(state, last=day.isoformat(), streak=streak, days=state.days + 1)
    engagement = replace(engagement, counter=counter, checkin=checkin)
    participants = challenge_credits(state, member_id, day, fit, checkin_day=True, streak=streak)

    answer = _answer(day, streak, fit, account.balance + fit, False)
    if fit < points:
        answer.update(capped=True, reason=f"daily cap: {fit} of {points} points fit" if fit
                      else f"daily cap of {cap} points reached")
    change = Change(member_id=member_id, expected_version=account.version, engagement=engagement,
                    participants=participants)
    if fit:
        source = f"checkin:{day.isoformat()}"
        lot_id = "ci-" + stable_id("checkin-lot", member_id, day.isoformat())
        lot_points, debt_left = settle_debt(fit, account.debt)
        t = next_tx_time(now, account.last_tx)
        lot = Lot(lot_id=lot_id, earned_at=at, expires_at=add_months(at, rules.expiry.months), points=fit,
                  remaining=lot_points, source=source)
        meta = {"date": day.isoformat(), "streak": streak, **({"capped_from": points} if fit < points else {})}
        entry = LedgerEntry(entry_id=stable_id("checkin", member_id, day.isoformat()), type=EntryType.CHECKIN,
                            amount=fit, recorded_at=t, reason=f"check-in: streak day {streak}", source=source,
                            lots=((lot_id, fit),), meta=meta)
        from . import tiers   # E7: what a member earns counts towards the tier, in the credit's write
        qualified, _ = tiers.qualify(engagement, fit, at, rules, now)
        answer.update(tiers.tier_up_answer(account.engagement, qualified, rules, now))
        change = replace(change, balance_delta=fit, debt_delta=debt_left - account.debt, last_tx=t,
                         lots=(LotWrite(lot=lot, new=True),), entries=(entry,), engagement=qualified)
    record = IdempotencyRecord(key=checkin_key(member_id, day), body_hash=at.isoformat(), response=answer,
                               member_id=member_id)
    return replace(change, idempotency=record), answer


def challenge_credits(state: CheckinState, member_id: str, day: date, points: int, *, checkin_day: bool = False,
                      streak: int | None = None) -> tuple[ParticipantCredit, ...]:
    """What earning `points` on member-local `day` earns the member in each challenge
    they are enrolled in whose days include `day`: a check-in (`checkin_day`) also marks
    the challenge's day number and sets the streak; any other earning only adds points
    (an earning of 0 outside a check-in is nothing)."""
    if not checkin_day and points <= 0:
        return ()
    credits = []
    for challenge_id, starts_on, ends_on, shard in state.challenges:
        starts = date.fromisoformat(starts_on)
        if not starts <= day <= date.fromisoformat(ends_on):
            continue
        credits.append(ParticipantCredit(
            challenge_id=challenge_id, member_id=member_id, shard=shard, points=points, month=day.strftime("%Y-%m"),
            day=(day - starts).days + 1 if checkin_day else None,
            local_date=day.isoformat() if checkin_day else None, streak=streak if checkin_day else None))
    return tuple(credits)
