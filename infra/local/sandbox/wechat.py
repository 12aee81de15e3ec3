"""Fake WeChat Official Account API (公众号).

    GET  {base}/cgi-bin/token?grant_type=client_credential&appid=A&secret=S
         -> {"access_token", "expires_in": 7200}
    POST {base}/cgi-bin/message/template/send?access_token=T     template message
    POST {base}/cgi-bin/message/subscribe/bizsend?access_token=T subscription message
    POST {base}/cgi-bin/message/custom/send?access_token=T       customer-service text (48 h window)
         -> {"errcode": 0, "errmsg": "ok", "msgid": ...}; errors {"errcode", "errmsg"}, HTTP 200

Tokens expire after 7,200 s of the local clock; a new token leaves the previous one
working for `wechat_token_overlap` seconds more, then "not latest" (40001). Receipts:
TEMPLATESENDJOBFINISH (template sends only) to POST {PublicBaseUrl}/webhooks/wechat,
signed in the query (signature, timestamp, nonce) with WECHAT_TOKEN.
"""

from __future__ import annotations

import itertools
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode
from xml.etree import ElementTree

from ..http import Request, Response
from .base import ProviderFake, Route, nonce_digits, unix_seconds
from .core import BASE_PATHS, WECHAT_ORIGINAL_ID, BadRequest
from .delivery import WebhookCall
from .errors import wechat_error, wechat_status_error
from .signing import equal, wechat_signature

BASE = BASE_PATHS["wechat"]
TOKEN_LIFETIME = 7200
CUSTOMER_SERVICE_WINDOW = timedelta(hours=48)
CLIENT_MSG_ID_WINDOW = timedelta(minutes=10)
TEMPLATE_FIELD_LIMIT = 20
_BEIJING = timezone(timedelta(hours=8))
_OPENID = re.compile(r"^[A-Za-z0-9_-]{6,64}$")
# Subscription-message fields are limited by their type, the key without its number
# (thing1 -> thing); unknown types get the template limit.
_SUBSCRIPTION_LIMITS = {"thing": 20, "number": 32, "letter": 32, "symbol": 5, "character_string": 32,
                        "phrase": 5, "name": 20, "phone_number": 17, "car_number": 8, "amount": 32,
                        "time": 32, "date": 32}
_STATUS_NAMES = {"delivered": "success", "success": "success", "sent": "success",
                 "failed": "failed: system failed", "system failed": "failed: system failed",
                 "blocked": "failed:user block", "user block": "failed:user block"}


@dataclass
class _Token:
    value: str
    issued_at: datetime
    superseded_at: datetime | None = None


