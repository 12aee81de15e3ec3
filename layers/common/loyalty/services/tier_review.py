"""The nightly tier review (E7): downgrade the members whose rolling window fell below
their tier (and tell them), warn those whose review is near, and read nobody else.

Members are found in the tier review index by the day the review looks at them next
(`TierState.check_on`, kept by every write of the engagement state). The index carries
the member's engagement and version, so each member costs one index item and one write
on condition of that version; a member who moved since (the index lags, or an order
came in) is read again and decided again. A night missed is made up by the next run
(it reads `catch_up_days` earlier review days too), and a run again for any date decides
nothing twice: a decided member's check day moves on, a warning is remembered as
`warned_on`, and the warning's job id comes from the member and the review day.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from ..domain import Account
from ..engagement import tiers
from ..errors import ConcurrentUpdate
from ..ports import AccountStore
from ..records import Change
from ._retry import with_retries

if TYPE_CHECKING:
    from ..rules import Rules


class Queues(Protocol):
    def send(self, name: str, body: dict, delay_s: int = 0) -> None: ...


@dataclass
class TierReviewSummary:
    time: str
    days: list[str] = field(default_factory=list)
    members: int = 0
    downgraded: int = 0
    warned: int = 0
    unchanged: int = 0
    retried_members: int = 0

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def warning_job(member_id: str, variables: dict, now: datetime, template: str) -> dict:
    """A scheduled (windowed, quiet-hours-keeping) utility message; one per review day."""
    return {"job_id": f"tier-warning#{member_id}#{variables['review_date']}", "kind": "campaign",
            "member_id": member_id, "template": template, "variables": variables, "planned_at": now.isoformat()}


def downgrade_job(member_id: str, change: "tiers.TierChange", day: date, now: datetime, template: str) -> dict:
    """The downgrade notice, a utility message in the send windows like the warning."""
    return {"job_id": f"tier-down#{member_id}#{day.isoformat()}", "kind": "campaign", "member_id": member_id,
            "template": template, "planned_at": now.isoformat(),
            "variables": {"tier": change.new, "previous": change.old, "qualifying_points": change.qualifying_points}}


def review_tiers(store: AccountStore, queues: Queues, rules: "Rules", now: datetime, shards: int,
                 catch_up_days: int | None = None) -> TierReviewSummary:
    """Review every member whose check day is on or before `now`'s programme-local day
    (and no more than `catch_up_days` before it)."""
    today = tiers.local_day(now, rules)
    catch_up = rules.tiers.catch_up_days if catch_up_days is None else catch_up_days
    summary = TierReviewSummary(time=now.isoformat())
    for offset in range(catch_up, -1, -1):
        day = today - timedelta(days=offset)
        summary.days.append(day.isoformat())
        for shard in range(shards):
            for page in store.tier_reviews(day, shard):
                for account in page:
                    _review_member(store, queues, rules, account, today, now, summary)
    return summary


def _review_member(store: AccountStore, queues: Queues, rules: "Rules", account: Account, today: date,
                   now: datetime, summary: TierReviewSummary) -> None:
    summary.members += 1
    try:
        change, warn = _decide_and_commit(store, queues, rules, account, today, now)
    except ConcurrentUpdate:
        summary.retried_members += 1
        change, warn = with_retries(lambda: _decide_and_commit(
            store, queues, rules, store.load_account(account.member_id, with_lots=False), today, now))
    if change is not None:
        summary.downgraded += 1
    elif warn:
        summary.warned += 1
    else:
        summary.unchanged += 1


def _decide_and_commit(store: AccountStore, queues: Queues, rules: "Rules", account: Account, today: date,
                       now: datetime):
    check_on = account.engagement.tier.check_on
    if check_on is None or check_on > today.isoformat():
        return None, False   # moved on since the index was read: nothing due
    engagement, change, warn = tiers.review(account.engagement, today, rules)
    if warn:
        # Queued before the write that remembers it: a warning is never remembered unsent
        # (a repeat after a lost race carries the same job id, which the dispatcher sends once).
        queues.send("jobs", warning_job(account.member_id, tiers.warning_variables(engagement, today, rules), now,
                                        rules.tiers.warning_template))
    if engagement != account.engagement:
        store.commit(Change(member_id=account.member_id, expected_version=account.version, engagement=engagement))
    if change is not None:
        # Queued after the write: a member is never told of a downgrade that lost its race
        # (decided again, it may not happen). One per member and review day.
        queues.send("jobs", downgrade_job(account.member_id, change, today, now, rules.tiers.down_template))
    return change, warn
