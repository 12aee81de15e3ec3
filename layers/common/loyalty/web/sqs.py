"""Partial batch failures for SQS consumers: a record that raises is reported back, the
others are deleted by Lambda. (Powertools' BatchProcessor does the same; this is the
part we need, without its import cost.)"""
from __future__ import annotations

import json
from typing import Callable


def process_batch(event: dict, handle: Callable[[dict, dict], None], log) -> dict:
    """Call `handle(body, record)` for each record; answer {"batchItemFailures": [...]}."""
    failures = []
    for record in event.get("Records", []):
        try:
            handle(json.loads(record["body"]), record)
        except Exception as exc:  # noqa: BLE001 - every failure goes back to the queue, none is lost
            log.warning("record failed; it will be retried", extra={"message_id": record.get("messageId"),
                                                                      "error": type(exc).__name__, "detail": str(exc)})
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
