"""Every 15 minutes (EventBridge Scheduler): jobs whose send window has opened go back
to the jobs queue, however long they waited (a missed run is made up by the next one)."""
from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.domain import parse_time

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    now = parse_time(event["time"])
    store, queues = wiring.messaging_store(), wiring.queues()
    released = 0
    for deferred in store.due_deferred(now):
        queues.send("jobs", {**deferred.job, "planned_at": event["time"]})
        store.remove_deferred(deferred)
        released += 1
    logger.info("deferred jobs released", extra={"time": event["time"], "released": released})
    return {"time": event["time"], "released": released}
