"""POST /webhooks/aliyun/report (SmsReport) and /webhooks/aliyun/up (SmsUp)."""
import json
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty.errors import LoyaltyError
from loyalty.web.provider_edge import aliyun_push
from loyalty.web.responses import error_response

logger = Logger()
RECEIVED = json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False)


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    kind = "report" if event.get("path", "").endswith("/report") else "up"
    try:
        outcomes = aliyun_push(event, datetime.now(timezone.utc), kind)
    except LoyaltyError as error:
        return error_response(error)
    logger.info("aliyun push", extra={"kind": kind, "handled": [o.handled for o in outcomes]})
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": RECEIVED}
