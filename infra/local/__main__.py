"""python -m infra.local serve [--port 3000] [--demo 0|1] [--sandbox 0|1] [--template template.yaml]

Starts the local stack, prints where everything listens, optionally tells the demo
story, then serves until Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import traceback

from .runtime import EnvironmentConflict
from .stack import DEFAULT_TEMPLATE, LocalStack
from .template import TemplateError


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m infra.local`; returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)-7s %(name)s  %(message)s",
                        datefmt="%H:%M:%S")
    for noisy in ("botocore", "boto3", "urllib3"):  # credentials/endpoint chatter per client
        logging.getLogger(noisy).setLevel(logging.WARNING)
    stopping = threading.Event()
    # SIGTERM (docker stop, a test fixture's terminate()) stops as cleanly as Ctrl-C.
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    try:
        overrides = dict(_key_value(item) for item in args.parameter)
        stack = LocalStack(args.template, port=args.port, emulator_port=args.emulator_port,
                           parameter_overrides=overrides, time_scale=args.time_scale,
                           sandbox=bool(args.sandbox)).start()
    except (TemplateError, EnvironmentConflict, OSError, ValueError) as exc:
        print(f"local stack: {exc}", file=sys.stderr)
        return 2
    try:
        print(stack.banner(), flush=True)
        print(_token_help(stack), flush=True)
        if args.demo:
            _run_demo(stack.api_url)
        print("Serving; Ctrl-C to stop.", flush=True)
        while not stopping.wait(0.5):  # a timed wait keeps Ctrl-C responsive
            pass
    except KeyboardInterrupt:
        pass
    finally:
        print("Stopping the local stack.", flush=True)
        stack.stop()
    return 0


def _token_help(stack: LocalStack) -> str:
    """A ready access token (every scope, 12 hours) and how to get others."""
    if stack.issuer.issuer is None:
        return ""  # the template has no JWT authorizer: nothing needs a token
    token = stack.issuer.issue("local-operator", expires_in=43200)
    return "\n".join([
        "Access token (all four scopes, 12 h; every route but /webhooks/* needs one):",
        f"  export TOKEN={token}",
        f'  curl -H "Authorization: Bearer $TOKEN" {stack.api_url}/catalog',
        f"  others: curl -X POST {stack.api_url}/_local/token -d '{{\"subject\": \"shop\", "
        '\"scopes\": [\"loyalty/members.read\"], \"expires_in\": 3600}\'',
        ""])


def _run_demo(base_url: str) -> None:
    try:
        demo = importlib.import_module("infra.local.demo")
    except ModuleNotFoundError as exc:
        if exc.name != "infra.local.demo":
            raise  # the story exists but needs something missing: say so
        return
    # The story prints its own timeline; one access-log line per call would bury it.
    access_log = logging.getLogger("infra.local.http")
    level = access_log.level
    access_log.setLevel(logging.WARNING)
    try:
        demo.run(base_url)
    except Exception:  # a broken story must not take the stack down with it
        traceback.print_exc()
        print("demo story failed (above); the stack keeps serving.", flush=True)
    finally:
        access_log.setLevel(level)


def _key_value(text: str) -> tuple[str, str]:
    name, separator, value = text.partition("=")
    if not separator:
        raise ValueError(f"--parameter wants NAME=VALUE, got {text!r}")
    return name, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m infra.local", description=__doc__.split("\n\n")[1])
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the local stack until Ctrl-C")
    serve.add_argument("--port", type=int, default=3000, help="API port on 127.0.0.1 (default 3000)")
    serve.add_argument("--demo", type=int, choices=(0, 1), default=0,
                       help="1: tell the demo story once the stack is up")
    serve.add_argument("--sandbox", type=int, choices=(0, 1), default=1,
                       help="1: serve the provider sandbox (fake WhatsApp, WeChat, Twilio, Aliyun) and point "
                            "the template's provider parameters at it (default 1)")
    serve.add_argument("--template", default=str(DEFAULT_TEMPLATE), help="SAM template to run")
    serve.add_argument("--emulator-port", type=int, default=0,
                       help="AWS emulator port (default: a free one)")
    serve.add_argument("--time-scale", type=float, default=None,
                       help="speed of SQS timers, 0.01 = 100x faster (default: $LOCAL_TIME_SCALE or 0.01)")
    serve.add_argument("--parameter", action="append", default=[], metavar="NAME=VALUE",
                       help="override a template parameter (repeatable)")
    serve.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return parser


if __name__ == "__main__":
    sys.exit(main())
