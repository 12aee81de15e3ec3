"""Twilio status callbacks and inbound SMS (form fields) parsed into plain values
(`pushes`). Signature-checked before (`signatures.verify_twilio`); no I/O."""
from __future__ import annotations

from ..errors import Invalid
from ..privacy import mask_phones
from .pushes import InboundMessage, StatusUpdate, scalar, seconds

_TWILIO_STATUS = {
    "queued": "accepted", "accepted": "accepted", "scheduled": "accepted", "sending": "accepted",
    "sent": "sent", "delivered": "delivered", "read": "read",
    "undelivered": "undelivered", "failed": "failed",
    "canceled": "failed",  # a scheduled message cancelled before it went out: it never will
}


def _form(form: dict, *names: str) -> str | None:
    """The first non-empty value among `names`; repeated fields may come as lists."""
    for name in names:
        value = form.get(name)
        if isinstance(value, (list, tuple)):
            value = value[0] if value else None
        text = scalar(value)
        if text is not None:
            return text
    return None


def parse_twilio_status(form: dict[str, str]) -> StatusUpdate:
    """A status callback (form fields, already signature-checked; a repeated field may
    come as a list). The message we sent is named by our reference in the callback
    URL's query, which the caller reads."""
    if not isinstance(form, dict):
        raise Invalid("a Twilio status callback is a form")
    sid = _form(form, "MessageSid", "SmsSid")
    if sid is None:
        raise Invalid([{"field": "MessageSid", "problem": "missing"}])
    raw = mask_phones(_form(form, "MessageStatus", "SmsStatus")) or ""
    return StatusUpdate(provider="twilio", provider_message_id=sid, status=_TWILIO_STATUS.get(raw.lower(), "unknown"),
                        at=None, our_ref=None, recipient=_form(form, "To"), error_code=_form(form, "ErrorCode"),
                        error_title=mask_phones(_form(form, "ErrorMessage")), raw_status=raw)


def parse_twilio_inbound(form: dict[str, str]) -> InboundMessage:
    """An inbound SMS (form fields, already signature-checked). Twilio answers STOP,
    START and HELP itself on long codes; we still see the message and mirror it."""
    if not isinstance(form, dict):
        raise Invalid("a Twilio inbound message is a form")
    sid = _form(form, "MessageSid", "SmsMessageSid", "SmsSid")
    sender = _form(form, "From")
    if sid is None or sender is None:
        raise Invalid([{"field": "MessageSid" if sid is None else "From", "problem": "missing"}])
    body = form.get("Body")
    if isinstance(body, (list, tuple)):
        body = body[0] if body else ""
    media = seconds(_form(form, "NumMedia")) or 0
    return InboundMessage(provider="twilio", provider_message_id=sid, sender=sender,
                          text=body if isinstance(body, str) else "", at=None, kind="media" if media else "text",
                          dedup_key=f"twilio#msg#{sid}")
