"""WhatsApp Business Platform (Cloud API) client: template messages, and free-form text
inside the 24-hour customer-service window.

    POST {base}/{version}/{phone_number_id}/messages   Authorization: Bearer <token>
    -> {"messages": [{"id": "wamid...", "message_status"?: "accepted"}], ...}
    <- HTTP 4xx/5xx {"error": {"code", "message", "error_data": {"details"}, ...}}
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

import requests

from ..errors import Misconfigured
from .providers import (TIMEOUT, Classification, HttpClient, ProviderError, RateLimiter, SendResult, digits,
                        json_body, lookup, retry_after_header)

PROVIDER = "whatsapp"

_T = Classification
# Error codes -> outcome (and a suggested wait). CHANNELS.md lists the ones that matter;
# the rest are Meta's documented codes we would otherwise misfile by HTTP status.
WHATSAPP_ERRORS: dict[int, Classification] = {
    # throttling: back off
    4: _T("transient", 60), 80007: _T("transient", 60), 130429: _T("transient", 30),
    131056: _T("transient", 6),                       # pair rate limit: ~1 message / 6 s per recipient
    131048: _T("transient", 3600),                    # spam rate limit: no quick retry
    131049: _T("transient", 3600),                    # held back for ecosystem reasons: no quick retry
    1: _T("transient"), 2: _T("transient"),           # API unknown / service temporarily unavailable
    131000: _T("transient"), 131016: _T("transient"),  # something went wrong / service unavailable
    # the member
    131047: _T("window_closed"),                      # free-form outside the 24 h window: use a template
    131026: _T("undeliverable"),                      # not on WhatsApp, old app, ...: another channel
    130472: _T("undeliverable"),                      # number is part of an experiment: not sent
    131050: _T("opted_out"),                          # member stopped marketing messages
    # ours: the template (parameter count 132000 or format 132012/132018, name 132001, text
    # too long 132005, policy 132007, paused 132015, disabled 132016): alert, never resend
    # it as is; another channel may still carry the message
    **{code: _T("config", template=True) for code in (132000, 132001, 132005, 132007, 132012, 132015, 132016,
                                                       132018)},
    # ours: account, credentials
    0: _T("config"), 3: _T("config"), 10: _T("config"), 190: _T("config"), 200: _T("config"), 131005: _T("config"),
    368: _T("config"), 131031: _T("config"), 131042: _T("config"), 133010: _T("config"),
}


def classify_whatsapp_error(http_status: int, code: int | str | None) -> Classification:
    """The outcome of a Cloud API error: by code, else by HTTP status."""
    try:
        key = int(code) if code is not None else None
    except (TypeError, ValueError):
        key = None
    return lookup(WHATSAPP_ERRORS, PROVIDER, http_status, key if key is not None else code)


@dataclass(frozen=True)
class WhatsAppConfig:
    phone_number_id: str
    access_token: str = field(repr=False)
    base_url: str = "https://graph.facebook.com"
    api_version: str = "v21.0"
    timeout: tuple[float, float] = TIMEOUT
    rate_per_s: float = 80.0          # Meta's default per business number (up to 1,000)

    @classmethod
    def from_env(cls, env: Mapping[str, str], secret: Callable[[str], str | None]) -> "WhatsAppConfig":
        """From the function's environment (template.yaml) and its secrets."""
        number, token = env.get("WHATSAPP_PHONE_NUMBER_ID"), secret("WHATSAPP_ACCESS_TOKEN")
        if not number or not token:
            raise Misconfigured("WHATSAPP_PHONE_NUMBER_ID and the WHATSAPP_ACCESS_TOKEN secret are required")
        return cls(phone_number_id=number, access_token=token,
                   base_url=env.get("WHATSAPP_API_BASE") or cls.base_url,
                   api_version=env.get("WHATSAPP_API_VERSION") or cls.api_version)


def whatsapp_body(to: str, payload: dict, message_id: str) -> dict:
    """The Cloud API request body for a rendered payload (pure)."""
    body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": digits(to),
            "biz_opaque_callback_data": message_id}
    kind = payload.get("type")
    if kind == "template":
        components = [{"type": "body",
                       "parameters": [{"type": "text", "text": str(v)} for v in payload.get("body_params") or ()]}]
        if payload.get("button_params"):
            components.append({"type": "button", "sub_type": "url", "index": "0",
                               "parameters": [{"type": "text", "text": str(v)} for v in payload["button_params"]]})
        body.update(type="template", template={"name": payload["name"], "language": {"code": payload["language"]},
                                               "components": components})
    elif kind == "text":
        body.update(type="text", text={"preview_url": bool(payload.get("preview_url")), "body": payload["body"]})
    else:
        raise ProviderError("config", "bad_payload", f"unknown WhatsApp payload type {kind!r}", provider=PROVIDER)
    return body


class WhatsAppClient(HttpClient):
    """Sends rendered WhatsApp payloads through the Cloud API."""

    provider = PROVIDER

    def __init__(self, config: WhatsAppConfig, *, session: requests.Session | None = None,
                 now: Callable[[], float] = time.monotonic):
        super().__init__(session)
        self.config = config
        self.limiter = RateLimiter(config.rate_per_s, now=now)

    def send(self, to: str, payload: dict, message_id: str) -> SendResult:
        body = whatsapp_body(to, payload, message_id)
        self.limiter.take(self.config.phone_number_id, PROVIDER)
        c = self.config
        response = self._request("POST", f"{c.base_url.rstrip('/')}/{c.api_version}/{c.phone_number_id}/messages",
                                 c.timeout, json=body, headers={"Authorization": f"Bearer {c.access_token}"})
        answer = json_body(response)
        if response.status_code < 300:
            messages = answer.get("messages")
            first = messages[0] if isinstance(messages, list) and messages and isinstance(messages[0], dict) else {}
            if not first.get("id"):
                raise ProviderError("permanent", "no_message_id", "accepted without a message id",
                                    provider=PROVIDER, http_status=response.status_code)
            return SendResult(PROVIDER, str(first["id"]), str(first.get("message_status") or "accepted"))
        error = answer.get("error") if isinstance(answer.get("error"), dict) else {}
        code = error.get("code")
        found = classify_whatsapp_error(response.status_code, code)
        details = (error.get("error_data") or {}).get("details") if isinstance(error.get("error_data"), dict) else None
        raise ProviderError(found.outcome, str(code) if code is not None else f"http_{response.status_code}",
                            str(details or error.get("message") or response.reason or ""),
                            retry_after_header(response) or found.retry_after_s,
                            provider=PROVIDER, http_status=response.status_code, template=found.template)
