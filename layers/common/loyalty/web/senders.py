"""The one SQS handler behind send_whatsapp, send_wechat and send_sms."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from aws_lambda_powertools.utilities.batch import process_partial_response

from .. import wiring
from ..messaging.sending import RetryLater, SendLater, send_message
from .sqs import SqsBatch


# Time one provider call can take (connect 3 s + read 8 s) and a margin: a send is not
# started with less left, so the function never stops in the middle of one.
SEND_RESERVE_MS = 12_000


class OutOfTime(Exception):
    """Not started: too little time left before the function's timeout."""


def sender_handler(channel: str, logger, clock: Callable[[], datetime]):
    """A Lambda handler sending the `channel` queue's messages, reporting partial failures.
    `clock` is the function's wall clock (the time a send is recorded at). When the batch
    outlasts the function's time, the messages not started go back to the queue at once."""

    def send(record, context) -> None:
        # Short of time: this record's message is made visible again at once and the
        # record raises, so BatchProcessor reports it failed; every later record of the
        # batch finds even less time and does the same. No send starts, nothing waits
        # out its visibility timeout, and the receive it cost is the only trace.
        remaining = getattr(context, "get_remaining_time_in_millis", None)
        if remaining is not None and remaining() < SEND_RESERVE_MS:
            wiring.queues().change_visibility(record.receipt_handle, 0, channel)
            raise OutOfTime(f"{remaining()} ms left")
        body = record.json_body
        receives = int((record.get("attributes") or {}).get("ApproximateReceiveCount", "1"))
        try:
            outcome = send_message(body["message_id"], channel, msgs=wiring.messaging_store(),
                                   ledger=wiring.ledger_store(), queues=wiring.queues(),
                                   send=wiring.channel_sender(channel), rules=wiring.rules(),
                                   now=clock(), last_delivery=receives >= wiring.settings().send_max_receives)
        except RetryLater as retry:
            # Backoff through the queue itself: the message comes back after the delay.
            wiring.queues().change_visibility(record.receipt_handle, retry.delay_s, channel)
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
        return process_partial_response(event, lambda record: send(record, context), SqsBatch(logger), context)

    return handler
