"""Stored provider pushes: how long they are kept, and when one not marked processed is
due to be applied again (the same policy for every messaging store)."""
from __future__ import annotations

from datetime import datetime, timedelta

# A processed push is only evidence of what came in, a week is enough to look into a
# complaint; one not (yet) processed keeps a month, long enough for the provider's retries
# or ours to process it after a fault is fixed.
INBOUND_KEEP_PROCESSED = timedelta(days=7)
INBOUND_KEEP_UNPROCESSED = timedelta(days=30)
# When a push not marked processed is due again: after it came in, then after each failure.
INBOUND_RETRY_AFTER = timedelta(minutes=5)
INBOUND_BACKOFF_MAX = timedelta(hours=6)


def retry_due(at: datetime, attempts: int) -> datetime:
    """When a push that failed `attempts` times (at `at`) is tried again: 5 minutes after
    the first failure, doubling, at most 6 hours apart."""
    return at + min(INBOUND_RETRY_AFTER * 2 ** max(attempts - 1, 0), INBOUND_BACKOFF_MAX)


def kind_of(body: dict) -> str:
    """message, event or status, from the fields of the parsed push."""
    return "event" if "event" in body else "message" if "text" in body else "status"
