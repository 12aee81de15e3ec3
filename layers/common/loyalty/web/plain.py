"""Checks and helpers of the HTTP edge that need no pydantic (cheap to import)."""
from __future__ import annotations

import hashlib
import json
import re

from ..errors import Invalid

MEMBER_ID = r"^[A-Za-z0-9_.:@-]{1,64}$"
_member_id = re.compile(MEMBER_ID)
CHANNELS = ("whatsapp", "wechat", "sms")


def check_member_id(member_id: str) -> str:
    if not _member_id.match(member_id or ""):
        raise Invalid([{"field": "member_id", "problem": "1-64 characters of A-Z a-z 0-9 _ . : @ -"}])
    return member_id


def parse_json(body: bytes | str | None) -> object:
    if body in (None, b"", ""):
        raise Invalid([{"field": "", "problem": "a JSON body is required"}])
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid([{"field": "", "problem": f"the body is not valid JSON ({exc})"}]) from exc


def canonical_hash(document: object) -> str:
    """Same JSON meaning, same hash: key order and whitespace do not count."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


