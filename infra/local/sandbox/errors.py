"""Each provider's error answer, in its own shape (CHANNELS.md), and the codes the
sandbox knows a message and an HTTP status for. An unknown code still gets the
provider's shape, with a generic message, so any code can be injected as a fault.
"""

from __future__ import annotations

import json
import secrets
import uuid
from xml.sax.saxutils import escape

from ..http import Response

# --- WhatsApp Cloud API: HTTP 4xx/5xx, {"error": {...}} ---------------------------------

# code -> (HTTP status, title)
WHATSAPP_ERRORS: dict[int, tuple[int, str]] = {
    0: (401, "AuthException"),
    1: (500, "An unknown error occurred"),
    2: (503, "Service temporarily unavailable"),
    4: (429, "(#4) Application request limit reached"),
    10: (403, "(#10) Permission denied"),
    100: (400, "(#100) Invalid parameter"),
    190: (401, "Invalid OAuth access token - Cannot parse access token"),
    368: (403, "Temporarily blocked for policies violations"),
    80007: (429, "(#80007) Rate limit issues"),
    130429: (429, "(#130429) Rate limit hit"),
    131000: (500, "(#131000) Something went wrong"),
    131005: (403, "(#131005) Access denied"),
    131008: (400, "(#131008) Required parameter is missing"),
    131009: (400, "(#131009) Parameter value is not valid"),
    131016: (503, "(#131016) Service unavailable"),
    131026: (400, "(#131026) Message undeliverable"),
    131031: (403, "(#131031) Business Account locked"),
    131047: (400, "(#131047) Re-engagement message"),
    131048: (400, "(#131048) Spam rate limit hit"),
    131049: (400, "(#131049) This message was not delivered to maintain healthy ecosystem engagement."),
    131050: (400, "(#131050) Unable to deliver the message. This recipient has chosen to stop receiving "
                  "marketing messages on WhatsApp from your business."),
    131051: (400, "(#131051) Unsupported message type"),
    131056: (429, "(#131056) (Business Account, Consumer Account) pair rate limit hit"),
    132000: (400, "(#132000) Number of parameters does not match the expected number of params"),
    132001: (400, "(#132001) Template name does not exist in the translation"),
    132005: (400, "(#132005) Translated text too long"),
    132007: (400, "(#132007) Template Format Character Policy Violated"),
    132012: (400, "(#132012) Parameter format does not match format in the created template"),
    132015: (400, "(#132015) Template is Paused"),
    132016: (400, "(#132016) Template is Disabled"),
    132018: (400, "(#132018) There's an issue with the parameters in your template."),
    133010: (400, "(#133010) Phone number not registered"),
}

_WHATSAPP_STATUS_CODES = {400: 100, 401: 190, 403: 10, 429: 130429, 500: 1, 502: 2, 503: 2, 504: 2}


def whatsapp_error(code: int, details: str | None = None, *, status: int | None = None,
                   message: str | None = None, subcode: int | None = None) -> Response:
    """{"error": {"message", "type", "code", "error_data": {"details"}, "fbtrace_id"}}."""
    known_status, title = WHATSAPP_ERRORS.get(code, (400, f"(#{code}) Error"))
    error = {
        "message": message or title,
        "type": "OAuthException",
        "code": code,
        "error_data": {"messaging_product": "whatsapp", "details": details or title},
        "fbtrace_id": "A" + secrets.token_urlsafe(17)[:22],
    }
    if subcode is not None:
        error["error_subcode"] = subcode
    return Response.json(status or known_status, {"error": error})


def whatsapp_status_error(status: int) -> Response:
    """A bare HTTP failure (fault "status") in Meta's shape."""
    code = _WHATSAPP_STATUS_CODES.get(status, 1 if status >= 500 else 100)
    return whatsapp_error(code, f"the provider sandbox answers HTTP {status} (injected fault)", status=status)


def whatsapp_code_status(code: int) -> int:
    """The HTTP status Meta answers `code` with (400 when unknown)."""
    return WHATSAPP_ERRORS.get(code, (400, ""))[0]


# --- WeChat Official Account: HTTP 200, {"errcode", "errmsg"} ---------------------------

