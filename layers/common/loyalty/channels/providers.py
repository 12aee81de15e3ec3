"""What every provider client shares: the result of a send, the one error type with its
outcome, HTTP status classification, a per-container rate limiter, the HTTP call
itself, and the SMS text composer.

The clients live next to this module, one per provider (wire formats: CHANNELS.md):

    whatsapp.WhatsAppClient   Cloud API template and free-form text messages
    wechat.WeChatClient       template, subscription and customer-service messages
    twilio.TwilioClient       SMS (Programmable Messaging)
    aliyun.AliyunClient       SMS (Dysmsapi SendSms)

Each takes a frozen config dataclass, creates its `requests.Session` on first use, reads
no environment at import, and has one method, `send(to, payload, message_id)`, taking a
payload rendered by `loyalty.messaging.templates.render`. It returns a `SendResult` or
raises `ProviderError`, whose `outcome` tells the caller what to do next:

    transient      retry later through the queue (after `retry_after_s` when given)
    window_closed  free-form text outside the service window: send a template instead
    undeliverable  fall back to the member's next consented channel
    opted_out      record the opt-out; never retry
    config         our configuration is wrong (template, credentials): alert, don't retry
    permanent      anything else the provider refused: record the message as failed

`template` marks a config error about one template on that channel (its parameters,
its name, its approval: WhatsApp 132000, WeChat 40037, Aliyun isv.SMS_TEMPLATE_ILLEGAL,
...): never resent as is, but the message may still go on the member's next channel.

Nothing here sleeps or retries in a loop: a retry is the queue's job.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Protocol

import requests

from ..errors import LoyaltyError
from ..messaging.sms import segments
from ..privacy import mask_phones

if TYPE_CHECKING:
    from ..rules import SmsRules

logger = logging.getLogger(__name__)

OUTCOMES = ("transient", "window_closed", "undeliverable", "opted_out", "config", "permanent")
TIMEOUT = (3.0, 8.0)  # connect, read (seconds)


@dataclass(frozen=True)
class SendResult:
    provider: str              # whatsapp | wechat | twilio | aliyun
    provider_message_id: str   # the id the provider's receipts will carry
    raw_status: str            # what the provider said about the send (accepted, queued, ok, ...)


class ProviderError(LoyaltyError):
    """A send the provider did not accept. `code` is the provider's own error code as a
    string ("131047", "40001", "21610", "isv.BUSINESS_LIMIT_CONTROL") or one of ours
    ("http_503", "connect_timeout", "read_timeout", "connection_error", "rate_limited",
    "too_many_segments", "bad_payload", ...).

    `detail` is the provider's own text, which often echoes the destination number: it
    is masked here (privacy.mask_phones), where it enters our system, so the outbox
    history, the retry reasons and the logs built from it never carry a full number."""

    def __init__(self, outcome: str, code: str | None, detail: str = "", retry_after_s: float | None = None,
                 *, provider: str = "", http_status: int | None = None, template: bool = False):
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        self.outcome = outcome
        self.template = template   # a config error about this channel's template only
        self.code = code
        self.detail = detail = mask_phones(detail)
        self.retry_after_s = retry_after_s
        self.provider = provider
        self.http_status = http_status
        super().__init__(f"{provider or 'provider'} {outcome} ({code}): {detail}")


@dataclass(frozen=True)
class Classification:
    """What a provider's error means for us: the outcome, how long to wait before a
    retry when the provider says so (seconds; None: the queue's own backoff), and
    whether a config error is about the template alone (another channel may carry the
    message)."""

    outcome: str
    retry_after_s: float | None = None
    template: bool = False


def classify_http_status(status: int) -> Classification:
    """The fallback for codes we do not know: the HTTP status decides."""
    if status == 429 or status == 408 or status >= 500:
        return Classification("transient")
    if status in (401, 403):
        return Classification("config")
    return Classification("permanent")


def lookup(table: Mapping[object, Classification], provider: str, http_status: int,
           code: object) -> Classification:
    """`table[code]`, or the HTTP status's classification (logged: a code to add)."""
    found = table.get(code)
    if found is not None:
        return found
    if code not in (None, ""):
        logger.warning("unknown provider error code", extra={"provider": provider, "code": str(code),
                                                              "http_status": http_status})
    return classify_http_status(http_status)


def rate_share(config, instances: int):
    """A provider config with its rate limit split over `instances` senders: SQS runs at
    most that many (the event source's maximum concurrency), and each limits itself in
    its own container, so together they keep to the provider's rate."""
    from dataclasses import replace
    n = max(1, int(instances))
    if hasattr(config, "segments_per_s"):
        return replace(config, segments_per_s=config.segments_per_s / n,
                       burst_segments=max(1.0, config.burst_segments / n))
    return replace(config, rate_per_s=config.rate_per_s / n)


class RateLimiter:
    """A token bucket per key (a sender number, an app id) in this container: `rate_per_s`
    tokens a second, at most `burst` saved up. `wait(key, cost)` takes the tokens and
    returns 0.0, or returns how long until they are there (taking nothing): the caller
    gives the message back to the queue rather than sleeping."""

    def __init__(self, rate_per_s: float, burst: float | None = None, now: Callable[[], float] = time.monotonic):
        if rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        self.rate = float(rate_per_s)
        self.burst = float(burst if burst is not None else max(rate_per_s, 1.0))
        self._now = now
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def wait(self, key: str, cost: float = 1.0) -> float:
        cost = min(float(cost), self.burst)  # a message dearer than the burst waits for a full bucket
        with self._lock:
            at = self._now()
            tokens, then = self._buckets.get(key, (self.burst, at))
            tokens = min(self.burst, tokens + max(0.0, at - then) * self.rate)
            if tokens >= cost:
                self._buckets[key] = (tokens - cost, at)
                return 0.0
            self._buckets[key] = (tokens, at)
            return (cost - tokens) / self.rate

    def take(self, key: str, provider: str, cost: float = 1.0) -> None:
        """`wait`, raising a transient ProviderError when the bucket is short."""
        wait = self.wait(key, cost)
        if wait > 0:
            raise ProviderError("transient", "rate_limited", f"over {self.rate:g}/s for this sender",
                                retry_after_s=wait, provider=provider)


class HttpClient:
    """The lazily created session and the one HTTP call of a provider client."""

    provider = ""

    def __init__(self, session: requests.Session | None = None):
        self._session = session

    @property
    def session(self) -> requests.Session:
        if self._session is None:
            self._session = requests.Session()
        return self._session

    def _request(self, method: str, url: str, timeout: tuple[float, float], **kwargs) -> requests.Response:
        """One request; network failures become transient ProviderErrors. A read timeout
        gets its own code: the provider may have accepted the message before we gave up."""
        try:
            return self.session.request(method, url, timeout=timeout, **kwargs)
        except requests.ConnectTimeout:
            code = "connect_timeout"
        except requests.ReadTimeout:
            code = "read_timeout"
        except requests.ConnectionError:
            code = "connection_error"
        except requests.RequestException as exc:
            code = "request_error:" + type(exc).__name__
        # `from None`: the request's URL can carry a credential (WeChat's access_token),
        # and requests puts it in its exception messages.
        raise ProviderError("transient", code, "no answer from the provider", provider=self.provider) from None


def json_body(response: requests.Response) -> dict:
    """The response's JSON object, or {} (a proxy's HTML error page, an empty body)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def retry_after_header(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def digits(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit())


# --- SMS ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class ComposedSms:
    text: str          # what we hand the provider (Aliyun: without the signature, it adds it)
    shown: str         # what the member's phone shows: signature + body (+ opt-out line)
    segments: int      # what the provider bills, counted on `shown`


class SmsComposer:
    """Builds an SMS from a rendered body (pure): the 【brand】 signature first, the body,
    and for marketing the opt-out line configured for the provider or the locale
    (rules.messaging.sms.opt_out_line: "aliyun" first, then e.g. "zh-CN", then "en").
    Aliyun prints the signature itself from SignName, so it is counted but not sent.
    Refuses (ProviderError config) a message above max_segments."""

    def __init__(self, rules: SmsRules):
        self.rules = rules

    def opt_out_line(self, provider: str, locale: str) -> str:
        lines = self.rules.opt_out_line
        for key in (f"{provider}:{locale}", provider, locale, locale.split("-")[0], "en"):
            if key in lines:
                return lines[key]
        return ""

    def compose(self, body: str, *, provider: str, phone: str, locale: str, marketing: bool) -> ComposedSms:
        signature = f"【{self.rules.brand}】"
        body = body.strip()
        if body.startswith(signature):  # a template that carries the signature already
            body = body[len(signature):]
        if marketing:
            line = self.opt_out_line(provider, locale)
            if line and not body.endswith(line):
                body = body + ("" if locale.startswith("zh") else " ") + line
        shown = signature + body
        count = segments(shown, domestic_cn=phone.startswith("+86"))
        if count > self.rules.max_segments:
            raise ProviderError("config", "too_many_segments",
                                f"{count} segments, at most {self.rules.max_segments}", provider=provider)
        return ComposedSms(text=body if provider == "aliyun" else shown, shown=shown, segments=count)


class SmsClient(Protocol):
    provider: str

    def send(self, to: str, payload: dict, message_id: str) -> SendResult: ...


class SmsSender:
    """Routes an SMS to the provider for the number (rules.messaging.sms.provider_for),
    composes its text and sends it."""

    def __init__(self, rules: SmsRules, clients: Mapping[str, SmsClient]):
        self.rules = rules
        self.composer = SmsComposer(rules)
        self.clients = dict(clients)

    def send(self, to: str, payload: dict, message_id: str, *, locale: str, marketing: bool) -> SendResult:
        provider = self.rules.provider_for(to)
        client = self.clients.get(provider)
        if client is None:
            raise ProviderError("config", "no_sms_client", f"no client configured for {provider}", provider=provider)
        composed = self.composer.compose(payload.get("text", ""), provider=provider, phone=to, locale=locale,
                                         marketing=marketing)
        return client.send(to, {**payload, "text": composed.text}, message_id)