class WeChatFake(ProviderFake):
    """Access tokens, the three send endpoints, and the account's pushes."""

    provider = "wechat"

    def __init__(self, sandbox):
        super().__init__(sandbox)
        self._tokens: dict[str, list[_Token]] = {}
        self._fetches_per_day: dict[tuple[str, str], int] = {}
        self._msgids = itertools.count(int(time.time() * 1000) * 100)

    def routes(self) -> list[Route]:
        return [
            ("GET", f"{BASE}/cgi-bin/token", self.token, "provider sandbox: WeChat access token"),
            ("POST", f"{BASE}/cgi-bin/message/template/send", self.send_template,
             "provider sandbox: WeChat template message"),
            ("POST", f"{BASE}/cgi-bin/message/subscribe/bizsend", self.send_subscription,
             "provider sandbox: WeChat subscription message"),
            ("POST", f"{BASE}/cgi-bin/message/custom/send", self.send_custom,
             "provider sandbox: WeChat customer-service message"),
            ("ANY", f"{BASE}/{{proxy+}}", self.unknown, "provider sandbox: WeChat, anything else"),
        ]

    def reset(self) -> None:
        """Forget the tokens issued."""
        self._tokens.clear()
        self._fetches_per_day.clear()

    # -- errors
    def status_error(self, status: int) -> Response:
        return wechat_status_error(status)

    def code_error(self, code: int | str, status: int | None) -> Response:
        return wechat_error(int(code) if str(code).lstrip("-").isdigit() else -1, status=status or 200)

    def unknown(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(404, {"errcode": 404, "errmsg": f"the provider sandbox does not fake "
                                                            f"{request.method} /{params.get('proxy', '')}"})

    # -- access tokens
    def token(self, request: Request, params: dict[str, str]) -> Response:
        query = dict(request.query)
        appid, secret = query.get("appid", ""), query.get("secret", "")
        if not appid:
            return self._token_refused(41002)
        if not secret:
            return self._token_refused(41004)
        if query.get("grant_type") != "client_credential":
            return self._token_refused(40002)
        if appid != self.accounts.wechat_app_id:
            return self._token_refused(40013)
        if not equal(secret, self.accounts.wechat_app_secret):
            return self._token_refused(40125)
        now = self.sandbox.now()
        day = (appid, now.astimezone(_BEIJING).date().isoformat())
        with self.sandbox.memory.lock:
            if self._fetches_per_day.get(day, 0) >= self.sandbox.config.wechat_token_daily_limit:
                return self._token_refused(45009)
            self._fetches_per_day[day] = self._fetches_per_day.get(day, 0) + 1
            tokens = self._tokens.setdefault(appid, [])
            for older in tokens:
                if older.superseded_at is None:
                    older.superseded_at = now
            token = _Token("local_" + secrets.token_urlsafe(96), now)
            tokens.append(token)
            del tokens[:-5]
        self.sandbox.stats.add("wechat_token_fetches", appid)
        return Response.json(200, {"access_token": token.value, "expires_in": TOKEN_LIFETIME})

    def _token_refused(self, errcode: int) -> Response:
        self.sandbox.stats.add("wechat_token_refusals", str(errcode))
        return wechat_error(errcode)

    def _check_token(self, request: Request) -> Response | None:
        given = dict(request.query).get("access_token", "")
        if not given:
            return wechat_error(41001)
        now = self.sandbox.now()
        overlap = timedelta(seconds=self.sandbox.config.wechat_token_overlap)
        with self.sandbox.memory.lock:
            token = next((t for tokens in self._tokens.values() for t in tokens if equal(t.value, given)), None)
        if token is None:
            return wechat_error(40001)
        if now - token.issued_at >= timedelta(seconds=TOKEN_LIFETIME):
            return wechat_error(42001)
        if token.superseded_at is not None and now - token.superseded_at >= overlap:
            return wechat_error(40001)
        return None

    # -- sends
    def send_template(self, request: Request, params: dict[str, str]) -> Response:
        return self._send(request, "template")

    def send_subscription(self, request: Request, params: dict[str, str]) -> Response:
        return self._send(request, "subscription")

    def send_custom(self, request: Request, params: dict[str, str]) -> Response:
        return self._send(request, "text")

    def _send(self, request: Request, kind: str) -> Response:
        refused = self._check_token(request)
        if refused is not None:
            return self.refuse(refused)
        if not request.body.strip():
            return self.refuse(wechat_error(44002))
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            return self.refuse(wechat_error(47001))
        if not isinstance(body, dict):
            return self.refuse(wechat_error(47001))
        problem = self._validate(body, kind)
        if problem is not None:
            return self.refuse(problem)
        openid = body["touser"]
        failed = self.apply_fault([openid])
        if failed is not None:
            return failed
        memory = self.sandbox.memory
        now = self.sandbox.now()
        with memory.lock:
            unfollowed = openid in memory.wechat_unfollowed
            last = memory.wechat_last_interaction.get(openid)
        if unfollowed:
            return self.refuse(wechat_error(43004))
        if kind == "text":
            if last is None or now - last >= CUSTOMER_SERVICE_WINDOW:
                return self.refuse(wechat_error(45015))
            record = self.record(to=openid, kind="text", provider_message_id=None, request=request, parsed=body,
                                 text=body["text"]["content"])
            self.accept([record])
            return Response.json(200, {"errcode": 0, "errmsg": "ok"})
        client_msg_id = body.get("client_msg_id") if kind == "template" else None
        with memory.lock:
            if client_msg_id:  # the same member + client_msg_id within 10 minutes is sent once
                seen = memory.wechat_client_msg_ids.get((openid, client_msg_id))
                if seen is not None and now - seen[1] < CLIENT_MSG_ID_WINDOW:
                    return Response.json(200, {"errcode": 0, "errmsg": "ok", "msgid": seen[0]})
            msgid = next(self._msgids)
            if client_msg_id:
                memory.wechat_client_msg_ids[(openid, client_msg_id)] = (msgid, now)
        variables = {key: value["value"] for key, value in body["data"].items()}
        extra = {"url": body.get("url"), "client_msg_id": client_msg_id} if kind == "template" else \
            {"page": body.get("page")}
        record = self.record(to=openid, kind=kind, provider_message_id=msgid, request=request, parsed=body,
                             template=body["template_id"], variables=variables, **extra)
        self.accept([record])
        return Response.json(200, {"errcode": 0, "errmsg": "ok", "msgid": msgid})

    def _validate(self, body: dict, kind: str) -> Response | None:
        touser = body.get("touser")
        if not isinstance(touser, str) or not _OPENID.match(touser):
            return wechat_error(40003)
        if kind == "text":
            if body.get("msgtype") != "text":
                return wechat_error(40008, "(the provider sandbox fakes text customer-service messages only)")
            text = body.get("text")
            if not isinstance(text, dict) or not isinstance(text.get("content"), str) or not text["content"]:
                return wechat_error(47001)
            return None
        template_id = body.get("template_id")
        if not isinstance(template_id, str) or not template_id.strip():
            return wechat_error(40037)
        known = (self.sandbox.config.templates or {}).get("wechat")
        if known and template_id not in known:
            return wechat_error(40037)
        if "topcolor" in body:
            return wechat_error(47003, "topcolor is no longer supported")
        data = body.get("data")
        if not isinstance(data, dict) or not data:
            return wechat_error(47001, "data must be {\"<key>\": {\"value\": \"...\"}}")
        for key, value in data.items():
            if kind == "template" and key in ("first", "remark"):
                return wechat_error(47003, f"data.{key} is no longer supported")
            if not isinstance(value, dict) or not isinstance(value.get("value"), str):
                return wechat_error(47001, f"data.{key} must be {{\"value\": \"<text>\"}}")
            if "color" in value:
                return wechat_error(47003, f"data.{key}.color is no longer supported")
            if not value["value"]:
                return wechat_error(47003, f"data.{key}.value is empty")
            limit = TEMPLATE_FIELD_LIMIT if kind == "template" else \
                _SUBSCRIPTION_LIMITS.get(key.rstrip("0123456789"), TEMPLATE_FIELD_LIMIT)
            if len(value["value"]) > limit:
                return wechat_error(47003, f"data.{key}.value is longer than {limit} characters")
        if known and known[template_id]:
            missing = [key for key in known[template_id] if key not in data]
            if missing:
                return wechat_error(47003, f"data.{missing[0]} is missing")
        if kind == "template" and "url" in body and not isinstance(body["url"], str):
            return wechat_error(47001, "url must be a string")
        return None

    # -- pushes
    def auto_receipts(self, record: dict) -> list[str]:
        return ["success"] if record.get("kind") == "template" else []

    def receipt(self, record: dict, status: str, error_code: int | str | None = None) -> WebhookCall | None:
        kind = record.get("kind")
        if kind == "text":
            return None
        wechat_status = _STATUS_NAMES.get(status.lower(), status)
        now = unix_seconds(self.sandbox.now())
        if kind == "subscription":
            code = error_code if error_code is not None else (0 if wechat_status == "success" else 1)
            fields = [("ToUserName", WECHAT_ORIGINAL_ID), ("FromUserName", record["to"]), ("CreateTime", now),
                      ("MsgType", "event"), ("Event", "subscribe_msg_sent_event"),
                      ("SubscribeMsgSentEvent", [("List", [("TemplateId", record.get("template") or ""),
                                                           ("MsgID", record["provider_message_id"]),
                                                           ("ErrorCode", code),
                                                           ("ErrorStatus", wechat_status)])])]
        else:
            fields = [("ToUserName", WECHAT_ORIGINAL_ID), ("FromUserName", record["to"]), ("CreateTime", now),
                      ("MsgType", "event"), ("Event", "TEMPLATESENDJOBFINISH"),
                      ("MsgID", record["provider_message_id"]), ("Status", wechat_status)]
        return self._call("receipt", record["to"], fields,
                          {"provider_message_id": record["provider_message_id"], "status": wechat_status,
                           "to": record["to"]})

    def inbound(self, body: dict) -> WebhookCall:
        openid = str(body.get("from") or "")
        if not _OPENID.match(openid):
            raise BadRequest("from must be the member's OpenID")
        now = self.sandbox.now()
        fields: list = [("ToUserName", WECHAT_ORIGINAL_ID), ("FromUserName", openid),
                        ("CreateTime", unix_seconds(now))]
        if body.get("event"):
            event = str(body["event"])
            fields += [("MsgType", "event"), ("Event", event), ("EventKey", str(body.get("event_key") or ""))]
            self._member_acted(openid, event, now)
            about = {"from": openid, "event": event}
        elif isinstance(body.get("text"), str):
            message_id = secrets.randbelow(9 * 10 ** 16) + 10 ** 16
            fields += [("MsgType", "text"), ("Content", body["text"]), ("MsgId", message_id)]
            self._member_acted(openid, None, now)
            about = {"from": openid, "message_id": message_id}
        else:
            raise BadRequest('a WeChat inbound needs "text" or "event" (subscribe, unsubscribe, ...)')
        return self._call("inbound", openid, fields, about)

    def _member_acted(self, openid: str, event: str | None, when: datetime) -> None:
        """A message (event None) or an event from the member: unfollowing closes the
        account to them, anything else opens the 48-hour customer-service window."""
        memory = self.sandbox.memory
        with memory.lock:
            if event == "unsubscribe":
                memory.wechat_unfollowed.add(openid)
                return
            if event == "subscribe":
                memory.wechat_unfollowed.discard(openid)
            memory.wechat_last_interaction[openid] = when

    def observe_webhook(self, request: Request) -> int:
        """A push to our POST /webhooks/wechat signed with the token as WeChat signs (the
        query's signature over token, timestamp and nonce): a message or event from a
        member counts as if the sandbox had posted it. Plaintext mode only."""
        if request.path.rstrip("/") != "/webhooks/wechat":
            return 0
        query = dict(request.query)
        expected = wechat_signature(self.accounts.wechat_token, query.get("timestamp", ""), query.get("nonce", ""))
        if not equal(query.get("signature", ""), expected):
            return 0
        try:
            root = ElementTree.fromstring(request.body)
        except ElementTree.ParseError:
            return 0
        openid, kind = (root.findtext("FromUserName") or "").strip(), (root.findtext("MsgType") or "").strip()
        if not openid or not kind:
            return 0
        event = (root.findtext("Event") or "").strip() if kind == "event" else None
        if event in ("TEMPLATESENDJOBFINISH", "subscribe_msg_sent_event"):
            return 0  # the platform's receipts, not something the member did
        self._member_acted(openid, event, self.sandbox.now())
        return 1

    def _call(self, kind: str, openid: str, fields: list, about: dict) -> WebhookCall:
        timestamp = str(int(time.time()))  # signature freshness is real time, whatever the local clock says
        nonce = nonce_digits()
        query = urlencode({"signature": wechat_signature(self.accounts.wechat_token, timestamp, nonce),
                           "timestamp": timestamp, "nonce": nonce, "openid": openid})
        raw = ("<xml>" + _xml(fields) + "</xml>").encode("utf-8")
        headers = [("Content-Type", "text/xml"), ("User-Agent", "Mozilla/4.0")]
        return WebhookCall(self.provider, kind, f"{self.accounts.public_base_url}/webhooks/wechat?{query}", raw,
                           headers, about)


def _xml(fields: list) -> str:
    """WeChat's push XML: text in CDATA, numbers bare, nested lists as elements."""
    parts = []
    for name, value in fields:
        if isinstance(value, list):
            inner = _xml(value)
        elif isinstance(value, int):
            inner = str(value)
        else:
            inner = "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"
        parts.append(f"<{name}>{inner}</{name}>")
    return "".join(parts)