WECHAT_ERRORS: dict[int, str] = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40008: "invalid message type",
    40013: "invalid appid",
    40014: "invalid access_token",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    42001: "access_token expired",
    43004: "require subscribe",
    43101: "user refuse to accept the msg",
    44002: "empty post data",
    45009: "reach max api daily quota limit",
    45015: "response out of time limit or subscription is canceled",
    45047: "out of response count limit",
    47001: "data format error",
    47003: "argument invalid!",
    48001: "api unauthorized",
}


def wechat_error(errcode: int, detail: str | None = None, *, status: int = 200) -> Response:
    """{"errcode", "errmsg"} (with WeChat's " rid: ..." suffix), HTTP 200 unless a fault says otherwise."""
    message = WECHAT_ERRORS.get(errcode, "error")
    if detail:
        message = f"{message} {detail}"
    rid = f"{secrets.token_hex(4)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"
    return Response.json(status, {"errcode": errcode, "errmsg": f"{message} rid: {rid}"})


def wechat_status_error(status: int) -> Response:
    """A bare HTTP failure: WeChat's "system error" with that status."""
    return wechat_error(-1, status=status)


# --- Twilio: {"code", "message", "more_info", "status"} ----------------------------------

# code -> (HTTP status, message)
TWILIO_ERRORS: dict[int, tuple[int, str]] = {
    20003: (401, "Authenticate"),
    20404: (404, "The requested resource was not found"),
    20429: (429, "Too Many Requests"),
    20500: (500, "Internal Server Error"),
    20503: (503, "Service Unavailable"),
    20504: (504, "Gateway Timeout"),
    21211: (400, "The 'To' number is not a valid phone number."),
    21408: (400, "Permission to send an SMS has not been enabled for the region indicated by the 'To' number"),
    21602: (400, "Message body is required."),
    21603: (400, "A 'From' phone number is required."),
    21604: (400, "A 'To' phone number is required."),
    21606: (400, "The 'From' phone number provided is not a valid message-capable Twilio phone number "
                 "for this destination/account."),
    21609: (400, "Invalid StatusCallback url"),
    21610: (400, "Attempt to send to unsubscribed recipient"),
    21611: (400, "This 'From' number has exceeded the maximum number of queued messages"),
    21612: (400, "The 'To' phone number is not currently reachable via SMS"),
    21614: (400, "'To' number is not a valid mobile number"),
    21617: (400, "The concatenated message body exceeds the 1600 character limit"),
    21701: (400, "The Messaging Service does not exist"),
    30003: (400, "Unreachable destination handset"),
    30005: (400, "Unknown destination handset"),
    30006: (400, "Landline or unreachable carrier"),
    30007: (400, "Message filtered"),
    30008: (400, "Unknown error"),
}


def twilio_error(code: int, message: str | None = None, *, status: int | None = None) -> Response:
    """{"code", "message", "more_info", "status"}, with the status Twilio gives the code."""
    known_status, known_message = TWILIO_ERRORS.get(code, (400, "Error"))
    http_status = status or known_status
    headers = [("WWW-Authenticate", 'Basic realm="Twilio API"')] if http_status == 401 else []
    return Response.json(http_status, {"code": code, "message": message or known_message,
                                       "more_info": f"https://www.twilio.com/docs/errors/{code}",
                                       "status": http_status}, headers)


def twilio_status_error(status: int) -> Response:
    """A bare HTTP failure with Twilio's 20xxx code for it."""
    code = 20000 + status if 20000 + status in TWILIO_ERRORS else 20500
    return twilio_error(code, status=status)


# --- Aliyun Dysmsapi: {"Code", "Message", "RequestId"} -----------------------------------

