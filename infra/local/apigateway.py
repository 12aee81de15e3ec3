"""API Gateway's Lambda proxy integration: HTTP request in, proxy event out, and the
function's answer back to HTTP.

Two payload formats, as the template's event type says:
- `Api` (REST API), payload format 1.0: path and pathParameters stay percent-encoded,
  query parameters are decoded, headers come single- and multi-valued;
- `HttpApi`, payload format 2.0: decoded rawPath and pathParameters, lower-case
  headers joined by commas, cookies apart.

The body is handed over byte for byte: as text when it is UTF-8, otherwise base64
with isBase64Encoded, so a signature computed over the raw body still verifies.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import unquote

from .authorizer import Denied, LocalIssuer, authorize
from .http import Request, Response
from .runtime import FunctionRuntime
from .template import ApiEvent, TemplateModel, api_id

log = logging.getLogger(__name__)

_INTERNAL_ERROR = {"message": "Internal server error"}  # API Gateway's words for a 502


class LambdaProxyIntegration:
    """A router handler that invokes one function for one Api/HttpApi event."""

    def __init__(self, runtime: FunctionRuntime, model: TemplateModel, function_id: str,
                 event: ApiEvent, issuer: LocalIssuer | None = None,
                 clock: Callable[[], datetime] | None = None):
        self.runtime = runtime
        self.model = model
        self.function_id = function_id
        self.event = event
        self.issuer = issuer
        # The stack's clock (simulated once a schedule has run): the time API Gateway
        # received the request, as the event's requestContext tells a handler.
        self.clock = clock

    def __call__(self, request: Request, params: dict[str, str]) -> Response:
        request_id = str(uuid.uuid4())
        try:  # the authorizer runs first: a refused request never reaches the function
            verified = authorize(self.issuer, request, self.event)
        except Denied as denied:
            denied.response.headers.append(("x-amzn-RequestId", request_id))
            return denied.response
        if self.event.kind == "HttpApi":
            proxy_event = http_api_event(request, params, self.event, self.model, request_id)
            if self.clock is not None:
                received = self.clock().timestamp()
                proxy_event["requestContext"].update(time=_clf_time(received), timeEpoch=int(received * 1000))
            if verified is not None:
                proxy_event["requestContext"]["authorizer"] = verified.request_context()
        else:
            proxy_event = rest_api_event(request, params, self.event, self.model, request_id)
        try:
            result = self.runtime.invoke(self.function_id, proxy_event)
        except Exception:
            log.exception("%s raised on %s %s (request %s)", self.function_id,
                          request.method, request.path, request_id)
            return Response.json(502, _INTERNAL_ERROR, [("x-amzn-RequestId", request_id)])
        try:
            if self.event.kind == "HttpApi":
                response = http_api_response(result)
            else:
                response = rest_api_response(result)
        except (TypeError, ValueError) as exc:
            log.error("%s returned a response API Gateway cannot use: %s", self.function_id, exc)
            return Response.json(502, _INTERNAL_ERROR, [("x-amzn-RequestId", request_id)])
        response.headers.append(("x-amzn-RequestId", request_id))
        return response


# ------------------------------------------------------------------------ events


def rest_api_event(request: Request, params: dict[str, str], event: ApiEvent,
                   model: TemplateModel, request_id: str) -> dict:
    """The payload format 1.0 event API Gateway's REST API sends for `request`."""
    headers: dict[str, str] = {}
    multi_headers: dict[str, list[str]] = {}
    for name, value in _forwarded_headers(request):
        headers[name] = value  # the last value wins, as in API Gateway
        multi_headers.setdefault(name, []).append(value)
    query: dict[str, str] = {}
    multi_query: dict[str, list[str]] = {}
    for name, value in request.query:
        query[name] = value
        multi_query.setdefault(name, []).append(value)
    body, is_base64 = _body(request.body)
    stage = event.stage
    return {
        "resource": event.path,
        "path": request.path,
        "httpMethod": request.method,
        "headers": headers or None,
        "multiValueHeaders": multi_headers or None,
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi_query or None,
        "pathParameters": params or None,
        "stageVariables": None,
        "requestContext": {
            "accountId": model.account_id,
            "apiId": api_id(event.api_id),
            "domainName": request.header("Host") or "127.0.0.1",
            "domainPrefix": "127",
            "extendedRequestId": request_id,
            "httpMethod": request.method,
            "identity": {
                "sourceIp": request.source_ip,
                "userAgent": request.header("User-Agent"),
                "accessKey": None, "accountId": None, "caller": None, "cognitoIdentityId": None,
                "cognitoIdentityPoolId": None, "user": None, "userArn": None,
            },
            "path": f"/{stage}{request.path}",
            "protocol": "HTTP/1.1",
            "requestId": request_id,
            "requestTime": _clf_time(request.received_at),
            "requestTimeEpoch": int(request.received_at * 1000),
            "resourceId": api_id(event.name),
            "resourcePath": event.path,
            "stage": stage,
        },
        "body": body,
        "isBase64Encoded": is_base64,
    }


