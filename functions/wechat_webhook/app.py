"""GET|POST /webhooks/wechat: server verification, delivery reports, messages, follow events."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty.web.api import http_app, text
from loyalty.web.provider_edge import wechat_push, wechat_verify

logger = Logger()
app = http_app()


@app.get("/webhooks/wechat")
def verify():
    return text(200, wechat_verify(app.current_event.raw_event))


@app.post("/webhooks/wechat")
def push():
    body = wechat_push(app.current_event.raw_event, datetime.now(timezone.utc))
    return text(200, body, "text/plain" if body == "success" else "application/xml")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    return app.resolve(event, context)
