"""Nightly (EventBridge Scheduler): review the tiers due (E7): downgrade the members whose
rolling window fell below their tier, queue the warnings of those whose review is near."""
from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.domain import parse_time
from loyalty.services.tier_review import review_tiers
from loyalty.settings import settings

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    now = parse_time(event["time"])  # the schedule's time: re-runnable for any date
    catch_up = event.get("catch_up_days")
    summary = review_tiers(wiring.account_store(), wiring.queues(), wiring.rules(), now, settings().expiry_shards,
                           int(catch_up) if catch_up is not None else None)
    logger.info("tier review", extra=summary.as_dict())
    return summary.as_dict()
