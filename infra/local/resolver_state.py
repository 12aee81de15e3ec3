"""One request per thread in Powertools' event handler, as one request per container in Lambda.

`ApiGatewayResolver.resolve` keeps the request it is resolving in class attributes,
`BaseRouter.current_event` and `BaseRouter.lambda_context`: one per process. That is right
in Lambda, where a container runs one invocation at a time. The local stack runs every
function in one process and their calls on threads (runtime.py), so two overlapping
requests, to one function or to two, read each other's: a demo's POST
/members/{id}/activities was once validated against a WhatsApp push arriving at the same
moment (a 400 naming `object` and `entry`). Powertools says as much for its own local ASGI
server (powertools-lambda-python#8451).

`apply()` gives each thread the event, the context and the routing context of the call it
is resolving; outside a call the resolver answers what Powertools keeps, as before. What
Powertools does with them is unchanged. Applied once per process by the function runtime.
"""
from __future__ import annotations

import threading
from typing import Any

_applied = False
_calls = threading.local()


def apply() -> None:
    global _applied
    if _applied:
        return
    from aws_lambda_powertools.event_handler.api_gateway import ApiGatewayResolver, BaseRouter
    from aws_lambda_powertools.utilities.data_classes.common import BaseProxyEvent

    resolve = ApiGatewayResolver.resolve

    def resolve_alone(self, event, context):
        raw = event.raw_event if isinstance(event, BaseProxyEvent) else event
        outer = getattr(_calls, "call", None)
        _calls.call = (self._to_proxy_event(raw), context, {})
        try:
            return resolve(self, event, context)
        finally:
            _calls.call = outer

    def current(index: int, shared: str):
        def read(self) -> Any:
            call = getattr(_calls, "call", None)
            return call[index] if call is not None else getattr(BaseRouter, shared, None)
        return read

    def context(self) -> dict:
        call = getattr(_calls, "call", None)
        return call[2] if call is not None else self.__dict__.setdefault("_local_context", {})

    def set_context(self, value: dict) -> None:   # the resolver's __init__ starts it empty
        call = getattr(_calls, "call", None)
        if call is not None:
            _calls.call = (call[0], call[1], value)
        else:
            self.__dict__["_local_context"] = value

    ApiGatewayResolver.resolve = resolve_alone
    ApiGatewayResolver.current_event = property(current(0, "current_event"))
    ApiGatewayResolver.lambda_context = property(current(1, "lambda_context"))
    ApiGatewayResolver.context = property(context, set_context)
    _applied = True
