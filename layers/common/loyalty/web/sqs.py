"""Partial batch failures for every SQS consumer: Powertools' BatchProcessor, set up
the way our queues need it. A record whose handler raises is reported back in
batchItemFailures (it comes back after its visibility timeout, or sooner if the handler
changed it), the others are deleted by Lambda."""
from __future__ import annotations

from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType


class SqsBatch(BatchProcessor):
    """BatchProcessor(EventType.SQS), keeping what our hand-written helper did:
    - a batch in which every record failed answers every id in batchItemFailures, as a
      partial failure does, instead of raising BatchProcessingError: SQS treats both
      the same, but a raise would show as a function error (the Errors metric, the
      dashboard) when all that happened is that every message has to wait (rate limit,
      provider backoff, too little time left);
    - each failure is one warning line with the message id, the error's type and
      text, without a traceback: a transient provider error is routine, not a crash.

    Make one per invocation: it holds the batch's state, and the local stack runs
    concurrent invocations on threads of one process."""

    def __init__(self, log):
        super().__init__(EventType.SQS, raise_on_entire_batch_failure=False)
        self._log = log

    def failure_handler(self, record, exception):
        error = exception[1]
        self._log.warning("record failed; it will be retried", extra={
            "message_id": record.message_id if record is not None else None,
            "error": type(error).__name__, "detail": str(error)})
        return super().failure_handler(record, exception)
