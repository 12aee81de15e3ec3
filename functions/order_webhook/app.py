"""POST /webhooks/orders: the order system reports paid, refunded and cancelled orders."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty.errors import LoyaltyError
from loyalty.web.edge import header, notify_points_credited, order_callback, raw_body
from loyalty.web.responses import error_response, json_response

logger = Logger()


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    now = datetime.now(timezone.utc)
    try:
        result = order_callback(raw_body(event), header(event, "X-Signature"), now)
    except LoyaltyError as error:
        logger.info("order callback refused", extra={"error": type(error).__name__, "detail": str(error)})
        return error_response(error)
    logger.info("order callback applied", extra={"event_id": result["event_id"], "points": result["points"]})
    if result["points"] > 0:
        notify_points_credited(result, logger, now)
    return json_response(200, result)
