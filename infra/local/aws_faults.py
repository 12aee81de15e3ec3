"""Faults in the functions' AWS calls, injected by the emulator: what a soak needs.

    POST   /_local/aws-faults  {"share": 0.05, "seed": 7,
                                "kinds": {"throttle": 2, "conflict": 1, "reset": 1, "timeout": 1},
                                "functions": [...]?, "operations": ["dynamodb:UpdateItem", ...]?,
                                "count": n?}
    GET    /_local/aws-faults  the settings and what was injected (by kind, function, operation)
    DELETE /_local/aws-faults  off (the counts stay until the next POST)

or at start, LOCAL_AWS_FAULTS="share=0.05,seed=7,throttle=2,conflict=1,reset=1,timeout=1".

Only requests carrying X-Local-Function are touched: the functions' own calls (iam.py
adds the header). Tests, the stack creating its resources, the SQS pollers (Lambda's
event source mapping) and the provider sandbox are never disturbed. Each such request
fails with probability `share`, with a kind drawn by weight among those that apply to it
(iam_requests.parse_call says which service and operation it is). Answers are the
service's own, in its wire format, so boto3 raises what it would raise in AWS:

- throttle (DynamoDB, any operation): HTTP 400 ProvisionedThroughputExceededException or
  ThrottlingException. botocore retries both (DynamoDB: up to 10 times, with backoff), as
  it does in AWS: most never reach the code, and slow it down instead. A transaction is
  also throttled as DynamoDB reports it in a transaction, one time in three: a
  TransactionCanceledException whose reason is ThrottlingError, which botocore does not
  retry.
- conflict (DynamoDB TransactWriteItems, TransactGetItems): HTTP 400
  TransactionCanceledException whose CancellationReasons say TransactionConflict for one
  item and None for the others, as when another transaction holds an item. Not retried
  by botocore: the code sees it.
- reset (any service): the connection is closed before the request reaches the
  emulator. Nothing was done; botocore retries it.
- timeout (any service): the request is done, then the connection is closed before the
  answer leaves. The caller cannot know it worked, and botocore sends it again: a write
  applied twice, a message queued twice, as after a read timeout in AWS. (Locally the
  answer is lost at once, rather than after the client's 60 s read timeout.)

`seed` makes the draws repeatable for one sequence of requests; the functions' requests
arrive concurrently, so two runs see the same draws in a different order. `functions`
and `operations` narrow the requests that can fail, and `count` stops after that many
faults: {"share": 1, "kinds": {"timeout": 1}, "functions": ["SendSmsFunction"],
"operations": ["dynamodb:UpdateItem"], "count": 1} loses the answer of the next SMS
sender's UpdateItem, and only that one (a reproduction, not a soak).
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import uuid
from dataclasses import dataclass
from typing import Any

from .http import Request, Response
from .iam import HEADER
from .iam_requests import parse_call

KINDS = ("throttle", "conflict", "reset", "timeout")
_WSGI_HEADER = "HTTP_" + HEADER.upper().replace("-", "_")
_TRANSACTIONS = ("TransactWriteItems", "TransactGetItems")

WsgiResponse = tuple[str, list[tuple[str, str]], bytes]


@dataclass(frozen=True)
class Injection:
    """What to do to one request: answer `answer` instead of the service, or drop the
    connection before (reset) or after (timeout) the service handles it."""

    kind: str
    answer: WsgiResponse | None = None


class AwsFaults:
    """The emulator's fault injector: `decide(environ, body)` for every request."""

    def __init__(self, share: float = 0.0, seed: int | None = None, kinds: dict[str, float] | None = None,
                 region: str = "us-east-1"):
        self._lock = threading.Lock()
        self.region = region
        self.configure({"share": share, "seed": seed, "kinds": kinds or {kind: 1 for kind in KINDS}})

    # -- settings
    @classmethod
    def from_env(cls, environ: dict | None = None, region: str = "us-east-1") -> AwsFaults:
        """LOCAL_AWS_FAULTS="share=0.05,seed=7,throttle=2,conflict=1,reset=1,timeout=1"
        (kinds left out weigh 0 once any is given); unset: off."""
        text = (environ if environ is not None else os.environ).get("LOCAL_AWS_FAULTS", "").strip()
        faults = cls(region=region)
        if not text:
            return faults
        fields = dict(part.split("=", 1) for part in text.replace(" ", "").split(",") if "=" in part)
        unknown = set(fields) - {"share", "seed", *KINDS}
        if unknown:
            raise ValueError(f"LOCAL_AWS_FAULTS: unknown field(s) {', '.join(sorted(unknown))}")
        kinds = {kind: float(fields[kind]) for kind in KINDS if kind in fields} or None
        faults.configure({"share": float(fields.get("share", 0)),
                          "seed": int(fields["seed"]) if "seed" in fields else None, "kinds": kinds})
        return faults

    def configure(self, body: Any) -> None:
        """Apply {"share", "seed"?, "kinds"?}; ValueError (and nothing changed) if wrong.
        Counting starts again."""
        if not isinstance(body, dict):
            raise ValueError('the body must be {"share": 0.05, "seed": 7, "kinds": {"throttle": 1, ...}}')
        problems = [f"unknown field {name!r}" for name in body
                    if name not in ("share", "seed", "kinds", "functions", "operations", "count")]
        narrowing = {}
        for name in ("functions", "operations"):
            value = body.get(name)
            if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                problems.append(f"{name} must be a list of names")
            narrowing[name] = frozenset(value) if isinstance(value, list) and value else None
        count = body.get("count")
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            problems.append("count must be an integer >= 1")
        share = body.get("share", 0)
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share <= 1:
            problems.append("share must be a number from 0 to 1")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            problems.append("seed must be an integer")
        kinds = body.get("kinds") or {kind: 1 for kind in KINDS}
        if not isinstance(kinds, dict) or not kinds or set(kinds) - set(KINDS) or any(
                isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0 for w in kinds.values()):
            problems.append(f"kinds must map some of {', '.join(KINDS)} to weights >= 0")
        if problems:
            raise ValueError("; ".join(problems))
        with self._lock:
            self.share = float(share)
            self.seed = seed
            self.kinds = {kind: float(weight) for kind, weight in kinds.items() if weight > 0}
            self.functions, self.operations, self.count = narrowing["functions"], narrowing["operations"], count
            self._random = random.Random(seed)
            self._counts: dict[str, Any] = {"requests": 0, "injected": 0, "by_kind": {},
                                            "by_function": {}, "by_operation": {}}

    def off(self) -> None:
        """Stop injecting; what was injected stays countable."""
        with self._lock:
            self.share = 0.0

    def public(self) -> dict:
        """Settings and counts, as JSON."""
        with self._lock:
            narrowing = {name: sorted(value) for name, value in (("functions", self.functions),
                                                                  ("operations", self.operations)) if value}
            if self.count is not None:
                narrowing["count"] = self.count
            return {"share": self.share, "seed": self.seed, "kinds": dict(self.kinds), **narrowing,
                    "counts": json.loads(json.dumps(self._counts))}

    # -- the decision
    def decide(self, environ: dict, body: bytes) -> Injection | None:
        """The fault for one request to the emulator, or None to let it through."""
        function = environ.get(_WSGI_HEADER)
        if not function or self.share <= 0:
            return None
        call = parse_call(environ, body, self.region)
        if call is None or (self.functions is not None and function not in self.functions):
            return None
        operation = f"{call.service}:{call.operation or '?'}"
        if self.operations is not None and operation not in self.operations:
            return None
        applicable = {kind: weight for kind, weight in self.kinds.items()
                      if kind in ("reset", "timeout")
                      or (call.service == "dynamodb" and (kind == "throttle"
                                                          or (kind == "conflict" and call.operation in _TRANSACTIONS)))}
        with self._lock:
            self._counts["requests"] += 1
            if self.count is not None and self._counts["injected"] >= self.count:
                return None
            if not applicable or self._random.random() >= self.share:
                return None
            kind = self._random.choices(list(applicable), weights=list(applicable.values()))[0]
            variant = self._random.random()
            self._count(kind, function, operation)
        items = len(call.params.get("TransactItems") or [{}])
        if kind == "throttle" and call.operation in _TRANSACTIONS and variant >= 2 / 3:
            return Injection(kind, _transaction_cancelled(items, int((variant - 2 / 3) * 3 * items),
                                                          "ThrottlingError", "Throughput exceeds the current "
                                                          "capacity for this table"))
        if kind == "throttle":
            return Injection(kind, _throttled(variant < 1 / 3 if call.operation in _TRANSACTIONS else variant < 0.5))
        if kind == "conflict":
            return Injection(kind, _transaction_cancelled(items, int(variant * items), "TransactionConflict",
                                                          "Transaction is ongoing for the item"))
        return Injection(kind)

    def _count(self, kind: str, function: str, operation: str) -> None:
        counts = self._counts
        counts["injected"] += 1
        for section, key in (("by_kind", kind), ("by_function", function), ("by_operation", operation)):
            counts[section][key] = counts[section].get(key, 0) + 1

    # -- the control route
    def handle(self, request: Request, params: dict[str, str]) -> Response:
        """GET / POST / DELETE /_local/aws-faults."""
        if request.method == "GET":
            return Response.json(200, self.public())
        if request.method == "DELETE":
            self.off()
            return Response.json(200, self.public())
        try:
            self.configure(request.json() or {})
        except ValueError as exc:  # also a body that is not JSON
            return Response.json(400, {"message": str(exc)})
        return Response.json(200, self.public())


