"""Run the template's functions in this process, the way Lambda would call them.

Each function's entry point (functions/<name>/app.py) is imported once, under a
module name of its own, so that two `app.py` files never shadow each other. The
shared layer folders go on sys.path, as Lambda puts layers on /opt/python.

Environment: one process means one os.environ. It holds the union of every
function's variables (the template's Globals make them mostly the same) and an
error is raised if two functions disagree on a value, rather than letting one of them
silently run with the other's. Plus the AWS variables that point boto3 at the
emulator with dummy credentials, so nothing can reach a real AWS account.

Handlers run concurrently on threads, sharing module globals: unlike Lambda, where
each concurrent call has its own container. To keep lazy initialisation (a cached
client, a settings object) from racing, a function's first call runs alone; Powertools'
event handler keeps the request it resolves per thread here (resolver_state.py).

Each call runs as its function (iam.acting_as), and the runtime installs the header
that tells the emulator which function makes an AWS call (iam.IdentityHeader), so
that its IAM policies can be enforced.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from . import resolver_state
from .iam import IdentityHeader, acting_as
from .template import FunctionSpec, TemplateModel

log = logging.getLogger(__name__)

# Verbosity is the developer's choice, not the template's: these keep the value the
# shell gives them (e.g. POWERTOOLS_LOG_LEVEL=DEBUG make run). Every other template
# variable wins over the shell, so a stale export cannot point a handler elsewhere.
SHELL_WINS = ("POWERTOOLS_LOG_LEVEL", "POWERTOOLS_LOGGER_LOG_EVENT", "POWERTOOLS_DEV")

# Variables that would send boto3 to a real account or a missing profile.
_REMOVED_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN",
                          "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")


class EnvironmentConflict(RuntimeError):
    """Two functions set the same environment variable to different values."""


def function_environment(model: TemplateModel) -> dict[str, str]:
    """The union of all functions' resolved environment variables."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for function in model.functions.values():
        for name, value in function.environment.items():
            if name in merged and merged[name] != value:
                raise EnvironmentConflict(
                    f"{owner[name]} sets {name}={merged[name]!r} but {function.logical_id} "
                    f"sets {name}={value!r}; the local stack runs every function in one "
                    "process, so they must agree")
            merged[name] = value
            owner.setdefault(name, function.logical_id)
    return merged


def aws_environment(endpoint_url: str, region: str) -> dict[str, str]:
    """The variables that send every boto3 client to the emulator."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        # Tracing: Active has no X-Ray daemon to talk to on this machine.
        "POWERTOOLS_TRACE_DISABLED": "true",
    }


class EnvironmentPatch:
    """Sets variables in os.environ and, on restore(), puts back what was there."""

    def __init__(self, variables: Mapping[str, str], remove: tuple[str, ...] = _REMOVED_AWS_VARIABLES):
        self.variables = dict(variables)
        self._remove = remove
        self._saved: dict[str, str | None] = {}

    def apply(self) -> EnvironmentPatch:
        """Write the variables into os.environ (and drop the removed ones)."""
        for name in (*self.variables, *self._remove):
            self._saved.setdefault(name, os.environ.get(name))
        for name in self._remove:
            os.environ.pop(name, None)
        os.environ.update(self.variables)
        return self

    def restore(self) -> None:
        """Undo apply()."""
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()


@dataclass
class LambdaContext:
    """The context object Lambda passes to a handler (the parts handlers use)."""

    function_name: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    timeout_seconds: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    identity: Any = None
    client_context: Any = None
    _started: float = field(default_factory=time.monotonic, repr=False)

    @property
    def log_group_name(self) -> str:
        """The function's CloudWatch log group name."""
        return f"/aws/lambda/{self.function_name}"

    @property
    def log_stream_name(self) -> str:
        """A log stream name in Lambda's format."""
        return time.strftime("%Y/%m/%d/[$LATEST]") + "local"

    def get_remaining_time_in_millis(self) -> int:
        """Milliseconds left before the function's Timeout (never below 0)."""
        elapsed = time.monotonic() - self._started
        return max(0, int((self.timeout_seconds - elapsed) * 1000))


