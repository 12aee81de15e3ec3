"""Aliyun SMS pushes (SmsReport receipts, SmsUp replies; JSON arrays) parsed into
plain values (`pushes`). Authenticated before (`signatures.verify_shared_token`); no I/O."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone

from ..errors import Invalid
from .pushes import InboundMessage, StatusUpdate, said, scalar

_CHINA = timezone(timedelta(hours=8))  # Aliyun's times are Beijing time, without an offset; no DST
_CN_MOBILE = re.compile(r"(?:\+?86)?(1[3-9]\d{9})")


def _aliyun_time(value: object) -> int | None:
    text = scalar(value)
    if text is None:
        return None
    try:
        return int(datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=_CHINA).timestamp())
    except ValueError:
        return None


def _aliyun_phone(value: object) -> str | None:
    """E.164 for a mainland mobile number (Aliyun sends 13800000000); anything else as
    given, rather than a guess."""
    text = scalar(value)
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
    text = scalar(value)
    return {"true": True, "false": False}.get(text.lower()) if text else None


def parse_aliyun_report(body: list) -> list[StatusUpdate]:
    """SmsReport receipts: success true -> delivered, false -> failed with `err_code`.
    `out_id` (ours, set at send time) -> our_ref; `biz_id` -> provider_message_id.
    A receipt with neither id names no message and is left out."""
    updates = []
    for item in _aliyun_items(body, "receipts"):
        biz_id, out_id = scalar(item.get("biz_id")), scalar(item.get("out_id"))
        if biz_id is None and out_id is None:
            continue
        success = _aliyun_success(item.get("success"))
        status = {True: "delivered", False: "failed", None: "unknown"}[success]
        err_code = scalar(item.get("err_code"))
        # err_code says what happened ("DELIVERED" too); without it, the flag itself
        raw = err_code or (str(success).lower() if success is not None else said(item.get("success")) or "")
        updates.append(StatusUpdate(
            provider="aliyun", provider_message_id=biz_id or "", status=status,
            at=_aliyun_time(item.get("report_time")) or _aliyun_time(item.get("send_time")), our_ref=out_id,
            recipient=_aliyun_phone(item.get("phone_number")),
            error_code=err_code if status != "delivered" else None,
            error_title=said(item.get("err_msg")) if status != "delivered" else None,
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
        sequence = scalar(item.get("sequence_id"))
        if sequence is not None:
            dedup = f"aliyun#up#{sequence}"
        else:
            digest = hashlib.sha256(f"{sender}\n{item.get('send_time')}\n{content}".encode()).hexdigest()[:32]
            dedup = f"aliyun#up#{digest}"
        messages.append(InboundMessage(provider="aliyun", provider_message_id=sequence or "", sender=sender,
                                       text=content, at=_aliyun_time(item.get("send_time")), kind="text",
                                       dedup_key=dedup))
    return messages
