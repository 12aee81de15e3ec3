"""Send one outbox message on one channel, and act on what the provider answers.

transient      -> back to queued; the queue retries later (backoff with jitter); on the
                  last delivery the record says dead_lettered and the message goes to the DLQ
(not claimed   -> being sent elsewhere: retry after that lease; see _not_claimed)
window_closed  -> WhatsApp free-form outside the 24 h window: send the template instead
undeliverable  -> the next consented channel, once; none left: failed
opted_out      -> record the opt-out, suppress; never retried
config         -> logged as an error (an alert: our configuration is wrong), never resent
                  as is; a template refused on this channel (WhatsApp 132000, ...) goes on
                  the next consented channel like an undeliverable message, else failed
permanent      -> failed, with the provider's code
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Callable

from ..errors import Transient
from ..records import Consent
from .outbox import ClaimRefused, OutboxRecord

if TYPE_CHECKING:
    from ..channels.providers import ProviderError, SendResult
    from ..rules import Rules

Send = Callable[[OutboxRecord, str, dict], "SendResult"]   # (record, channel, payload)

log = logging.getLogger(__name__)


# No answer after the request went out: the provider may have accepted it.
UNCERTAIN = {"read_timeout", "connection_error"}
RECEIPT_WAIT_S = 300
# A send the provider accepted but we could not record yet: recorded again this much later
# (well inside the claim's lease, so that no copy of the queue message can send it again).
RECORD_AGAIN_S = 5


@dataclass
class RetryLater(Exception):
    """A transient failure: retry this queue message after `delay_s`."""

    delay_s: int
    reason: str


@dataclass
class SendLater(Exception):
    """Our own rate limit for the provider is reached: send this message again after
    `delay_s`, as a fresh queue message. Waiting for our limiter is not a failed delivery,
    so it must not use up the queue message's receives (and end in the dead-letter queue
    when a campaign meets a 1-segment-a-second sender)."""

    delay_s: int


def backoff_s(attempts: int, hint: float | None = None, *, rng: random.Random | None = None) -> int:
    """Exponential backoff with full jitter (30 s, 60 s, ... capped at 15 min), or the
    provider's own hint when it gave one."""
    if hint:
        return int(min(max(hint, 1), 43200))
    ceiling = min(900, 30 * 2 ** max(attempts - 1, 0))
    return int((rng or random).uniform(ceiling / 2, ceiling))


def send_message(message_id: str, channel: str, *, msgs, ledger, queues, send: Send, rules: "Rules",
                 now: datetime, last_delivery: bool = False) -> str:
    """Claim, send, record. Raises RetryLater for a transient failure; on the queue's
    `last_delivery` the record says dead_lettered, where the queue message goes next.

    Once the provider accepted, nothing sends the message again: the record says sent
    (or, when a receipt got there first, keeps the receipt's status and gains the
    provider's id), and when even that write fails, a fresh queue message records it."""
    from ..channels.providers import ProviderError  # with `requests`: loaded on the first send, not at import
    record = msgs.claim(message_id, channel, now)
    if isinstance(record, ClaimRefused):
        return _not_claimed(record, message_id, channel, queues, now)
    if record.category == "challenge" and ledger is not None and not _consent_in_force(ledger, record, channel):
        # a challenge message the member stopped (STOP) between its queueing and now: never sent
        msgs.record_status(message_id, "suppressed", now, f"{channel} consent withdrawn before sending")
        return "suppressed:consent_withdrawn"
    payload = record.payloads.get(channel)
    try:
        try:
            result = send(record, channel, payload)
        except ProviderError as error:
            if error.outcome != "window_closed" or payload.get("type") != "text":
                raise
            from .templates import render
            template = rules.template(record.template)
            payload = render(template, channel, record.locale, record.variables, message_id=message_id)
            result = send(record, channel, payload)
    except ProviderError as error:
        return _failed(error, record, channel, msgs=msgs, ledger=ledger, queues=queues, now=now,
                       last_delivery=last_delivery)
    accepted = {"provider": result.provider, "provider_message_id": result.provider_message_id,
                "at": now.isoformat(), "lease_until": record.lease_until.isoformat() if record.lease_until else None}
    try:
        marked = msgs.mark_sent(message_id, result.provider, result.provider_message_id, now, channel=channel,
                                lease_until=record.lease_until)
    except Transient:
        # The provider took it: this queue message must not come back and send it again.
        # A fresh one carries the provider's answer, and records it (see record_accepted).
        queues.send(channel, {"message_id": message_id, "channel": channel, "accepted": accepted},
                    delay_s=RECORD_AGAIN_S)
        return f"sent:{result.provider}:recorded_later"
    return f"sent:{result.provider}" if marked else f"sent:{result.provider}:after_receipt"