def drop_connection(environ: dict) -> bool:
    """Close the request's connection without an answer (the client sees it reset);
    False if the server gives no socket to close."""
    connection = environ.get("werkzeug.socket")
    if connection is None:
        return False
    try:
        connection.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already gone
    return True


def _dynamodb_error(document: dict) -> WsgiResponse:
    headers = [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-RequestId", str(uuid.uuid4()))]
    return "400 Bad Request", headers, json.dumps(document).encode()


def _throttled(provisioned: bool) -> WsgiResponse:
    if provisioned:
        return _dynamodb_error({
            "__type": "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
            "message": "The level of configured provisioned throughput for the table was exceeded. "
                       "Consider increasing your provisioning level with the UpdateTable API."})
    return _dynamodb_error({"__type": "com.amazon.coral.availability#ThrottlingException",
                            "message": "Rate of requests exceeds the allowed throughput."})


def _transaction_cancelled(items: int, failing: int, code: str, message: str) -> WsgiResponse:
    reasons = [{"Code": code, "Message": message} if index == failing else {"Code": "None"}
               for index in range(max(1, items))]
    codes = ", ".join(reason["Code"] for reason in reasons)
    return _dynamodb_error({
        "__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
        "message": f"Transaction cancelled, please refer cancellation reasons for specific reasons [{codes}]",
        "CancellationReasons": reasons})
