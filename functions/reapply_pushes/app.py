"""Every 5 minutes (EventBridge Scheduler): provider pushes that were stored but not
applied (the webhook failed midway, and Twilio and Aliyun do not retry) are applied now."""
from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.domain import parse_time
from loyalty.messaging.pushes import reapply_pushes

logger = Logger()


@logger.inject_lambda_context
def handler(event, context):
    counts = reapply_pushes(wiring.messaging_store(), wiring.ledger_store(), wiring.queues(), wiring.rules(),
                            parse_time(event["time"]))
    logger.info("stored pushes applied again", extra={"time": event["time"], **counts})
    return {"time": event["time"], **counts}
