"""What the handlers share: the raw body and headers of an API Gateway proxy event,
and the order callback's edge (size, signature, parsing) in front of the service."""
from __future__ import annotations

import base64
from datetime import datetime

from .. import wiring
from ..domain import parse_time
from ..errors import Invalid, TooLarge, Transient
from ..services.orders import OrderEvent, handle_order_event
from ..settings import settings
from .signatures import verify_order_signature


def raw_body(event: dict) -> bytes:
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        return base64.b64decode(body)
    return body.encode("utf-8")


def header(event: dict, name: str) -> str | None:
    """A header, case-insensitively (API Gateway keeps the client's spelling)."""
    wanted = name.lower()
    for key, value in (event.get("headers") or {}).items():
        if key.lower() == wanted:
            return value
    return None


def check_size(body: bytes) -> None:
    limit = settings().max_body_bytes
    if len(body) > limit:
        raise TooLarge(f"the body is {len(body)} bytes; the limit is {limit}")


def order_callback(body: bytes, signature: str | None, now: datetime, notices: list | None = None) -> dict:
    """Verify, parse and apply one order callback. Every rejection happens before any write.
    `notices` receives what the event announces beyond the credit (a tier-up)."""
    check_size(body)

    def verify() -> None:
        secrets = [s for s in (wiring.secret("ORDER_WEBHOOK_SECRET"), wiring.secret("ORDER_WEBHOOK_SECRET_PREVIOUS"))
                   if s]
        if not secrets:
            raise Transient("ORDER_WEBHOOK_SECRET is not configured")
        verify_order_signature(signature, body, secrets, int(now.timestamp()), settings().order_signature_tolerance_s)

    wiring.with_fresh_secrets(verify)  # a secret rotated since it was cached is read again
    from .models import OrderEventBody, canonical_hash, parse_json, validate  # pydantic: on first use
    document = parse_json(body)
    parsed = validate(OrderEventBody, document)
    rules = wiring.rules()
    if parsed.order.currency not in rules.earn.currencies:
        raise Invalid([{"field": "order.currency", "problem": f"{parsed.order.currency} is not an accepted currency"}])
    event = OrderEvent(event_id=parsed.event_id, type=parsed.type, occurred_at=parse_time(parsed.occurred_at),
                       order_id=parsed.order.order_id, member_id=parsed.order.member_id,
                       amount_minor=parsed.order.amount_minor, currency=parsed.order.currency,
                       refund_amount_minor=parsed.order.refund_amount_minor, body_hash=canonical_hash(document))
    return handle_order_event(wiring.account_store(), rules, event, now, notices)
