"""Provider pushes (delivery reports, member replies, follow and preference changes)
parsed into plain values, and the keywords members reply with.

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

import hashlib
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from ..errors import Invalid
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

def _str(value: object) -> str | None:
    """A scalar as text; None for missing, empty, or structured values."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (str, int)):
        text = str(value).strip()
        return text or None
    return None


def _said(value: object) -> str | None:
    """A provider's free text (a failure reason, a raw status), phone numbers masked."""
    return mask_phones(_str(value))


def _seconds(value: object) -> int | None:
    text = _str(value)
    return int(text) if text is not None and text.isascii() and text.isdigit() else None


def _list(value: object) -> list:
    return value if isinstance(value, list) else []


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


# --- WhatsApp Cloud API -------------------------------------------------------------

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
        for change in _list(_dict(entry).get("changes")):
            change = _dict(change)
            value = _dict(change.get("value"))
            if change.get("field") == "messages":
                parsed.extend(_whatsapp_status(s) for s in _list(value.get("statuses")) if _whatsapp_keyed(s, "id"))
                parsed.extend(_whatsapp_message(m) for m in _list(value.get("messages"))
                              if _whatsapp_keyed(m, "id", "from"))
            elif change.get("field") == "user_preferences":
                parsed.extend(_whatsapp_preference(p) for p in _list(value.get("user_preferences"))
                              if _whatsapp_keyed(p, "wa_id"))
    return parsed


def _whatsapp_keyed(item: object, *keys: str) -> bool:
    return isinstance(item, dict) and all(_str(item.get(key)) for key in keys)


def _whatsapp_status(item: dict) -> StatusUpdate:
    raw = _said(item.get("status")) or ""
    error = next((e for e in _list(item.get("errors")) if isinstance(e, dict)), {})
    return StatusUpdate(
        provider="whatsapp", provider_message_id=_str(item["id"]) or "",
        status=_WHATSAPP_STATUS.get(raw.lower(), "unknown"), at=_seconds(item.get("timestamp")),
        our_ref=_str(item.get("biz_opaque_callback_data")), recipient=_str(item.get("recipient_id")),
        error_code=_str(error.get("code")), error_title=_said(error.get("title")) or _said(error.get("message")),
        raw_status=raw)


def _whatsapp_message(item: dict) -> InboundMessage:
    message_id = _str(item["id"]) or ""
    kind = _str(item.get("type")) or "unknown"
    content = _dict(item.get(kind))
    text, payload = "", None
    if kind == "text":
        text = content.get("body") or ""
    elif kind == "button":  # a quick-reply button of a template
        text, payload = content.get("text") or "", _str(content.get("payload"))
    elif kind == "interactive":  # a reply button or list row of an interactive message
        reply = _dict(content.get(_str(content.get("type")) or ""))
        text, payload = reply.get("title") or "", _str(reply.get("id"))
    elif isinstance(content.get("caption"), str):
        text = content["caption"]
    return InboundMessage(provider="whatsapp", provider_message_id=message_id, sender=_str(item["from"]) or "",
                          text=text if isinstance(text, str) else "", at=_seconds(item.get("timestamp")), kind=kind,
                          dedup_key=f"whatsapp#msg#{message_id}", payload=payload)


def _whatsapp_preference(item: dict) -> ChannelEvent:
    raw = _said(item.get("value")) or ""
    lowered = raw.lower()
    # The values are unconfirmed (CHANNELS.md): anything stop-like is an opt-out.
    if "stop" in lowered:
        event = "stop_marketing"
    elif "resume" in lowered or "start" in lowered:
        event = "resume_marketing"
    else:
        event = "unknown"
    sender = _str(item["wa_id"]) or ""
    timestamp = _str(item.get("timestamp")) or ""
    # The key is stored (the push's record) and shown (the consent's proof): a digest, as
    # it would otherwise carry the member's number.
    digest = hashlib.sha256(f"{sender}#{timestamp}#{lowered}".encode()).hexdigest()[:32]
    return ChannelEvent(provider="whatsapp", sender=sender, event=event, raw=raw,
                        at=_seconds(item.get("timestamp")), dedup_key=f"whatsapp#pref#{digest}")


# --- Twilio -------------------------------------------------------------------------

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
        text = _str(value)
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
    media = _seconds(_form(form, "NumMedia")) or 0
    return InboundMessage(provider="twilio", provider_message_id=sid, sender=sender,
                          text=body if isinstance(body, str) else "", at=None, kind="media" if media else "text",
                          dedup_key=f"twilio#msg#{sid}")


# --- WeChat Official Account --------------------------------------------------------

class _DoctypeRefused(Exception):
    pass


class _NoDoctypeBuilder(ET.TreeBuilder):
    """Stops the parse at the start of a DOCTYPE, before any ENTITY in it is read: no
    entity expansion (billion laughs), no external entities. WeChat never sends one."""

    def doctype(self, name, pubid, system):
        raise _DoctypeRefused(name)


