"""Every 15 minutes (EventBridge Scheduler): jobs whose send window has opened go back
to the jobs queue."""
from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.domain import parse_time

logger = Logger()
LOOKBACK_SLOTS = 8  # two hours: a missed run is made up by the next ones


@logger.inject_lambda_context
def handler(event, context):
    now = parse_time(event["time"])
    store, queues = wiring.messaging_store(), wiring.queues()
    released = 0
    for slot, job_id, job in store.due_deferred(now, LOOKBACK_SLOTS):
        if parse_time(job["not_before"]) <= now:
            queues.send("jobs", {**job, "planned_at": event["time"]})
            store.remove_deferred(slot, job_id)
            released += 1
    logger.info("deferred jobs released", extra={"time": event["time"], "released": released})
    return {"time": event["time"], "released": released}
