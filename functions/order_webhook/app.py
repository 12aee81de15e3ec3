"""POST /webhooks/orders: the order system reports paid, refunded and cancelled orders."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.messaging import notices
from loyalty.web.api import http_app, raw_body, reply
from loyalty.web.edge import order_callback

logger = Logger()
app = http_app()


@app.post("/webhooks/orders")
def order_event():
    now = datetime.now(timezone.utc)
    told: list[dict] = []
    result = order_callback(raw_body(app), app.current_event.get_header_value("X-Signature"), now, told)
    logger.info("order callback applied", extra={"event_id": result["event_id"], "points": result["points"]})
    notices.points_credited(wiring.queues(), result, now, logger)
    notices.tier_changes(wiring.queues(), told, wiring.rules(), now, logger)
    notices.credits(wiring.queues(), told, now, logger)   # a referrer's reward
    return reply(200, result)


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    return app.resolve(event, context)