def _parse_xml(data: bytes) -> ET.Element:
    parser = ET.XMLParser(target=_NoDoctypeBuilder())
    try:
        parser.feed(data)
        return parser.close()
    except _DoctypeRefused:
        raise Invalid("XML with a DOCTYPE or ENTITY declaration is refused") from None
    except ET.ParseError as exc:
        raise Invalid(f"the body is not well-formed XML ({exc})") from None


def _field(root: ET.Element, tag: str) -> str | None:
    return _str(root.findtext(tag))


def _wechat_delivery(status: str) -> tuple[str, str | None, str | None]:
    """(status, error_code, error_title) from a TEMPLATESENDJOBFINISH Status or a
    subscription message's ErrorStatus: "success", "failed:user block", "failed: system
    failed"; any other "failed..." is a failure too, anything else unknown."""
    lowered = status.strip().lower()
    if lowered == "success":
        return "delivered", None, None
    if lowered.startswith("failed"):
        reason = status.strip()[len("failed"):].lstrip(" :").strip()
        return "failed", "_".join(reason.lower().split()) or None, reason or None
    return "unknown", None, None


def parse_wechat(xml_bytes: bytes) -> Parsed | None:
    """One push (plain-text mode: the encrypted mode's `<Encrypt>` is not supported),
    already signature-checked. None for an empty body: nothing to store, answer
    `success`.

    - TEMPLATESENDJOBFINISH and subscribe_msg_sent_event -> StatusUpdate (keyed by MsgID);
    - subscribe / unsubscribe -> ChannelEvent follow / unfollow;
    - subscribe_msg_popup_event / subscribe_msg_change_event -> ChannelEvent subscribe_msg;
    - any other event -> ChannelEvent "unknown"; any message -> InboundMessage.
    Messages deduplicate on MsgId; events on FromUserName + CreateTime, plus the event
    name, so that two different events in the same second stay two.
    """
    if isinstance(xml_bytes, str):
        xml_bytes = xml_bytes.encode("utf-8")
    if not xml_bytes or not xml_bytes.strip():
        return None
    root = _parse_xml(xml_bytes)
    msg_type = (_field(root, "MsgType") or "").lower()
    sender = _field(root, "FromUserName")
    if not msg_type or not sender:
        raise Invalid([{"field": "MsgType" if not msg_type else "FromUserName", "problem": "missing"}])
    created = _field(root, "CreateTime") or ""
    at = _seconds(created)
    if msg_type == "event":
        return _wechat_event(root, sender, created, at)
    msg_id = _field(root, "MsgId") or _field(root, "MsgID")
    dedup = f"wechat#msg#{msg_id}" if msg_id else f"wechat#msg#{sender}#{created}"
    text = (root.findtext("Content") or "") if msg_type == "text" else ""
    return InboundMessage(provider="wechat", provider_message_id=msg_id or "", sender=sender, text=text, at=at,
                          kind=msg_type, dedup_key=dedup)


def _wechat_event(root: ET.Element, sender: str, created: str, at: int | None) -> Parsed:
    raw = mask_phones(_field(root, "Event")) or ""
    name = raw.lower()
    dedup = f"wechat#event#{sender}#{created}#{name}"
    if name == "templatesendjobfinish":
        msg_id = _field(root, "MsgID") or _field(root, "MsgId")
        if msg_id is None:
            raise Invalid([{"field": "MsgID", "problem": "missing"}])
        raw_status = mask_phones(_field(root, "Status")) or ""
        status, code, title = _wechat_delivery(raw_status)
        return StatusUpdate(provider="wechat", provider_message_id=msg_id, status=status, at=at, our_ref=None,
                            recipient=sender, error_code=code, error_title=title, raw_status=raw_status)
    if name == "subscribe_msg_sent_event":
        # One <List> per message sent; WeChat sends one message's result per push.
        for item in root.iter("List"):
            msg_id = _field(item, "MsgID") or _field(item, "MsgId")
            if msg_id is None:
                continue
            raw_status = mask_phones(_field(item, "ErrorStatus")) or ""
            status, code, title = _wechat_delivery(raw_status)
            error_code = _field(item, "ErrorCode")
            return StatusUpdate(provider="wechat", provider_message_id=msg_id, status=status, at=at, our_ref=None,
                                recipient=sender, error_code=error_code if error_code not in (None, "0") else code,
                                error_title=title, raw_status=raw_status)
        return ChannelEvent(provider="wechat", sender=sender, event="unknown", raw=raw, at=at, dedup_key=dedup)
    if name in ("subscribe_msg_popup_event", "subscribe_msg_change_event"):
        choices = tuple((_field(item, "TemplateId") or "", _field(item, "SubscribeStatusString") or "")
                        for item in root.iter("List"))
        return ChannelEvent(provider="wechat", sender=sender, event="subscribe_msg", raw=raw, at=at,
                            dedup_key=dedup, choices=choices)
    event = {"subscribe": "follow", "unsubscribe": "unfollow"}.get(name, "unknown")
    return ChannelEvent(provider="wechat", sender=sender, event=event, raw=raw, at=at, dedup_key=dedup)


# --- Aliyun SMS ---------------------------------------------------------------------

