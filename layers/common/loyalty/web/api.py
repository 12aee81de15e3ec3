"""What every HTTP handler shares: a Powertools resolver for the HTTP API (payload 2.0)
with one exception handler per error type, the JSON reply, the raw body, the caller.

    app = http_app()

    @app.get("/members/<member_id>")
    def get_member(member_id: str):
        return reply(200, members.member_view(...))

Who is calling comes from the API's JWT authorizer (template.yaml), read here once:
the token's subject and scopes. Routes never check scopes themselves: API Gateway has
already refused a token without the route's scope (the scopes live in the template).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import datetime, timezone

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from ..errors import Conflict, Invalid, LoyaltyError, Misconfigured, NotFound, TooLarge, Transient, Unauthorized
from .plain import parse_json
from .responses import error_body


def reply(status: int, body: dict | list, headers: dict | None = None) -> Response:
    """A JSON answer (UTF-8 as written: 我的积分 stays readable)."""
    return Response(status_code=status, content_type="application/json",
                    body=json.dumps(body, ensure_ascii=False), headers=headers)


def text(status: int, body: str, content_type: str = "text/plain") -> Response:
    return Response(status_code=status, content_type=content_type, body=body)


_log = Logger(child=True)


def _error_reply(error: LoyaltyError) -> Response:
    status, body = error_body(error)
    _log.info("request refused", extra={"status": status, "error": type(error).__name__, "detail": str(error)})
    return reply(status, body, {"Retry-After": "5"} if status == 503 else None)


def http_app() -> APIGatewayHttpResolver:
    """A resolver whose error types map to their statuses, one handler each."""
    app = APIGatewayHttpResolver()
    for kind in (Invalid, Unauthorized, NotFound, Conflict, TooLarge, Misconfigured, Transient, LoyaltyError):
        app.exception_handler(kind)(_error_reply)
    return app


def raw_body(app: APIGatewayHttpResolver) -> bytes:
    """The body byte for byte, as the caller signed it."""
    event = app.current_event.raw_event
    body = event.get("body") or ""
    return base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8")


def json_body(app: APIGatewayHttpResolver, limit: int) -> object:
    """The body parsed as JSON, after the size check; Invalid / TooLarge otherwise."""
    body = raw_body(app)
    if len(body) > limit:
        raise TooLarge(f"the body is {len(body)} bytes; the limit is {limit}")
    return parse_json(body)


def limit_param(app: APIGatewayHttpResolver, default: int = 50, most: int = 200) -> int:
    """`?limit=` as a page size from 1 to `most`."""
    value = app.current_event.get_query_string_value("limit", str(default)) or ""
    if not value.isdigit() or not 1 <= int(value) <= most:
        raise Invalid([{"field": "limit", "problem": f"an integer from 1 to {most}"}])
    return int(value)


@dataclass(frozen=True)
class Caller:
    """The authenticated caller: the token's subject (a user, or a backend's client id)."""

    subject: str
    client_id: str | None
    scopes: tuple[str, ...]


def caller(app: APIGatewayHttpResolver) -> Caller:
    """The caller from the JWT authorizer's claims; Unauthorized (401) if the event has
    none, which only happens if a route lost its authorizer: fail closed."""
    context = app.current_event.raw_event.get("requestContext") or {}
    claims = ((context.get("authorizer") or {}).get("jwt") or {}).get("claims") or {}
    subject = claims.get("sub")
    if not subject:
        raise Unauthorized("no authenticated caller")
    return Caller(subject=str(subject), client_id=claims.get("client_id"),
                  scopes=tuple(str(claims.get("scope") or "").split()))


def request_time(event: dict, now: datetime) -> datetime:
    """When API Gateway received the request (requestContext.timeEpoch), else `now`: the
    service's clock a check-in is measured against. In AWS it is the handler's clock to
    the millisecond; the local stack stamps its simulated clock there (as its provider
    sandbox stamps the messages it sends), so check-ins work on simulated days."""
    epoch = (event.get("requestContext") or {}).get("timeEpoch")
    return datetime.fromtimestamp(epoch / 1000, timezone.utc) if isinstance(epoch, int) else now
