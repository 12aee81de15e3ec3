"""What a member earns by joining and completing its profile, by opting in, and by
referring (E2, E3): the profile-completed and first opt-in milestones, the referral join
bonuses (the new member's and the referrer's, in one transaction over both accounts), and
referral rings held for review (E8)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from ..domain import Account, EntryType, LedgerEntry, Lot, LotWrite, add_months, in_sequence, next_tx_time, \
    settle_debt, stable_id, utc_key
from ..engagement.milestones import Bonus, plan_first_opt_in, plan_profile_completed
from ..engagement.referrals import REFERRAL_JOIN, REFERRAL_JOIN_REFERRER, Hold, recent_referrals, referral_decision
from ..errors import Conflict, Invalid
from ..ports import AccountStore, ProfileStore
from ..records import Change, Profile, Review
from ._retry import with_retries

if TYPE_CHECKING:
    from ..rules import Rules


def settle_referrer(profiles: ProfileStore, accounts: AccountStore, profile: Profile) -> tuple[Profile, str | None]:
    """Check the profile's referrer before anything is written. Returns the profile to
    store (the referrer fixed at join is kept when the body leaves it out) and the
    referrer this request joins with, if any.

    A member cannot refer themselves (Invalid); a referrer is given when joining: on the
    member's first profile, before any paid order; once fixed it cannot be switched
    (Conflict: one referral reward per referee); an unknown referrer is Invalid."""
    me = profile.member_id
    if profile.referrer == me:
        raise Invalid([{"field": "referrer", "problem": "a member cannot refer themselves"}])
    progress = accounts.load_account(me, with_lots=False).engagement.progress
    if progress.referrer:
        if profile.referrer is None:
            return replace(profile, referrer=progress.referrer), None
        if profile.referrer != progress.referrer:
            raise Conflict(f"member {me} joined with referrer {progress.referrer}; a referrer cannot be changed")
        return profile, None
    if profile.referrer is None:
        return profile, None
    previous = profiles.get_profile(me)
    # a previous profile naming this referrer: an earlier attempt of this join stored it
    if (previous is not None and previous.referrer != profile.referrer) or progress.orders_paid > 0:
        raise Conflict(f"member {me} has already joined: a referrer is given when joining")
    if profiles.get_profile(profile.referrer) is None and \
            accounts.load_account(profile.referrer, with_lots=False).version == 0:
        raise Invalid([{"field": "referrer", "problem": f"no member {profile.referrer}"}])
    return profile, profile.referrer


def reward_profile(accounts: AccountStore, rules: "Rules", profile: Profile, referrer: str | None,
                   now: datetime, notices: list | None = None) -> None:
    """After the profile is stored: the profile-completed milestone, and for a member
    joining with a referrer the join bonus to both (or both held, with the reason, when
    the referral looks like a ring or one source of many: each share a review in the queue
    of the member it belongs to, its points in that member's `pending`). Once each: a
    retried request finds them in the member's progress and writes nothing. `notices`,
    when given, receives the referrer's points-credited notice."""
    me = profile.member_id

    def attempt() -> None:
        account = accounts.load_account(me, with_lots=False)
        progress, bonus = plan_profile_completed(rules.milestones, account.engagement.progress, profile)
        bonuses, also, held, credited = ([bonus] if bonus else []), [], [], []
        if referrer is not None and progress.referrer is None:
            other = accounts.load_account(referrer, with_lots=False)
            decision = referral_decision(rules.referrals, me, referrer, _chain(accounts, other, rules.referrals.ring_depth),
                                         other.engagement.progress.referred, now)
            points = rules.referrals.join_points
            # the referrer's latest referrals, as many as the decision needs: the state stays small
            recent = recent_referrals(other.engagement.progress.referred, now)[-rules.referrals.max_per_source_day:]
            theirs = replace(other.engagement.progress, referred=recent + (utc_key(now),))
            mine = Bonus(REFERRAL_JOIN, points, f"referral {REFERRAL_JOIN}: joined on {referrer}'s referral")
            their_bonus = Bonus(REFERRAL_JOIN_REFERRER, points,
                                f"referral {REFERRAL_JOIN_REFERRER}: {me} joined on the referral")
            progress = replace(progress, referrer=referrer, rewarded=progress.rewarded + (REFERRAL_JOIN,))
            theirs_change = bonus_change(rules, other, [], now, replace(other.engagement, progress=theirs),
                                         f"referral:{me}")
            if isinstance(decision, Hold):
                # kept on the referee (the flag that holds its first order's share too), even at 0 points
                progress = replace(progress, held=progress.held + (
                    (REFERRAL_JOIN, me, points, decision.reason), (REFERRAL_JOIN_REFERRER, referrer, points, decision.reason)))
                if points:   # each share in the review queue of the member it belongs to, in this transaction
                    from ..engagement.reviews import hold_for_review
                    held.append(referral_review(me, mine, f"member:{me}", decision.reason, now,
                                                {"referrer": referrer}))
                    theirs_change = hold_for_review(theirs_change, theirs_change.engagement, referral_review(
                        referrer, their_bonus, f"referral:{me}", decision.reason, now, {"referee": me}))
            elif points:
                bonuses.append(mine)
                theirs_change = bonus_change(rules, other, [their_bonus], now, theirs_change.engagement,
                                             f"referral:{me}")
                credited.append((referrer, their_bonus.points, other.balance + theirs_change.balance_delta))
            also.append(theirs_change)
        if progress == account.engagement.progress:
            return
        from ..engagement.reviews import hold_for_review   # a rare path: not at the handlers' import
        change = bonus_change(rules, account, bonuses, now, replace(account.engagement, progress=progress),
                              f"member:{me}")
        for review in held:
            change = hold_for_review(change, change.engagement, review)
        accounts.commit(replace(change, also=tuple(also)))
        if notices is not None:   # the referrer's share, credited: their points-credited notice
            notices.extend({"kind": "points_credited", "event_id": f"referral#{me}#join", "member_id": member,
                            "points": points_, "balance": balance} for member, points_, balance in credited)

    with_retries(attempt)


def reward_opt_in(accounts: AccountStore, rules: "Rules", member_id: str, now: datetime) -> None:
    """The first opt-in on any channel (an API consent, a keyword, a WeChat follow): once."""

    def attempt() -> None:
        account = accounts.load_account(member_id, with_lots=False)
        progress, bonus = plan_first_opt_in(rules.milestones, account.engagement.progress)
        if progress == account.engagement.progress:
            return
        accounts.commit(bonus_change(rules, account, [bonus] if bonus else [], now,
                                     replace(account.engagement, progress=progress), f"member:{member_id}"))

    with_retries(attempt)


def bonus_change(rules: "Rules", account: Account, bonuses: list[Bonus], now: datetime, engagement,
                 source: str) -> Change:
    """The member's account with one lot and one EARN entry per bonus (ids from the
    member, the rule and the source: a referrer's one per referee), the points settling a debt first,
    and its new engagement state, under the version read."""
    member = account.member_id
    t = next_tx_time(now, account.last_tx)
    debt, lots, entries = account.debt, [], []
    for bonus in bonuses:
        lot_id = "m-" + stable_id(member, bonus.rule_id, source)
        remaining, debt = settle_debt(bonus.points, debt)
        lots.append(LotWrite(Lot(lot_id=lot_id, earned_at=now, expires_at=add_months(now, rules.expiry.months),
                                 points=bonus.points, remaining=remaining, source=source), new=True))
        entries.append(LedgerEntry(entry_id=stable_id(member, bonus.rule_id, source, "bonus"), type=EntryType.EARN,
                                   amount=bonus.points, recorded_at=t, reason=bonus.reason, source=source,
                                   lots=((lot_id, bonus.points),), meta={"rule": bonus.rule_id}))
    entries = in_sequence(entries)
    return Change(member_id=member, expected_version=account.version, balance_delta=sum(b.points for b in bonuses),
                  debt_delta=debt - account.debt, last_tx=entries[-1].recorded_at if entries else None,
                  lots=tuple(lots), entries=entries, engagement=engagement)


def referral_review(member_id: str, bonus: Bonus, source: str, reason: str, now: datetime, meta: dict,
                    earned_at: datetime | None = None) -> Review:
    """A flagged referral's share for `member_id`, held in the review queue (kind
    "referral"): approved, the EARN entry naming the rule and the lot the credit would
    have made. One per member, rule and source (a retry lands on the same one)."""
    from ..engagement.reviews import review_id_for
    return Review(review_id=review_id_for("referral", member_id, f"{bonus.rule_id}:{source}"), member_id=member_id,
                  kind="referral", points=bonus.points, reason=reason, created_at=now,
                  entry_type=EntryType.EARN.value, entry_reason=bonus.reason, source=source,
                  earned_at=earned_at or now, meta={"rule": bonus.rule_id, **meta})


def _chain(accounts: AccountStore, referrer: Account, depth: int) -> tuple[str, ...]:
    """The referrer's own referrer, theirs, ... (one read each, `depth` at most)."""
    chain, current = [], referrer
    while len(chain) < depth and current.engagement.progress.referrer and \
            current.engagement.progress.referrer not in chain:
        chain.append(current.engagement.progress.referrer)
        current = accounts.load_account(chain[-1], with_lots=False)
    return tuple(chain)
