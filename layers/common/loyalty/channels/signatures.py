"""How each messaging provider proves that a webhook call comes from it (CHANNELS.md).

- WhatsApp Cloud API: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw
  body)>`, plus a GET handshake that echoes `hub.challenge` for the verify token.
- Twilio: `X-Twilio-Signature: base64(HMAC-SHA1(auth token, url + sorted form fields))`.
- WeChat Official Account: `signature = sha1(sorted(token, timestamp, nonce))` in the
  query string of every push and of the GET handshake.
- Aliyun SMS receipts and replies carry no signature: see `verify_shared_token`.

Pure functions: no I/O, no clock (the caller passes `now`), no environment reads. Every
failure raises `Unauthorized` (a 4xx, so the provider does not retry a forgery); an empty
secret on our side raises `Misconfigured` (a 503, so the provider retries once it is
fixed). Comparisons are constant-time and made on bytes: `hmac.compare_digest` refuses
non-ASCII `str`, and a header is attacker-controlled.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from ..errors import Misconfigured, Unauthorized

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _equal(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _require_secret(secret: str, name: str) -> None:
    if not secret:
        raise Misconfigured(f"{name} is not configured")


def _first(value: str | list[str] | tuple[str, ...] | None) -> str | None:
    """One value of a query parameter, whether the caller kept the repeats or not."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


# --- WhatsApp Cloud API -----------------------------------------------------------------

def sign_whatsapp(raw_body: bytes, app_secret: str) -> str:
    """The X-Hub-Signature-256 value Meta would send for `raw_body` (for the local
    provider sandbox and tests)."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()


def verify_whatsapp(raw_body: bytes, header: str | None, app_secret: str) -> None:
    """Raise Unauthorized unless `header` (X-Hub-Signature-256) signs `raw_body` with the
    app secret. Check the bytes as received, before any parsing: re-serialised JSON
    would not hash the same."""
    _require_secret(app_secret, "the WhatsApp app secret")
    if not header:
        raise Unauthorized("missing X-Hub-Signature-256 header")
    scheme, _, given = header.strip().partition("=")
    if scheme.lower() != "sha256" or not given:
        raise Unauthorized("X-Hub-Signature-256 must look like sha256=<hex>")
    if not _equal(given.lower(), sign_whatsapp(raw_body, app_secret)[len("sha256="):]):
        raise Unauthorized("X-Hub-Signature-256 does not match the body")


def whatsapp_verify_challenge(params: Mapping[str, str | list[str]], verify_token: str) -> str:
    """The GET handshake Meta makes when the webhook is configured: answer 200 with the
    returned `hub.challenge`. Raises Unauthorized (answer 403) unless `hub.mode` is
    `subscribe` and `hub.verify_token` is ours."""
    _require_secret(verify_token, "the WhatsApp verify token")
    mode = _first(params.get("hub.mode"))
    token = _first(params.get("hub.verify_token"))
    challenge = _first(params.get("hub.challenge"))
    if mode != "subscribe":
        raise Unauthorized("hub.mode must be subscribe")
    if token is None or not _equal(token, verify_token):
        raise Unauthorized("hub.verify_token does not match")
    if challenge is None:
        raise Unauthorized("hub.challenge is missing")
    return challenge


# --- Twilio -----------------------------------------------------------------------------

def _values(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _twilio_payload(url: str, params: Mapping[str, str | list[str]], distinct: bool) -> str:
    signed = url
    for name in sorted(params):
        values = _values(params[name])
        for value in sorted(set(values) if distinct else values):
            signed += name + value
    return signed


def _twilio_mac(payload: str, auth_token: str) -> str:
    mac = hmac.new(auth_token.encode("utf-8"), payload.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def twilio_signature(url: str, params: Mapping[str, str | list[str]], auth_token: str) -> str:
    """The X-Twilio-Signature for a POST of form `params` to `url` (the URL exactly as
    configured at Twilio, query string included). A field may repeat: give its values as
    a list; every value is signed, in sorted order."""
    return _twilio_mac(_twilio_payload(url, params, distinct=False), auth_token)


def _twilio_url_variants(url: str) -> list[str]:
    """`url` as given, then with the scheme's default port removed or added.

    Twilio signs the URL as configured, but proxies and frameworks report it with or
    without `:443` / `:80`; Twilio's own RequestValidator accepts both spellings. Only
    default ports are toggled: a signature for `:8443` does not cover the URL without it.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return [url]
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    start = url.find("//")
    if default is None or not parts.netloc or start < 0:
        return [url]
    start += 2
    netloc = url[start:start + len(parts.netloc)]
    if netloc != parts.netloc:  # not the simple scheme://netloc... shape: leave it alone
        return [url]
    if port is None:
        if netloc.endswith(":"):  # "host:" is an empty port; leave it alone
            return [url]
        other = f"{netloc}:{default}"
    elif port == default:
        other = netloc[:netloc.rfind(":")]
    else:
        return [url]
    return [url, url[:start] + other + url[start + len(netloc):]]


