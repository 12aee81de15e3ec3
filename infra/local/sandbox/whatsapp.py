"""Fake WhatsApp Cloud API (Meta Graph API).

    POST {base}/{version}/{phone_number_id}/messages    Authorization: Bearer <token>
      {"messaging_product": "whatsapp", "to": "8613800000000", "type": "template", "template": {...}}
      {"messaging_product": "whatsapp", "to": "...", "type": "text", "text": {"body": "..."}}
    -> {"messaging_product", "contacts": [{"input", "wa_id"}], "messages": [{"id": "wamid..."}]}

Free-form text only inside the 24-hour window opened by the member's last message
(injected with POST /_local/inbound, or a signed push posted to our POST
/webhooks/whatsapp directly); outside it: HTTP 400, code 131047. Receipts:
statuses "sent" then "delivered" to POST {PublicBaseUrl}/webhooks/whatsapp, signed
X-Hub-Signature-256 over the exact body, carrying biz_opaque_callback_data.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
from datetime import timedelta

from ..http import Request, Response
from .base import ProviderFake, Route, unix_seconds
from .core import BASE_PATHS, WHATSAPP_BUSINESS_ACCOUNT_ID, WHATSAPP_DISPLAY_PHONE_NUMBER, BadRequest
from .delivery import WebhookCall
from .errors import WHATSAPP_ERRORS, whatsapp_code_status, whatsapp_error, whatsapp_status_error
from .signing import equal, whatsapp_signature

BASE = BASE_PATHS["whatsapp"]
WINDOW = timedelta(hours=24)
_VERSION = re.compile(r"^v\d{1,2}\.\d$")
_WA_ID = re.compile(r"^\d{8,15}$")
_COMPONENT_TYPES = {"header", "body", "footer", "button", "carousel", "limited_time_offer"}
_PARAMETER_TYPES = {"text", "currency", "date_time", "image", "document", "video", "location", "payload",
                    "coupon_code", "action", "expiration_time_ms"}
_BUTTON_SUB_TYPES = {"quick_reply", "url", "copy_code", "flow", "catalog", "mpm", "voice_call"}
_MEDIA_TYPES = {"audio", "contacts", "document", "image", "interactive", "location", "reaction", "sticker",
                "video"}
_STOP_WORDS = {"stop", "stop_marketing_messages", "opt_out", "unsubscribe"}


class TemplateShapeError(Exception):
    """A template that Meta would refuse: code 132000 (or 132001 for an unknown one)."""

    def __init__(self, details: str, code: int = 132000):
        super().__init__(details)
        self.code = code


class WhatsAppFake(ProviderFake):
    """The Cloud API's send endpoint, its webhooks, and the 24-hour window."""

    provider = "whatsapp"

    def routes(self) -> list[Route]:
        return [
            ("POST", f"{BASE}/{{version}}/{{phone_number_id}}/messages", self.send,
             "provider sandbox: WhatsApp Cloud API send"),
            ("ANY", f"{BASE}/{{proxy+}}", self.unknown, "provider sandbox: WhatsApp, anything else"),
        ]

    # -- errors
    def status_error(self, status: int) -> Response:
        return whatsapp_status_error(status)

    def code_error(self, code: int | str, status: int | None) -> Response:
        code = int(code) if str(code).lstrip("-").isdigit() else 131000
        details = {131047: "Message failed to send because more than 24 hours have passed since the "
                           "customer last replied to this number.",
                   131026: "Message undeliverable: the recipient is not on WhatsApp or cannot receive it.",
                   131056: "Too many messages sent from this phone number to the same recipient in a short "
                           "period of time."}.get(code)
        return whatsapp_error(code, details or f"{WHATSAPP_ERRORS.get(code, (0, 'error'))[1]} (injected fault)",
                              status=status or whatsapp_code_status(code))

    def unknown(self, request: Request, params: dict[str, str]) -> Response:
        return whatsapp_error(100, f"Unsupported {request.method.lower()} request: the sandbox fakes only "
                                   f"POST {BASE}/<version>/<phone_number_id>/messages",
                              message=f"Unsupported {request.method.lower()} request. Object with ID "
                                      f"'{params.get('proxy', '').split('/')[-1]}' does not exist, cannot be "
                                      "loaded due to missing permissions, or does not support this operation.",
                              subcode=33)

    # -- the send
    def send(self, request: Request, params: dict[str, str]) -> Response:
        refused = self._authenticate(request, params)
        if refused is not None:
            return self.refuse(refused)
        try:
            body = request.json()
        except (ValueError, UnicodeDecodeError):
            return self.refuse(whatsapp_error(100, "The request body is not valid JSON.",
                                              message="(#100) Invalid parameter"))
        problem = self._validate(body)
        if problem is not None:
            return self.refuse(problem)
        wa_id = body["to"].lstrip("+")
        failed = self.apply_fault([wa_id])
        if failed is not None:
            return failed
        kind = body.get("type", "text")
        if kind == "text" and not self._window_open(wa_id):
            return self.refuse(self.code_error(131047, None))
        message_id = "wamid." + base64.b64encode(
            b"\x15\x02\x00\x11\x18\x12" + wa_id.encode() + secrets.token_hex(10).upper().encode()).decode()
        extra = {"from": params["phone_number_id"],
                 "biz_opaque_callback_data": body.get("biz_opaque_callback_data")}
        if kind == "template":
            template = body["template"]
            components = _components(template.get("components") or [])
            variables = components["body"] + [text for button in components["buttons"]
                                              for text in button["parameters"]]
            record = self.record(to=wa_id, kind="template", provider_message_id=message_id, request=request,
                                 parsed=body, template=template["name"], variables=variables,
                                 language=template["language"]["code"], components=components, **extra)
        else:
            record = self.record(to=wa_id, kind="text", provider_message_id=message_id, request=request,
                                 parsed=body, text=body["text"]["body"], **extra)
        self.accept([record])
        message = {"id": message_id}
        if kind == "template":
            message["message_status"] = "accepted"
        return Response.json(200, {"messaging_product": "whatsapp",
                                   "contacts": [{"input": body["to"], "wa_id": wa_id}],
                                   "messages": [message]})

    def _authenticate(self, request: Request, params: dict[str, str]) -> Response | None:
        header = request.header("Authorization") or ""
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            token = dict(request.query).get("access_token", "")
        if not token.strip():
            return whatsapp_error(190, "An access token is required to request this resource.", status=401,
                                  message="An access token is required to request this resource.")
        if not equal(token.strip(), self.accounts.whatsapp_access_token):
            return whatsapp_error(190, "The access token could not be decrypted.", status=401,
                                  message="Invalid OAuth access token - Cannot parse access token")
        if not _VERSION.match(params["version"]):
            return whatsapp_error(100, f"Unknown version {params['version']!r}; use e.g. v21.0",
                                  message=f"Unknown path components: /{params['version']}")
        if params["phone_number_id"] != self.accounts.whatsapp_phone_number_id:
            return whatsapp_error(100, f"Unknown phone number id {params['phone_number_id']!r}: the sandbox "
                                       f"sends from {self.accounts.whatsapp_phone_number_id}",
                                  message=f"Unsupported post request. Object with ID "
                                          f"'{params['phone_number_id']}' does not exist, cannot be loaded due "
                                          "to missing permissions, or does not support this operation.",
                                  subcode=33)
        return None

    def _validate(self, body: object) -> Response | None:
        if not isinstance(body, dict):
            return whatsapp_error(100, "The body must be a JSON object.", message="(#100) Invalid parameter")
        if body.get("messaging_product") != "whatsapp":
            return whatsapp_error(100, 'messaging_product must be "whatsapp"',
                                  message="(#100) The parameter messaging_product is required.")
        if body.get("recipient_type", "individual") != "individual":
            return whatsapp_error(100, 'recipient_type must be "individual"',
                                  message="(#100) Param recipient_type must be one of {INDIVIDUAL}")
        to = body.get("to")
        if not isinstance(to, str) or not to:
            return whatsapp_error(100, "to is required", message="(#100) The parameter to is required.")
        if not _WA_ID.match(to.lstrip("+")):
            return whatsapp_error(131009, f"Invalid 'to' {to!r}: the phone number in international format, "
                                          "digits only (a leading + is allowed)")
        callback = body.get("biz_opaque_callback_data")
        if callback is not None and (not isinstance(callback, str) or len(callback) > 512):
            return whatsapp_error(131009, "biz_opaque_callback_data must be a string of at most 512 characters")
        kind = body.get("type", "text")
        if kind == "template":
            try:
                self._check_template(body.get("template"))
            except TemplateShapeError as exc:
                return whatsapp_error(exc.code, str(exc))
            return None
        if kind == "text":
            text = body.get("text")
            if not isinstance(text, dict) or not isinstance(text.get("body"), str) or not text["body"].strip():
                return whatsapp_error(131008, "text.body is required",
                                      message="(#131008) Required parameter is missing")
            if len(text["body"]) > 4096:
                return whatsapp_error(131009, "text.body is longer than 4096 characters")
            if "preview_url" in text and not isinstance(text["preview_url"], bool):
                return whatsapp_error(131009, "text.preview_url must be true or false")
            return None
        if kind in _MEDIA_TYPES:
            return whatsapp_error(131051, f"the provider sandbox fakes only template and text sends, not {kind!r}")
        return whatsapp_error(100, f"Param type must be one of {{TEMPLATE, TEXT, ...}} - got {kind!r}",
                              message=f"(#100) Param type must be one of {{AUDIO, CONTACTS, DOCUMENT, IMAGE, "
                                      f"INTERACTIVE, LOCATION, REACTION, STICKER, TEMPLATE, TEXT, VIDEO}} - "
                                      f"got \"{kind}\".")

    def _check_template(self, template: object) -> None:
        if not isinstance(template, dict):
            raise TemplateShapeError("template must be an object with name, language and components")
        name = template.get("name")
        if not isinstance(name, str) or not name.strip():
            raise TemplateShapeError("template.name is required")
        language = template.get("language")
        if not isinstance(language, dict) or not isinstance(language.get("code"), str) or not language["code"]:
            raise TemplateShapeError('template.language must be {"code": "<locale>"}')
        components = template.get("components", [])
        if not isinstance(components, list):
            raise TemplateShapeError("template.components must be a list")
        body_parameters = 0
        for index, component in enumerate(components):
            where = f"template.components[{index}]"
            if not isinstance(component, dict) or component.get("type") not in _COMPONENT_TYPES:
                raise TemplateShapeError(f"{where}.type must be one of {sorted(_COMPONENT_TYPES)}")
            if component["type"] == "button":
                if component.get("sub_type") not in _BUTTON_SUB_TYPES:
                    raise TemplateShapeError(f"{where}.sub_type must be one of {sorted(_BUTTON_SUB_TYPES)}")
                if not str(component.get("index", "")).isdigit():
                    raise TemplateShapeError(f"{where}.index must be the button's position, 0-9")
            parameters = component.get("parameters", [])
            if not isinstance(parameters, list):
                raise TemplateShapeError(f"{where}.parameters must be a list")
            for number, parameter in enumerate(parameters):
                _check_parameter(parameter, f"{where}.parameters[{number}]")
            if component["type"] == "body":
                body_parameters += len(parameters)
        known = (self.sandbox.config.templates or {}).get("whatsapp")
        if known:
            spec = known.get(name)
            if spec is None:
                raise TemplateShapeError(f"template name ({name}) does not exist in {language['code']}", 132001)
            languages = spec.get("languages")
            if languages and language["code"] not in languages:
                raise TemplateShapeError(f"template name ({name}) does not exist in {language['code']}", 132001)
            expected = spec.get("body_parameters")
            if expected is not None and expected != body_parameters:
                raise TemplateShapeError(f"body: number of localizable_params ({body_parameters}) does not match "
                                         f"the expected number of params ({expected})")

    def _window_open(self, wa_id: str) -> bool:
        with self.sandbox.memory.lock:
            last = self.sandbox.memory.whatsapp_last_inbound.get(wa_id)
        return last is not None and self.sandbox.now() - last < WINDOW

    # -- webhooks
    def auto_receipts(self, record: dict) -> list[str]:
        return ["sent", "delivered"]

    def receipt(self, record: dict, status: str, error_code: int | str | None = None) -> WebhookCall:
        now = self.sandbox.now()
        entry = {"id": record["provider_message_id"], "status": status, "timestamp": str(unix_seconds(now)),
                 "recipient_id": record["to"]}
        if record.get("biz_opaque_callback_data"):
            entry["biz_opaque_callback_data"] = record["biz_opaque_callback_data"]
        category = "service" if record.get("kind") == "text" else "utility"
        if status in ("sent", "delivered"):
            entry["conversation"] = {"id": secrets.token_hex(16),
                                     "expiration_timestamp": str(unix_seconds(now + WINDOW)),
                                     "origin": {"type": category}}
            entry["pricing"] = {"billable": category != "service", "pricing_model": "PMP",
                                "category": category, "type": "regular"}
        if status == "failed" or error_code is not None:
            code = int(error_code) if error_code is not None and str(error_code).isdigit() else 131026
            title = WHATSAPP_ERRORS.get(code, (0, "Message failed to send"))[1].split(") ", 1)[-1]
            entry["errors"] = [{"code": code, "title": title, "message": title,
                                "error_data": {"details": title},
                                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/"}]
        value = {"messaging_product": "whatsapp", "metadata": self._metadata(), "statuses": [entry]}
        return self._call("receipt", "messages", value,
                          {"provider_message_id": record["provider_message_id"], "status": status,
                           "to": record["to"]})

    def inbound(self, body: dict) -> WebhookCall:
        wa_id = str(body.get("from") or "").lstrip("+")
        if not _WA_ID.match(wa_id):
            raise BadRequest("from must be the member's WhatsApp number (digits, a leading + allowed)")
        now = self.sandbox.now()
        contact = {"profile": {"name": str(body.get("name") or "Member")}, "wa_id": wa_id}
        if "preference" in body:
            preference = str(body["preference"])
            value = {"messaging_product": "whatsapp", "metadata": self._metadata(), "contacts": [contact],
                     "user_preferences": [{
                         "wa_id": wa_id, "category": "marketing_messages", "value": preference,
                         "detail": ("User requested to stop marketing messages" if preference.lower() in _STOP_WORDS
                                    else f"User requested to {preference} marketing messages"),
                         "timestamp": unix_seconds(now)}]}
            return self._call("inbound", "user_preferences", value, {"from": wa_id, "preference": preference})
        message = {"from": wa_id, "id": "wamid." + base64.b64encode(
            b"\x15\x02\x00\x12\x18\x14" + wa_id.encode() + secrets.token_hex(10).upper().encode()).decode(),
            "timestamp": str(unix_seconds(now))}
        if isinstance(body.get("button"), dict):
            button = body["button"]
            message.update(type="button", button={"payload": str(button.get("payload", "")),
                                                  "text": str(button.get("text", button.get("payload", "")))})
            if body.get("context_id"):
                message["context"] = {"from": WHATSAPP_DISPLAY_PHONE_NUMBER, "id": str(body["context_id"])}
        elif isinstance(body.get("text"), str):
            message.update(type="text", text={"body": body["text"]})
        else:
            raise BadRequest('a WhatsApp inbound needs "text", "button": {"payload", "text"} or "preference"')
        self._member_wrote([wa_id], now)
        value = {"messaging_product": "whatsapp", "metadata": self._metadata(), "contacts": [contact],
                 "messages": [message]}
        return self._call("inbound", "messages", value,
                          {"from": wa_id, "message_id": message["id"], "type": message["type"]})

    def _member_wrote(self, wa_ids: list[str], when) -> None:
        with self.sandbox.memory.lock:  # the member wrote: the 24-hour window opens
            for wa_id in wa_ids:
                self.sandbox.memory.whatsapp_last_inbound[wa_id] = when

    def observe_webhook(self, request: Request) -> int:
        """A push to our POST /webhooks/whatsapp, signed with the app secret as Meta signs
        (X-Hub-Signature-256 over the raw body): each member who wrote in it (`messages`,
        not `statuses`) has opened the 24-hour window, from now."""
        if request.path.rstrip("/") != "/webhooks/whatsapp":
            return 0
        signature = request.header("X-Hub-Signature-256") or ""
        if not equal(signature, whatsapp_signature(request.body, self.accounts.whatsapp_app_secret)):
            return 0
        try:
            payload = json.loads(request.body)
        except (ValueError, UnicodeDecodeError):
            return 0
        senders = [str(message["from"]).lstrip("+") for message in _pushed_messages(payload)
                   if isinstance(message, dict) and message.get("from")]
        self._member_wrote(senders, self.sandbox.now())
        return len(senders)

    def _metadata(self) -> dict:
        return {"display_phone_number": WHATSAPP_DISPLAY_PHONE_NUMBER,
                "phone_number_id": self.accounts.whatsapp_phone_number_id}

    def _call(self, kind: str, field: str, value: dict, about: dict) -> WebhookCall:
        payload = {"object": "whatsapp_business_account",
                   "entry": [{"id": WHATSAPP_BUSINESS_ACCOUNT_ID, "changes": [{"field": field, "value": value}]}]}
        raw = json.dumps(payload, separators=(",", ":")).encode("utf-8")  # non-ASCII as \u escapes, as Meta does
        headers = [("Content-Type", "application/json"),
                   ("User-Agent", "facebookexternalua"),
                   ("X-Hub-Signature-256", whatsapp_signature(raw, self.accounts.whatsapp_app_secret))]
        return WebhookCall(self.provider, kind, f"{self.accounts.public_base_url}/webhooks/whatsapp", raw, headers,
                           about)


def _pushed_messages(payload: object) -> list:
    """value.messages of every change of a webhook payload, whatever else it holds."""
    if not isinstance(payload, dict):
        return []
    found = []
    for entry in payload.get("entry") or []:
        for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            messages = value.get("messages") if isinstance(value, dict) else None
            found += messages if isinstance(messages, list) else []
    return found


def _check_parameter(parameter: object, where: str) -> None:
    if not isinstance(parameter, dict) or parameter.get("type") not in _PARAMETER_TYPES:
        raise TemplateShapeError(f"{where}.type must be one of {sorted(_PARAMETER_TYPES)}")
    kind = parameter["type"]
    if kind == "text" and (not isinstance(parameter.get("text"), str) or not parameter["text"].strip()):
        raise TemplateShapeError(f"{where}.text must be a non-empty string")
    if kind == "text" and ("\n" in parameter["text"] or "\t" in parameter["text"]
                           or "     " in parameter["text"]):
        # Meta refuses new lines, tabs and more than 4 spaces in a row in a variable.
        raise TemplateShapeError(f"{where}.text cannot have new-line/tab characters or more than 4 "
                                 "consecutive spaces", 132018)
    if kind == "payload" and not isinstance(parameter.get("payload"), str):
        raise TemplateShapeError(f"{where}.payload must be a string")
    if kind in ("currency", "date_time") and not isinstance(parameter.get(kind), dict):
        raise TemplateShapeError(f"{where}.{kind} must be an object with a fallback_value")


def _parameter_text(parameter: dict) -> str:
    kind = parameter["type"]
    if kind == "text":
        return parameter["text"]
    if kind == "payload":
        return parameter["payload"]
    if kind in ("currency", "date_time"):
        return str(parameter[kind].get("fallback_value", ""))
    media = parameter.get(kind)
    if isinstance(media, dict):
        return str(media.get("link") or media.get("id") or "")
    return str(parameter.get(kind, ""))


def _components(components: list) -> dict:
    """The template's parameters by component: {"header": [...], "body": [...],
    "buttons": [{"index", "sub_type", "parameters": [...]}]}."""
    found: dict = {"header": [], "body": [], "buttons": []}
    for component in components:
        texts = [_parameter_text(p) for p in component.get("parameters", [])]
        if component["type"] == "button":
            found["buttons"].append({"index": str(component.get("index")), "sub_type": component.get("sub_type"),
                                     "parameters": texts})
        elif component["type"] in ("header", "body"):
            found[component["type"]].extend(texts)
    return found
