"""The small model of template.yaml that the local stack runs, keyed by logical id."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


class TemplateError(ValueError):
    """The template uses something the local stack cannot resolve or run."""


@dataclass(frozen=True)
class JwtAuthorizer:
    """An HTTP API's JWT authorizer: who may issue tokens and for which clients."""

    name: str
    issuer: str
    audience: tuple[str, ...]
    identity_source: str  # "$request.header.Authorization"

    @property
    def header(self) -> str:
        """The request header that carries the token."""
        return self.identity_source.removeprefix("$request.header.")


@dataclass(frozen=True)
class ApiEvent:
    """An `Api` (REST, payload 1.0) or `HttpApi` (payload 2.0) event of a function."""

    name: str
    kind: str  # "Api" or "HttpApi"
    path: str
    method: str  # upper case; "ANY" matches every method
    api_id: str  # logical id of the API resource (or SAM's implicit one)
    stage: str
    authorizer: JwtAuthorizer | None = None  # None: open (Authorizer: NONE, or no auth at all)
    scopes: tuple[str, ...] = ()  # the route's AuthorizationScopes: a token needs one of them


@dataclass(frozen=True)
class TokenClient:
    """A Cognito app client: its id (the token's client_id) and the scopes it may ask for."""

    logical_id: str
    client_id: str
    scopes: tuple[str, ...]
    flows: tuple[str, ...]


@dataclass(frozen=True)
class SqsEvent:
    """An `SQS` event source mapping of a function."""

    name: str
    queue_arn: str
    batch_size: int
    batching_window: float  # seconds
    report_batch_item_failures: bool
    enabled: bool


@dataclass(frozen=True)
class ScheduleEvent:
    """A `Schedule` (EventBridge rule) or `ScheduleV2` (EventBridge Scheduler) event."""

    name: str
    kind: str  # "Schedule" or "ScheduleV2"
    expression: str
    timezone: str  # IANA name, "UTC" unless ScheduleExpressionTimezone says otherwise
    input: str | None  # the JSON text given to the function, before substitution
    schedule_name: str
    enabled: bool
    dead_letter_arn: str | None = None  # DeadLetterConfig: where Scheduler puts what it could not deliver


@dataclass(frozen=True)
class FunctionSpec:
    """One AWS::Serverless::Function with SAM Globals applied and intrinsics resolved."""

    logical_id: str
    name: str  # the physical function name (what !Ref gives)
    arn: str
    code_dir: Path
    handler: str  # "app.handler"
    timeout: int
    memory_size: int
    environment: dict[str, str]
    layer_dirs: tuple[Path, ...]
    events: tuple[ApiEvent | SqsEvent | ScheduleEvent, ...]
    # The execution role's policy documents, resolved (template/policies.py).
    policies: tuple[dict, ...] = ()
    # EventInvokeConfig: asynchronous invocations (schedules) are retried this many times,
    # then their invocation record goes to the OnFailure queue, if there is one.
    async_retries: int = 2
    on_failure_arn: str | None = None

    @property
    def folder(self) -> str:
        """The function's folder name under functions/, e.g. "expiry_scan"."""
        return self.code_dir.name

    def events_of(self, kind: type) -> list:
        """This function's events of one class (ApiEvent, SqsEvent, ScheduleEvent)."""
        return [event for event in self.events if isinstance(event, kind)]


@dataclass(frozen=True)
class TableSpec:
    """An AWS::DynamoDB::Table; `properties` are resolved CloudFormation properties."""

    logical_id: str
    name: str
    arn: str
    properties: dict


@dataclass(frozen=True)
class QueueSpec:
    """An AWS::SQS::Queue; `properties` are resolved CloudFormation properties."""

    logical_id: str
    name: str
    url: str
    arn: str
    properties: dict
    dead_letter_arn: str | None
    max_receive_count: int | None


@dataclass(frozen=True)
class SecretSpec:
    """An AWS::SecretsManager::Secret (the local stack fills in local values)."""

    logical_id: str
    name: str
    arn: str  # a partial ARN (no random suffix): AWS and moto both accept it


@dataclass(frozen=True)
class ParameterSpec:
    """An AWS::SSM::Parameter with its template value."""

    logical_id: str
    name: str
    type: str
    value: str


@dataclass
class TemplateModel:
    """What the local stack needs from the template, keyed by logical id."""

    path: Path
    stack_name: str
    region: str
    account_id: str
    parameters: dict[str, str]
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    tables: dict[str, TableSpec] = field(default_factory=dict)
    queues: dict[str, QueueSpec] = field(default_factory=dict)
    secrets: dict[str, SecretSpec] = field(default_factory=dict)
    ssm_parameters: dict[str, ParameterSpec] = field(default_factory=dict)
    token_clients: dict[str, TokenClient] = field(default_factory=dict)
    scopes: tuple[str, ...] = ()  # every scope the user pools' resource servers define

    def api_events(self) -> list[tuple[FunctionSpec, ApiEvent]]:
        """Every route of the template with the function it invokes."""
        return [(function, event) for function in self.functions.values() for event in function.events_of(ApiEvent)]

    def authorizers(self) -> list[JwtAuthorizer]:
        """The distinct JWT authorizers the routes use."""
        found: dict[tuple[str, str], JwtAuthorizer] = {}
        for _, event in self.api_events():
            if event.authorizer is not None:
                found.setdefault((event.api_id, event.authorizer.name), event.authorizer)
        return list(found.values())

    def queue_by_arn(self, arn: str) -> QueueSpec:
        """The queue with this ARN; TemplateError if the template has none."""
        for queue in self.queues.values():
            if queue.arn == arn:
                return queue
        raise TemplateError(f"no queue in the template has the ARN {arn}")

    def dead_letter_queues(self) -> list[QueueSpec]:
        """Queues that another queue's RedrivePolicy, a schedule's DeadLetterConfig or a
        function's OnFailure destination points at."""
        targets = {q.dead_letter_arn for q in self.queues.values() if q.dead_letter_arn}
        for function in self.functions.values():
            if function.on_failure_arn:
                targets.add(function.on_failure_arn)
            targets.update(event.dead_letter_arn for event in function.events_of(ScheduleEvent))
        return [q for q in self.queues.values() if q.arn in targets]

    def find_function(self, name: str) -> FunctionSpec | None:
        """Find a function the way a person would name it: its logical id in any case
        (ExpiryScanFunction, expiryscanfunction), without the "Function" suffix
        (ExpiryScan), its folder (expiry_scan) or its physical name."""
        wanted = name.strip().lower()
        for function in self.functions.values():
            logical = function.logical_id.lower()
            names = {logical, function.folder.lower(), function.name.lower()}
            if logical.endswith("function"):
                names.add(logical[: -len("function")])
            if wanted in names:
                return function
        return None


