"""The one SQS handler behind send_whatsapp, send_wechat and send_sms."""
from __future__ import annotations

from datetime import datetime
from typing import Callable

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, SchemaValidationError
from aws_lambda_powertools.utilities.batch import process_partial_response

from .. import wiring
from ..messaging.sending import RetryLater, SendLater, record_accepted, send_message
from .sqs import SqsBatch


# Time one provider call can take (connect 3 s + read 8 s) and a margin: a send is not
# started with less left, so the function never stops in the middle of one.
SEND_RESERVE_MS = 12_000

# What FailedSendRatioAlarm and the dashboard count (namespace POWERTOOLS_METRICS_NAMESPACE,
# `<stack>/Messaging`), by the result of the "message handled" line.
COUNTED = {"sent": "MessagesSent", "failed": "MessagesFailed"}


class OutOfTime(Exception):
    """Not started: too little time left before the function's timeout."""


def send_metrics(channel: str) -> EphemeralMetrics:
    """One invocation's metrics, published as one CloudWatch EMF line when it ends.

    Each metric goes out under two dimension sets: `service` alone (Powertools adds it
    from POWERTOOLS_SERVICE_NAME), which the alarm sums with one metric per name
    whatever the number of channels, and `channel`, which the dashboard splits by.
    Same data point, two series: nothing is counted twice within a series.

    EphemeralMetrics rather than Metrics: Metrics instances share one metric set per
    process, and the local stack runs the three senders on threads of one process."""
    metrics = EphemeralMetrics()
    metrics.add_dimensions(channel=channel)
    return metrics


def publish(metrics: EphemeralMetrics, logger) -> None:
    """Flush the invocation's metrics. A batch that sent nothing flushes nothing (a
    warning, not an error); a metrics misconfiguration (no namespace) is logged and
    never fails a batch whose messages were handled."""
    try:
        metrics.flush_metrics(raise_on_empty_metrics=False)
    except SchemaValidationError as exc:
        logger.warning("send metrics not published", extra={"detail": str(exc)})


def sender_handler(channel: str, logger, clock: Callable[[], datetime]):
    """A Lambda handler sending the `channel` queue's messages, reporting partial failures.
    `clock` is the function's wall clock (the time a send is recorded at). When the batch
    outlasts the function's time, the messages not started go back to the queue at once."""

    def send(record, context, metrics: EphemeralMetrics) -> None:
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
            if "accepted" in body:   # sent already, its record failed: record it, never send
                outcome = record_accepted(body["message_id"], channel, body["accepted"], msgs=wiring.messaging_store())
            else:
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
        result = outcome.split(":", 1)[0]   # sent, failed, suppressed, fallback, ...
        if result in COUNTED:
            metrics.add_metric(name=COUNTED[result], unit=MetricUnit.Count, value=1)
        logger.info("message handled", extra={"message_id": body["message_id"], "outcome": outcome,
                                               "result": result})

    @logger.inject_lambda_context
    def handler(event, context):
        metrics = send_metrics(channel)
        try:
            return process_partial_response(event, lambda record: send(record, context, metrics),
                                            SqsBatch(logger), context)
        finally:
            publish(metrics, logger)

    return handler
