"""The one SQS handler behind send_whatsapp, send_wechat and send_sms."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from .. import wiring
from ..messaging.sending import RetryLater, SendLater, send_message
from .sqs import process_batch


def sender_handler(channel: str, logger, clock: Callable[[], datetime]):
    """A Lambda handler sending the `channel` queue's messages, reporting partial failures.
    `clock` is the function's wall clock (the time a send is recorded at)."""

    def send(body: dict, record: dict) -> None:
        receives = int(record.get("attributes", {}).get("ApproximateReceiveCount", "1"))
        try:
            outcome = send_message(body["message_id"], channel, msgs=wiring.messaging_store(),
                                   ledger=wiring.ledger_store(), queues=wiring.queues(),
                                   send=wiring.channel_sender(channel), rules=wiring.rules(),
                                   now=clock(), last_delivery=receives >= wiring.settings().send_max_receives)
        except RetryLater as retry:
            # Backoff through the queue itself: the message comes back after the delay.
            wiring.queues().change_visibility(record["receiptHandle"], retry.delay_s, channel)
            raise
        except SendLater as later:
            # Our rate limit: a fresh copy after the wait (this one is done with), so that
            # waiting never counts towards the dead-letter queue's maxReceiveCount.
            wiring.queues().send(channel, body, delay_s=later.delay_s)
            outcome = f"rate_limited:{later.delay_s}s"
        # `result` (sent, failed, suppressed, fallback, ...) feeds the template's metric filters.
        logger.info("message handled", extra={"message_id": body["message_id"], "outcome": outcome,
                                               "result": outcome.split(":", 1)[0]})

    @logger.inject_lambda_context
    def handler(event, context):
        return process_batch(event, send, logger)

    return handler
