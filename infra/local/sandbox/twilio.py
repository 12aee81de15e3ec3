"""Fake Twilio Programmable Messaging.

    POST {base}/2010-04-01/Accounts/{AccountSid}/Messages.json   HTTP basic (AccountSid, AuthToken)
         form: To, From | MessagingServiceSid, Body, StatusCallback
    -> 201 {"sid": "SM<32 hex>", "status": "queued", ...}; errors {"code", "message", "more_info", "status"}
    GET  {base}/2010-04-01/Accounts/{AccountSid}/Messages/{sid}.json

Status callbacks (MessageStatus sent, then delivered) go to the send's StatusCallback,
signed X-Twilio-Signature over that exact URL with TWILIO_AUTH_TOKEN. Like Twilio on a
long code, a member who texts STOP is unsubscribed (sends to them fail with 21610)
until they text START.
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import parse_qsl, urlencode, urlsplit

from ..http import Request, Response
from .base import ProviderFake, Route
from .core import BASE_PATHS, BadRequest
from .delivery import WebhookCall
from .errors import TWILIO_ERRORS, twilio_error, twilio_status_error
from .signing import equal, twilio_signature

BASE = BASE_PATHS["twilio"]
API = "/2010-04-01/Accounts"
_E164 = re.compile(r"^\+[1-9]\d{7,14}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_GSM7 = set("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà^{}\\[~]|€")
_STOP = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
_START = {"START", "YES", "UNSTOP"}
_HELP = {"HELP", "INFO"}


def segments(body: str) -> int:
    """SMS segments: GSM-7 160 (153 each when split), else UCS-2 70 (67)."""
    single, multi = (160, 153) if set(body) <= _GSM7 else (70, 67)
    return 1 if len(body) <= single else -(-len(body) // multi)


class TwilioFake(ProviderFake):
    """The Messages resource, status callbacks and inbound SMS."""

    provider = "twilio"

    def routes(self) -> list[Route]:
        return [
            ("POST", f"{BASE}{API}/{{account_sid}}/Messages.json", self.send, "provider sandbox: Twilio send SMS"),
            ("GET", f"{BASE}{API}/{{account_sid}}/Messages/{{message}}", self.fetch,
             "provider sandbox: Twilio fetch a message"),
            ("ANY", f"{BASE}/{{proxy+}}", self.unknown, "provider sandbox: Twilio, anything else"),
        ]

    # -- errors
    def status_error(self, status: int) -> Response:
        return twilio_status_error(status)

    def code_error(self, code: int | str, status: int | None) -> Response:
        return twilio_error(int(code) if str(code).isdigit() else 20500, status=status)

    def unknown(self, request: Request, params: dict[str, str]) -> Response:
        return twilio_error(20404, f"The requested resource {request.path} was not found")

    # -- the Messages resource
    def _authenticate(self, request: Request, account_sid: str) -> Response | None:
        scheme, _, encoded = (request.header("Authorization") or "").partition(" ")
        try:
            user, _, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            user = password = ""
        if scheme.lower() != "basic" or user != self.accounts.twilio_account_sid \
                or not equal(password, self.accounts.twilio_auth_token):
            return twilio_error(20003)
        if account_sid != user:
            return twilio_error(20404, f"The requested resource {request.path} was not found")
        return None

    def send(self, request: Request, params: dict[str, str]) -> Response:
        refused = self._authenticate(request, params["account_sid"])
        if refused is not None:
            return self.refuse(refused)
        try:
            form = dict(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            form = {}
        problem = self._validate(form)
        if problem is not None:
            return self.refuse(problem)
        to = form["To"].lstrip("+")
        failed = self.apply_fault([to])
        if failed is not None:
            return failed
        with self.sandbox.memory.lock:
            opted_out = to in self.sandbox.memory.twilio_opted_out
        if opted_out:
            return self.refuse(twilio_error(21610))
        sid = "SM" + secrets.token_hex(16)
        service = form.get("MessagingServiceSid") or None
        sender = form.get("From") or None
        record = self.record(to=to, kind="text", provider_message_id=sid, request=request, parsed=form,
                             text=form["Body"], **{"from": sender or service}, messaging_service_sid=service,
                             status_callback=form.get("StatusCallback") or None)
        self.accept([record])
        return Response.json(201, self._resource(record, "queued" if sender else "accepted"))

    def fetch(self, request: Request, params: dict[str, str]) -> Response:
        refused = self._authenticate(request, params["account_sid"])
        if refused is not None:
            return refused
        sid = params["message"].removesuffix(".json")
        found = self.sandbox.outbox.find(self.provider, sid)
        if not found:
            return twilio_error(20404, f"The requested resource {request.path} was not found")
        record = found[0]
        return Response.json(200, self._resource(record, record["status"] if record["status"] != "accepted"
                                                 else "queued"))

    def _validate(self, form: dict[str, str]) -> Response | None:
        to = form.get("To", "")
        if not to:
            return twilio_error(21604)
        if not _E164.match(to):
            return twilio_error(21211, f"The 'To' number {to} is not a valid phone number.")
        sender, service = form.get("From", ""), form.get("MessagingServiceSid", "")
        if not sender and not service:
            return twilio_error(21603)
        if service and not _SERVICE_SID.match(service):
            return twilio_error(21701, f"The Messaging Service Sid {service} is invalid.")
        configured = self.accounts.twilio_sender
        if sender and configured and not configured.startswith("MG") and sender != configured:
            return twilio_error(21606, f"The 'From' phone number provided ({sender}) is not a valid "
                                       "message-capable Twilio phone number for this destination/account.")
        body = form.get("Body", "")
        if not body and not form.get("MediaUrl"):
            return twilio_error(21602)
        if len(body) > 1600:
            return twilio_error(21617)
        callback = form.get("StatusCallback")
        if callback:
            parts = urlsplit(callback)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                return twilio_error(21609, f"The StatusCallback URL {callback} is not a valid URL.")
        return None

    def _resource(self, record: dict, status: str) -> dict:
        sid, account = record["provider_message_id"], self.accounts.twilio_account_sid
        created = format_datetime(_parse_iso(record["at"]))
        uri = f"{API}/{account}/Messages/{sid}"
        return {
            "account_sid": account, "api_version": "2010-04-01", "body": record["text"],
            "date_created": created, "date_sent": None, "date_updated": created,
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": record["request"].get("From"), "messaging_service_sid": record.get("messaging_service_sid"),
            "num_media": "0", "num_segments": str(segments(record["text"])), "price": None, "price_unit": "USD",
            "sid": sid, "status": status, "subresource_uris": {"media": f"{uri}/Media.json"},
            "to": "+" + record["to"], "uri": f"{uri}.json",
        }

    # -- webhooks
    def auto_receipts(self, record: dict) -> list[str]:
        return ["sent", "delivered"] if record.get("status_callback") else []

    def receipt(self, record: dict, status: str, error_code: int | str | None = None) -> WebhookCall:
        url = record.get("status_callback") or f"{self.accounts.public_base_url}/webhooks/twilio/status"
        params = [("SmsSid", record["provider_message_id"]), ("SmsStatus", status), ("MessageStatus", status),
                  ("To", "+" + record["to"]), ("MessageSid", record["provider_message_id"]),
                  ("AccountSid", self.accounts.twilio_account_sid), ("ApiVersion", "2010-04-01")]
        request = record.get("request") or {}
        if request.get("From"):
            params.append(("From", request["From"]))
        if record.get("messaging_service_sid"):
            params.append(("MessagingServiceSid", record["messaging_service_sid"]))
        if error_code is not None:
            params += [("ErrorCode", str(error_code)), ("ErrorMessage", _error_message(error_code))]
        if status == "delivered":
            params.append(("RawDlrDoneDate", self.sandbox.now().strftime("%y%m%d%H%M")))
        return self._call("receipt", url, params,
                          {"provider_message_id": record["provider_message_id"], "status": status,
                           "to": record["to"]})

    def inbound(self, body: dict) -> WebhookCall:
        number = str(body.get("from") or "").strip()
        sender = "+" + number.lstrip("+")
        if not _E164.match(sender):
            raise BadRequest("from must be the member's phone number, E.164")
        if not isinstance(body.get("text"), str):
            raise BadRequest('a Twilio inbound needs "text"')
        text = body["text"]
        sid = "SM" + secrets.token_hex(16)
        to = str(body.get("to") or self.accounts.twilio_sender)
        params = [("ToCountry", "US"), ("ToState", ""), ("SmsMessageSid", sid), ("NumMedia", "0"),
                  ("ToCity", ""), ("FromZip", ""), ("SmsSid", sid), ("FromState", ""), ("SmsStatus", "received"),
                  ("FromCity", ""), ("Body", text), ("FromCountry", ""), ("To", to), ("ToZip", ""),
                  ("NumSegments", str(segments(text))), ("MessageSid", sid),
                  ("AccountSid", self.accounts.twilio_account_sid), ("From", sender), ("ApiVersion", "2010-04-01")]
        if to.startswith("MG"):
            params.append(("MessagingServiceSid", to))
        digits = sender.lstrip("+")
        opt_out_type = self._member_wrote(digits, text)
        if opt_out_type:
            params.append(("OptOutType", opt_out_type))
        return self._call("inbound", f"{self.accounts.public_base_url}/webhooks/twilio/inbound", params,
                          {"from": digits, "message_id": sid})

    def _member_wrote(self, digits: str, text: str) -> str | None:
        """Twilio's Advanced Opt-Out on the default keywords: STOP, START or HELP (the
        OptOutType it adds to the webhook), None for any other text."""
        keyword = text.strip().upper()
        with self.sandbox.memory.lock:
            if keyword in _STOP:
                self.sandbox.memory.twilio_opted_out.add(digits)
                return "STOP"
            if keyword in _START:
                self.sandbox.memory.twilio_opted_out.discard(digits)
                return "START"
        return "HELP" if keyword in _HELP else None

    def observe_webhook(self, request: Request) -> int:
        """A message posted to our POST /webhooks/twilio/inbound with X-Twilio-Signature
        over the URL as configured (PublicBaseUrl + path + query) and the form, as
        Twilio signs: a STOP or START in it is what Twilio would have acted on."""
        if request.path.rstrip("/") != "/webhooks/twilio/inbound":
            return 0
        try:
            params = parse_qsl(request.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            return 0
        url = self.accounts.public_base_url + request.path + (f"?{request.raw_query}" if request.raw_query else "")
        if not equal(request.header("X-Twilio-Signature") or "", twilio_signature(url, params,
                                                                                   self.accounts.twilio_auth_token)):
            return 0
        form = dict(params)
        sender = form.get("From", "").lstrip("+")
        if not sender or "Body" not in form:
            return 0
        self._member_wrote(sender, form["Body"])
        return 1

    def _call(self, kind: str, url: str, params: list[tuple[str, str]], about: dict) -> WebhookCall:
        raw = urlencode(params).encode("utf-8")
        headers = [("Content-Type", "application/x-www-form-urlencoded"),
                   ("User-Agent", "TwilioProxy/1.1"),
                   ("I-Twilio-Idempotency-Token", secrets.token_hex(16)),
                   ("X-Twilio-Signature", twilio_signature(url, params, self.accounts.twilio_auth_token))]
        return WebhookCall(self.provider, kind, url, raw, headers, about)


def _error_message(code: int | str) -> str:
    return TWILIO_ERRORS.get(int(code) if str(code).isdigit() else 0, (0, "Unknown error"))[1]


def _parse_iso(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
