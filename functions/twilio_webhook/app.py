"""POST /webhooks/twilio/status and /webhooks/twilio/inbound (form posts, signed)."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty.errors import LoyaltyError
from loyalty.web.provider_edge import twilio_push
from loyalty.web.responses import error_response

logger = Logger()
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    kind = "status" if event.get("path", "").endswith("/status") else "inbound"
    try:
        outcomes = twilio_push(event, datetime.now(timezone.utc), kind)
    except LoyaltyError as error:
        return error_response(error)
    logger.info("twilio push", extra={"kind": kind, "handled": [o.handled for o in outcomes]})
    return {"statusCode": 200, "headers": {"Content-Type": "text/xml"}, "body": EMPTY_TWIML}
