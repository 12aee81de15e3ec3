"""The sandbox's local control routes (DESIGN.md, "Local control endpoints"):

    GET    /_local/outbox[?to=&channel=&provider=]   accepted messages, oldest first
    DELETE /_local/outbox                            forget them
    GET    /_local/faults                            pending faults
    POST   /_local/faults                            {"provider", "status"|"error_code"|"timeout": true,
                                                      "count"?, "to"?, "hold"?, "then"?}, or instead of
                                                      count {"share": 0.05, "seed"?}: each send, that chance
    DELETE /_local/faults                            drop them
    GET    /_local/sandbox/stats                     counters
    GET    /_local/sandbox/config                    settings, accounts and endpoints
    POST   /_local/sandbox/config                    change settings, e.g. {"auto_receipts": false}
    POST   /_local/sandbox/reset                     forget everything (tests)
    GET    /_local/receipts                          receipts posted (automatic and requested)
    POST   /_local/receipts                          {"provider", "provider_message_id", "status",
                                                      "error_code"?, "to"?}: post one now
    GET    /_local/inbound                           inbound messages injected
    POST   /_local/inbound                           {"channel", "from", "text"|"event"|"preference"|"button"}
"""

from __future__ import annotations

from typing import Any, Callable

from ..http import Request, Response
from ..schedules import iso_utc
from .base import ProviderFake, Route, Sandbox
from .core import BASE_PATHS, CHANNEL_OF, PROVIDERS, BadRequest


def _json_body(request: Request) -> Any:
    try:
        return request.json()
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body must be JSON") from None


def _answers_bad_requests(handler: Callable[[Request, dict[str, str]], Response]):
    def wrapped(request: Request, params: dict[str, str]) -> Response:
        try:
            return handler(request, params)
        except BadRequest as exc:
            return Response.json(exc.status, {"message": str(exc)})
    return wrapped


