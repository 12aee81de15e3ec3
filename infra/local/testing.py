"""Helpers for test fixtures.

End-to-end tests run the real thing, as `make run` does, in a subprocess:

    @pytest.fixture(scope="session")
    def stack():
        with spawn_local_stack() as running:
            yield running          # running.api_url

Integration tests need only AWS: the emulator plus the template's resources, with
this process's environment pointed at it (AWS_ENDPOINT_URL, TABLE_NAME, ...):

    @pytest.fixture(scope="session")
    def aws():
        with start_emulator() as session:
            yield session          # session.url, session.model, session.reset()
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from .emulator import Emulator, emulator_client
from .resources import create_resources
from .runtime import EnvironmentPatch, aws_environment, function_environment
from .stack import DEFAULT_TEMPLATE, REPO_ROOT
from .template import DEFAULT_STACK_NAME, TemplateModel, load_template


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalStackProcess:
    """`python -m infra.local serve` running in a subprocess."""

    def __init__(self, process: subprocess.Popen, port: int, log_path: Path):
        self.process = process
        self.port = port
        self.log_path = log_path
        self.api_url = f"http://127.0.0.1:{port}"

    def output(self) -> str:
        """Everything the process printed so far (stdout and stderr)."""
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM, wait for a clean exit (kill after `timeout`); the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> LocalStackProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def spawn_local_stack(port: int | None = None, *, template: str | Path | None = None,
                      demo: bool = False, timeout: float = 60.0,
                      env: dict[str, str] | None = None, sandbox: bool = True,
                      parameters: dict[str, str] | None = None) -> LocalStackProcess:
    """Start `python -m infra.local serve` on `port` (default: a free one) and return
    once GET /_local/health answers 200. RuntimeError with the process's output if it
    exits or is not healthy within `timeout` seconds. The provider sandbox is on unless
    `sandbox=False`; `parameters` override the template's (--parameter NAME=VALUE)."""
    port = port or free_port()
    command = [sys.executable, "-m", "infra.local", "serve", "--port", str(port),
               "--demo", "1" if demo else "0", "--sandbox", "1" if sandbox else "0",
               "--template", str(template or DEFAULT_TEMPLATE)]
    for name, value in (parameters or {}).items():
        command += ["--parameter", f"{name}={value}"]
    environment = {**os.environ, **(env or {})}
    paths = [str(REPO_ROOT / "layers" / "common"), str(REPO_ROOT)]
    environment["PYTHONPATH"] = os.pathsep.join(
        paths + [p for p in environment.get("PYTHONPATH", "").split(os.pathsep) if p and p not in paths])
    environment["PYTHONUNBUFFERED"] = "1"
    # A file rather than a pipe: nobody reads a pipe while the tests run, and a full
    # pipe would freeze the stack.
    log_file = tempfile.NamedTemporaryFile(prefix="local-stack-", suffix=".log", delete=False)
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=environment,
                               stdout=log_file, stderr=subprocess.STDOUT)
    log_file.close()
    running = LocalStackProcess(process, port, Path(log_file.name))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the local stack exited with {process.returncode}:\n{running.output()}")
        try:
            if requests.get(f"{running.api_url}/_local/health", timeout=1).status_code == 200:
                return running
        except requests.RequestException:
            pass
        time.sleep(0.1)
    running.stop()
    raise RuntimeError(f"the local stack was not healthy after {timeout} s:\n{running.output()}")


class EmulatorSession:
    """The emulator with the template's resources, and this process's environment
    pointed at it until stop()."""

    def __init__(self, emulator: Emulator, model: TemplateModel, environment: EnvironmentPatch | None):
        self.emulator = emulator
        self.model = model
        self._environment = environment

    @property
    def url(self) -> str:
        """The emulator's endpoint URL."""
        return self.emulator.url

    @property
    def environ(self) -> dict[str, str]:
        """The variables a handler would see (functions' and AWS's)."""
        return {**function_environment(self.model), **aws_environment(self.url, self.model.region)}

    def client(self, service: str):
        """A boto3 client for the emulator."""
        return emulator_client(service, self.url, self.model.region)

    def reset(self) -> None:
        """Empty everything: moto forgets all state (of every emulator in this process),
        then this template's resources are re-created."""
        self.emulator.reset()
        create_resources(self.model, self.url)

    def stop(self) -> None:
        """Stop the emulator and restore the environment."""
        if self._environment is not None:
            self._environment.restore()
            self._environment = None
        self.emulator.stop()

    def __enter__(self) -> EmulatorSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def start_emulator(template: str | Path | None = None, *, set_environ: bool = True,
                   parameter_overrides: dict[str, str] | None = None,
                   time_scale: float | None = None,
                   stack_name: str = DEFAULT_STACK_NAME) -> EmulatorSession:
    """Start the emulator on a free port, create the template's resources and (with
    `set_environ`) set os.environ as the functions see it: AWS_ENDPOINT_URL, region,
    dummy credentials and the template's variables (TABLE_NAME, ...).

    moto's state is per process: emulators started in one process share it (and
    reset() empties it for all of them). Resources are named "<stack_name>-<LogicalId>",
    so a different `stack_name` keeps a second set apart."""
    emulator = Emulator(time_scale=time_scale).start()
    try:
        model = load_template(template or DEFAULT_TEMPLATE, parameter_overrides=parameter_overrides,
                              stack_name=stack_name, sqs_endpoint=emulator.url)
        create_resources(model, emulator.url)
        patch = None
        if set_environ:
            patch = EnvironmentPatch({**function_environment(model),
                                      **aws_environment(emulator.url, model.region)}).apply()
    except BaseException:
        emulator.stop()
        raise
    return EmulatorSession(emulator, model, patch)
