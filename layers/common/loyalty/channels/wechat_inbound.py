"""WeChat Official Account pushes (XML, plain-text mode) parsed into plain values
(`pushes`), and the passive reply that answers one in the webhook's response.
Signature-checked before (`signatures.verify_wechat`); no I/O."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from ..errors import Invalid
from ..privacy import mask_phones
from .pushes import ChannelEvent, InboundMessage, Parsed, StatusUpdate, scalar, seconds


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
    return scalar(root.findtext(tag))


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
    at = seconds(created)
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


# --- the passive reply ------------------------------------------------------------------

# What XML 1.0 cannot carry at all, escaped or not (C0 controls but tab, LF, CR; the
# surrogates; U+FFFE and U+FFFF): left out, or the member would get no reply.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def cdata(text: str) -> str:
    """`text` as CDATA, read back exactly: nothing inside CDATA is escaped (an "&amp;"
    there is what the member would see), only "]]>" would end it, so the section is
    closed between "]]" and ">" and reopened."""
    return "<![CDATA[" + _NOT_XML.sub("", text).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def account_of(xml_bytes: bytes) -> str:
    """The account a push was sent to (ToUserName: the original id, gh_...), which the
    reply comes from; "" when the push does not say."""
    return _field(_parse_xml(xml_bytes), "ToUserName") or ""


def passive_reply(to: str, account: str, text: str, at: int) -> str:
    """The XML text message answering a push in the HTTP response: to the member's
    OpenID, from the account, created at `at` (unix seconds)."""
    return (f"<xml><ToUserName>{cdata(to)}</ToUserName><FromUserName>{cdata(account)}</FromUserName>"
            f"<CreateTime>{int(at)}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content>{cdata(text)}</Content></xml>")
