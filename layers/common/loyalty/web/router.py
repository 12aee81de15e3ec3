"""A small router for API Gateway proxy events (REST, payload format 1.0).

Powertools' resolver would do, but it imports asyncio and more at cold start; this is
the part we use: API Gateway has already matched the route, so dispatch is a dict lookup
on (method, resource) with the path parameters it extracted.
"""
from __future__ import annotations

from typing import Callable
from urllib.parse import unquote

from ..errors import LoyaltyError
from .responses import error_response, json_response

Handler = Callable[..., dict]


class Router:
    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Handler] = {}

    def route(self, method: str, resource: str) -> Callable[[Handler], Handler]:
        """Register `handler(event, **path_parameters) -> proxy response` for a route."""
        def register(handler: Handler) -> Handler:
            self._routes[(method.upper(), resource)] = handler
            return handler
        return register

    def resolve(self, event: dict) -> dict:
        """Call the route's handler; a LoyaltyError becomes its status and body."""
        handler = self._routes.get((event.get("httpMethod", ""), event.get("resource", "")))
        if handler is None:
            return json_response(404, {"message": "no such route"})
        params = {k: unquote(v) for k, v in (event.get("pathParameters") or {}).items()}
        try:
            return handler(event, **params)
        except LoyaltyError as error:
            return error_response(error)


def query(event: dict, name: str, default: str | None = None) -> str | None:
    return (event.get("queryStringParameters") or {}).get(name, default)
