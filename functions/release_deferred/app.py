"""Every 15 minutes (EventBridge Scheduler): jobs whose send window has opened go back
to the jobs queue, however long they waited (a missed run is made up by the next one)."""
from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.domain import parse_time
from loyalty.messaging.dispatcher import release_deferred

logger = Logger()
BATCH = 500
RESERVE_MS = 15_000   # a batch of releases takes well under this


@logger.inject_lambda_context
def handler(event, context):
    now = parse_time(event["time"])
    released = 0
    while True:
        batch = release_deferred(wiring.messaging_store(), wiring.queues(), now, BATCH)
        released += batch
        if batch < BATCH or context.get_remaining_time_in_millis() < RESERVE_MS:
            break
    logger.info("deferred jobs released", extra={"time": event["time"], "released": released})
    return {"time": event["time"], "released": released}
