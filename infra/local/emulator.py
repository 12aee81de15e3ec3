"""The AWS emulator: moto in server mode on loopback, speaking the real wire protocol.

Handlers, pollers and tests reach it exactly as they would reach AWS, through boto3
with AWS_ENDPOINT_URL pointing here. Three local adjustments, each for a reason:

- One lock around moto. moto's backends are not thread-safe (TransactWriteItems in
  particular corrupts state and slows to a crawl under concurrent requests), so every
  request runs alone. Requests still arrive concurrently over sockets.
- SQS long polling is done outside that lock. moto waits for messages *inside* the
  request, which under the lock would stall every other client for up to 20 s; here
  a ReceiveMessage is retried as short polls until a message arrives or its
  WaitTimeSeconds runs out, releasing the lock in between.
- SQS timers run on a time scale (LOCAL_TIME_SCALE, 0.01 by default): visibility
  timeouts and message delays take 1/100 of their real time, so a failed message
  comes back in 0.6 s instead of a minute and a local run stays quick.

And two additions: with `enforce(access)` (the local stack passes an iam.AccessControl)
every request is first checked against the calling function's IAM policies, and a
refused one is answered with the service's AccessDenied without reaching moto; with
`inject(faults)` (aws_faults.AwsFaults, off unless asked) a share of the functions'
requests is throttled, conflicted, reset or loses its answer, for soak tests.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import threading
import time
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlencode

import requests

from .aws_faults import AwsFaults, drop_connection

log = logging.getLogger(__name__)

DEFAULT_TIME_SCALE = 0.01
_LONG_POLL_INTERVAL = 0.1  # at most this long between short polls while a long poll waits (SQS timers)


def time_scale_from_env(environ: dict | None = None) -> float:
    """LOCAL_TIME_SCALE as a float (how fast SQS timers run; 1 = real time)."""
    text = (environ if environ is not None else os.environ).get("LOCAL_TIME_SCALE")
    if not text:
        return DEFAULT_TIME_SCALE
    value = float(text)
    if value <= 0:
        raise ValueError(f"LOCAL_TIME_SCALE must be positive, got {text!r}")
    return value


class Emulator:
    """moto's server on 127.0.0.1, serialized behind one lock.

    moto keeps its state in module globals: two emulators in one process serve the
    same tables and queues, and reset() empties them for both.

        with Emulator() as aws:
            boto3.client("sqs", endpoint_url=aws.url, ...)
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, time_scale: float | None = None):
        self.host = host
        self.port = port
        self.time_scale = time_scale
        self._server = None
        self._thread: threading.Thread | None = None
        self._previous_scale = 1.0
        self._app: SerializedApp | None = None

    @property
    def url(self) -> str:
        """The endpoint URL, e.g. http://127.0.0.1:50123 (after start)."""
        if self._server is None:
            raise RuntimeError("the emulator is not running")
        return f"http://{self.host}:{self._server.server_port}"

    def start(self) -> Emulator:
        """Start serving in a background thread; returns once the socket listens."""
        # moto is imported here, not at module import: it takes a second and pulls in
        # every AWS service model, which only a running stack needs.
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        class QuietRequestHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass  # one line per AWS call drowns the stack's own log

        from . import moto_patches
        moto_patches.apply()  # a TransactWriteItems that does not copy whole tables
        scale = self.time_scale if self.time_scale is not None else time_scale_from_env()
        self._previous_scale = _scale_sqs_timers(scale)
        app = self._app = SerializedApp(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(self.host, self.port, app, threaded=True,
                                   request_handler=QuietRequestHandler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name="aws-emulator", daemon=True)
        self._thread.start()
        log.debug("AWS emulator listening on %s (SQS time scale %s)", self.url, scale)
        return self

    def stop(self) -> None:
        """Stop serving and put moto's SQS timers back as they were before start()."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None
            _scale_sqs_timers(self._previous_scale)

    def enforce(self, access: Callable[[dict, bytes], Response | None] | None) -> None:
        """Check every request with `access(environ, body)` before moto sees it: an
        answer refuses the request with it (iam.AccessControl); None stops checking."""
        if self._app is None:
            raise RuntimeError("the emulator is not running")
        self._app.access = access

    def inject(self, faults: AwsFaults | None) -> None:
        """Let `faults` (aws_faults.AwsFaults) fail a share of the functions' requests; None: never."""
        if self._app is None:
            raise RuntimeError("the emulator is not running")
        self._app.faults = faults

    def sqs_sends(self) -> int:
        """How many SQS SendMessage / SendMessageBatch requests have arrived so far."""
        return self._app.sqs_sends if self._app is not None else 0

    def reset(self) -> None:
        """Forget every resource and item (moto's /moto-api/reset)."""
        requests.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


_client_lock = threading.Lock()
_client_session = None


def emulator_client(service: str, endpoint_url: str, region: str = "us-east-1"):
    """A boto3 client for the emulator, with dummy credentials of its own so it works
    whatever the caller's environment holds. Clients are thread-safe once made."""
    global _client_session
    import boto3
    from botocore.config import Config

    # One session keeps the service models it has loaded, which makes every client
    # after the first quicker; making clients from it is not thread-safe, hence the lock.
    with _client_lock:
        if _client_session is None:
            _client_session = boto3.session.Session()
        return _client_session.client(
            service, endpoint_url=endpoint_url, region_name=region,
            aws_access_key_id="testing", aws_secret_access_key="testing",
            config=Config(retries={"max_attempts": 2, "mode": "standard"}))


# ------------------------------------------------------------------ the WSGI layer

Response = tuple[str, list[tuple[str, str]], bytes]


class SerializedApp:
    """Wraps moto's WSGI app so that only one request runs inside moto at a time."""

    def __init__(self, app: Callable):
        self._app = app
        self._lock = threading.Lock()
        self.access: Callable[[dict, bytes], Response | None] | None = None
        self.faults: AwsFaults | None = None
        self._sends = itertools.count()
        self.sqs_sends = 0  # SQS SendMessage(Batch) requests seen: the schedules' "did it feed a queue?"
        self._sqs_changed = threading.Condition()   # notified after each SQS call that may free a message
        self._sqs_generation = 0

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        body = _read_body(environ)
        if _is_sqs_send(environ, body):
            self.sqs_sends = next(self._sends) + 1
        wait = _long_poll_seconds(environ, body)
        denied = self.access(environ, body) if self.access is not None else None
        fault = self.faults.decide(environ, body) if self.faults is not None and denied is None else None
        if denied is not None:
            status, headers, payload = denied
        elif fault is not None and fault.answer is not None:
            status, headers, payload = fault.answer
        elif fault is not None and fault.kind == "reset" and drop_connection(environ):
            return self._dropped(start_response)
        elif wait is None:
            status, headers, payload = self._call(environ, body)
        else:
            status, headers, payload = self._long_poll(environ, body, wait)
        if wait is None and _may_free_a_message(environ):
            with self._sqs_changed:
                self._sqs_generation += 1
                self._sqs_changed.notify_all()
        if fault is not None and fault.kind == "timeout" and drop_connection(environ):
            return self._dropped(start_response)
        start_response(status, headers)
        return [payload]

    @staticmethod
    def _dropped(start_response: Callable) -> Iterable[bytes]:
        # The socket is shut: werkzeug's write fails as a dropped connection, quietly.
        start_response("500 Internal Server Error", [("Content-Length", "0")])
        return [b""]

    def _call(self, environ: dict, body: bytes) -> Response:
        environ = dict(environ, **{"wsgi.input": io.BytesIO(body),
                                   "CONTENT_LENGTH": str(len(body))})
        captured: dict[str, Any] = {}

        def start_response(status: str, headers: list, exc_info: Any = None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        with self._lock:
            result = self._app(environ, start_response)
            try:  # read the whole response while still holding the lock
                payload = b"".join(result)
            finally:
                getattr(result, "close", lambda: None)()
        return captured["status"], captured["headers"], payload

    def _long_poll(self, environ: dict, body: bytes, wait: float) -> Response:
        """Short polls until a message comes or the wait ends. Between two, it sleeps until
        an SQS call that may have freed a message (a send, a visibility change), or at most
        _LONG_POLL_INTERVAL: a delay or a visibility timeout ends with no call at all."""
        short_poll = _with_wait_time_zero(environ, body)
        deadline = time.monotonic() + wait
        while True:
            seen = self._sqs_generation
            status, headers, payload = self._call(environ, short_poll)
            now = time.monotonic()
            if not status.startswith("200") or _has_messages(payload) or now >= deadline:
                return status, headers, payload
            with self._sqs_changed:
                if self._sqs_generation == seen:
                    self._sqs_changed.wait(min(_LONG_POLL_INTERVAL, deadline - now))


def _read_body(environ: dict) -> bytes:
    if environ.get("wsgi.input_terminated"):  # chunked: werkzeug ends the stream for us
        return environ["wsgi.input"].read()
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    return environ["wsgi.input"].read(length) if length else b""


def _long_poll_seconds(environ: dict, body: bytes) -> float | None:
    """The WaitTimeSeconds of an SQS ReceiveMessage, 0 if it has none; None for any
    other request. The JSON protocol (boto3) and the older query protocol both count."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target == "AmazonSQS.ReceiveMessage":
        try:
            return float(json.loads(body or b"{}").get("WaitTimeSeconds") or 0)
        except ValueError:
            return None
    form = environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")
    if form and not target:
        fields = dict(parse_qsl(body.decode("utf-8", "replace")))
        if fields.get("Action") == "ReceiveMessage":
            return float(fields.get("WaitTimeSeconds") or 0)
    return None


_FREEING = ("SendMessage", "SendMessageBatch", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch",
            "SetQueueAttributes", "StartMessageMoveTask")


def _may_free_a_message(environ: dict) -> bool:
    """An SQS call after which a waiting ReceiveMessage may find a message (the JSON
    protocol names it in X-Amz-Target; the query protocol's form is not read here, so
    its calls all count)."""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target.startswith("AmazonSQS.") and target.split(".", 1)[1] in _FREEING
    return environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded")


def _is_sqs_send(environ: dict, body: bytes) -> bool:
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return target in ("AmazonSQS.SendMessage", "AmazonSQS.SendMessageBatch")
    if not environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        return False
    return dict(parse_qsl(body.decode("utf-8", "replace"))).get("Action") in ("SendMessage", "SendMessageBatch")


def _with_wait_time_zero(environ: dict, body: bytes) -> bytes:
    # Always explicit: without WaitTimeSeconds moto would use the queue's
    # ReceiveMessageWaitTimeSeconds and wait inside the lock.
    if environ.get("HTTP_X_AMZ_TARGET") == "AmazonSQS.ReceiveMessage":
        return json.dumps({**json.loads(body or b"{}"), "WaitTimeSeconds": 0}).encode()
    return urlencode({**dict(parse_qsl(body.decode())), "WaitTimeSeconds": "0"}).encode()


def _has_messages(payload: bytes) -> bool:
    if payload.lstrip().startswith(b"{"):
        return bool(json.loads(payload).get("Messages"))
    return b"<Message>" in payload


# ------------------------------------------------------------------ SQS time scale

_ORIGINAL_TIMERS: dict[str, Callable] = {}
_current_scale = 1.0


def _scale_sqs_timers(scale: float) -> float:
    """Make moto's SQS visibility timeouts and delays last `scale` times as long;
    returns the previous scale.

    moto keeps whole seconds per message (`visible_at`, `delayed_until` in ms); these
    two methods are where every path sets them (receive, ChangeMessageVisibility,
    DelaySeconds, queue defaults), so scaling them scales everything consistently,
    including a visibility a handler sets itself. Process-wide: moto's Message class.
    """
    global _current_scale
    from moto.core.utils import unix_time_millis
    from moto.sqs.models import Message

    previous, _current_scale = _current_scale, scale
    if not _ORIGINAL_TIMERS:
        _ORIGINAL_TIMERS.update(change_visibility=Message.change_visibility, delay=Message.delay)
    if scale == 1.0:
        Message.change_visibility = _ORIGINAL_TIMERS["change_visibility"]
        Message.delay = _ORIGINAL_TIMERS["delay"]
        return previous

    def change_visibility(message: Message, visibility_timeout: int) -> None:
        message.visible_at = unix_time_millis() + int(visibility_timeout) * 1000 * scale

    def delay(message: Message, delay_seconds: int) -> None:
        message.delayed_until = unix_time_millis() + int(delay_seconds) * 1000 * scale

    Message.change_visibility = change_visibility
    Message.delay = delay
    return previous