# Code -> (HTTP status, Message). Business refusals (isv.*) come with HTTP 200; the RPC
# gateway's own (signature, parameters, throttling) with 4xx/5xx.
ALIYUN_ERRORS: dict[str, tuple[int, str]] = {
    "isv.BUSINESS_LIMIT_CONTROL": (200, "触发号码天级流控Permits:10"),
    "isv.DAY_LIMIT_CONTROL": (200, "触发日发送限额"),
    "isv.MOBILE_NUMBER_ILLEGAL": (200, "非法手机号"),
    "isv.MOBILE_COUNT_OVER_LIMIT": (200, "手机号码数量超过限制，最多支持1000条"),
    "isv.SMS_SIGNATURE_ILLEGAL": (200, "该账号下找不到对应签名"),
    "isv.SMS_TEMPLATE_ILLEGAL": (200, "该账号下找不到对应模板"),
    "isv.TEMPLATE_MISSING_PARAMETERS": (200, "模板变量缺少对应参数值"),
    "isv.INVALID_JSON_PARAM": (200, "JSON参数不合法，只接受字符串值"),
    "isv.INVALID_PARAMETERS": (200, "参数格式不正确"),
    "isv.PARAM_LENGTH_LIMIT": (200, "参数超出长度限制"),
    "isv.AMOUNT_NOT_ENOUGH": (200, "账户余额不足"),
    "isv.OUT_OF_SERVICE": (200, "业务停机"),
    "isv.BLACK_KEY_CONTROL_LIMIT": (200, "模板变量中存在黑名单关键字"),
    "isp.SYSTEM_ERROR": (200, "系统出现错误，请重新调用"),
    "MissingParameter": (400, "A required parameter is not supplied."),
    "InvalidParameter": (400, "The specified parameter is not valid."),
    "InvalidVersion": (400, "Specified parameter Version is not valid."),
    "InvalidAction.NotFound": (404, "Specified api is not found, please check your url and method."),
    "IncompleteSignature": (400, "The request signature does not conform to Aliyun standards."),
    "SignatureDoesNotMatch": (400, "Specified signature is not matched with our calculation."),
    "SignatureNonceUsed": (400, "Specified signature nonce was used already."),
    "InvalidAccessKeyId.NotFound": (404, "Specified access key is not found."),
    "InvalidTimeStamp.Format": (400, "Specified time stamp or date value is not well formatted."),
    "InvalidTimeStamp.Expired": (400, "Specified time stamp or date value is expired."),
    "Throttling.User": (400, "Request was denied due to user flow control."),
    "InternalError": (500, "The request processing has failed due to some unknown error."),
    "ServiceUnavailable": (503, "The request has failed due to a temporary failure of the server."),
}

_ALIYUN_STATUS_CODES = {400: "InvalidParameter", 403: "Forbidden", 404: "InvalidAction.NotFound",
                        429: "Throttling.User", 500: "InternalError", 503: "ServiceUnavailable"}


def aliyun_error(code: str, message: str | None = None, *, status: int | None = None,
                 xml: bool = False) -> Response:
    """{"Code", "Message", "RequestId"} (+ HostId, Recommend for the gateway's errors)."""
    known_status, known_message = ALIYUN_ERRORS.get(code, (200 if code.startswith(("isv.", "isp.")) else 400,
                                                           "Error"))
    http_status = status or known_status
    body = {"Code": code, "Message": message or known_message, "RequestId": aliyun_request_id()}
    if http_status >= 300:
        body["HostId"] = "dysmsapi.aliyuncs.com"
        body["Recommend"] = f"https://api.aliyun.com/troubleshoot?q={code}&product=Dysmsapi"
    return aliyun_answer(http_status, body, "Error", xml=xml)


def aliyun_status_error(status: int, xml: bool = False) -> Response:
    """A bare HTTP failure with the gateway's code for it."""
    return aliyun_error(_ALIYUN_STATUS_CODES.get(status, "InternalError" if status >= 500 else "InvalidParameter"),
                        status=status, xml=xml)


def aliyun_request_id() -> str:
    """A RequestId as Aliyun writes them (an upper-case UUID)."""
    return str(uuid.uuid4()).upper()


def aliyun_answer(status: int, body: dict, root: str, *, xml: bool = False) -> Response:
    """JSON (Format=JSON), or XML as Aliyun answers without Format=JSON."""
    if not xml:
        return Response(status, json.dumps(body, ensure_ascii=False).encode("utf-8"),
                        [("Content-Type", "application/json;charset=utf-8")])
    inner = "".join(f"<{key}>{escape(str(value))}</{key}>" for key, value in body.items())
    text = f'<?xml version="1.0" encoding="UTF-8"?><{root}>{inner}</{root}>'
    return Response(status, text.encode("utf-8"), [("Content-Type", "text/xml;charset=utf-8")])