def verify_twilio(url: str, params: Mapping[str, str | list[str]], header: str | None, auth_token: str) -> None:
    """Raise Unauthorized unless `header` (X-Twilio-Signature) signs the POST of `params`
    to `url` with the auth token.

    `url` is the full URL Twilio called, query string included; `params` every POSTed
    form field (repeated fields as lists). The URL is also tried with its default port
    added or removed. When a field repeats the same value, the value is also tried once
    only, as Twilio's SDKs sign (`sorted(set(values))`).
    """
    _require_secret(auth_token, "the Twilio auth token")
    if not header:
        raise Unauthorized("missing X-Twilio-Signature header")
    given = header.strip()
    repeats = any(len(set(v)) != len(v) for v in (_values(p) for p in params.values()))
    for variant in _twilio_url_variants(url):
        candidates = [_twilio_mac(_twilio_payload(variant, params, distinct=False), auth_token)]
        if repeats:
            candidates.append(_twilio_mac(_twilio_payload(variant, params, distinct=True), auth_token))
        if any(_equal(given, candidate) for candidate in candidates):
            return
    raise Unauthorized("X-Twilio-Signature does not match the URL and form")


# --- WeChat Official Account ------------------------------------------------------------

def wechat_signature(token: str, timestamp: str, nonce: str) -> str:
    """sha1 of the three values sorted and concatenated, as hex."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode("utf-8")).hexdigest()


def verify_wechat(query: Mapping[str, str | list[str]], token: str, *, now: int | None = None,
                  tolerance_s: int = 300) -> None:
    """Raise Unauthorized unless the query's `signature` matches `timestamp`, `nonce` and
    our token.

    The signature covers no body, so a captured (query, body) pair can be replayed as is.
    Given `now` (unix seconds, from the caller), a `timestamp` more than `tolerance_s`
    from it is refused as well; keep the tolerance above WeChat's retries (three, 5 s
    apart) plus clock skew. The GET handshake has no body: check it the same way, then
    answer `echostr`.
    """
    _require_secret(token, "the WeChat token")
    signature = _first(query.get("signature"))
    timestamp = _first(query.get("timestamp"))
    nonce = _first(query.get("nonce"))
    if not signature or timestamp is None or nonce is None:
        raise Unauthorized("signature, timestamp and nonce are required in the query string")
    if not _equal(signature.lower(), wechat_signature(token, timestamp, nonce)):
        raise Unauthorized("WeChat signature does not match")
    if now is not None:
        if not timestamp.isascii() or not timestamp.isdigit():
            raise Unauthorized("WeChat timestamp must be unix seconds")
        if abs(now - int(timestamp)) > tolerance_s:
            raise Unauthorized("WeChat timestamp is outside the allowed window")


# --- Aliyun SMS (and any provider that signs nothing) -----------------------------------

def verify_shared_token(given: str | None, expected: str) -> None:
    """Raise Unauthorized unless `given` equals our shared token.

    Aliyun's SmsReport and SmsUp pushes carry no signature (CHANNELS.md), so what we rely
    on is the callback URL itself: it is configured with an unguessable token of our own
    in the path or the query (e.g. `.../webhooks/aliyun/report?token=<32+ random bytes,
    url-safe>`), which only Aliyun and we know, over HTTPS. The handler passes that
    token here; it is compared in constant time. To rotate it, configure the new URL at
    Aliyun and accept both tokens for a while (call this once per token). It proves
    less than a signature: the body is not covered and the URL can end up in access
    logs, so keep it out of logs and let a push only act on what it names (a receipt on
    the outbox record of its `out_id`, a reply on the number that sent it).
    """
    _require_secret(expected, "the shared webhook token")
    if not given:
        raise Unauthorized("missing webhook token")
    if not _equal(given, expected):
        raise Unauthorized("webhook token does not match")
