"""API Gateway proxy responses and the one mapping from error types to statuses."""
from __future__ import annotations

import json

from ..errors import (Conflict, ContactTaken, Invalid, LoyaltyError, Misconfigured, NotFound, TooLarge, Transient,
                      Unauthorized)

_STATUS = {Invalid: 400, Unauthorized: 401, NotFound: 404, Conflict: 409, TooLarge: 413, Misconfigured: 503, Transient: 503}


def json_response(status: int, body: dict | list, headers: dict | None = None) -> dict:
    return {"statusCode": status, "headers": {"Content-Type": "application/json", **(headers or {})},
            "body": json.dumps(body, ensure_ascii=False)}


def error_body(error: LoyaltyError) -> tuple[int, dict]:
    """Status and body for a service error. 400s list every problem found."""
    status = next((code for kind, code in _STATUS.items() if isinstance(error, kind)), 500)
    body: dict = {"message": str(error) if not isinstance(error, Invalid) else "the request is invalid"}
    if isinstance(error, (Invalid, ContactTaken)):
        body["errors"] = error.problems
    return status, body


def error_response(error: LoyaltyError) -> dict:
    status, body = error_body(error)
    headers = {"Retry-After": "5"} if status == 503 else None
    return json_response(status, body, headers)
