"""The order system's webhook signature: X-Signature: t=<unix seconds>,v1=<hex HMAC>.

v1 = hex(HMAC-SHA256(secret, "<t>.<raw body>")). Several v1 values may be sent (while a
secret is rotated); one valid value is enough. Older than the tolerance, or further in
the future, is refused: a captured request cannot be replayed later.
"""
from __future__ import annotations

import hashlib
import hmac

from ..errors import Unauthorized


def sign_order_body(secret: str, body: bytes, timestamp: int) -> str:
    """The header value an order system sends (also used by tests and the demo)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_order_signature(header: str | None, body: bytes, secrets: list[str], now: int, tolerance_s: int) -> None:
    """Raise Unauthorized unless `header` signs `body` with one of `secrets` within the
    tolerance around `now` (unix seconds, from the caller)."""
    if not header:
        raise Unauthorized("missing X-Signature header")
    timestamp, signatures = None, []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            timestamp = value
        elif key == "v1":
            signatures.append(value.lower())
    if timestamp is None or not timestamp.isdigit() or not signatures:
        raise Unauthorized("X-Signature must look like t=<unix seconds>,v1=<hex>")
    if abs(now - int(timestamp)) > tolerance_s:
        raise Unauthorized("X-Signature timestamp is outside the allowed window")
    signed = timestamp.encode() + b"." + body
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            return
    raise Unauthorized("X-Signature does not match")
