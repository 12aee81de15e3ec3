"""Provider pushes (delivery reports, member replies, follow and preference changes) as
plain values, shared by the per-provider parsers next to each client:

    whatsapp_inbound.parse_whatsapp         Cloud API webhook POSTs
    twilio_inbound.parse_twilio_status      status callbacks
    twilio_inbound.parse_twilio_inbound     inbound SMS
    wechat_inbound.parse_wechat             Official Account pushes (XML), and the passive reply
    aliyun_inbound.parse_aliyun_report      SmsReport receipts
    aliyun_inbound.parse_aliyun_up          SmsUp replies

The keywords members reply with are in `keywords`.

Shapes follow CHANNELS.md, which warns that they change: a parser never fails on a
missing optional field or a value it does not know. An unknown delivery status becomes
`status="unknown"` with the provider's value in `raw_status`; an unknown event becomes
`event="unknown"` with the provider's name in `raw`; a message kind is the provider's
own type name. Only a body whose overall shape is wrong raises `Invalid` (a 400). In a
batch (WhatsApp, Aliyun), an item without the id it is keyed on is left out rather than
failing the whole batch, which the provider would then retry for ever.

The provider's own texts (failure reasons, raw statuses, event names) go into the
outbox history and the logs, and providers echo phone numbers in them: they are masked
here, as they enter (`privacy.mask_phones`). The member's identifiers (`sender`,
`recipient`) stay whole, since they find the member, and are left out of the reprs.

Signatures are checked before any of this (`signatures.py`). Nothing here does I/O.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..privacy import mask_phones

STATUSES = ("accepted", "sent", "delivered", "read", "failed", "undelivered", "unknown")
EVENTS = ("follow", "unfollow", "stop_marketing", "resume_marketing", "subscribe_msg", "unknown")


@dataclass(frozen=True)
class StatusUpdate:
    """A provider's report on a message we sent.

    `status` is one of STATUSES; reports arrive out of order and steps get skipped, so
    the consumer only ever moves a message forward. `our_ref` is the id we attached at
    send time when the provider echoes it (WhatsApp `biz_opaque_callback_data`, Aliyun
    `out_id`); for Twilio it travels in the callback URL's query, which the caller reads.
    `error_code` is the provider's code as a string (e.g. "131047", "30007"); WeChat
    gives reasons only, turned into codes such as "user_block" and "system_failed".
    """

    provider: str                # whatsapp | twilio | wechat | aliyun
    provider_message_id: str
    status: str
    at: int | None               # unix seconds, as the provider reports it
    our_ref: str | None
    recipient: str | None = field(repr=False)
    error_code: str | None
    error_title: str | None
    raw_status: str              # the provider's own value, for logs and unknowns


@dataclass(frozen=True)
class InboundMessage:
    """A message a member sent us. `sender` is a WhatsApp wa_id (digits), a phone number
    (E.164) or a WeChat OpenID. `kind` is the provider's message type ("text", "button",
    "interactive", "image", ...); `text` is what the member typed or tapped ("" when the
    kind carries none) and `payload` a tapped button's payload. Providers retry: store
    the message under `dedup_key` once."""

    provider: str
    provider_message_id: str
    sender: str = field(repr=False)
    text: str = field(repr=False)
    at: int | None
    kind: str
    dedup_key: str
    payload: str | None = None


@dataclass(frozen=True)
class ChannelEvent:
    """A change in the member's relation with the channel: follow / unfollow (WeChat),
    stop_marketing / resume_marketing (WhatsApp user preferences), subscribe_msg (WeChat
    subscription-message choices, one `(template_id, choice)` pair per template in
    `choices`, choice as sent: "accept", "reject", ...), or "unknown". `raw` is the
    provider's own event name or value."""

    provider: str
    sender: str = field(repr=False)
    event: str
    raw: str
    at: int | None
    dedup_key: str
    choices: tuple[tuple[str, str], ...] = ()


Parsed = StatusUpdate | InboundMessage | ChannelEvent


# --- small readers that never raise on odd values ----------------------------------

def scalar(value: object) -> str | None:
    """A scalar as text; None for missing, empty, or structured values."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        text = str(value).strip()
        return text or None
    return None


def said(value: object) -> str | None:
    """A provider's free text (a failure reason, a raw status), phone numbers masked."""
    return mask_phones(scalar(value))


def seconds(value: object) -> int | None:
    text = scalar(value)
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def as_list(value: object) -> list:
    return value if isinstance(value, list) else []


def as_dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}