def _consent_in_force(ledger, record: OutboxRecord, channel: str) -> bool:
    """The channel's consent is still opted in (one read: challenge messages only, which
    go out at their own time to members who may have replied STOP since they were queued)."""
    history = ledger.consent_history(record.member_id, channel)
    return bool(history) and history[0].status == "opted_in"


def record_accepted(message_id: str, channel: str, accepted: dict, *, msgs) -> str:
    """Record a send the provider accepted when recording it failed (a queue message with
    `accepted`, from send_message): never a provider call. Transient again: RetryLater,
    the queue brings this message back."""
    from ..domain import parse_time
    lease = accepted.get("lease_until")
    try:
        marked = msgs.mark_sent(message_id, accepted["provider"], accepted["provider_message_id"],
                                parse_time(accepted["at"]), channel=channel,
                                lease_until=parse_time(lease) if lease else None)
    except Transient as exc:
        raise RetryLater(RECORD_AGAIN_S, f"recording the send: {exc}") from exc
    return f"recorded:{accepted['provider']}" if marked else f"recorded:{accepted['provider']}:after_receipt"


def _not_claimed(refused: ClaimRefused, message_id: str, channel: str, queues, now: datetime) -> str:
    """This queue message cannot send now. It is dropped only when nothing depends on it:
    - another sender holds the lease (a redelivery while it sends): come back after the
      lease, because if that send fails transiently its retry may ride on this very message;
    - the record waits, queued, on another channel (a fallback whose queue message was
      lost): hand it to that channel's queue; its sender claims it at most once;
    - anything else (sent, failed, suppressed, unknown): nothing to do."""
    if refused.status == "sending" and refused.channel == channel and refused.lease_until is not None \
            and refused.lease_until >= now:
        raise RetryLater(int((refused.lease_until - now).total_seconds()) + 1, "being sent by another sender")
    if refused.status == "queued" and refused.channel and refused.channel != channel:
        queues.send(refused.channel, {"message_id": message_id, "channel": refused.channel})
        return f"forwarded:{refused.channel}"
    return f"not_claimed:{refused.status}"


def _failed(error: "ProviderError", record: OutboxRecord, channel: str, *, msgs, ledger, queues, now: datetime,
            last_delivery: bool = False) -> str:
    detail = f"{error.provider}:{error.code} {error.detail}".strip()
    if error.outcome == "transient" and error.code == "rate_limited":
        msgs.release_claim(record.message_id, now, detail, quiet=True)
        wait = max(1.0, error.retry_after_s or 1.0)
        raise SendLater(int(wait * random.uniform(1.0, 3.0)) + 1)   # spread a backlog out
    if error.outcome == "transient":
        msgs.release_claim(record.message_id, now, detail, last=last_delivery)
        delay = backoff_s(record.attempts, error.retry_after_s)
        if error.code in UNCERTAIN:
            # The provider may have taken the message. Its receipt carries our id (WhatsApp
            # biz_opaque_callback_data, Twilio's callback URL, Aliyun OutId) and marks the
            # record sent within this wait; the retry then finds nothing to send.
            delay = max(delay, RECEIPT_WAIT_S)
        raise RetryLater(delay, detail)
    if error.outcome == "config":
        log.error("the provider refused our configuration", extra={
            "provider": error.provider, "code": error.code, "channel": channel, "template": record.template,
            "template_only": error.template, "message_id": record.message_id})
    if (error.outcome == "undeliverable" or (error.outcome == "config" and error.template)) and record.fallbacks:
        following = record.fallbacks[0]
        contact = record.extra.get("to", {}).get(following)
        if contact and msgs.switch_channel(record.message_id, following, contact, now, detail,
                                           fallbacks=record.fallbacks[1:]):
            queues.send(following, {"message_id": record.message_id, "channel": following})
            return f"fallback:{following}"
    if error.outcome == "opted_out":
        from .dispatch import consent_scope
        ledger.add_consent(Consent(record.member_id, consent_scope(error.provider, error.code, channel), "opted_out",
                                   f"provider:{error.provider}:{error.code}", now, proof=record.message_id))
        msgs.record_status(record.message_id, "suppressed", now, detail)
        return "suppressed"
    msgs.record_status(record.message_id, "failed", now, detail)
    return f"failed:{error.outcome}"
