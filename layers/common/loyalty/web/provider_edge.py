"""The provider webhooks' edge: verify the signature over the raw request, parse, store
the push before acknowledging it, apply it, and answer the way each provider expects.
A bad signature or body is a 4xx and changes nothing; only a failure to store or apply
is a 5xx, so the provider retries and nothing is lost."""
from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from .. import wiring
from ..channels import aliyun_inbound, signatures, twilio_inbound, wechat_inbound, whatsapp_inbound
from ..channels.pushes import ChannelEvent, InboundMessage, StatusUpdate
from ..errors import Invalid, Misconfigured
from ..settings import settings
from .api import request_time   # the service's clock a keyword check-in is measured against
from .edge import check_size, header, raw_body

if TYPE_CHECKING:  # templates and their models load on the first push, not at import
    from ..messaging import conversations


def _secret(name: str) -> str:
    value = wiring.secret(name)
    if not value:
        raise Misconfigured(f"{name} is not configured")
    return value


def public_url(event: dict) -> str:
    """The URL the provider called, as it signed it: PUBLIC_BASE_URL (else the API's own
    https://<domain>) + the raw path + the raw query string, byte for byte (payload 2.0;
    the $default stage adds no prefix)."""
    base = settings().public_base_url or f"https://{(event.get('requestContext') or {}).get('domainName', '')}"
    query = event.get("rawQueryString") or ""
    return base + event.get("rawPath", "") + (f"?{query}" if query else "")


def _form(body: bytes) -> dict[str, list[str]]:
    return parse_qs(body.decode("utf-8"), keep_blank_values=True)


def _flat(form: dict[str, list[str]]) -> dict[str, str]:
    return {k: v[-1] for k, v in form.items()}


def _apply(items, now: datetime, our_ref: str | None = None, *,
           clock: datetime | None = None) -> list["conversations.Outcome"]:
    from ..messaging import conversations
    ledger, msgs, queues, rules = wiring.ledger_store(), wiring.messaging_store(), wiring.queues(), wiring.rules()
    outcomes = []
    for item in items:
        if isinstance(item, StatusUpdate):
            # The status update is the record of a receipt (with its history): one write;
            # a failure the provider reports late may also read the record and re-route it.
            outcome = conversations.apply_status(item, msgs, now, our_ref, ledger=ledger, queues=queues, rules=rules)
            if outcome.handled == "ignored:unknown_message":
                # It may have overtaken the sender's record of the send (a WeChat receipt
                # has only the provider's id): kept, and applied again (messaging.pushes).
                msgs.store_inbound(item.provider, f"status#{item.provider_message_id}#{item.raw_status}",
                                   item.__dict__, now, kind="status")
            outcomes.append(outcome)
        elif isinstance(item, InboundMessage):
            msgs.store_inbound(item.provider, item.dedup_key, item.__dict__, now)
            with conversations.stored_push(item, msgs, now):   # marked processed, or why it failed
                outcomes.append(conversations.apply_message(item, ledger, msgs, queues, rules, now, clock=clock))
        elif isinstance(item, ChannelEvent):
            msgs.store_inbound(item.provider, item.dedup_key, item.__dict__, now)
            with conversations.stored_push(item, msgs, now):
                outcomes.append(conversations.apply_event(item, ledger, now, rules))
    return outcomes


# --- WhatsApp ---------------------------------------------------------------------------

def whatsapp_verify(event: dict) -> str:
    params = event.get("queryStringParameters") or {}
    return signatures.whatsapp_verify_challenge(params, _secret("WHATSAPP_VERIFY_TOKEN"))


def whatsapp_push(event: dict, now: datetime) -> list["conversations.Outcome"]:
    body = raw_body(event)
    check_size(body)
    wiring.with_fresh_secrets(lambda: signatures.verify_whatsapp(body, header(event, "X-Hub-Signature-256"),
                                                                 _secret("WHATSAPP_APP_SECRET")))
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise Invalid("the body is not JSON") from exc
    return _apply(whatsapp_inbound.parse_whatsapp(document), now, clock=request_time(event, now))


# --- Twilio -----------------------------------------------------------------------------

def twilio_push(event: dict, now: datetime, kind: str) -> list["conversations.Outcome"]:
    body = raw_body(event)
    check_size(body)
    form = _form(body)
    wiring.with_fresh_secrets(lambda: signatures.verify_twilio(public_url(event), form,
                                                               header(event, "X-Twilio-Signature"),
                                                               _secret("TWILIO_AUTH_TOKEN")))
    if kind == "status":
        our_ref = (event.get("queryStringParameters") or {}).get("m")
        return _apply([twilio_inbound.parse_twilio_status(_flat(form))], now, our_ref)
    return _apply([twilio_inbound.parse_twilio_inbound(_flat(form))], now, clock=request_time(event, now))


# --- WeChat -----------------------------------------------------------------------------

def wechat_verify(event: dict) -> str:
    query = event.get("queryStringParameters") or {}
    signatures.verify_wechat(query, _secret("WECHAT_TOKEN"))
    return query.get("echostr", "")


def wechat_push(event: dict, now: datetime) -> str:
    """Answer "success", or a passive reply (XML) when a keyword has an answer."""
    query = event.get("queryStringParameters") or {}
    # Replay window on WeChat's timestamp, against the request's own arrival time.
    wiring.with_fresh_secrets(lambda: signatures.verify_wechat(query, _secret("WECHAT_TOKEN"),
                                                               now=int(now.timestamp())))
    body = raw_body(event)
    check_size(body)
    item = wechat_inbound.parse_wechat(body)
    outcomes = _apply([item] if item is not None else [], now, clock=request_time(event, now))
    reply = next((o.reply for o in outcomes if o.reply), None)
    if reply is None or not isinstance(item, InboundMessage):
        return "success"
    # The text goes in CDATA as is: escaped there, the member would read "&amp;".
    return wechat_inbound.passive_reply(item.sender, wechat_inbound.account_of(body), reply, int(now.timestamp()))


# --- Aliyun -----------------------------------------------------------------------------

def aliyun_push(event: dict, now: datetime, kind: str) -> list["conversations.Outcome"]:
    token = (event.get("queryStringParameters") or {}).get("token")
    wiring.with_fresh_secrets(lambda: signatures.verify_shared_token(token, _secret("ALIYUN_CALLBACK_TOKEN")))
    body = raw_body(event)
    check_size(body)
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise Invalid("the body is not JSON") from exc
    parse = aliyun_inbound.parse_aliyun_report if kind == "report" else aliyun_inbound.parse_aliyun_up
    items = parse(document)
    return _apply(items, now, clock=request_time(event, now))