class ControlRoutes:
    """/_local/... for the outbox, faults, receipts, inbound messages and settings."""

    def __init__(self, sandbox: Sandbox, fakes: dict[str, ProviderFake]):
        self.sandbox = sandbox
        self.fakes = fakes

    def routes(self) -> list[Route]:
        table = [
            ("GET", "/_local/outbox", self.list_outbox, "messages the provider sandbox accepted (?to=&channel=)"),
            ("DELETE", "/_local/outbox", self.clear_outbox, "forget the sandbox's outbox"),
            ("GET", "/_local/faults", self.list_faults, "pending provider faults"),
            ("POST", "/_local/faults", self.add_fault,
             '{"provider", "status"|"error_code"|"timeout": true, "count"}: next sends fail'),
            ("DELETE", "/_local/faults", self.clear_faults, "drop pending faults"),
            ("GET", "/_local/sandbox/stats", self.stats, "provider sandbox counters"),
            ("GET", "/_local/sandbox/config", self.get_config, "provider sandbox settings and accounts"),
            ("POST", "/_local/sandbox/config", self.set_config, 'e.g. {"auto_receipts": false}'),
            ("POST", "/_local/sandbox/reset", self.reset, "forget messages, faults, counters, tokens"),
            ("GET", "/_local/receipts", self.list_receipts, "receipts the sandbox posted to our webhooks"),
            ("POST", "/_local/receipts", self.post_receipt,
             '{"provider", "provider_message_id", "status"}: post that receipt now'),
            ("GET", "/_local/inbound", self.list_inbound, "inbound messages the sandbox posted"),
            ("POST", "/_local/inbound", self.post_inbound,
             '{"channel", "from", "text"}: a member writes (signed webhook to our API)'),
        ]
        return [(method, path, _answers_bad_requests(handler), description)
                for method, path, handler, description in table]

    # -- outbox
    def list_outbox(self, request: Request, params: dict[str, str]) -> Response:
        query = dict(request.query)
        return Response.json(200, self.sandbox.outbox.list(
            to=query.get("to") or None, channel=query.get("channel") or None,
            provider=query.get("provider") or None))

    def clear_outbox(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(200, {"cleared": self.sandbox.outbox.clear()})

    # -- faults
    def list_faults(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.sandbox.faults.pending())

    def add_fault(self, request: Request, params: dict[str, str]) -> Response:
        fault = self.sandbox.faults.add(_json_body(request), self.sandbox.now())
        return Response.json(201, fault.public())

    def clear_faults(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(200, {"cleared": self.sandbox.faults.clear()})

    # -- settings and counters
    def stats(self, request: Request, params: dict[str, str]) -> Response:
        counts = self.sandbox.stats.snapshot()
        counts["faults_pending"] = sum(f["remaining"] for f in self.sandbox.faults.pending() if f["remaining"])
        counts["outbox"] = len(self.sandbox.outbox)
        counts["receipts"] = {**self.sandbox.deliveries.counts("receipt"),
                              "queued": self.sandbox.receipts.pending()}
        counts["inbound_deliveries"] = self.sandbox.deliveries.counts("inbound")
        return Response.json(200, counts)

    def get_config(self, request: Request, params: dict[str, str]) -> Response:
        base = self.sandbox.poster.local_base_url
        return Response.json(200, {"config": self.sandbox.config.public(),
                                   "accounts": self.sandbox.accounts.public(),
                                   "endpoints": {p: base + BASE_PATHS[p] for p in PROVIDERS}})

    def set_config(self, request: Request, params: dict[str, str]) -> Response:
        self.sandbox.config.update(_json_body(request))
        return Response.json(200, {"config": self.sandbox.config.public()})

    def reset(self, request: Request, params: dict[str, str]) -> Response:
        self.sandbox.reset()
        for fake in self.fakes.values():
            getattr(fake, "reset", lambda: None)()
        return Response.json(200, {"reset": True})

    # -- receipts
    def list_receipts(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(200, self.sandbox.deliveries.entries("receipt"))

    def post_receipt(self, request: Request, params: dict[str, str]) -> Response:
        body = _json_body(request)
        if not isinstance(body, dict):
            raise BadRequest('the body must be {"provider", "provider_message_id", "status", "error_code"?}')
        provider, message_id, status = body.get("provider"), body.get("provider_message_id"), body.get("status")
        if provider not in PROVIDERS:
            raise BadRequest(f"provider must be one of {', '.join(PROVIDERS)}")
        if not isinstance(message_id, (str, int)) or isinstance(message_id, bool) or message_id == "":
            raise BadRequest("provider_message_id is required")
        if not isinstance(status, str) or not status:
            raise BadRequest("status is required, e.g. delivered, failed, read")
        to = body.get("to")
        found = self.sandbox.outbox.find(provider, message_id)
        if to:
            found = [r for r in found if r["to"] == str(to).lstrip("+")] or found
        if found:
            record = found[0]
        elif to:  # a receipt for a message the sandbox never sent: our webhook must cope
            record = {"provider": provider, "provider_message_id": message_id, "to": str(to).lstrip("+"),
                      "kind": "template", "at": iso_utc(self.sandbox.now()), "request": {}}
        else:
            raise BadRequest(f"no {provider} message {message_id!r} in the outbox; give \"to\" to post a receipt "
                             "for a message the sandbox did not send", 404)
        call, answer = self.fakes[provider].post_receipt(record, status, body.get("error_code"))
        return Response.json(200, _answer(call, answer))

    # -- inbound
    def list_inbound(self, request: Request, params: dict[str, str]) -> Response:
        return Response.json(200, list(self.sandbox.inbound_log))

    def post_inbound(self, request: Request, params: dict[str, str]) -> Response:
        body = _json_body(request)
        if not isinstance(body, dict) or body.get("channel") not in PROVIDERS:
            raise BadRequest(f'the body must be {{"channel": one of {", ".join(PROVIDERS)}, "from", "text"}}')
        provider = body["channel"]
        call = self.fakes[provider].inbound(body)
        self.sandbox.stats.add("inbound", provider)
        answer = self.sandbox.post_now(call)
        self.sandbox.inbound_log.append({"at": iso_utc(self.sandbox.now()), "provider": provider,
                                         "channel": CHANNEL_OF[provider], **call.about,
                                         "http_status": answer.status})
        return Response.json(200, _answer(call, answer))


def _answer(call, answer) -> dict:
    # The headers (signature included) with the url and payload: what a provider posts
    # again when our webhook fails, so a caller can retry exactly that push.
    result = {"status": answer.status, "body": answer.body, "url": call.url,
              "payload": call.body.decode("utf-8", "replace"), "headers": dict(call.headers)}
    if answer.error:
        result["error"] = answer.error
    return result