class LocalFunction:
    """One imported function: its spec and its handler."""

    def __init__(self, spec: FunctionSpec, handler: Callable[[Any, LambdaContext], Any]):
        self.spec = spec
        self.handler = handler
        self._first_call = threading.Lock()
        self._warm = False

    def invoke(self, event: Any) -> Any:
        """Call the handler with `event` and a fresh context; exceptions propagate."""
        if self._warm:
            return self._call(event)
        with self._first_call:  # the cold start runs alone, see the module docstring
            if not self._warm:
                try:
                    return self._call(event)
                finally:
                    self._warm = True
        return self._call(event)

    def _call(self, event: Any) -> Any:
        spec = self.spec
        context = LambdaContext(function_name=spec.name, invoked_function_arn=spec.arn,
                                memory_limit_in_mb=spec.memory_size, timeout_seconds=spec.timeout)
        started = time.monotonic()
        try:
            with acting_as(spec.logical_id):
                return self.handler(event, context)
        finally:
            elapsed = time.monotonic() - started
            log.debug("%s %s took %.1f ms", spec.logical_id, context.aws_request_id, elapsed * 1000)
            if elapsed > spec.timeout:
                # Lambda would have killed it; a thread cannot be, so say it loudly.
                log.warning("%s ran %.1f s, over its Timeout of %d s: in AWS it would "
                            "have been stopped", spec.logical_id, elapsed, spec.timeout)


class FunctionRuntime:
    """Imports every function of the template and invokes them by logical id."""

    def __init__(self, model: TemplateModel, endpoint_url: str):
        self.model = model
        self.endpoint_url = endpoint_url
        self.functions: dict[str, LocalFunction] = {}
        self._environment: EnvironmentPatch | None = None
        self._added_paths: list[str] = []
        self._identity = IdentityHeader(endpoint_url)

    def environment(self) -> dict[str, str]:
        """Every variable start() puts in os.environ."""
        shell = {name: os.environ[name] for name in SHELL_WINS if name in os.environ}
        return {**function_environment(self.model), **shell,
                **aws_environment(self.endpoint_url, self.model.region)}

    def start(self) -> FunctionRuntime:
        """Set the environment, put layers on sys.path and import every handler."""
        self._environment = EnvironmentPatch(self.environment()).apply()
        self._identity.install()
        resolver_state.apply()   # Powertools' current request, one per thread (resolver_state.py)
        for function in self.model.functions.values():
            for layer_dir in function.layer_dirs:
                if str(layer_dir) not in sys.path:
                    sys.path.insert(0, str(layer_dir))
                    self._added_paths.append(str(layer_dir))
        for logical_id, spec in self.model.functions.items():
            self.functions[logical_id] = LocalFunction(spec, _import_handler(spec))
        return self

    def stop(self) -> None:
        """Put os.environ and sys.path back and forget the imported entry points."""
        for logical_id in self.functions:
            sys.modules.pop(_module_name(logical_id), None)
        self.functions.clear()
        for path in self._added_paths:
            if path in sys.path:
                sys.path.remove(path)
        self._added_paths.clear()
        self._identity.uninstall()
        if self._environment is not None:
            self._environment.restore()
            self._environment = None

    def invoke(self, logical_id: str, event: Any) -> Any:
        """Invoke a function by logical id; its exceptions propagate to the caller."""
        return self.functions[logical_id].invoke(event)


def _module_name(logical_id: str) -> str:
    return f"_local_function_{logical_id}"


def _import_handler(spec: FunctionSpec) -> Callable:
    module_path, _, attribute = spec.handler.rpartition(".")
    source = spec.code_dir / (module_path.replace(".", "/") + ".py")
    if not source.is_file():
        raise FileNotFoundError(
            f"{spec.logical_id}: Handler {spec.handler!r} needs {source}, which does not exist")
    module = _import_file(_module_name(spec.logical_id), source)
    handler = getattr(module, attribute, None)
    if not callable(handler):
        raise AttributeError(f"{spec.logical_id}: {source} has no function {attribute!r}")
    return handler


def _import_file(name: str, source: Path) -> ModuleType:
    module_spec = importlib.util.spec_from_file_location(name, source)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module  # dataclasses and pickling look the module up by name
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module
