"""Tier figures (E7): items read by the nightly tier review, k members due among N."""
from __future__ import annotations

from datetime import date, timedelta

from bench.ledger import Context, handler, ledger_store
from bench.logs import say
from loyalty.domain import parse_time


def load_members(store, members: list[tuple[str, "Engagement"]]) -> None:
    """Each member's item as a write of its engagement state leaves it (the review index's
    keys with it), 25 items to a BatchWriteItem."""
    from loyalty.adapters.ledger.base import member_pk
    from loyalty.adapters.ledger.members import PROFILE, tier_review_keys
    with store.Member.batch_write() as batch:
        for member, engagement in members:
            keys = tier_review_keys(member, engagement, store.shards)
            batch.save(store.Member(member_pk(member), PROFILE, member_id=member, balance=2020, debt=0, version=1,
                                    engagement=engagement.to_document(), tier_pk=keys[0] if keys else None,
                                    tier_sk=keys[1] if keys else None))


def nightly_tier_review(aws, counter, row, members: int, due: int) -> None:
    """`members` silver members; `due` of them due tonight (half downgraded, half warned),
    the others due on later nights."""
    from loyalty.engagement.state import Engagement, TierState
    aws.reset()
    run_at = parse_time("2027-11-21T00:15:00+08:00")
    today = date(2027, 11, 21)
    say(f"loading {members} silver members, {due} of them due for their tier review tonight ...")
    loaded = []
    for i in range(members):
        if i < due:
            # half: the qualifying day left the window tonight (downgrade); half: 5 days to go (warning)
            earned = today - timedelta(days=90 if i % 2 == 0 else 85)
        else:
            earned = today - timedelta(days=i % 80)
        review = earned + timedelta(days=90)
        check = review if i < due and i % 2 == 0 else max(review - timedelta(days=7), today)
        loaded.append((f"tier-{i:06d}", Engagement(tier=TierState(
            name="silver", qualifying=((earned.isoformat(), 2020),), review_on=review.isoformat(),
            check_on=check.isoformat()))))
    load_members(ledger_store(aws), loaded)
    review_tiers = handler("tier_review")
    counter.reset()
    summary = review_tiers({"time": run_at.isoformat()}, Context())
    decided = summary["downgraded"] + summary["warned"]
    row(f"tier review, {members} members, k={due} due: downgraded + warned", str(decided), str(due), decided == due)
    row(f"tier downgrades due tonight, k={due} members: items read", str(counter.items_read),
        f"≤ 1.05·k = {1.05 * due:.0f}", counter.items_read <= 1.05 * due)
    row("tier review: Scans", str(counter.calls["Scan"]), "0", counter.calls["Scan"] == 0)
    row("tier review: write calls per member due", f"{counter.writes / max(due, 1):.2f}", "1", counter.writes == due)
    counter.reset()
    again = review_tiers({"time": run_at.isoformat()}, Context())
    row("tier review re-run: members decided / writes", f"{again['downgraded'] + again['warned']} / {counter.writes}",
        "0 / 0", again["downgraded"] + again["warned"] == 0 and counter.writes == 0)
