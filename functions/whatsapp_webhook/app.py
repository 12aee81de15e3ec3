"""GET|POST /webhooks/whatsapp: Meta's verification handshake, statuses, replies, preferences."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty.errors import Unauthorized
from loyalty.web.api import http_app, text
from loyalty.web.provider_edge import whatsapp_push, whatsapp_verify

logger = Logger()
app = http_app()


@app.get("/webhooks/whatsapp")
def verify():
    try:
        return text(200, whatsapp_verify(app.current_event.raw_event))
    except Unauthorized as error:  # Meta expects 403 from a failed handshake
        return text(403, str(error))


@app.post("/webhooks/whatsapp")
def push():
    outcomes = whatsapp_push(app.current_event.raw_event, datetime.now(timezone.utc))
    logger.info("whatsapp push", extra={"handled": [o.handled for o in outcomes]})
    return text(200, "OK")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    return app.resolve(event, context)
