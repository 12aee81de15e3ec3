"""LocalStack: the whole local stack in this process, started and stopped as one.

    with LocalStack("template.yaml", port=0) as stack:
        requests.get(f"{stack.api_url}/catalog")

Start order: emulator, template (queue URLs need the emulator's address), resources,
runtime (environment, imports), routes, extensions, pollers, and the HTTP server
last, so that an answer from /_local/health means everything is up. The port is
reserved before the template is read, so that parameters can name the stack's own
URL (the provider sandbox's WhatsAppApiBase=http://127.0.0.1:<port>/_sandbox/whatsapp).

The provider sandbox (infra/local/sandbox) is on by default: `sandbox=False` leaves
it out.
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path
from typing import Protocol

from .apigateway import LambdaProxyIntegration
from .authorizer import LocalIssuer
from .aws_faults import AwsFaults
from .emulator import Emulator, time_scale_from_env
from .http import HttpServer, Request, Response, Router
from .iam import AccessControl
from .pollers import DRAIN_TIMEOUT, Pollers
from .resources import create_resources
from .runtime import FunctionRuntime
from .sandbox import BASE_PATHS, ProviderSandbox
from .schedules import ScheduleRunner, SimulatedClock, iso_utc
from .template import DEFAULT_STACK_NAME, ScheduleEvent, TemplateModel, load_template, read_template

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_TEMPLATE = REPO_ROOT / "template.yaml"


class Extension(Protocol):
    """Something that joins the stack at start (e.g. the provider sandbox): it may
    add routes with `stack.router.add(...)` and subscribe to `stack.clock`.

    It may also have `parameter_overrides(api_url) -> dict[str, str]`: template
    parameters it wants, given the URL the stack is about to serve on. The stack applies
    those the template declares, unless the caller overrides them itself."""

    def start(self, stack: LocalStack) -> None: ...

    def stop(self) -> None: ...


class LocalStack:
    """The emulator, the template's resources, functions, routes, pollers and
    schedules, on loopback. `port=0` picks a free port (see `api_url`).

    Resource names are "<stack_name>-<LogicalId>". moto keeps its state per process,
    so two stacks or emulators in one process share tables and queues: give them
    different stack names, or run the stack as a subprocess (testing.spawn_local_stack).

    `sandbox=True` (the default) adds a ProviderSandbox unless `extensions` holds one
    already (pass your own to choose its settings); it is then `stack.sandbox`.
    """

    def __init__(self, template_path: str | Path = DEFAULT_TEMPLATE, *, port: int = 3000,
                 host: str = "127.0.0.1", emulator_port: int = 0,
                 parameter_overrides: dict[str, str] | None = None,
                 time_scale: float | None = None, extensions: list[Extension] | None = None,
                 stack_name: str = DEFAULT_STACK_NAME, sandbox: bool = True):
        self.template_path = Path(template_path)
        self.stack_name = stack_name
        self.host = host
        self.port = port
        self.emulator_port = emulator_port
        self.parameter_overrides = parameter_overrides or {}
        self.time_scale = time_scale
        self.extensions = list(extensions or [])
        self.sandbox: ProviderSandbox | None = next(
            (e for e in self.extensions if isinstance(e, ProviderSandbox)), None)
        if sandbox and self.sandbox is None:
            self.sandbox = ProviderSandbox()
            self.extensions.append(self.sandbox)
        self.router = Router()
        self.clock = SimulatedClock()
        self.model: TemplateModel | None = None
        self.emulator: Emulator | None = None
        self.runtime: FunctionRuntime | None = None
        self.pollers: Pollers | None = None
        self.schedules: ScheduleRunner | None = None
        self._http: HttpServer | None = None
        self.issuer: LocalIssuer | None = None
        self.aws_faults: AwsFaults | None = None
        self._started_extensions: list[Extension] = []

    # -- addresses
    @property
    def api_url(self) -> str:
        """Base URL of the API, e.g. http://127.0.0.1:3000."""
        return self._http.url

    @property
    def emulator_url(self) -> str:
        """The AWS emulator's endpoint (what AWS_ENDPOINT_URL is set to)."""
        return self.emulator.url

    # -- lifecycle
    def start(self) -> LocalStack:
        """Start everything; on failure, stop what started and re-raise."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        scale = self.time_scale if self.time_scale is not None else time_scale_from_env()
        self.time_scale = scale
        self.emulator = Emulator(self.host, self.emulator_port, time_scale=scale).start()
        reservation, port = _reserve_port(self.host, self.port)
        try:
            self._start_on(port)
        finally:
            if reservation is not None:
                reservation.close()

    def _start_on(self, port: int) -> None:
        overrides = self._extension_overrides(f"http://{_loopback(self.host)}:{port}")
        self.model = load_template(self.template_path, parameter_overrides=overrides,
                                   stack_name=self.stack_name, sqs_endpoint=self.emulator.url)
        self.emulator.enforce(AccessControl(self.model))  # each function's IAM policies, always
        self.aws_faults = AwsFaults.from_env(region=self.model.region)  # off unless LOCAL_AWS_FAULTS says
        self.emulator.inject(self.aws_faults)
        create_resources(self.model, self.emulator.url)
        self.runtime = FunctionRuntime(self.model, self.emulator.url).start()
        self.pollers = Pollers(self.model, self.runtime, self.emulator.url, time_scale=self.time_scale)
        self.schedules = ScheduleRunner(self.model, self.runtime, self.drain, self.clock,
                                        queue_sends=self.emulator.sqs_sends)
        self.issuer = LocalIssuer(self.model)
        self._add_template_routes()
        self._add_control_routes()
        for extension in self.extensions:
            extension.start(self)
            self._started_extensions.append(extension)
        self.pollers.start()
        try:
            self._http = HttpServer(self.router, self.host, port).start()
        except OSError as exc:
            raise OSError(f"cannot listen on {self.host}:{port} ({exc.strerror}); "
                          "is another stack running? Try another port, e.g. make run PORT=3001") from exc
        log.info("local stack up: API %s, AWS emulator %s", self.api_url, self.emulator_url)

    def _extension_overrides(self, api_url: str) -> dict[str, str]:
        """The parameters: what extensions want (for parameters the template declares),
        then the caller's overrides, which win."""
        wanted: dict[str, str] = {}
        for extension in self.extensions:
            provide = getattr(extension, "parameter_overrides", None)
            if provide is not None:
                wanted.update(provide(api_url))
        if wanted:
            declared = read_template(self.template_path).get("Parameters") or {}
            wanted = {name: value for name, value in wanted.items() if name in declared}
        return {**wanted, **self.parameter_overrides}

    def stop(self) -> None:
        """Stop everything that started, in reverse order. Safe to call twice."""
        if self._http is not None:
            self._http.stop()
            self._http = None
        if self.pollers is not None:
            self.pollers.stop()
            self.pollers = None
        while self._started_extensions:
            self._started_extensions.pop().stop()
        if self.runtime is not None:
            self.runtime.stop()
            self.runtime = None
        if self.emulator is not None:
            self.emulator.stop()
            self.emulator = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- what the control endpoints do, callable directly from tests
    def drain(self, timeout: float = DRAIN_TIMEOUT) -> dict:
        """Wait for the consumed queues to empty; the counts (see Pollers.drain)."""
        return self.pollers.drain(timeout)

    def run_schedule(self, function: str, time: str, event: str | None = None) -> dict:
        """Run a function's schedule at an ISO 8601 time (see ScheduleRunner.run)."""
        return self.schedules.run(function, time, event)

    def health(self) -> dict:
        """What listens where: the body of GET /_local/health."""
        return {
            "status": "ok",
            "api_url": self.api_url,
            "emulator_url": self.emulator_url,
            "template": str(self.model.path),
            "stack_name": self.model.stack_name,
            "region": self.model.region,
            "time_scale": self.time_scale,
            "clock": iso_utc(self.clock.simulated) if self.clock.simulated else None,
            "functions": sorted(self.model.functions),
            "routes": [f"{r.method} {r.path}" for r in self.router.routes],
            "pollers": [f"{p.queue.logical_id} -> {p.function_id}" for p in self.pollers.pollers],
        }

    # -- routes
    def _add_template_routes(self) -> None:
        for function, event in self.model.api_events():
            integration = LambdaProxyIntegration(self.runtime, self.model, function.logical_id, event, self.issuer,
                                                 clock=self.clock.now)
            self.router.add(event.method, event.path, integration, function.logical_id, event.kind)

    def _add_control_routes(self) -> None:
        self.router.add("GET", "/_local/health",
                        lambda request, params: Response.json(200, self.health()), "what listens where")
        self.router.add("POST", "/_local/drain", self._handle_drain, "wait until the queues are empty")
        self.router.add("POST", "/_local/schedules/{function}", self.schedules.handle,
                        'run a schedule at {"time": "<ISO 8601>"}')
        for method in ("GET", "POST", "DELETE"):
            self.router.add(method, "/_local/aws-faults", self.aws_faults.handle,
                            'faults in a share of the functions\' AWS calls: {"share", "seed", "kinds"}')
        self.router.add("POST", "/_local/token", self.issuer.handle_token,
                        'an access token: {"subject", "scopes", "expires_in"}')
        self.router.add("GET", "/_local/jwks.json", lambda request, params: Response.json(200, self.issuer.jwks()),
                        "the local user pool's signing keys")

    def _handle_drain(self, request: Request, params: dict[str, str]) -> Response:
        try:
            body = request.json() or {}
            timeout = float(body.get("timeout", DRAIN_TIMEOUT))
        except (ValueError, TypeError, AttributeError):
            return Response.json(400, {"message": 'the body must be empty or {"timeout": <seconds>}'})
        return Response.json(200, self.drain(timeout))

    # -- the banner
    def banner(self) -> str:
        """A short readable summary of where everything listens."""
        routes = self.router.routes
        lines = [
            f"Local stack from {self.model.path.name} (stack {self.model.stack_name}, "
            f"{self.model.region}, SQS timers x{self.time_scale:g})",
            f"  API           {self.api_url}",
            f"  AWS emulator  {self.emulator_url}  (moto: AWS_ENDPOINT_URL={self.emulator_url})",
            "  Control",
        ]
        lines += [f"    {r.method:<6} {r.path:<54} {r.description}"
                  for r in routes if r.path.startswith("/_local/")]
        lines.append("  Routes")
        lines += [f"    {r.method:<6} {r.path:<54} {r.description}"
                  for r in routes if not r.path.startswith(("/_local/", "/_sandbox/"))]
        if self.sandbox is not None and self.sandbox.sandbox is not None:
            lines.append("  Provider sandbox (fake provider APIs; GET /_local/outbox shows what they accepted)")
            lines += [f"    {name:<9} {self.api_url}{path}" for name, path in BASE_PATHS.items()]
        if self.pollers.pollers:
            lines.append("  Queues")
            lines += [f"    {p.queue.logical_id} -> {p.function_id} (batch {p.event.batch_size})"
                      for p in self.pollers.pollers]
        scheduled = [(f, e) for f in self.model.functions.values() for e in f.events_of(ScheduleEvent)]
        if scheduled:
            lines.append('  Schedules (run on demand: POST /_local/schedules/<Function> {"time": ...})')
            lines += [f"    {f.logical_id}.{e.name}  {e.expression} {e.timezone}" for f, e in scheduled]
        return "\n".join(lines)


def _reserve_port(host: str, port: int) -> tuple[socket.socket | None, int]:
    """For port 0, a free port held by a bound (not listening) socket until the HTTP
    server binds it too (both set SO_REUSEADDR), so nothing else takes it meanwhile."""
    if port != 0:
        return None, port
    reservation = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    reservation.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        reservation.bind((host, 0))
    except OSError:
        reservation.close()
        raise
    return reservation, reservation.getsockname()[1]


def _loopback(host: str) -> str:
    """The host to call a server listening on `host` at."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else "[::1]" if host == "::" else host
