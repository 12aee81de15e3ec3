"""WeChat Official Account client: template messages (notices the member triggered),
subscription messages (订阅通知, reminders the member agreed to) and customer-service
text (replies inside WeChat's 48-hour window), with one shared access token per account.

    GET  {base}/cgi-bin/token?grant_type=client_credential&appid=A&secret=S
    POST {base}/cgi-bin/message/template/send?access_token=T
    POST {base}/cgi-bin/message/subscribe/bizsend?access_token=T
    POST {base}/cgi-bin/message/custom/send?access_token=T
    -> HTTP 200 {"errcode": 0, "errmsg": "ok", "msgid"?: 200228332} (errors: errcode != 0)

The token: fetching a new one invalidates the old after a short overlap and the call is
limited (about 2,000 a day), so every sender of an account shares one. `WeChatTokenCache`
keeps it in memory, then in the loyalty table (`adapters.messaging.tokens`), and fetches only when
it is missing, within `refresh_margin_s` of expiry, or rejected (40001/40014/42001).
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Callable, Mapping, Protocol

import requests

from ..errors import Misconfigured
from .providers import TIMEOUT, Classification, HttpClient, ProviderError, RateLimiter, SendResult, json_body, lookup

logger = logging.getLogger(__name__)

PROVIDER = "wechat"
FIELD_LIMIT = 20                      # characters per template field since May 2023
TOKEN_ERRORS = (40001, 40014, 42001)  # invalid / malformed / expired access token
_BEIJING = timezone(timedelta(hours=8))

_T = Classification
WECHAT_ERRORS: dict[int, Classification] = {
    -1: _T("transient", 5),             # system busy
    45009: _T("transient"),             # daily quota reached: retry_after set to the next day
    45011: _T("transient", 60),         # API minute quota
    40001: _T("transient"), 40014: _T("transient"), 42001: _T("transient"),  # token (after one refresh)
    40003: _T("undeliverable"),         # invalid openid
    45015: _T("window_closed"),         # customer-service reply outside the 48 h window
    45047: _T("window_closed"),         # customer-service replies used up until the member writes again
    43004: _T("opted_out"),             # not following the account
    43101: _T("opted_out"),             # refused the subscription message
    40037: _T("config", template=True),  # invalid template id
    47003: _T("config", template=True),  # a template field's value refused (empty, too long, wrong type)
    40036: _T("config"), 41028: _T("config"), 41030: _T("config"),
    40013: _T("config"), 40125: _T("config"), 40164: _T("config"),
    48001: _T("config"), 40002: _T("config"), 40008: _T("config"), 41001: _T("config"), 41002: _T("config"),
    41004: _T("config"), 44002: _T("config"), 47001: _T("config"),
}
# Subscription-message fields are limited by their type (the key without its number:
# phrase3 -> phrase); the shorter ones below, FIELD_LIMIT for the rest.
SUBSCRIPTION_FIELD_LIMITS = {"phrase": 5, "symbol": 5, "car_number": 8, "phone_number": 17}


def seconds_to_next_day(now: float) -> float:
    """Until 00:05 Beijing time, when WeChat's daily quotas have reset."""
    local = datetime.fromtimestamp(now, _BEIJING)
    tomorrow = (local + timedelta(days=1)).replace(hour=0, minute=5, second=0, microsecond=0)
    return (tomorrow - local).total_seconds()


def classify_wechat_error(http_status: int, errcode: int | str | None, *, now: float = 0.0) -> Classification:
    """The outcome of a WeChat errcode (WeChat answers HTTP 200 with errcode != 0); with
    no errcode, the HTTP status decides. `now` (epoch seconds) dates the 45009 retry."""
    try:
        key = int(errcode) if errcode is not None else None
    except (TypeError, ValueError):
        key = None
    if key == 45009:
        return Classification("transient", seconds_to_next_day(now))
    if key is not None and key not in WECHAT_ERRORS and http_status < 300:
        logger.warning("unknown provider error code", extra={"provider": PROVIDER, "code": str(key),
                                                              "http_status": http_status})
        return Classification("permanent")
    return lookup(WECHAT_ERRORS, PROVIDER, http_status, key if key is not None else errcode)


def truncate_fields(data: Mapping[str, object], limit: int = FIELD_LIMIT,
                    limits: Mapping[str, int] | None = None) -> dict[str, dict[str, str]]:
    """Template data as WeChat wants it, each value cut to `limit` characters (or to
    `limits[type]`, the type being the key without its number):
    {"thing1": "..."} -> {"thing1": {"value": "..."}}."""
    limits = limits or {}
    return {key: {"value": ("" if value is None else str(value))[:limits.get(key.rstrip("0123456789"), limit)]}
            for key, value in data.items()}