_CHINA = timezone(timedelta(hours=8))  # Aliyun's times are Beijing time, without an offset; no DST
_CN_MOBILE = re.compile(r"(?:\+?86)?(1[3-9]\d{9})")


def _aliyun_time(value: object) -> int | None:
    text = _str(value)
    if text is None:
        return None
    try:
        return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_CHINA).timestamp())
    except ValueError:
        return None


def _aliyun_phone(value: object) -> str | None:
    """E.164 for a mainland mobile number (Aliyun sends 13800000000); anything else as
    given, rather than a guess."""
    text = _str(value)
    if text is None:
        return None
    match = _CN_MOBILE.fullmatch(text)
    return f"+86{match.group(1)}" if match else text


def _aliyun_items(body: list, what: str) -> list[dict]:
    if not isinstance(body, list) or not all(isinstance(item, dict) for item in body):
        raise Invalid(f"Aliyun {what} are a JSON array of objects")
    return body


def _aliyun_success(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    text = _str(value)
    return {"true": True, "false": False}.get(text.lower()) if text else None


def parse_aliyun_report(body: list) -> list[StatusUpdate]:
    """SmsReport receipts: success true -> delivered, false -> failed with `err_code`.
    `out_id` (ours, set at send time) -> our_ref; `biz_id` -> provider_message_id.
    A receipt with neither id names no message and is left out."""
    updates = []
    for item in _aliyun_items(body, "receipts"):
        biz_id, out_id = _str(item.get("biz_id")), _str(item.get("out_id"))
        if biz_id is None and out_id is None:
            continue
        success = _aliyun_success(item.get("success"))
        status = {True: "delivered", False: "failed", None: "unknown"}[success]
        err_code = _str(item.get("err_code"))
        # err_code says what happened ("DELIVERED" too); without it, the flag itself
        raw = err_code or (str(success).lower() if success is not None else _said(item.get("success")) or "")
        updates.append(StatusUpdate(
            provider="aliyun", provider_message_id=biz_id or "", status=status,
            at=_aliyun_time(item.get("report_time")) or _aliyun_time(item.get("send_time")), our_ref=out_id,
            recipient=_aliyun_phone(item.get("phone_number")),
            error_code=err_code if status != "delivered" else None,
            error_title=_said(item.get("err_msg")) if status != "delivered" else None,
            raw_status=raw))
    return updates


def parse_aliyun_up(body: list) -> list[InboundMessage]:
    """SmsUp replies, deduplicated on `sequence_id` (a reply without one is keyed on its
    number, time and text, so that an opt-out is never dropped for want of an id)."""
    messages = []
    for item in _aliyun_items(body, "replies"):
        sender = _aliyun_phone(item.get("phone_number"))
        if sender is None:
            continue
        content = item.get("content") if isinstance(item.get("content"), str) else ""
        sequence = _str(item.get("sequence_id"))
        if sequence is not None:
            dedup = f"aliyun#up#{sequence}"
        else:
            digest = hashlib.sha256(f"{sender}\n{item.get('send_time')}\n{content}".encode()).hexdigest()[:32]
            dedup = f"aliyun#up#{digest}"
        messages.append(InboundMessage(provider="aliyun", provider_message_id=sequence or "", sender=sender,
                                       text=content, at=_aliyun_time(item.get("send_time")), kind="text",
                                       dedup_key=dedup))
    return messages


# --- keywords -----------------------------------------------------------------------

_KEYWORDS = {
    # Twilio opts a number out on its standard keywords (STOPALL, CANCEL, END, QUIT,
    # REVOKE, OPTOUT as well as STOP, UNSUBSCRIBE) whatever we do: mirror all of them.
    "opt_out": ("stop", "stop all", "stopall", "unsubscribe", "cancel", "end", "quit", "revoke", "optout",
                "退订", "退訂", "t", "td", "r"),
    "opt_in": ("同意", "yes", "agree", "start", "unstop"),
    "balance": ("我的积分", "我的積分", "积分", "積分", "points", "bal", "balance"),
    "help": ("help", "info", "帮助", "幫助", "客服"),
}
_KEYWORD_INTENTS = {word: intent for intent, words in _KEYWORDS.items() for word in words}


def normalise_keyword(text: str) -> str:
    """NFKC (full-width letters and spaces become half-width), trimmed, case-folded,
    inner whitespace collapsed to one space: "  ＳＴＯＰ　ＡＬＬ " -> "stop all"."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def classify_keyword(text: str) -> str | None:
    """The intent of a keyword reply: "opt_out", "opt_in", "balance", "help", or None.

    The whole message must be the keyword: "please stop sending" is not an opt-out, but
    punctuation around it is tolerated ("STOP.", "退订。", "“TD”")."""
    if not isinstance(text, str):
        return None
    word = normalise_keyword(text)
    start, end = 0, len(word)
    while start < end and (_is_punctuation(word[start]) or word[start].isspace()):
        start += 1
    while end > start and (_is_punctuation(word[end - 1]) or word[end - 1].isspace()):
        end -= 1
    return _KEYWORD_INTENTS.get(word[start:end])
