"""The local stack's HTTP server: one threaded server on 127.0.0.1, one router.

Routes come from two places and are matched the same way:
- the template's Api/HttpApi events (an integration that invokes the function with
  an API Gateway proxy event, see apigateway.py);
- local control routes (/_local/...), registered by whoever needs one with
  `router.add(method, path, handler)`: the stack's own drain/health/schedules, and
  later the provider sandbox, without editing this module.

A handler is any callable `(request, path_params) -> Response`. An observer
(`router.observe(callback)`) is told of every routed request, `callback(request,
route)`, before its handler runs: the provider sandbox uses it to learn what a member
wrote in a signed push to our webhooks, whoever posted it.

Matching follows API Gateway: the most specific path wins (a literal segment beats
{param}, which beats a greedy {proxy+}), then the method. What no route matches is
answered as the API that would have received it: an HTTP API says 404
`{"message": "Not Found"}` for an unknown path or method, a REST API 403
`{"message": "Missing Authentication Token"}`; local control routes answer 404 / 405.
Any method and any malformed request get JSON, never http.server's HTML pages.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 10 * 1024 * 1024  # API Gateway's payload limit


@dataclass
class Request:
    """An HTTP request as received: raw path, raw query, headers in order, raw body."""

    method: str
    path: str  # percent-encoded, without the query string
    raw_query: str
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    received_at: float = field(default_factory=time.time)

    def header(self, name: str) -> str | None:
        """The last value of a header, matched case-insensitively."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return values[-1] if values else None

    @property
    def query(self) -> list[tuple[str, str]]:
        """Decoded query parameters in order, repeated names kept."""
        return parse_qsl(self.raw_query, keep_blank_values=True)

    def json(self) -> Any:
        """The body parsed as JSON (None when empty); ValueError if it is not JSON."""
        return json.loads(self.body) if self.body.strip() else None


@dataclass
class Response:
    """What the server writes back; headers may repeat (Set-Cookie)."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, data: Any, headers: list[tuple[str, str]] | None = None) -> Response:
        """A JSON response."""
        return cls(status, json.dumps(data, default=str).encode(),
                   [("Content-Type", "application/json"), *(headers or [])])


Handler = Callable[[Request, dict[str, str]], Response]
Observer = Callable[[Request, "Route"], None]


class NoRoute(Exception):
    """No route matches; `response` is what the API that owns the path would answer."""

    def __init__(self, status: int, message: str, allowed: list[str] | None = None):
        super().__init__(status)
        self.status = status
        headers = [("Allow", ", ".join(allowed))] if allowed else []
        self.response = Response.json(status, {"message": message}, headers)


_HTTP_API_MISS = (404, "Not Found")
_REST_API_MISS = (403, "Missing Authentication Token")


@dataclass(frozen=True)
class Route:
    """One method + path template, e.g. PUT /members/{member_id}/consents/{channel}."""

    method: str  # upper case, "ANY" for every method
    path: str
    handler: Handler
    description: str = ""
    api_kind: str | None = None  # "Api" (REST), "HttpApi", or None for a local control route

    @property
    def segments(self) -> tuple[str, ...]:
        """The template's path segments."""
        return _segments(self.path)

    def specificity(self) -> tuple[int, ...]:
        """Sort key: smaller is more specific (literal 0, {param} 1, {proxy+} 2)."""
        return tuple(2 if s.endswith("+}") else 1 if s.startswith("{") else 0 for s in self.segments)

    def match_path(self, path: str) -> dict[str, str] | None:
        """Path parameters (still percent-encoded) if `path` fits the template."""
        template, actual = self.segments, _segments(path)
        params: dict[str, str] = {}
        for index, segment in enumerate(template):
            if segment.startswith("{") and segment.endswith("+}"):
                rest = actual[index:]
                if not rest:
                    return None
                params[segment[1:-2]] = "/".join(rest)
                return params
            if index >= len(actual):
                return None
            if segment.startswith("{") and segment.endswith("}"):
                if not actual[index]:
                    return None
                params[segment[1:-1]] = actual[index]
            elif unquote(actual[index]) != segment:
                return None
        return params if len(actual) == len(template) else None


def _segments(path: str) -> tuple[str, ...]:
    stripped = path.strip("/")  # API Gateway ignores a trailing slash
    return tuple(stripped.split("/")) if stripped else ()


