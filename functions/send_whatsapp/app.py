"""SQS (whatsapp queue): send each outbox message through the provider, record the result."""
from datetime import datetime, timezone

from aws_lambda_powertools import Logger

from loyalty import wiring
from loyalty.messaging.sending import RetryLater, send_message
from loyalty.web.sqs import process_batch

logger = Logger()
CHANNEL = "whatsapp"


def _send(body: dict, record: dict) -> None:
    try:
        outcome = send_message(body["message_id"], CHANNEL, msgs=wiring.messaging_store(), ledger=wiring.ledger_store(),
                               queues=wiring.queues(), send=wiring.channel_sender(CHANNEL), rules=wiring.rules(),
                               now=datetime.now(timezone.utc))
    except RetryLater as retry:
        # Backoff through the queue itself: the message comes back after the delay.
        wiring.queues().change_visibility(record["receiptHandle"], retry.delay_s, CHANNEL)
        raise
    logger.info("message handled", extra={"message_id": body["message_id"], "outcome": outcome})


@logger.inject_lambda_context
def handler(event, context):
    return process_batch(event, _send, logger)
