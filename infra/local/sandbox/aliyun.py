"""Fake Aliyun SMS (Dysmsapi), RPC style.

    POST {base}/   form: Action=SendSms, Version=2017-05-25, Format=JSON, PhoneNumbers, SignName,
                   TemplateCode, TemplateParam (JSON), OutId, and the signature parameters
                   AccessKeyId, SignatureMethod=HMAC-SHA1, SignatureVersion=1.0, SignatureNonce,
                   Timestamp, Signature
    -> {"Code": "OK", "BizId", "RequestId", "Message": "OK"}; refusals {"Code", "Message", "RequestId"}
       (business codes isv.* with HTTP 200, the gateway's own with 4xx/5xx)

The signature is checked per Aliyun's documented algorithm (signing.aliyun_signature)
over every parameter, query and form, but Signature. SendBatchSms is faked as well.
Receipts: one SmsReport per number to POST {PublicBaseUrl}/webhooks/aliyun/report?token=
<ALIYUN_CALLBACK_TOKEN>; replies (SmsUp) to /webhooks/aliyun/up?token=...
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode

from ..http import Request, Response
from .base import ProviderFake, Route
from .core import BASE_PATHS, BadRequest
from .delivery import WebhookCall
from .errors import aliyun_answer, aliyun_error, aliyun_request_id, aliyun_status_error
from .signing import aliyun_signature, aliyun_string_to_sign, equal

BASE = BASE_PATHS["aliyun"]
VERSION = "2017-05-25"
TIMESTAMP_TOLERANCE = timedelta(minutes=15)
_BEIJING = timezone(timedelta(hours=8))
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_PHONE = re.compile(r"^(?:\+|00)?(\d{6,15})$")
_TEMPLATE_CODE = re.compile(r"^SMS_\w+$")
_SIGNED = ("AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce", "SignatureVersion", "Timestamp",
           "Action", "Version")


class _Refusal(Exception):
    def __init__(self, code: str, message: str | None = None):
        super().__init__(code)
        self.code = code
        self.message = message


class AliyunFake(ProviderFake):
    """SendSms / SendBatchSms, SmsReport and SmsUp."""

    provider = "aliyun"

    def __init__(self, sandbox):
        super().__init__(sandbox)
        self._biz_ids = itertools.count(int(time.time()) * 1000)

    def routes(self) -> list[Route]:
        return [
            ("POST", BASE, self.rpc, "provider sandbox: Aliyun Dysmsapi (RPC)"),
            ("GET", BASE, self.rpc, "provider sandbox: Aliyun Dysmsapi (RPC)"),
            ("ANY", f"{BASE}/{{proxy+}}", self.unknown, "provider sandbox: Aliyun, anything else"),
        ]

    # -- errors
    def status_error(self, status: int) -> Response:
        return aliyun_status_error(status)

    def code_error(self, code: int | str, status: int | None) -> Response:
        return aliyun_error(str(code), status=status)

    def unknown(self, request: Request, params: dict[str, str]) -> Response:
        return aliyun_error("InvalidAction.NotFound", f"RPC calls go to {BASE}/, not {request.path}")

    # -- RPC
    def rpc(self, request: Request, params: dict[str, str]) -> Response:
        fields = dict(request.query)
        if request.method == "POST" and request.body:
            try:
                fields.update(parse_qsl(request.body.decode("utf-8"), keep_blank_values=True))
            except UnicodeDecodeError:
                pass
        xml = fields.get("Format", "XML").upper() != "JSON"  # Aliyun answers XML unless asked for JSON
        try:
            self._authenticate(request.method, fields)
            action = fields["Action"]
            if action == "SendSms":
                messages = self._send_sms(fields)
            elif action == "SendBatchSms":
                messages = self._send_batch_sms(fields)
            else:
                raise _Refusal("InvalidAction.NotFound", f"Specified api {action} is not found, please check "
                                                         "your url and method.")
        except _Refusal as refusal:
            return self.refuse(aliyun_error(refusal.code, refusal.message, xml=xml))
        failed = self.apply_fault([number for number, _, _ in messages])
        if failed is not None:
            return failed
        biz_id = f"{next(self._biz_ids)}^0"
        records = [self.record(to=number, kind="template", provider_message_id=biz_id, request=request,
                               parsed=fields, template=fields["TemplateCode"], variables=variables,
                               sign_name=sign_name, out_id=fields.get("OutId") or None, action=action)
                   for number, sign_name, variables in messages]
        self.accept(records)
        return aliyun_answer(200, {"Code": "OK", "Message": "OK", "BizId": biz_id,
                                   "RequestId": aliyun_request_id()}, f"{action}Response", xml=xml)

    def _authenticate(self, method: str, fields: dict[str, str]) -> None:
        for name in _SIGNED:
            if not fields.get(name):
                raise _Refusal("MissingParameter" if name in ("Action", "Version") else f"Missing{name}",
                               f"{name} is mandatory for this action.")
        if fields["SignatureMethod"] != "HMAC-SHA1" or fields["SignatureVersion"] != "1.0":
            raise _Refusal("IncompleteSignature", "The request signature does not conform to Aliyun standards: "
                                                  "SignatureMethod must be HMAC-SHA1 and SignatureVersion 1.0.")
        if not _TIMESTAMP.match(fields["Timestamp"]):
            raise _Refusal("InvalidTimeStamp.Format", "Specified time stamp or date value is not well formatted: "
                                                      "yyyy-MM-ddTHH:mm:ssZ in UTC.")
        stamp = datetime.strptime(fields["Timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        # A sender may sign with the real time or with the local stack's (simulated) time.
        if all(abs(stamp - now) > TIMESTAMP_TOLERANCE
               for now in (datetime.now(timezone.utc), self.sandbox.now())):
            raise _Refusal("InvalidTimeStamp.Expired")
        if fields["AccessKeyId"] != self.accounts.aliyun_access_key_id:
            raise _Refusal("InvalidAccessKeyId.NotFound")
        expected = aliyun_signature(method, fields, self.accounts.aliyun_access_key_secret)
        if not equal(fields["Signature"], expected):
            raise _Refusal("SignatureDoesNotMatch", "Specified signature is not matched with our calculation. "
                                                    "server string to sign is:"
                                                    + aliyun_string_to_sign(method, fields))
        memory = self.sandbox.memory
        with memory.lock:
            now = time.time()
            for nonce, seen in list(memory.aliyun_nonces.items()):
                if now - seen > TIMESTAMP_TOLERANCE.total_seconds():
                    del memory.aliyun_nonces[nonce]
            if fields["SignatureNonce"] in memory.aliyun_nonces:
                raise _Refusal("SignatureNonceUsed")
            memory.aliyun_nonces[fields["SignatureNonce"]] = now
        if fields["Version"] != VERSION:
            raise _Refusal("InvalidVersion", f"Specified parameter Version is not valid: Dysmsapi is {VERSION}.")

    def _send_sms(self, fields: dict[str, str]) -> list[tuple[str, str, dict]]:
        for name in ("PhoneNumbers", "SignName", "TemplateCode"):
            if not fields.get(name):
                raise _Refusal(f"Missing{name}", f"{name} is mandatory for this action.")
        numbers = [n.strip() for n in fields["PhoneNumbers"].split(",")]
        if len(numbers) > 1000:
            raise _Refusal("isv.MOBILE_COUNT_OVER_LIMIT")
        sign_name = self._check_sign_name(fields["SignName"])
        variables = self._check_template(fields["TemplateCode"], fields.get("TemplateParam"))
        self._check_out_id(fields)
        return [(_phone(number), sign_name, variables) for number in numbers]

    def _send_batch_sms(self, fields: dict[str, str]) -> list[tuple[str, str, dict]]:
        for name in ("PhoneNumberJson", "SignNameJson", "TemplateCode"):
            if not fields.get(name):
                raise _Refusal(f"Missing{name}", f"{name} is mandatory for this action.")
        numbers = _json_list(fields["PhoneNumberJson"])
        sign_names = _json_list(fields["SignNameJson"])
        params = _json_list(fields["TemplateParamJson"]) if fields.get("TemplateParamJson") else [None] * len(numbers)
        if len(numbers) > 100:
            raise _Refusal("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制，最多支持100条")
        if not numbers or len(sign_names) != len(numbers) or len(params) != len(numbers):
            raise _Refusal("isv.INVALID_PARAMETERS", "PhoneNumberJson, SignNameJson and TemplateParamJson must "
                                                     "have the same length")
        self._check_out_id(fields)
        return [(_phone(str(number)), self._check_sign_name(str(sign)),
                 self._check_template(fields["TemplateCode"], json.dumps(param) if param is not None else None))
                for number, sign, param in zip(numbers, sign_names, params)]

    def _check_sign_name(self, sign_name: str) -> str:
        configured = self.accounts.aliyun_sign_name
        if configured and sign_name != configured:
            raise _Refusal("isv.SMS_SIGNATURE_ILLEGAL", f"该账号下找不到对应签名: {sign_name} (the sandbox has "
                                                        f"{configured})")
        return sign_name

    def _check_template(self, code: str, template_param: str | None) -> dict:
        known = (self.sandbox.config.templates or {}).get("aliyun")
        if not _TEMPLATE_CODE.match(code) or (known and code not in known):
            raise _Refusal("isv.SMS_TEMPLATE_ILLEGAL", f"该账号下找不到对应模板: {code}")
        variables: dict = {}
        if template_param:
            try:
                variables = json.loads(template_param)
            except ValueError:
                raise _Refusal("isv.INVALID_JSON_PARAM") from None
            if not isinstance(variables, dict) or not all(isinstance(v, str) for v in variables.values()):
                raise _Refusal("isv.INVALID_JSON_PARAM")
        if known and known[code]:
            missing = [name for name in known[code] if name not in variables]
            if missing:
                raise _Refusal("isv.TEMPLATE_MISSING_PARAMETERS", f"模板变量缺少对应参数值: {missing[0]}")
        return variables

    @staticmethod
    def _check_out_id(fields: dict[str, str]) -> None:
        if len(fields.get("OutId", "")) > 256:
            raise _Refusal("isv.INVALID_PARAMETERS", "OutId is longer than 256 characters")

    # -- pushes
    def auto_receipts(self, record: dict) -> list[str]:
        return ["delivered"]

    def receipt(self, record: dict, status: str, error_code: int | str | None = None) -> WebhookCall:
        success = status.lower() in ("delivered", "success") and error_code is None
        sent_at = datetime.fromisoformat(record["at"].replace("Z", "+00:00")) if record.get("at") else \
            self.sandbox.now()
        report = {"phone_number": record["to"], "send_time": _beijing(sent_at),
                  "report_time": _beijing(self.sandbox.now()), "success": success,
                  "err_code": "DELIVERED" if success else str(error_code or "UNDELIV"),
                  "err_msg": "用户接收成功" if success else "用户接收失败", "sms_size": "1",
                  "biz_id": record["provider_message_id"]}
        if record.get("out_id"):
            report["out_id"] = record["out_id"]
        return self._call("receipt", "report", [report],
                          {"provider_message_id": record["provider_message_id"],
                           "status": "delivered" if success else "failed", "to": record["to"]})

    def inbound(self, body: dict) -> WebhookCall:
        match = _PHONE.match(str(body.get("from") or "").strip())
        if not match:
            raise BadRequest("from must be the member's phone number")
        if not isinstance(body.get("text"), str):
            raise BadRequest('an Aliyun inbound needs "text"')
        reply = {"phone_number": match.group(1), "send_time": _beijing(self.sandbox.now()),
                 "content": body["text"], "sign_name": str(body.get("sign_name") or self.accounts.aliyun_sign_name),
                 "dest_code": str(body.get("dest_code") or "1234"),
                 "sequence_id": secrets.randbelow(9 * 10 ** 9) + 10 ** 9}
        return self._call("inbound", "up", [reply], {"from": match.group(1), "message_id": reply["sequence_id"]})

    def _call(self, kind: str, endpoint: str, items: list, about: dict) -> WebhookCall:
        query = urlencode({"token": self.accounts.aliyun_callback_token})
        raw = json.dumps(items, ensure_ascii=False).encode("utf-8")
        return WebhookCall(self.provider, kind, f"{self.accounts.public_base_url}/webhooks/aliyun/{endpoint}?{query}",
                           raw, [("Content-Type", "application/json;charset=utf-8")], about)


def _phone(number: str) -> str:
    match = _PHONE.match(number)
    if not match or (len(match.group(1)) == 11 and not match.group(1).startswith("1")):
        raise _Refusal("isv.MOBILE_NUMBER_ILLEGAL", f"非法手机号: {number}")
    return match.group(1)


def _json_list(text: str) -> list:
    try:
        value = json.loads(text)
    except ValueError:
        raise _Refusal("isv.INVALID_JSON_PARAM") from None
    if not isinstance(value, list):
        raise _Refusal("isv.INVALID_JSON_PARAM")
    return value


def _beijing(when: datetime) -> str:
    """Aliyun's report times: Beijing time, yyyy-MM-dd HH:mm:ss."""
    return when.astimezone(_BEIJING).strftime("%Y-%m-%d %H:%M:%S")