class Router:
    """The registry of routes; thread-safe to add to while serving."""

    def __init__(self) -> None:
        self._routes: list[Route] = []
        self._observers: list[Observer] = []
        self._lock = threading.Lock()

    def observe(self, observer: Observer) -> None:
        """Call `observer(request, route)` for every request a route matches, before the
        route's handler. An observer that raises is logged; the request goes on."""
        with self._lock:
            self._observers.append(observer)

    def notify(self, request: Request, route: Route) -> None:
        """Tell the observers of a routed request."""
        with self._lock:
            observers = list(self._observers)
        for observer in observers:
            try:
                observer(request, route)
            except Exception:
                log.exception("an observer of %s %s failed", request.method, request.path)

    def add(self, method: str, path: str, handler: Handler, description: str = "",
            api_kind: str | None = None) -> Route:
        """Register a route; ValueError if the same method and path already exist.
        `api_kind` ("Api" or "HttpApi") makes a miss on it answer as that API would."""
        route = Route(method.upper(), "/" + path.strip("/"), handler, description, api_kind)
        with self._lock:
            for existing in self._routes:
                if existing.method == route.method and existing.segments == route.segments:
                    raise ValueError(f"{route.method} {route.path} is already routed "
                                     f"to {existing.description or existing.handler}")
            self._routes.append(route)
        return route

    @property
    def routes(self) -> list[Route]:
        """A snapshot of the registered routes."""
        with self._lock:
            return list(self._routes)

    def match(self, method: str, path: str) -> tuple[Route, dict[str, str]]:
        """The route for a request and its path parameters; NoRoute if none."""
        routes = self.routes
        candidates = [(route, params) for route in routes
                      if (params := route.match_path(path)) is not None]
        if not candidates:
            kinds = {route.api_kind for route in routes if route.api_kind}
            if path.startswith("/_local/") or not kinds:
                raise NoRoute(404, "Not Found")
            raise NoRoute(*(_HTTP_API_MISS if "HttpApi" in kinds else _REST_API_MISS))
        # API Gateway picks the resource first (most specific path), then the method.
        best = min(route.specificity() for route, _ in candidates)
        on_resource = [(r, p) for r, p in candidates if r.specificity() == best]
        for wanted in (method.upper(), "ANY"):
            for route, params in on_resource:
                if route.method == wanted:
                    return route, params
        kind = on_resource[0][0].api_kind
        if kind == "HttpApi":
            raise NoRoute(*_HTTP_API_MISS)
        if kind == "Api":
            raise NoRoute(*_REST_API_MISS)
        raise NoRoute(405, "Method Not Allowed", sorted({route.method for route, _ in on_resource}))


class HttpServer:
    """A threaded HTTP/1.1 server on `host:port` that hands requests to a Router."""

    def __init__(self, router: Router, host: str = "127.0.0.1", port: int = 0):
        self.router = router
        self.host = host
        self.port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL, e.g. http://127.0.0.1:3000 (after start)."""
        if self._server is None:
            raise RuntimeError("the HTTP server is not running")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> HttpServer:
        """Bind and serve in a background thread; OSError if the port is taken."""
        router = self.router

        class RequestHandler(_RequestHandler):
            pass

        RequestHandler.router = router
        self._server = _Server((self.host, self.port), RequestHandler)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="http-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting requests and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a slow handler must not keep Ctrl-C waiting
    allow_reuse_address = True
    # socketserver's default backlog of 5 drops connections when a test or a demo
    # fires 20 requests at once, and each dropped SYN costs a 1 s retransmit.
    request_queue_size = 128


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as API Gateway offers
    router: Router

    def _dispatch(self) -> None:
        started = time.monotonic()
        try:
            request = self._read_request()
        except _TooLarge:
            self.close_connection = True  # the rest of the body is never read
            return self._send(Response.json(413, {"message": "Request Too Long"}))
        except ValueError as exc:
            self.close_connection = True
            return self._send(Response.json(400, {"message": str(exc)}))
        try:
            route, params = self.router.match(request.method, request.path)
        except NoRoute as exc:
            return self._send(exc.response)
        self.router.notify(request, route)
        try:
            response = route.handler(request, params)
        except Exception:  # a broken control route must not take the server down
            log.exception("%s %s failed", request.method, request.path)
            response = Response.json(500, {"message": "Internal server error"})
        self._send(response)
        target = "" if route.path.startswith("/_local/") else route.description
        log.info("%s %s -> %d (%.0f ms) %s", request.method, request.path, response.status,
                 (time.monotonic() - started) * 1000, target)

    def _read_request(self) -> Request:
        parts = urlsplit(self.path)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY_BYTES:
                raise _TooLarge()
            body = self.rfile.read(length) if length else b""
        return Request(method=self.command, path=parts.path or "/", raw_query=parts.query,
                       headers=list(self.headers.items()), body=body,
                       source_ip=self.client_address[0])

    def _read_chunked(self) -> bytes:
        chunks, total = [], 0
        while True:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            total += size
            if total > MAX_BODY_BYTES:
                raise _TooLarge()
            chunks.append(self.rfile.read(size))
            self.rfile.readline()

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        names = {name.lower() for name, _ in response.headers}
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                self.send_header(name, value)
        if "content-type" not in names and response.body:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    # Every method goes through the router (API Gateway answers unknown ones as unknown
    # routes), so http.server never answers with its HTML 501 page.
    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # Malformed request lines and headers: JSON like everything else, then close.
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # unparsed: answer with a status line anyway
            self.request_version = self.protocol_version
        try:
            self._send(Response.json(code, {"message": message or self.responses.get(code, ("Error",))[0]}))
        except OSError:
            pass

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)  # _dispatch logs one readable line per request


class _TooLarge(Exception):
    pass
