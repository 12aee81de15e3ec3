"""Lambda's SQS event source mappings, played by one thread per `SQS` event.

A poller long-polls its queue through the emulator, hands the function batches of
Lambda SQS records (BatchSize, MaximumBatchingWindowInSeconds), then deletes what
succeeded. With ReportBatchItemFailures only the records listed in
batchItemFailures stay; without it, or if the handler raises, the whole batch stays.

What stays is left alone, as Lambda leaves it: the message becomes visible again
when its visibility timeout ends (the handler may have changed it), and on the
receive after maxReceiveCount the emulator moves it to the dead-letter queue, as SQS
does. The emulator's time scale (LOCAL_TIME_SCALE) makes those waits short.

`Pollers.drain()` waits until the consumed queues are empty and no batch is running.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from .emulator import emulator_client
from .runtime import FunctionRuntime
from .template import QueueSpec, SqsEvent, TemplateModel

log = logging.getLogger(__name__)

LONG_POLL_SECONDS = 1  # short enough for stop() to be quick, long enough to be cheap
DRAIN_TIMEOUT = 60.0


class Activity:
    """Counts batches in progress; drain() uses it to know that nothing is moving."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0
        self._changes = 0

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Mark a batch as running for the duration of the block."""
        with self._lock:
            self._busy += 1
            self._changes += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._changes += 1

    def snapshot(self) -> tuple[int, int]:
        """(batches running, changes so far)."""
        with self._lock:
            return self._busy, self._changes


class SqsPoller:
    """Feeds one queue to one function, like one Lambda event source mapping."""

    def __init__(self, function_id: str, event: SqsEvent, queue: QueueSpec,
                 runtime: FunctionRuntime, endpoint_url: str, region: str,
                 activity: Activity, time_scale: float = 1.0):
        self.function_id = function_id
        self.event = event
        self.queue = queue
        self.runtime = runtime
        self.region = region
        self.activity = activity
        self.time_scale = time_scale
        self._sqs = emulator_client("sqs", endpoint_url, region)
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"poller-{function_id}-{event.name}", daemon=True)

    def start(self) -> None:
        """Start polling in a background thread."""
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the thread to stop after its current poll or batch."""
        self._stopping.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end."""
        self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                messages = self._receive_batch()
                if messages:
                    with self.activity.batch():
                        self.process(messages)
            except (BotoCoreError, ClientError) as exc:
                if self._stopping.is_set():
                    return  # the emulator went away first during shutdown
                log.warning("poller %s: %s", self._thread.name, exc)
                self._stopping.wait(0.5)
            except Exception:  # a poller that dies silently would leave its queue stuck
                log.exception("poller %s failed; polling on", self._thread.name)
                self._stopping.wait(0.5)

    def _receive_batch(self) -> list[dict]:
        batch = self._receive(LONG_POLL_SECONDS, self.event.batch_size)
        if not batch:
            return []
        # Fill the batch for up to MaximumBatchingWindowInSeconds (on the time scale).
        deadline = time.monotonic() + self.event.batching_window * self.time_scale
        while len(batch) < self.event.batch_size and not self._stopping.is_set():
            try:
                more = self._receive(0, self.event.batch_size - len(batch))
            except (BotoCoreError, ClientError) as exc:
                # What is already received must run now: dropped, it would come back
                # with a receive counted for nothing (and reach the DLQ too early).
                log.warning("poller %s: %s; running the %d message(s) received", self._thread.name, exc, len(batch))
                break
            batch.extend(more)
            if not more:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.01)
        return batch

    def _receive(self, wait_seconds: int, wanted: int) -> list[dict]:
        response = self._sqs.receive_message(
            QueueUrl=self.queue.url, MaxNumberOfMessages=max(1, min(10, wanted)),
            WaitTimeSeconds=wait_seconds, MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"])
        return response.get("Messages", [])

    def process(self, messages: list[dict]) -> None:
        """Invoke the function with one batch and delete what succeeded."""
        records = [sqs_record(message, self.queue, self.region) for message in messages]
        try:
            result = self.runtime.invoke(self.function_id, {"Records": records})
        except Exception:
            log.exception("%s raised on a batch of %d from %s; the batch will be retried",
                          self.function_id, len(records), self.queue.logical_id)
            return
        failed = self._failed_message_ids(result, records)
        if failed:
            log.info("%s reported %d of %d record(s) failed (%s)", self.function_id,
                     len(failed), len(records), self.queue.logical_id)
        self._delete([m for m in messages if m["MessageId"] not in failed])

    def _failed_message_ids(self, result: Any, records: list[dict]) -> set[str]:
        """Lambda's rules for a ReportBatchItemFailures response: no response or an
        empty list is a complete success; a malformed response, or one naming an id
        that is not in the batch, is a complete failure."""
        every_id = {record["messageId"] for record in records}
        if not self.event.report_batch_item_failures or result is None:
            return set()
        failures = result.get("batchItemFailures") if isinstance(result, dict) else None
        if isinstance(result, dict) and not failures:
            return set()
        if not isinstance(failures, list):
            log.error("%s: invalid batch response %r; the whole batch fails", self.function_id, result)
            return every_id
        failed = {f.get("itemIdentifier") if isinstance(f, dict) else None for f in failures}
        if not failed <= every_id:
            log.error("%s: batchItemFailures names unknown or empty ids %s; the whole "
                      "batch fails", self.function_id, sorted(map(str, failed - every_id)))
            return every_id
        return failed

    def _delete(self, messages: list[dict]) -> None:
        for start in range(0, len(messages), 10):
            chunk = messages[start:start + 10]
            response = self._sqs.delete_message_batch(QueueUrl=self.queue.url, Entries=[
                {"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]}
                for index, m in enumerate(chunk)])
            for failure in response.get("Failed", []):
                log.warning("could not delete a message from %s: %s",
                            self.queue.logical_id, failure.get("Message"))


def sqs_record(message: dict, queue: QueueSpec, region: str) -> dict:
    """One record of a Lambda SQS event, from a ReceiveMessage message."""
    record = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": {
            name: _message_attribute(value)
            for name, value in message.get("MessageAttributes", {}).items()},
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue.arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _message_attribute(value: dict) -> dict:
    # Lambda spells these in camelCase and base64-encodes binary values.
    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode("ascii")

    attribute = {
        "stringListValues": list(value.get("StringListValues", [])),
        "binaryListValues": [b64(v) for v in value.get("BinaryListValues", [])],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = b64(value["BinaryValue"])
    return attribute


class Pollers:
    """Every enabled SQS event source of the template, and queue counts for drain."""

    def __init__(self, model: TemplateModel, runtime: FunctionRuntime, endpoint_url: str,
                 time_scale: float = 1.0):
        self.model = model
        self.activity = Activity()
        self._sqs = emulator_client("sqs", endpoint_url, model.region)
        self.pollers = [
            SqsPoller(function.logical_id, event, model.queue_by_arn(event.queue_arn), runtime,
                      endpoint_url, model.region, self.activity, time_scale)
            for function in model.functions.values()
            for event in function.events_of(SqsEvent) if event.enabled]

    def start(self) -> None:
        """Start every poller."""
        for poller in self.pollers:
            poller.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every poller, letting a running batch finish (up to `timeout`)."""
        for poller in self.pollers:
            poller.request_stop()
        deadline = time.monotonic() + timeout
        for poller in self.pollers:
            poller.join(max(0.0, deadline - time.monotonic()))

    def queue_counts(self) -> dict:
        """{"queues": {id: {"visible", "in_flight", "delayed"}}, "dead_letter": {id: n}},
        keyed by the queues' logical ids in template.yaml."""
        dead_letter_ids = {queue.logical_id for queue in self.model.dead_letter_queues()}
        summary: dict[str, dict] = {"queues": {}, "dead_letter": {}}
        # Dead-letter queues last: SQS moves a message there inside a ReceiveMessage,
        # which no batch marks as activity. Counted in this order, a message that moves
        # while we count is seen in one place or the other, never in neither.
        ordered = sorted(self.model.queues.values(), key=lambda queue: queue.logical_id in dead_letter_ids)
        for queue in ordered:
            attributes = self._sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=[
                "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed"])["Attributes"]
            counts = {
                "visible": int(attributes["ApproximateNumberOfMessages"]),
                "in_flight": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
                "delayed": int(attributes["ApproximateNumberOfMessagesDelayed"]),
            }
            if queue.logical_id in dead_letter_ids:
                summary["dead_letter"][queue.logical_id] = sum(counts.values())
            else:
                summary["queues"][queue.logical_id] = counts
        return summary

    def drain(self, timeout: float = DRAIN_TIMEOUT) -> dict:
        """Wait until every consumed queue is empty (visible, in flight and delayed) and
        no batch is running, or `timeout` seconds; answer queue_counts() plus
        "drained": whether that state was reached.

        Queues that no function consumes are reported but not waited for: nothing
        would ever empty them. Handlers called from elsewhere meanwhile (an HTTP
        request in progress) are not waited for either.
        """
        dead_letter_ids = {queue.logical_id for queue in self.model.dead_letter_queues()}
        consumed = {poller.queue.logical_id for poller in self.pollers} - dead_letter_ids
        deadline = time.monotonic() + timeout
        while True:
            before = self.activity.snapshot()
            summary = self.queue_counts()
            after = self.activity.snapshot()
            # Nothing ran while we counted, so a message cannot have moved between
            # two queues behind our back.
            quiet = before == after and before[0] == 0
            empty = all(sum(summary["queues"][queue_id].values()) == 0 for queue_id in consumed)
            if (quiet and empty) or time.monotonic() >= deadline:
                summary["drained"] = quiet and empty
                return summary
            time.sleep(0.02)
