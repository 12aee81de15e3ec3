"""The one mapping from error types to HTTP statuses and bodies."""
from __future__ import annotations

from ..errors import (Conflict, ContactTaken, Invalid, LoyaltyError, Misconfigured, NotFound, TooLarge, Transient,
                      Unauthorized)

_STATUS = {Invalid: 400, Unauthorized: 401, NotFound: 404, Conflict: 409, TooLarge: 413, Misconfigured: 503, Transient: 503}


def error_body(error: LoyaltyError) -> tuple[int, dict]:
    """Status and body for a service error. 400s list every problem found."""
    status = next((code for kind, code in _STATUS.items() if isinstance(error, kind)), 500)
    body: dict = {"message": str(error) if not isinstance(error, Invalid) else "the request is invalid"}
    if isinstance(error, (Invalid, ContactTaken)):
        body["errors"] = error.problems
    return status, body
