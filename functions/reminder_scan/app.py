"""Daily (EventBridge Scheduler): plan the night's expiry reminders, one job per member,
fanned out to the jobs queue in batches of ten."""
from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.domain import parse_time
from loyalty.messaging.planning import plan_reminders
from loyalty.settings import settings

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    now = parse_time(event["time"])
    jobs = plan_reminders(wiring.ledger_store(), wiring.rules(), now, settings().expiry_shards)
    sent = wiring.queues().send_batch("jobs", [job.as_message() for job in jobs])
    logger.info("reminders planned", extra={"time": event["time"], "jobs": sent})
    return {"time": event["time"], "jobs": sent}
