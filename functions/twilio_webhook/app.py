"""POST /webhooks/twilio/status and /webhooks/twilio/inbound (form posts, signed)."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty.web.api import http_app, text
from loyalty.web.provider_edge import twilio_push

logger = Logger()
app = http_app()
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _push(kind: str):
    outcomes = twilio_push(app.current_event.raw_event, datetime.now(timezone.utc), kind)
    logger.info("twilio push", extra={"kind": kind, "handled": [o.handled for o in outcomes]})
    return text(200, EMPTY_TWIML, "text/xml")


@app.post("/webhooks/twilio/status")
def status():
    return _push("status")


@app.post("/webhooks/twilio/inbound")
def inbound():
    return _push("inbound")


@logger.inject_lambda_context(correlation_id_path="requestContext.requestId")
def handler(event, context):
    return app.resolve(event, context)
