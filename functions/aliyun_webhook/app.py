"""POST /webhooks/aliyun/report (SmsReport) and /webhooks/aliyun/up (SmsUp)."""
import json
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty.web.api import http_app, text
from loyalty.web.provider_edge import aliyun_push

logger = Logger()
app = http_app()
RECEIVED = json.dumps({"code": 0, "msg": "接收成功"}, ensure_ascii=False)


def _push(kind: str):
    outcomes = aliyun_push(app.current_event.raw_event, datetime.now(timezone.utc), kind)
    logger.info("aliyun push", extra={"kind": kind, "handled": [o.handled for o in outcomes]})
    return text(200, RECEIVED, "application/json")


@app.post("/webhooks/aliyun/report")
def report():
    return _push("report")


@app.post("/webhooks/aliyun/up")
def up():
    return _push("up")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    return app.resolve(event, context)
