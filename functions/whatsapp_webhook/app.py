"""GET|POST /webhooks/whatsapp: Meta's verification handshake, statuses, replies, preferences."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty.errors import LoyaltyError, Unauthorized
from loyalty.web.provider_edge import whatsapp_push, whatsapp_verify
from loyalty.web.responses import error_response

logger = Logger()


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    try:
        if event.get("httpMethod") == "GET":
            return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": whatsapp_verify(event)}
        outcomes = whatsapp_push(event, datetime.now(timezone.utc))
    except Unauthorized as error:
        return {"statusCode": 403 if event.get("httpMethod") == "GET" else 401, "body": str(error)}
    except LoyaltyError as error:
        return error_response(error)
    logger.info("whatsapp push", extra={"handled": [o.handled for o in outcomes]})
    return {"statusCode": 200, "headers": {"Content-Type": "text/plain"}, "body": "OK"}
