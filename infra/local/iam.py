"""Least privilege, enforced locally: each function's AWS calls checked against its role.

Identity. Every function runs in this one process and shares the layer's cached boto3
clients, so credentials cannot tell functions apart. Instead `LocalFunction._call` runs
the handler inside `acting_as(logical_id)` (a context variable, so one per thread),
and `IdentityHeader`, installed by the runtime, wraps botocore's HTTP send: a request
to the emulator made while a function is acting carries `X-Local-Function: <logical
id>`. Nothing in the shared layer knows about it. Requests without the header are not
checked: they are AWS itself or the developer (test fixtures, the stack creating the
template's resources, the SQS pollers, the provider sandbox). A thread that a handler
starts itself does not inherit the variable, so its calls would go unchecked.

The pollers play Lambda's event source mapping. In AWS it polls with the function's
role, to which SAM attaches AWSLambdaSQSQueueExecutionRole for every SQS event
(template/policies.py); here the pollers send no header and are not checked, and the
function's role carries that managed policy as in AWS, so code that receives or
deletes messages itself is allowed exactly what it would be.

Decision. `AccessControl` maps the request to the (action, resource) pairs AWS would
check (iam_requests.py) and evaluates each against the function's policy documents
with moto's evaluator (moto.iam.access_control.IAMPolicy): an explicit Deny wins, else
an Allow is needed. Services the mapping does not know are checked by action alone.
A refusal is answered as the service answers it (DynamoDB 400
`com.amazon.coral.service#AccessDeniedException`, SQS 403 `AccessDenied`, Secrets
Manager and SSM 400 `AccessDeniedException`), so boto3 raises the ClientError it would
raise in AWS, and the stack logs a warning naming the function, action and resource.

LOCAL_IAM=report (for debugging a new function, off by default) lets refused calls
through and only logs them, so that one run lists every missing permission.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

from .iam_requests import MAPPED_SERVICES, ArnContext, AwsCall, parse_call, permissions
from .template import FunctionSpec, TemplateError, TemplateModel

log = logging.getLogger(__name__)

HEADER = "X-Local-Function"
_WSGI_HEADER = "HTTP_" + HEADER.upper().replace("-", "_")

_acting: contextvars.ContextVar[str | None] = contextvars.ContextVar("local_function", default=None)


@contextmanager
def acting_as(logical_id: str) -> Iterator[None]:
    """AWS calls made in this block (on this thread) are made by `logical_id`."""
    token = _acting.set(logical_id)
    try:
        yield
    finally:
        _acting.reset(token)


def acting_function() -> str | None:
    """The logical id of the function running on this thread, if any."""
    return _acting.get()


# ------------------------------------------------------------------ the header


class IdentityHeader:
    """Adds X-Local-Function to botocore's requests to `endpoint_url` while a function
    is acting. Process-wide (botocore's URLLib3Session.send) and counted, so that two
    runtimes in one process can install and uninstall it in any order."""

    _lock = threading.Lock()
    _endpoints: dict[str, int] = {}
    _original: Any = None

    def __init__(self, endpoint_url: str):
        self.endpoint_url = endpoint_url.rstrip("/")
        self._installed = False

    def install(self) -> IdentityHeader:
        """Start adding the header (idempotent)."""
        from botocore.httpsession import URLLib3Session

        cls = type(self)
        with cls._lock:
            if self._installed:
                return self
            if cls._original is None:
                cls._original = URLLib3Session.send
                original, endpoints = cls._original, cls._endpoints

                def send(session: URLLib3Session, request: Any) -> Any:
                    function = _acting.get()
                    if function is not None and _base(request.url) in endpoints:
                        request.headers[HEADER] = function
                    return original(session, request)

                URLLib3Session.send = send
            cls._endpoints[self.endpoint_url] = cls._endpoints.get(self.endpoint_url, 0) + 1
            self._installed = True
        return self

    def uninstall(self) -> None:
        """Stop adding the header to this endpoint; the last one out puts botocore back."""
        from botocore.httpsession import URLLib3Session

        cls = type(self)
        with cls._lock:
            if not self._installed:
                return
            self._installed = False
            left = cls._endpoints.get(self.endpoint_url, 1) - 1
            if left:
                cls._endpoints[self.endpoint_url] = left
            else:
                cls._endpoints.pop(self.endpoint_url, None)
            if not cls._endpoints and cls._original is not None:
                URLLib3Session.send = cls._original
                cls._original = None


def _base(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


# ------------------------------------------------------------------ the decision


@dataclass(frozen=True)
class Denial:
    """A refused call: who, what, on what, and whether a Deny statement said so."""

    function_id: str
    principal: str  # arn:aws:sts::<account>:assumed-role/<role>/<function name>
    action: str
    resource: str
    explicit: bool

    @property
    def message(self) -> str:
        """AWS's wording of an identity-based policy refusal."""
        why = ("with an explicit deny in an identity-based policy" if self.explicit
               else f"because no identity-based policy allows the {self.action} action")
        return (f"User: {self.principal} is not authorized to perform: {self.action} "
                f"on resource: {self.resource} {why}")


class RolePolicies:
    """One function's execution role, ready for moto's evaluator."""

    def __init__(self, function_id: str, principal: str, documents: tuple[dict, ...]):
        from moto.iam.access_control import IAMPolicy  # moto loads with the emulator only

        self.function_id = function_id
        self.principal = principal
        prepared = [_for_moto(document, f"{function_id}.Policies") for document in documents]
        self._policies = [IAMPolicy(json.dumps(document)) for document in prepared]
        self._by_action = [IAMPolicy(json.dumps(_any_resource(document))) for document in prepared]

    def decide(self, action: str, resource: str, by_action_only: bool = False) -> Denial | None:
        """None if the role allows `action` on `resource`, else the Denial. With
        `by_action_only`, every statement counts as if its Resource were "*"."""
        from moto.iam.access_control import PermissionResult

        allowed = False
        for policy in (self._by_action if by_action_only else self._policies):
            result = policy.is_action_permitted(action.lower(), resource)
            if result == PermissionResult.DENIED:
                return Denial(self.function_id, self.principal, action, resource, explicit=True)
            allowed = allowed or result == PermissionResult.PERMITTED
        return None if allowed else Denial(self.function_id, self.principal, action, resource, explicit=False)


def role_name(model: TemplateModel, function: FunctionSpec) -> str:
    """The role SAM creates for a function is "<Function>Role"; CloudFormation names it
    "<stack>-<Function>Role-<random>", locally without the random part."""
    return f"{model.stack_name}-{function.logical_id}Role"


def assumed_role_arn(model: TemplateModel, function: FunctionSpec) -> str:
    """Who a function's calls come from: its role, in a session named after it."""
    return f"arn:aws:sts::{model.account_id}:assumed-role/{role_name(model, function)}/{function.name}"


def iam_mode(environ: dict | None = None) -> str:
    """LOCAL_IAM: "enforce" (the default) or "report" (log refusals, let them through)."""
    mode = (environ if environ is not None else os.environ).get("LOCAL_IAM", "enforce").strip().lower() or "enforce"
    if mode not in ("enforce", "report"):
        raise ValueError(f"LOCAL_IAM must be enforce or report, got {mode!r}")
    return mode


Response = tuple[str, list[tuple[str, str]], bytes]


class AccessControl:
    """The emulator's IAM check: `access(environ, body)` answers the AccessDenied
    response for a request its function's role does not allow, None otherwise (and for
    requests that name no function)."""

    def __init__(self, model: TemplateModel, mode: str | None = None):
        self.model = model
        self.mode = mode or iam_mode()
        self.roles = {logical_id: RolePolicies(logical_id, assumed_role_arn(model, function), function.policies)
                      for logical_id, function in model.functions.items()}
        self.arns = ArnContext(model.account_id, {secret.name: secret.arn for secret in model.secrets.values()})

    def __call__(self, environ: dict, body: bytes) -> Response | None:
        function_id = environ.get(_WSGI_HEADER)
        if not function_id:
            return None
        call = parse_call(environ, body, self.model.region)
        if call is None:
            return None
        denial = self.check(function_id, call)
        if denial is None:
            return None
        if self.mode == "report":
            log.warning("IAM (LOCAL_IAM=report, let through): %s", denial.message)
            return None
        log.warning("IAM: %s", denial.message)
        return denied_response(call, denial)

    def check(self, function_id: str, call: AwsCall) -> Denial | None:
        """The first permission the call needs that the function's role lacks."""
        role = self.roles.get(function_id)
        if role is None:  # fail closed: a header naming a function this stack does not run
            return Denial(function_id, f"arn:aws:sts::{self.model.account_id}:assumed-role/unknown/{function_id}",
                          f"{call.service}:{call.operation or '*'}", "*", explicit=False)
        by_action = call.service not in MAPPED_SERVICES
        for action, resource in permissions(call, self.arns):
            denial = role.decide(action, resource, by_action_only=by_action)
            if denial is not None:
                return denial
        return None


# ------------------------------------------------------------------ the answer


def denied_response(call: AwsCall, denial: Denial) -> Response:
    """The service's own AccessDenied answer, in the request's protocol."""
    request_id = str(uuid.uuid4())
    message = denial.message
    if call.protocol == "query":
        code = "AccessDenied"
        body = ("<ErrorResponse><Error><Type>Sender</Type>"
                f"<Code>{code}</Code><Message>{_xml(message)}</Message></Error>"
                f"<RequestId>{request_id}</RequestId></ErrorResponse>").encode()
        return "403 Forbidden", [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], body
    if call.protocol == "rest":
        body = json.dumps({"message": message}).encode()
        return "403 Forbidden", [("Content-Type", "application/json"), ("x-amzn-RequestId", request_id),
                                 ("x-amzn-ErrorType", "AccessDeniedException")], body
    headers = [("x-amzn-RequestId", request_id)]
    if call.service == "dynamodb":
        status, version = "400 Bad Request", "1.0"
        document = {"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}
    elif call.service == "sqs":
        # JSON protocol, query compatible: botocore takes the code from x-amzn-query-error.
        status, version = "403 Forbidden", "1.0"
        document = {"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}
        headers.append(("x-amzn-query-error", "AccessDenied;Sender"))
    elif call.service == "secretsmanager":
        status, version = "400 Bad Request", "1.1"
        document = {"__type": "AccessDeniedException", "Message": message}
    else:
        status, version = "400 Bad Request", "1.1"
        document = {"__type": "AccessDeniedException", "message": message}
    body = json.dumps(document).encode()
    return status, [("Content-Type", f"application/x-amz-json-{version}"), *headers], body


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ------------------------------------------------------------------ moto's evaluator


_UNSUPPORTED = ("NotResource", "Condition", "Principal", "NotPrincipal")


def _for_moto(document: dict, where: str) -> dict:
    """The document as moto's evaluator reads it correctly.

    moto turns each pattern into a regex by replacing "*" with ".*" and nothing else,
    so "." in an ARN would match any character and IAM's "?" would mean "optional":
    here literals are escaped and "?" becomes "one character". IAM matches actions
    case-insensitively and resources case-sensitively: actions are lower-cased (and
    asked lower-cased). Elements moto would get wrong (Condition, NotResource, ...)
    are refused rather than evaluated wrongly."""
    statements = document.get("Statement")
    statements = [statements] if isinstance(statements, dict) else list(statements or [])
    prepared = []
    for statement in statements:
        bad = [key for key in _UNSUPPORTED if key in statement]
        if bad:
            raise TemplateError(f"{where}: {', '.join(bad)} in a policy statement is not supported by the "
                                "local stack's IAM check")
        if statement.get("Effect") not in ("Allow", "Deny"):
            raise TemplateError(f"{where}: a statement's Effect must be Allow or Deny, not {statement.get('Effect')!r}")
        if "Resource" not in statement or not ("Action" in statement or "NotAction" in statement):
            raise TemplateError(f"{where}: a statement needs Resource and Action (or NotAction)")
        converted = {"Effect": statement["Effect"], "Resource": _patterns(statement["Resource"], lower=False)}
        for key in ("Action", "NotAction"):
            if key in statement:
                converted[key] = _patterns(statement[key], lower=True)
        prepared.append(converted)
    return {"Version": "2012-10-17", "Statement": prepared}


def _any_resource(prepared: dict) -> dict:
    """The same statements on every resource: for services checked by action alone."""
    return {**prepared, "Statement": [{**statement, "Resource": "*"} for statement in prepared["Statement"]]}


def _patterns(value: Any, lower: bool) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [_pattern(str(item).lower() if lower else str(item)) for item in values]


def _pattern(text: str) -> str:
    # moto adds "^...$" and turns "*" into ".*"; everything else must already be a regex.
    return "".join("*" if part == "*" else "." if part == "?" else re.escape(part)
                   for part in re.split(r"([*?])", text) if part)