def wechat_request(to: str, payload: dict) -> tuple[str, dict]:
    """The API path and JSON body for a rendered payload (pure)."""
    kind = payload.get("type")
    if kind == "template":
        body = {"touser": to, "template_id": payload["template_id"], "data": truncate_fields(payload.get("data") or {})}
        if payload.get("url"):
            body["url"] = payload["url"]
        if payload.get("client_msg_id"):
            body["client_msg_id"] = payload["client_msg_id"]
        return "/cgi-bin/message/template/send", body
    if kind == "subscription":
        body = {"touser": to, "template_id": payload["template_id"],
                "data": truncate_fields(payload.get("data") or {}, limits=SUBSCRIPTION_FIELD_LIMITS)}
        if payload.get("page"):
            body["page"] = payload["page"]
        return "/cgi-bin/message/subscribe/bizsend", body
    if kind == "text":
        body = {"touser": to, "msgtype": "text", "text": {"content": payload["content"]}}
        return "/cgi-bin/message/custom/send", body
    raise ProviderError("config", "bad_payload", f"unknown WeChat payload type {kind!r}", provider=PROVIDER)


# --- the shared access token ---------------------------------------------------------------

class TokenStore(Protocol):
    """Where the senders of an account share its token (one item per appid)."""

    def get(self, appid: str) -> tuple[str, float] | None:
        """(token, expires_at epoch seconds), or None."""

    def put_if_newer(self, appid: str, token: str, expires_at: float, replaces: str | None) -> bool:
        """Store (token, expires_at) only if the stored token is still `replaces` (None:
        nothing stored) and expires no later than `expires_at`; False when another
        writer got there first."""


class MemoryTokenStore:
    """The in-memory TokenStore, for tests and local runs."""

    def __init__(self):
        self._lock = threading.Lock()
        self.items: dict[str, tuple[str, float]] = {}

    def get(self, appid: str) -> tuple[str, float] | None:
        with self._lock:
            return self.items.get(appid)

    def put_if_newer(self, appid: str, token: str, expires_at: float, replaces: str | None) -> bool:
        with self._lock:
            stored = self.items.get(appid)
            if (stored is None) != (replaces is None):
                return False
            if stored is not None and (stored[0] != replaces or stored[1] > expires_at):
                return False
            self.items[appid] = (token, expires_at)
            return True



class WeChatTokenCache:
    """One access token per appid for every sender: this container's copy, then the
    shared copy in `store`, then WeChat (`fetch() -> (token, expires_in_s)`), only when
    the token is missing, within `refresh_margin_s` of expiry, or was `invalidate`d.

    Concurrent refreshers: a refresher first claims a short lease (the key
    "<appid>#refresh" in the same store, a compare-and-set); the others keep using the
    old token while it is still valid, or raise a transient error (retry in a moment)
    when there is none. The newest fetched token wins the shared copy, as it is the one
    WeChat keeps valid."""

    def __init__(self, appid: str, store: TokenStore, fetch: Callable[[], tuple[str, float]],
                 now: Callable[[], float], *, refresh_margin_s: float = 300.0, lease_s: float = 30.0):
        self.appid = appid
        self.store = store
        self._fetch = fetch
        self._now = now
        self.margin = refresh_margin_s
        self.lease_s = lease_s
        self._lock = threading.Lock()
        self._copy: tuple[str, float] | None = None
        self._rejected: str | None = None
        self._holder = uuid.uuid4().hex

    def token(self) -> str:
        with self._lock:
            return self._token()

    def invalidate(self, token: str) -> None:
        """WeChat rejected `token` (40001/40014/42001): never use it again."""
        with self._lock:
            self._rejected = token
            if self._copy and self._copy[0] == token:
                self._copy = None

    def _fresh(self, copy: tuple[str, float] | None, now: float) -> bool:
        return copy is not None and copy[0] != self._rejected and copy[1] - now > self.margin

    def _token(self) -> str:
        now = self._now()
        if self._fresh(self._copy, now):
            return self._copy[0]
        shared = self.store.get(self.appid)
        if self._fresh(shared, now):
            self._copy = shared
            return shared[0]
        usable = shared if shared and shared[0] != self._rejected and shared[1] > now else None
        if not self._claim(now):
            if usable:   # another container is refreshing; the old token still works
                return usable[0]
            raise ProviderError("transient", "token_refresh_in_progress", "another sender is fetching the token",
                                retry_after_s=2, provider=PROVIDER)
        shared = self.store.get(self.appid)  # a refresher that finished between our read and our claim
        if self._fresh(shared, now):
            self._copy = shared
            return shared[0]
        token, expires_in = self._fetch()
        mine = (token, now + float(expires_in))
        replaces = shared[0] if shared else None
        for _ in range(3):
            if self.store.put_if_newer(self.appid, mine[0], mine[1], replaces):
                break
            current = self.store.get(self.appid)
            if current is not None and current[0] != self._rejected and current[1] >= mine[1]:
                break  # a newer one is stored (use ours meanwhile: both stay valid for a while)
            replaces = current[0] if current else None
        self._copy = mine
        return token

    def _claim(self, now: float) -> bool:
        key = f"{self.appid}#refresh"
        lease = self.store.get(key)
        if lease and lease[1] > now:
            return lease[0] == self._holder
        return self.store.put_if_newer(key, self._holder, now + self.lease_s, lease[0] if lease else None)


