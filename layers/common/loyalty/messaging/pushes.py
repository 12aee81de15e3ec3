"""Stored provider pushes applied again. A webhook stores every member reply and channel
event before applying it; one whose application failed (or whose function stopped
midway) is due again INBOUND_RETRY_AFTER after it came in, and the sweep
(`reapply_pushes`, every 5 minutes) applies it then, with back-off after each failure.
Providers that retry (Meta, WeChat) may well get there first; Twilio and Aliyun do not
retry, and a STOP must never be lost, so the sweep is what makes every push count.

Receipts are not stored (one write each), except one whose message is not known yet (a
WeChat receipt can overtake the sender's record of the send): it is kept, applied again a
few times, then let go.

Applying again is safe: consent records are keyed by the push (its time, decision and
id), replies by the push's dedup key, receipts only move a status forward."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..rules import Rules
    from .ports import MessagingStore, StoredPush

log = logging.getLogger(__name__)

# A processed push is only evidence of what came in, a week is enough to look into a
# complaint; one not (yet) processed keeps a month, long enough for the provider's retries
# or ours to process it after a fault is fixed.
INBOUND_KEEP_PROCESSED = timedelta(days=7)
INBOUND_KEEP_UNPROCESSED = timedelta(days=30)
# When a push not marked processed is due again: after it came in, then after each failure.
INBOUND_RETRY_AFTER = timedelta(minutes=5)
INBOUND_BACKOFF_MAX = timedelta(hours=6)
# A receipt whose message is still unknown after this many tries is not ours, or lost.
UNKNOWN_RECEIPT_TRIES = 3


def retry_due(at: datetime, attempts: int) -> datetime:
    """When a push that failed `attempts` times (at `at`) is tried again: 5 minutes after
    the first failure, doubling, at most 6 hours apart."""
    return at + min(INBOUND_RETRY_AFTER * 2 ** max(attempts - 1, 0), INBOUND_BACKOFF_MAX)


def kind_of(body: dict) -> str:
    """message, event or status, from the fields of the parsed push."""
    return "event" if "event" in body else "message" if "text" in body else "status"


def parsed(push: "StoredPush"):
    """The push as the webhook parsed it."""
    from ..channels.inbound import ChannelEvent, InboundMessage, StatusUpdate
    body = dict(push.body)
    if push.kind == "event":
        body["choices"] = tuple(tuple(choice) for choice in body.get("choices") or ())
        return ChannelEvent(**body)
    if push.kind == "message":
        return InboundMessage(**body)
    return StatusUpdate(**body)


def reapply_pushes(msgs: "MessagingStore", ledger, queues, rules: "Rules", now: datetime,
                   limit: int = 100) -> dict:
    """Apply the pushes due again at `now`, each as it came in: with the time it arrived,
    so that a late STOP never overrides what the member said after it, and without a
    passive reply (nobody waits for the webhook's answer any more). Each is marked
    processed, or its failure noted (masked) and its next try backed off; one failing
    never stops the others."""
    counts = {"due": 0, "applied": 0, "failed": 0}
    for push in msgs.due_inbound(now, limit):
        counts["due"] += 1
        try:
            handled = _apply(push, msgs, ledger, queues, rules)
        except Exception as exc:  # noqa: BLE001 - noted on the push and tried again later
            counts["failed"] += 1
            log.warning("stored push not applied", extra={"provider": push.provider, "kind": push.kind,
                                                          "attempts": push.attempts + 1, "error": type(exc).__name__})
            try:
                msgs.inbound_failed(push.provider, push.dedup_key, now, f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - it stays due: the next sweep tries again
                log.warning("stored push: could not note the failure", extra={"provider": push.provider})
            continue
        counts["applied"] += 1
        log.info("stored push applied", extra={"provider": push.provider, "kind": push.kind, "handled": handled})
        try:
            msgs.inbound_processed(push.provider, push.dedup_key, now)
        except Exception:  # noqa: BLE001 - applied; applying it again changes nothing
            log.warning("stored push: could not mark it processed", extra={"provider": push.provider})
    return counts


def _apply(push: "StoredPush", msgs, ledger, queues, rules: "Rules") -> str:
    from . import conversations
    item, arrived = parsed(push), push.at
    if push.kind == "event":
        return conversations.apply_event(item, ledger, arrived, rules).handled
    if push.kind == "message":
        return conversations.apply_message(item, ledger, msgs, queues, rules, arrived, passive=False).handled
    handled = conversations.apply_status(item, msgs, arrived, ledger=ledger, queues=queues, rules=rules).handled
    if handled == "ignored:unknown_message" and push.attempts + 1 < UNKNOWN_RECEIPT_TRIES:
        raise LookupError("the receipt's message is not known yet")
    return handled
