"""The review queue (E1, E8, L5): earnings held for an operator's decision.

A rule family that must not credit an earning before a person looks at it (an activity
that needs review, one risk control flagged, a referral ring) plans its change as usual
and hands it to `hold_for_review` instead of adding the lot and the entry: the review
record, its place in the open queue and the member's `pending` points are then written
in that change's one transaction. Held points are in no lot and not spendable, so the
ledger's invariant (balance = entries = lots - debt) holds throughout. An operator's
`decide_review` credits them (approve: the lot and entry the earning would have made)
or drops them (reject), once."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from ..domain import EntryType, LedgerEntry, Lot, LotWrite, add_months, next_tx_time, settle_debt, stable_id
from ..errors import Conflict, Invalid, NotFound
from ..ports import ReviewStore
from ..records import Change, Review
from ..services._retry import with_retries
from .state import Engagement

if TYPE_CHECKING:
    from ..rules import Rules

DECISIONS = {"approve": "approved", "reject": "rejected"}
STATUSES = ("open", "approved", "rejected")


def review_id_for(kind: str, member_id: str, source_id: str) -> str:
    """The review of one earning: derived from it, so a retry lands on the same one."""
    return "r-" + stable_id("review", kind, member_id, source_id)


def hold_for_review(change: Change, engagement: Engagement, review: Review) -> Change:
    """`change` (planned on a read of the member's account: it carries that read's
    expected_version) holding `review.points` for review: the member's engagement state
    `engagement` (the one the change would write otherwise) with the points added to
    `pending`, and the review record with its place in the open queue, all in the
    change's one transaction. The change must not credit those points itself."""
    if change.expected_version is None or not change.touches_account:
        raise ValueError("a hold is written with the account it was planned on")
    if review.status != "open" or review.points <= 0:
        raise ValueError("a hold opens a review of a positive number of points")
    return replace(change, engagement=replace(engagement, pending=engagement.pending + review.points),
                   review=review, review_expected_status=None)


def decide_review(store: ReviewStore, rules: "Rules", review_id: str, decision: str, note: str, operator_id: str,
                  now: datetime, notices: list | None = None) -> tuple[Review, int | None]:
    """Approve (credit the held points as the lot and entry the earning would have made)
    or reject (drop them) an open review, as `operator_id`. Deciding again the same way
    answers the decision as recorded; the other way is a Conflict. Returns the review and
    the member's balance after this call's credit (None when it changed nothing);
    `notices`, when given, receives the tier-up this call's credit caused."""
    if decision not in DECISIONS:
        raise Invalid([{"field": "decision", "problem": "approve or reject"}])
    target = DECISIONS[decision]

    def attempt() -> tuple[Review, int | None]:
        review = store.get_review(review_id)
        if review is None:
            raise NotFound(f"no review {review_id}")
        if review.status != "open":
            if review.status == target:
                return review, None
            raise Conflict(f"review {review_id} was already {review.status}")
        account = store.load_account(review.member_id, with_lots=False)
        engagement = account.engagement
        decided = replace(review, status=target, note=note, operator_id=operator_id, decided_at=now)
        state = replace(engagement, pending=max(0, engagement.pending - review.points))
        change = Change(member_id=review.member_id, expected_version=account.version, engagement=state,
                        review=decided, review_expected_status="open")
        balance = account.balance
        if target == "approved":
            change = _credit(rules, change, account, decided, now)
            balance += review.points
        from .tiers import TIER_UP, tier_up_answer
        up = tier_up_answer(engagement, change.engagement, rules, now)
        store.commit(change)
        if up and notices is not None:
            notices.append({"kind": TIER_UP, "event_id": f"review#{review_id}", "member_id": review.member_id,
                            **up[TIER_UP]})
        return decided, balance

    return with_retries(attempt)


def _credit(rules: "Rules", change: Change, account, review: Review, now: datetime) -> Change:
    """The lot and entry of an approved review: earned when the earning happened, expiring
    like any earning (from the decision, when that lifetime has passed meanwhile)."""
    expires_at = add_months(review.earned_at, rules.expiry.months)
    if expires_at <= now:
        expires_at = add_months(now, rules.expiry.months)
    lot_id = "rv-" + stable_id("review-lot", review.review_id)
    lot_points, debt_left = settle_debt(review.points, account.debt)
    t = next_tx_time(now, account.last_tx)
    lot = Lot(lot_id=lot_id, earned_at=review.earned_at, expires_at=expires_at, points=review.points,
              remaining=lot_points, source=review.source)
    entry = LedgerEntry(entry_id=stable_id("review-entry", review.review_id), type=EntryType(review.entry_type),
                        amount=review.points, recorded_at=t, reason=review.entry_reason, source=review.source,
                        lots=((lot_id, review.points),),
                        meta={**review.meta, "review_id": review.review_id, "approved_by": review.operator_id or ""})
    qualified = change.engagement
    if review.kind != "referral":   # a referral reward does not count towards the tier, credited or approved
        from . import tiers   # E7: approved points count towards the tier as earned when the earning happened
        qualified, _ = tiers.qualify(change.engagement, review.points, review.earned_at, rules, now)
    participants = ()
    if review.entry_type == EntryType.ACTIVITY.value:   # E5: an approved activity counts in the member's challenges
        from .daily_checkins import challenge_credits, local_date   # (the day in the programme's zone: no profile read)
        participants = challenge_credits(account.engagement.checkin, review.member_id,
                                         local_date(review.earned_at, rules.program_timezone), review.points)
    return replace(change, balance_delta=review.points, debt_delta=debt_left - account.debt, last_tx=t,
                   lots=(LotWrite(lot=lot, new=True),), entries=(entry,), engagement=qualified,
                   participants=participants)


def reviews_page(store: ReviewStore, status: str, cursor: str | None, limit: int) -> dict:
    if status not in STATUSES:
        raise Invalid([{"field": "status", "problem": f"one of {', '.join(STATUSES)}"}])
    found, next_cursor = store.reviews_page(status, cursor, limit)
    return {"reviews": [review_view(r) for r in found], "cursor": next_cursor}


def review_view(r: Review) -> dict:
    body = {"review_id": r.review_id, "member_id": r.member_id, "kind": r.kind, "points": r.points,
            "reason": r.reason, "created_at": r.created_at.isoformat(), "status": r.status, "source": r.source}
    if r.status != "open":
        body.update({"decision": "approve" if r.status == "approved" else "reject", "note": r.note,
                     "operator_id": r.operator_id, "decided_at": r.decided_at.isoformat() if r.decided_at else None})
    return body
