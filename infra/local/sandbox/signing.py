"""The signatures the providers put on their webhooks, and Aliyun's request signature
(RPC signature version 1.0) that the Aliyun fake checks. Written from the providers'
documentation (CHANNELS.md), independently of the application's own verifiers, so a
mistake on one side shows up as a refused webhook rather than cancelling out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from urllib.parse import quote


def whatsapp_signature(raw_body: bytes, app_secret: str) -> str:
    """X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>."""
    return "sha256=" + hmac.new(app_secret.encode("utf-8"), raw_body, hashlib.sha256).hexdigest()


def twilio_signature(url: str, params: Iterable[tuple[str, str]], auth_token: str) -> str:
    """X-Twilio-Signature: base64(HMAC-SHA1(auth token, url + name+value of every form
    field, sorted by name then value)), over the URL exactly as configured."""
    signed = url + "".join(name + value for name, value in sorted(params))
    mac = hmac.new(auth_token.encode("utf-8"), signed.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def wechat_signature(token: str, timestamp: str, nonce: str) -> str:
    """The `signature` query parameter: sha1 of token, timestamp and nonce sorted and joined."""
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode("utf-8")).hexdigest()


def aliyun_percent_encode(value: str) -> str:
    """Aliyun's percent-encoding: UTF-8, A-Z a-z 0-9 - _ . ~ kept, everything else %XX
    (so a space is %20, "*" is %2A and "~" stays)."""
    return quote(value, safe="-_.~")


def aliyun_string_to_sign(method: str, params: Mapping[str, str]) -> str:
    """HTTPMethod & percentEncode("/") & percentEncode(canonicalized query string), the
    canonicalized query being every parameter but Signature, sorted by name, each name
    and value percent-encoded and joined with = and &."""
    canonical = "&".join(f"{aliyun_percent_encode(name)}={aliyun_percent_encode(value)}"
                         for name, value in sorted(params.items()) if name != "Signature")
    return f"{method.upper()}&{aliyun_percent_encode('/')}&{aliyun_percent_encode(canonical)}"


def aliyun_signature(method: str, params: Mapping[str, str], access_key_secret: str) -> str:
    """base64(HMAC-SHA1(AccessKeySecret + "&", string to sign))."""
    mac = hmac.new((access_key_secret + "&").encode("utf-8"),
                   aliyun_string_to_sign(method, params).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def equal(given: str, expected: str) -> bool:
    """Constant-time comparison of two texts."""
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))
