"""Twilio Programmable Messaging client (SMS).

    POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json   basic auth (sid, token)
    form: To, From | MessagingServiceSid, Body, StatusCallback
    -> 201 {"sid": "SM...", "status": "queued" | "accepted", ...}
    <- 4xx/5xx {"code": 21610, "message": "...", "more_info": "...", "status": 400}
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping
from urllib.parse import quote

import requests

from ..errors import Misconfigured
from ..messaging.sms import segments
from .providers import (TIMEOUT, Classification, HttpClient, ProviderError, RateLimiter, SendResult, json_body,
                        lookup, retry_after_header)

PROVIDER = "twilio"

_T = Classification
# API errors (at send time) and delivery errors (in status callbacks) share this table.
TWILIO_ERRORS: dict[int, Classification] = {
    20429: _T("transient"), 14107: _T("transient"), 21611: _T("transient"),  # too many requests, queue full
    20500: _T("transient"), 20503: _T("transient"), 20504: _T("transient"),
    30001: _T("transient"),                                                 # queue overflow
    21211: _T("undeliverable"), 21612: _T("undeliverable"), 21614: _T("undeliverable"),  # bad / non-mobile 'To'
    30003: _T("undeliverable"), 30004: _T("undeliverable"), 30005: _T("undeliverable"),
    30006: _T("undeliverable"), 30007: _T("undeliverable"),                 # unreachable, blocked, filtered
    21610: _T("opted_out"),                                                 # the member sent STOP
    20003: _T("config"), 20404: _T("config"), 21408: _T("config"), 21602: _T("config"),
    21603: _T("config"), 21606: _T("config"), 21608: _T("config"), 21617: _T("config"),
    21609: _T("config"), 21659: _T("config"), 21701: _T("config"), 21704: _T("config"), 30002: _T("config"),
}


def classify_twilio_error(http_status: int, code: int | str | None) -> Classification:
    """The outcome of a Twilio error: by code, else by HTTP status."""
    try:
        key = int(code) if code is not None else None
    except (TypeError, ValueError):
        key = None
    return lookup(TWILIO_ERRORS, PROVIDER, http_status, key if key is not None else code)


@dataclass(frozen=True)
class TwilioConfig:
    account_sid: str
    auth_token: str = field(repr=False)
    sender: str                        # an E.164 number, or a Messaging Service SID (MG...)
    public_base_url: str | None = None  # our API as Twilio calls it, for StatusCallback; None: no receipts
    base_url: str = "https://api.twilio.com"
    timeout: tuple[float, float] = TIMEOUT
    # What the sender sends a second (TWILIO_SEGMENTS_PER_S): a long code about 1 (Twilio
    # queues the rest), toll-free 3, a short code 100, a Messaging Service its numbers' sum.
    segments_per_s: float = 1.0
    burst_segments: float = 10.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], secret: Callable[[str], str | None]) -> "TwilioConfig":
        """From the function's environment (template.yaml) and its secrets."""
        sid, sender, token = env.get("TWILIO_ACCOUNT_SID"), env.get("TWILIO_SENDER"), secret("TWILIO_AUTH_TOKEN")
        if not sid or not sender or not token:
            raise Misconfigured("TWILIO_ACCOUNT_SID, TWILIO_SENDER and the TWILIO_AUTH_TOKEN secret are required")
        rate = env.get("TWILIO_SEGMENTS_PER_S") or ""
        try:
            segments_per_s = float(rate) if rate else cls.segments_per_s
        except ValueError:
            segments_per_s = 0.0
        if not 0 < segments_per_s <= 10000:
            raise Misconfigured(f"TWILIO_SEGMENTS_PER_S must be a number of segments a second above 0, got {rate!r}")
        return cls(account_sid=sid, auth_token=token, sender=sender,
                   public_base_url=env.get("PUBLIC_BASE_URL") or None,
                   base_url=env.get("TWILIO_API_BASE") or cls.base_url,
                   # a burst of ten segments, or of one second's worth for a faster sender
                   segments_per_s=segments_per_s, burst_segments=max(cls.burst_segments, segments_per_s))


def twilio_form(config: TwilioConfig, to: str, payload: dict, message_id: str) -> dict[str, str]:
    """The form fields of a send (pure)."""
    if not isinstance(payload.get("text"), str) or not payload["text"]:
        raise ProviderError("config", "bad_payload", "an SMS needs a text", provider=PROVIDER)
    form = {"To": to if to.startswith("+") else "+" + to, "Body": payload["text"]}
    form["MessagingServiceSid" if config.sender.startswith("MG") else "From"] = config.sender
    if config.public_base_url:
        form["StatusCallback"] = (f"{config.public_base_url.rstrip('/')}/webhooks/twilio/status"
                                  f"?m={quote(message_id, safe='')}")
    return form


class TwilioClient(HttpClient):
    """Sends an SMS (payload {"text": ...}, composed by SmsComposer) through Twilio."""

    provider = PROVIDER

    def __init__(self, config: TwilioConfig, *, session: requests.Session | None = None,
                 now: Callable[[], float] = time.monotonic):
        super().__init__(session)
        self.config = config
        self.limiter = RateLimiter(config.segments_per_s, config.burst_segments, now=now)

    def send(self, to: str, payload: dict, message_id: str) -> SendResult:
        c = self.config
        form = twilio_form(c, to, payload, message_id)
        self.limiter.take(c.sender, PROVIDER, cost=segments(form["Body"]))
        response = self._request("POST", f"{c.base_url.rstrip('/')}/2010-04-01/Accounts/{c.account_sid}/Messages.json",
                                 c.timeout, data=form, auth=(c.account_sid, c.auth_token))
        answer = json_body(response)
        if response.status_code < 300 and answer.get("sid"):
            return SendResult(PROVIDER, str(answer["sid"]), str(answer.get("status") or "queued"))
        if response.status_code < 300:
            raise ProviderError("permanent", "no_message_id", "accepted without a sid", provider=PROVIDER,
                                http_status=response.status_code)
        code = answer.get("code")
        found = classify_twilio_error(response.status_code, code)
        raise ProviderError(found.outcome, str(code) if code is not None else f"http_{response.status_code}",
                            str(answer.get("message") or response.reason or ""),
                            retry_after_header(response) or found.retry_after_s,
                            provider=PROVIDER, http_status=response.status_code)