def http_api_event(request: Request, params: dict[str, str], event: ApiEvent,
                   model: TemplateModel, request_id: str) -> dict:
    """The payload format 2.0 event an HTTP API sends for `request`."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in _forwarded_headers(request):
        if name.lower() == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        key = name.lower()
        headers[key] = f"{headers[key]},{value}" if key in headers else value
    query: dict[str, str] = {}
    for name, value in request.query:
        query[name] = f"{query[name]},{value}" if name in query else value
    body, is_base64 = _body(request.body)
    route_key = "$default" if event.path == "/{proxy+}" and event.method == "ANY" \
        else f"{event.method} {event.path}"
    path = unquote(request.path)
    proxy_event = {
        "version": "2.0",
        "routeKey": route_key,
        "rawPath": path,
        "rawQueryString": request.raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": model.account_id,
            "apiId": api_id(event.api_id),
            "domainName": request.header("Host") or "127.0.0.1",
            "domainPrefix": "127",
            "http": {
                "method": request.method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": request.source_ip,
                "userAgent": request.header("User-Agent") or "",
            },
            "requestId": request_id,
            "routeKey": route_key,
            "stage": event.stage,
            "time": _clf_time(request.received_at),
            "timeEpoch": int(request.received_at * 1000),
        },
        "isBase64Encoded": is_base64,
    }
    if cookies:
        proxy_event["cookies"] = cookies
    if query:
        proxy_event["queryStringParameters"] = query
    if params:
        proxy_event["pathParameters"] = {name: unquote(value) for name, value in params.items()}
    if body is not None:
        proxy_event["body"] = body
    return proxy_event


def _forwarded_headers(request: Request) -> list[tuple[str, str]]:
    # API Gateway adds these; a handler that rebuilds its public URL (webhook
    # signatures are computed over it) reads them.
    headers = list(request.headers)
    present = {name.lower() for name, _ in headers}
    port = (request.header("Host") or "").rpartition(":")[2]
    extra = {"X-Forwarded-For": request.source_ip, "X-Forwarded-Proto": "http",
             "X-Forwarded-Port": port if port.isdigit() else "80"}
    headers.extend((name, value) for name, value in extra.items() if name.lower() not in present)
    return headers


def _body(raw: bytes) -> tuple[str | None, bool]:
    if not raw:
        return None, False
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), True


def _clf_time(epoch: float) -> str:
    # API Gateway's requestTime: 23/Nov/2026:16:05:00 +0000
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%d/%b/%Y:%H:%M:%S +0000")


# --------------------------------------------------------------------- responses


def rest_api_response(result: Any) -> Response:
    """Map a payload 1.0 proxy response; anything malformed raises (API Gateway: 502)."""
    if not isinstance(result, dict) or "statusCode" not in result:
        raise ValueError("a REST API proxy response must be a dict with statusCode")
    return _response(result)


def http_api_response(result: Any) -> Response:
    """Map a payload 2.0 response. As in AWS, a result without statusCode is a 200
    with the result as its JSON body."""
    if isinstance(result, dict) and "statusCode" in result:
        response = _response(result)
        response.headers.extend(("Set-Cookie", cookie) for cookie in result.get("cookies") or [])
        return response
    body = result if isinstance(result, str) else json.dumps(result)
    return Response(200, body.encode(), [("Content-Type", "application/json")])


def _response(result: dict) -> Response:
    status = int(result["statusCode"])
    headers = [(str(name), str(value)) for name, value in (result.get("headers") or {}).items()]
    single = {name.lower() for name, _ in headers}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        # API Gateway merges both maps; a name in `headers` is not repeated.
        if name.lower() not in single:
            headers.extend((str(name), str(value)) for value in values)
    body = result.get("body")
    if body is None:
        payload = b""
    elif result.get("isBase64Encoded"):
        payload = base64.b64decode(body)
    elif isinstance(body, str):
        payload = body.encode("utf-8")
    else:
        raise TypeError(f"body must be a string, got {type(body).__name__}")
    if not any(name.lower() == "content-type" for name, _ in headers):
        headers.append(("Content-Type", "application/json"))
    return Response(status, payload, headers)