# --- the client ---------------------------------------------------------------------------

@dataclass(frozen=True)
class WeChatConfig:
    app_id: str
    app_secret: str = field(repr=False)
    base_url: str = "https://api.weixin.qq.com"
    timeout: tuple[float, float] = TIMEOUT
    rate_per_s: float = 100.0     # ours, per app id (WeChat's limits are daily quotas)

    @classmethod
    def from_env(cls, env: Mapping[str, str], secret: Callable[[str], str | None]) -> "WeChatConfig":
        """From the function's environment (template.yaml) and its secrets."""
        app_id, app_secret = env.get("WECHAT_APP_ID"), secret("WECHAT_APP_SECRET")
        if not app_id or not app_secret:
            raise Misconfigured("WECHAT_APP_ID and the WECHAT_APP_SECRET secret are required")
        return cls(app_id=app_id, app_secret=app_secret, base_url=env.get("WECHAT_API_BASE") or cls.base_url)


class WeChatClient(HttpClient):
    """Sends rendered WeChat payloads; refreshes a rejected token once and retries once."""

    provider = PROVIDER

    def __init__(self, config: WeChatConfig, store: TokenStore, *, session: requests.Session | None = None,
                 now: Callable[[], float] = time.time, refresh_margin_s: float = 300.0):
        super().__init__(session)
        self.config = config
        self._now = now
        self.limiter = RateLimiter(config.rate_per_s, now=now)
        self.tokens = WeChatTokenCache(config.app_id, store, self.fetch_token, now, refresh_margin_s=refresh_margin_s)

    def fetch_token(self) -> tuple[str, float]:
        """A new access token from WeChat: (token, expires_in seconds)."""
        c = self.config
        response = self._request("GET", f"{c.base_url.rstrip('/')}/cgi-bin/token", c.timeout,
                                 params={"grant_type": "client_credential", "appid": c.app_id, "secret": c.app_secret})
        answer = json_body(response)
        if response.status_code < 300 and answer.get("access_token"):
            return str(answer["access_token"]), float(answer.get("expires_in") or 7200)
        errcode = answer.get("errcode")
        found = classify_wechat_error(response.status_code, errcode, now=self._now())
        # A token error while fetching a token means the app id or secret is wrong.
        outcome = "config" if found.outcome != "transient" or errcode in TOKEN_ERRORS else "transient"
        raise ProviderError(outcome, str(errcode) if errcode is not None else f"http_{response.status_code}",
                            "token: " + str(answer.get("errmsg") or response.reason or ""), found.retry_after_s,
                            provider=PROVIDER, http_status=response.status_code)

    def send(self, to: str, payload: dict, message_id: str) -> SendResult:
        path, body = wechat_request(to, payload)
        self.limiter.take(self.config.app_id, PROVIDER)
        token = self.tokens.token()
        response, answer = self._post(path, body, token)
        if answer.get("errcode") in TOKEN_ERRORS:
            self.tokens.invalidate(token)
            response, answer = self._post(path, body, self.tokens.token())
        errcode = answer.get("errcode")
        if response.status_code < 300 and errcode in (0, None) and answer:
            # custom/send answers no msgid: our id stands in (there are no receipts for it)
            return SendResult(PROVIDER, str(answer.get("msgid") or message_id), str(answer.get("errmsg") or "ok"))
        found = classify_wechat_error(response.status_code, errcode, now=self._now())
        raise ProviderError(found.outcome, str(errcode) if errcode is not None else f"http_{response.status_code}",
                            str(answer.get("errmsg") or response.reason or ""), found.retry_after_s,
                            provider=PROVIDER, http_status=response.status_code, template=found.template)

    def _post(self, path: str, body: dict, token: str) -> tuple[requests.Response, dict]:
        c = self.config
        # UTF-8, not \u escapes: some WeChat endpoints have shown escapes to members verbatim.
        response = self._request("POST", c.base_url.rstrip("/") + path, c.timeout, params={"access_token": token},
                                 data=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                                 headers={"Content-Type": "application/json; charset=utf-8"})
        return response, json_body(response)
