"""Aliyun SMS (Dysmsapi) client: SendSms through the RPC API, signed with Aliyun's POP
signature version 1.0 (HMAC-SHA1), form-encoded POST.

    POST {base}/  Action=SendSms&Version=2017-05-25&...&Signature=...
    -> {"Code": "OK", "BizId": "...", "RequestId": "...", "Message": "OK"}
    <- {"Code": "isv.BUSINESS_LIMIT_CONTROL", "Message": "...", "RequestId": "..."} (HTTP 200
       for business errors; 4xx/5xx for signature, credentials and throttling)

SendSms is not idempotent: our message id goes out as OutId and comes back in receipts.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Mapping
from urllib.parse import quote

import requests

from ..errors import Misconfigured
from .providers import (TIMEOUT, Classification, HttpClient, ProviderError, RateLimiter, SendResult, digits,
                        json_body, lookup)

PROVIDER = "aliyun"

_T = Classification
# Matched on the whole code, then on the part before the first dot
# ("Throttling.User" -> "Throttling", "InvalidAccessKeyId.NotFound" -> "InvalidAccessKeyId").
ALIYUN_ERRORS: dict[str, Classification] = {
    "isv.BUSINESS_LIMIT_CONTROL": _T("transient", 3600),   # per-number frequency cap: defer
    "isv.DAY_LIMIT_CONTROL": _T("transient", 3600),
    "Throttling": _T("transient", 5), "isp.SYSTEM_ERROR": _T("transient"), "isv.SYSTEM_ERROR": _T("transient"),
    "ServiceUnavailable": _T("transient"), "InternalError": _T("transient"), "SignatureNonceUsed": _T("transient"),
    "isv.MOBILE_NUMBER_ILLEGAL": _T("undeliverable"),
    # the template (unknown code, parameters missing, malformed or too long): another channel may carry it
    **{code: _T("config", template=True) for code in ("isv.SMS_TEMPLATE_ILLEGAL", "isv.TEMPLATE_MISSING_PARAMETERS",
                                                      "isv.INVALID_JSON_PARAM", "isv.PARAM_LENGTH_LIMIT")},
    "isv.SMS_SIGNATURE_ILLEGAL": _T("config"), "isv.INVALID_PARAMETERS": _T("config"),
    "isv.BLACK_KEY_CONTROL_LIMIT": _T("config"), "isv.AMOUNT_NOT_ENOUGH": _T("config"),
    "isv.OUT_OF_SERVICE": _T("config"), "isv.ACCOUNT_NOT_EXISTS": _T("config"), "isv.ACCOUNT_ABNORMAL": _T("config"),
    "isv.SMS_SIGNATURE_SCENE_ILLEGAL": _T("config"), "isp.RAM_PERMISSION_DENY": _T("config"),
    "InvalidAccessKeyId": _T("config"), "SignatureDoesNotMatch": _T("config"), "IncompleteSignature": _T("config"),
    "InvalidTimeStamp": _T("config"), "Forbidden": _T("config"), "isv.MOBILE_COUNT_OVER_LIMIT": _T("config"),
    "InvalidParameter": _T("config"), "MissingParameter": _T("config"), "InvalidVersion": _T("config"),
    "InvalidAction": _T("config"),
}


def classify_aliyun_error(http_status: int, code: str | None) -> Classification:
    """The outcome of a Dysmsapi Code: whole code, then its first part, else the HTTP
    status (a refusal answered with HTTP 200 counts as a 4xx)."""
    if code:
        found = ALIYUN_ERRORS.get(code) or ALIYUN_ERRORS.get(code.split(".")[0])
        if found is not None:
            return found
    return lookup({}, PROVIDER, http_status if http_status >= 300 else 400, code)


def percent_encode(value: str) -> str:
    """RFC 3986 as Aliyun POP wants it: unreserved A-Z a-z 0-9 - _ . ~ kept, everything
    else %XX of its UTF-8 bytes (space %20, "*" %2A)."""
    return quote(value, safe="-_.~")


def string_to_sign(params: Mapping[str, str], method: str = "POST") -> str:
    canonical = "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))
    return f"{method}&%2F&{percent_encode(canonical)}"


def sign(params: Mapping[str, str], secret: str, method: str = "POST") -> str:
    """Signature = base64(HMAC-SHA1(secret + "&", string_to_sign)); `params` without Signature."""
    digest = hmac.new((secret + "&").encode("utf-8"), string_to_sign(params, method).encode("utf-8"), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode("ascii")


def aliyun_phone(phone: str) -> str:
    """Digits, mainland mobiles without 86 (Aliyun takes domestic numbers for China)."""
    number = digits(phone)
    if number.startswith("86") and len(number) == 13 and number[2] == "1":
        return number[2:]
    return number


@dataclass(frozen=True)
class AliyunConfig:
    access_key_id: str
    access_key_secret: str = field(repr=False)
    sign_name: str                     # the approved signature, without 【】
    base_url: str = "https://dysmsapi.aliyuncs.com"
    region_id: str = "cn-hangzhou"
    timeout: tuple[float, float] = TIMEOUT
    rate_per_s: float = 100.0          # ours, per signature (unconfirmed: Aliyun's QPS limit per account)

    @classmethod
    def from_env(cls, env: Mapping[str, str], secret: Callable[[str], str | None]) -> "AliyunConfig":
        """From the function's environment (template.yaml) and its secrets."""
        key_id, sign_name = env.get("ALIYUN_ACCESS_KEY_ID"), env.get("ALIYUN_SIGN_NAME")
        key_secret = secret("ALIYUN_ACCESS_KEY_SECRET")
        if not key_id or not sign_name or not key_secret:
            raise Misconfigured("ALIYUN_ACCESS_KEY_ID, ALIYUN_SIGN_NAME and the ALIYUN_ACCESS_KEY_SECRET secret "
                                "are required")
        return cls(access_key_id=key_id, access_key_secret=key_secret, sign_name=sign_name,
                   base_url=env.get("ALIYUN_API_BASE") or cls.base_url)


