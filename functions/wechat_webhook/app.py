"""GET|POST /webhooks/wechat: server verification, delivery reports, messages, follow events."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty.errors import LoyaltyError
from loyalty.web.provider_edge import wechat_push, wechat_verify
from loyalty.web.responses import error_response

logger = Logger()


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    try:
        if event.get("httpMethod") == "GET":
            body, content_type = wechat_verify(event), "text/plain"
        else:
            body = wechat_push(event, datetime.now(timezone.utc))
            content_type = "text/plain" if body == "success" else "application/xml"
    except LoyaltyError as error:
        return error_response(error)
    return {"statusCode": 200, "headers": {"Content-Type": content_type}, "body": body}
