"""Real-time notices the member triggered (积分到账, redemption confirmed): queued after the
change they announce. The change is already safe: a notice that cannot be queued is
logged and lost, never the credit or the redemption (a retry of the request queues it
again, and the dispatcher sends it once, from the job id)."""
from __future__ import annotations

from datetime import datetime
from typing import Protocol

from .dispatcher import notice_job


class Queues(Protocol):
    def send(self, name: str, body: dict, delay_s: int = 0) -> None: ...


def _queue(queues: Queues, job: dict, log) -> bool:
    try:
        queues.send("jobs", job)
        return True
    except Exception as exc:  # noqa: BLE001 - a notice must never fail what it announces
        log.error("notice not queued", extra={"job_id": job["job_id"], "error": type(exc).__name__})
        return False


def points_credited(queues: Queues, result: dict, now: datetime, log) -> bool:
    """The 积分到账 notice of an order credit (only for points earned)."""
    if result["points"] <= 0:
        return False
    return _queue(queues, notice_job(result["event_id"], result["member_id"], "points_credited",
                                     {"points": result["points"], "balance": result["balance"]}, now), log)


def credits(queues: Queues, told: list[dict], now: datetime, log) -> int:
    """The points-credited notices a service told of beyond the caller's own answer (a
    referrer's reward, order points released after the return window); each job id
    comes from what credited them, so a retry queues the same notice."""
    return sum(points_credited(queues, notice, now, log) for notice in told if notice.get("kind") == "points_credited")


def redemption_confirmed(queues: Queues, view: dict, item_name: str | None, now: datetime, log) -> bool:
    """The redemption-confirmed notice, with the voucher code."""
    return _queue(queues, notice_job(view["redemption_id"], view["member_id"], "redemption_confirmed",
                                     {"item": item_name or view["item_id"], "code": view["code"],
                                      "balance": view["balance"]}, now), log)


def tier_changes(queues: Queues, told: list[dict], rules, now: datetime, log) -> int:
    """The tier-up notices an order event told of (loyalty.engagement.tiers.told); the job
    id comes from the event, so a retried callback queues the same notice."""
    sent = 0
    for notice in told:
        if notice.get("kind") == "tier_up":
            sent += _queue(queues, notice_job(notice["event_id"], notice["member_id"], rules.tiers.up_template,
                                              {"tier": notice["tier"], "qualifying_points": notice["qualifying_points"]},
                                              now), log)
    return sent