def send_sms_params(config: AliyunConfig, to: str, payload: dict, message_id: str, *, timestamp: float,
                    nonce: str) -> dict[str, str]:
    """The signed form of a SendSms call (pure: the clock and the nonce come in)."""
    if not payload.get("template_code"):
        raise ProviderError("config", "bad_payload", "Aliyun sends need a template_code", provider=PROVIDER)
    params = {
        "Action": "SendSms", "Version": "2017-05-25", "Format": "JSON", "RegionId": config.region_id,
        "AccessKeyId": config.access_key_id, "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
        "SignatureNonce": nonce,
        "Timestamp": datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "PhoneNumbers": aliyun_phone(to), "SignName": config.sign_name, "TemplateCode": payload["template_code"],
        "TemplateParam": json.dumps({k: str(v) for k, v in (payload.get("params") or {}).items()},
                                    ensure_ascii=False, separators=(",", ":")),
        "OutId": message_id,
    }
    params["Signature"] = sign(params, config.access_key_secret, "POST")
    return params


class AliyunClient(HttpClient):
    """Sends an SMS template (payload {"template_code", "params", "text"}) through Aliyun."""

    provider = PROVIDER

    def __init__(self, config: AliyunConfig, *, session: requests.Session | None = None,
                 now: Callable[[], float] = time.time, nonce: Callable[[], str] = lambda: str(uuid.uuid4())):
        super().__init__(session)
        self.config = config
        self._now = now
        self._nonce = nonce
        self.limiter = RateLimiter(config.rate_per_s, now=now)

    def send(self, to: str, payload: dict, message_id: str) -> SendResult:
        c = self.config
        params = send_sms_params(c, to, payload, message_id, timestamp=self._now(), nonce=self._nonce())
        self.limiter.take(c.sign_name, PROVIDER)
        response = self._request("POST", c.base_url.rstrip("/") + "/", c.timeout, data=params)
        answer = json_body(response)
        code = answer.get("Code")
        if response.status_code < 300 and code == "OK" and answer.get("BizId"):
            return SendResult(PROVIDER, str(answer["BizId"]), "OK")
        found = classify_aliyun_error(response.status_code, code)
        raise ProviderError(found.outcome, str(code) if code else f"http_{response.status_code}",
                            str(answer.get("Message") or response.reason or ""), found.retry_after_s,
                            provider=PROVIDER, http_status=response.status_code, template=found.template)
