"""Nightly (EventBridge Scheduler): expire every lot due at the scheduled time, and
release the order points whose return window has ended (L5; none when the window is 0)."""
from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.domain import parse_time
from loyalty.services.expiry import expire_due_lots
from loyalty.services.pending import release_pending
from loyalty.settings import settings

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    now = parse_time(event["time"])  # the schedule's time: re-runnable for any date
    catch_up = event.get("catch_up_days", wiring.rules().expiry.catch_up_days)
    summary = expire_due_lots(wiring.account_store(), now, settings().expiry_shards, int(catch_up))
    logger.info("expiry run", extra=summary.as_dict())
    rules = wiring.rules()
    told: list[dict] = []
    released = release_pending(wiring.account_store(), rules, now, settings().expiry_shards, int(catch_up), told) \
        if rules.pending.return_window_days else 0
    if told:   # each release's points-credited notice (the messaging code loads only then)
        from loyalty.messaging import notices
        notices.credits(wiring.queues(), told, now, logger)
    return {**summary.as_dict(), **({"pending_released": released} if released else {})}
