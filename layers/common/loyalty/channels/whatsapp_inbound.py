"""WhatsApp Cloud API webhook POSTs parsed into plain values (`pushes`): delivery
statuses, member messages, and the marketing preference (`user_preferences`).
Signature-checked before (`signatures.verify_whatsapp`); no I/O."""
from __future__ import annotations

import hashlib

from ..errors import Invalid
from .pushes import ChannelEvent, InboundMessage, Parsed, StatusUpdate, as_dict, as_list, said, scalar, seconds

_WHATSAPP_STATUS = {"accepted": "accepted", "sent": "sent", "delivered": "delivered", "read": "read",
                    "failed": "failed"}


def parse_whatsapp(body: dict) -> list[Parsed]:
    """Everything in one webhook POST (already signature-checked and JSON-decoded).

    `messages` changes give StatusUpdates (first error's code and title when failed)
    and InboundMessages; `user_preferences` changes give ChannelEvents, any value
    containing "stop" meaning stop_marketing. Other change fields are not ours and are
    skipped. `pricing` and `conversation` are not read: their shapes keep changing.
    """
    if not isinstance(body, dict) or not isinstance(body.get("entry"), list):
        raise Invalid([{"field": "entry", "problem": "a WhatsApp notification has an entry list"}])
    if body.get("object", "whatsapp_business_account") != "whatsapp_business_account":
        raise Invalid([{"field": "object", "problem": "not a whatsapp_business_account notification"}])
    parsed: list[Parsed] = []
    for entry in body["entry"]:
        for change in as_list(as_dict(entry).get("changes")):
            change = as_dict(change)
            value = as_dict(change.get("value"))
            if change.get("field") == "messages":
                parsed.extend(_whatsapp_status(s) for s in as_list(value.get("statuses")) if _whatsapp_keyed(s, "id"))
                parsed.extend(_whatsapp_message(m) for m in as_list(value.get("messages"))
                              if _whatsapp_keyed(m, "id", "from"))
            elif change.get("field") == "user_preferences":
                parsed.extend(_whatsapp_preference(p) for p in as_list(value.get("user_preferences"))
                              if _whatsapp_keyed(p, "wa_id"))
    return parsed


def _whatsapp_keyed(item: object, *keys: str) -> bool:
    return isinstance(item, dict) and all(scalar(item.get(key)) for key in keys)


def _whatsapp_status(item: dict) -> StatusUpdate:
    raw = said(item.get("status")) or ""
    error = next((e for e in as_list(item.get("errors")) if isinstance(e, dict)), {})
    return StatusUpdate(
        provider="whatsapp", provider_message_id=scalar(item["id"]) or "",
        status=_WHATSAPP_STATUS.get(raw.lower(), "unknown"), at=seconds(item.get("timestamp")),
        our_ref=scalar(item.get("biz_opaque_callback_data")), recipient=scalar(item.get("recipient_id")),
        error_code=scalar(error.get("code")), error_title=said(error.get("title")) or said(error.get("message")),
        raw_status=raw)


def _whatsapp_message(item: dict) -> InboundMessage:
    message_id = scalar(item["id"]) or ""
    kind = scalar(item.get("type")) or "unknown"
    content = as_dict(item.get(kind))
    text, payload = "", None
    if kind == "text":
        text = content.get("body") or ""
    elif kind == "button":  # a quick-reply button of a template
        text, payload = content.get("text") or "", scalar(content.get("payload"))
    elif kind == "interactive":  # a reply button or list row of an interactive message
        reply = as_dict(content.get(scalar(content.get("type")) or ""))
        text, payload = reply.get("title") or "", scalar(reply.get("id"))
    elif isinstance(content.get("caption"), str):
        text = content["caption"]
    return InboundMessage(provider="whatsapp", provider_message_id=message_id, sender=scalar(item["from"]) or "",
                          text=text if isinstance(text, str) else "", at=seconds(item.get("timestamp")), kind=kind,
                          dedup_key=f"whatsapp#msg#{message_id}", payload=payload)


def _whatsapp_preference(item: dict) -> ChannelEvent:
    raw = said(item.get("value")) or ""
    lowered = raw.lower()
    # The values are unconfirmed (CHANNELS.md): anything stop-like is an opt-out.
    if "stop" in lowered:
        event = "stop_marketing"
    elif "resume" in lowered or "start" in lowered:
        event = "resume_marketing"
    else:
        event = "unknown"
    sender = scalar(item["wa_id"]) or ""
    timestamp = scalar(item.get("timestamp")) or ""
    # The key is stored (the push's record) and shown (the consent's proof): a digest, as
    # it would otherwise carry the member's number.
    digest = hashlib.sha256(f"{sender}#{timestamp}#{lowered}".encode()).hexdigest()[:32]
    return ChannelEvent(provider="whatsapp", sender=sender, event=event, raw=raw,
                        at=seconds(item.get("timestamp")), dedup_key=f"whatsapp#pref#{digest}")
