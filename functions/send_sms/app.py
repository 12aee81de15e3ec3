"""SQS (sms queue): send each outbox message through the provider, record the result."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty.web.senders import sender_handler

logger = Logger()
handler = sender_handler("sms", logger, clock=lambda: datetime.now(timezone.utc))
