"""Read template.yaml into the small model the local stack runs.

The template is the single source of truth: the local stack creates its tables and
queues, routes its API events and feeds its queues from what this module reads. Only
the intrinsic functions the application uses are resolved; anything else fails with
a message that names it, rather than running with a silently wrong value.

    model = load_template("template.yaml")
    model.functions["OrderWebhookFunction"].environment["TABLE_NAME"]
"""

from __future__ import annotations

import base64
import copy
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DEFAULT_STACK_NAME = "loyalty-local"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account: ARNs line up with its own


class TemplateError(ValueError):
    """The template uses something the local stack cannot resolve or run."""


# --------------------------------------------------------------------------- YAML


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns CloudFormation short tags (!Ref, !Sub...) into their
    long form ({"Ref": ...}, {"Fn::Sub": ...}) and keeps dates as strings."""


# CloudFormation reads "2012-10-17" as a string; YAML 1.1 would make it a date.
_CfnLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_short_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    key = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if key == "Fn::GetAtt" and isinstance(value, str):
        value = value.split(".", 1)  # !GetAtt Queue.Arn is short for [Queue, Arn]
    return {key: value}


_CfnLoader.add_multi_constructor("!", _construct_short_tag)


def read_template(path: str | Path) -> dict:
    """Parse a CloudFormation/SAM template file into plain dicts (long-form intrinsics)."""
    with open(path, encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(document, dict) or "Resources" not in document:
        raise TemplateError(f"{path}: not a CloudFormation template (no Resources)")
    return document


# -------------------------------------------------------------------------- model


@dataclass(frozen=True)
class ApiEvent:
    """An `Api` (REST, payload 1.0) or `HttpApi` (payload 2.0) event of a function."""

    name: str
    kind: str  # "Api" or "HttpApi"
    path: str
    method: str  # upper case; "ANY" matches every method
    api_id: str  # logical id of the API resource (or SAM's implicit one)
    stage: str


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

    def queue_by_arn(self, arn: str) -> QueueSpec:
        """The queue with this ARN; TemplateError if the template has none."""
        for queue in self.queues.values():
            if queue.arn == arn:
                return queue
        raise TemplateError(f"no queue in the template has the ARN {arn}")

    def dead_letter_queues(self) -> list[QueueSpec]:
        """Queues that another queue's RedrivePolicy points at."""
        targets = {q.dead_letter_arn for q in self.queues.values() if q.dead_letter_arn}
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


# ---------------------------------------------------------------------- resolving

_NO_VALUE = object()  # AWS::NoValue: the property or list item disappears

# Which property names a resource explicitly; without it CloudFormation makes one up.
_NAME_PROPERTY = {
    "AWS::DynamoDB::Table": "TableName",
    "AWS::SQS::Queue": "QueueName",
    "AWS::SecretsManager::Secret": "Name",
    "AWS::SSM::Parameter": "Name",
    "AWS::Serverless::Function": "FunctionName",
    "AWS::Lambda::Function": "FunctionName",
    "AWS::Logs::LogGroup": "LogGroupName",
    "AWS::Serverless::LayerVersion": "LayerName",
}

_SUB_VARIABLE = re.compile(r"\$\{([^}]+)\}")


class _Resolver:
    """Evaluates intrinsic functions against one template and one set of parameters."""

    def __init__(self, template: dict, *, stack_name: str, region: str, account_id: str,
                 parameters: dict[str, str], sqs_endpoint: str | None):
        self.template = template
        self.resources: dict[str, dict] = template.get("Resources") or {}
        self.stack_name = stack_name
        self.region = region
        self.account_id = account_id
        self.parameters = parameters
        self.sqs_endpoint = sqs_endpoint or f"https://sqs.{region}.amazonaws.com"
        self._conditions: dict[str, bool] = {}
        self._resolving: set[str] = set()

    # -- entry point
    def resolve(self, node: Any) -> Any:
        """Return `node` with every intrinsic function replaced by its value."""
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, argument), = node.items()
            if key == "Ref":
                return self.ref(argument)
            if key == "Condition" and isinstance(argument, str):
                return self.condition(argument)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not _NO_VALUE}

    # -- Ref and GetAtt
    def ref(self, name: str) -> Any:
        pseudo = {
            "AWS::Region": self.region,
            "AWS::AccountId": self.account_id,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{self.region}:{self.account_id}"
                            f":stack/{self.stack_name}/local",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": _NO_VALUE,
        }
        if name in pseudo:
            return pseudo[name]
        if name in (self.template.get("Parameters") or {}):
            if name not in self.parameters:
                raise TemplateError(f"parameter {name} has no Default and no override")
            return self.parameters[name]
        if name in self.resources:
            return self._ref_resource(name)
        raise TemplateError(f"!Ref {name}: no such parameter, resource or pseudo parameter")

    def _ref_resource(self, logical_id: str) -> str:
        kind = self.resources[logical_id].get("Type", "")
        name = self.physical_name(logical_id)
        if kind == "AWS::SQS::Queue":
            return self.queue_url(name)
        if kind == "AWS::SecretsManager::Secret":
            return self.arn("secretsmanager", f"secret:{name}")
        if kind in ("AWS::Serverless::LayerVersion", "AWS::Lambda::LayerVersion"):
            return self.arn("lambda", f"layer:{name}:1")
        if kind in ("AWS::Serverless::Api", "AWS::Serverless::HttpApi",
                    "AWS::ApiGateway::RestApi", "AWS::ApiGatewayV2::Api"):
            return api_id(logical_id)
        # Tables, parameters, functions and log groups: !Ref gives the name.
        return name

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.resources.get(logical_id)
        if resource is None:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute}: no such resource")
        kind = resource.get("Type", "")
        name = self.physical_name(logical_id)
        values: dict[str, Any] = {}
        if kind == "AWS::SQS::Queue":
            values = {"Arn": self.arn("sqs", name), "QueueName": name,
                      "QueueUrl": self.queue_url(name)}
        elif kind == "AWS::DynamoDB::Table":
            values = {"Arn": self.arn("dynamodb", f"table/{name}")}
        elif kind in ("AWS::Serverless::Function", "AWS::Lambda::Function"):
            values = {"Arn": self.arn("lambda", f"function:{name}")}
        elif kind == "AWS::SSM::Parameter":
            properties = resource.get("Properties") or {}
            values = {"Value": self.resolve(properties.get("Value")),
                      "Type": self.resolve(properties.get("Type"))}
        elif kind == "AWS::Logs::LogGroup":
            values = {"Arn": self.arn("logs", f"log-group:{name}:*")}
        if attribute not in values:
            raise TemplateError(f"!GetAtt {logical_id}.{attribute} ({kind}) is not supported locally")
        return values[attribute]

    def physical_name(self, logical_id: str) -> str:
        """The name CloudFormation would give the resource: its name property if set,
        else "<stack>-<logical id>" (deterministic, unlike CloudFormation's suffix)."""
        if logical_id in self._resolving:
            raise TemplateError(f"circular reference through {logical_id}")
        resource = self.resources[logical_id]
        kind = resource.get("Type", "")
        properties = resource.get("Properties") or {}
        name_property = _NAME_PROPERTY.get(kind)
        if name_property and name_property in properties:
            self._resolving.add(logical_id)
            try:
                return str(self.resolve(properties[name_property]))
            finally:
                self._resolving.discard(logical_id)
        name = f"{self.stack_name}-{logical_id}"
        if kind == "AWS::SQS::Queue" and _truthy(self.resolve(properties.get("FifoQueue"))):
            name += ".fifo"
        return name

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{self.account_id}:{resource}"

    def queue_url(self, name: str) -> str:
        return f"{self.sqs_endpoint.rstrip('/')}/{self.account_id}/{name}"

    # -- conditions
    def condition(self, name: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"no condition named {name}")
            self._conditions[name] = bool(self.resolve(conditions[name]))
        return self._conditions[name]

    # -- Fn::*
    def _function(self, key: str, argument: Any) -> Any:
        if key == "Fn::GetAtt":
            parts = self.resolve(argument)
            if isinstance(parts, str):
                parts = parts.split(".", 1)
            return self.get_att(parts[0], parts[1])
        if key == "Fn::Sub":
            return self._sub(argument)
        if key == "Fn::If":
            condition, if_true, if_false = argument
            return self.resolve(if_true if self.condition(condition) else if_false)
        if key == "Fn::Equals":
            left, right = self.resolve(argument)
            return str(left) == str(right)
        if key == "Fn::Not":
            return not self.resolve(argument)[0]
        if key == "Fn::And":
            return all(self.resolve(argument))
        if key == "Fn::Or":
            return any(self.resolve(argument))
        if key == "Fn::Join":
            delimiter, items = self.resolve(argument)
            return delimiter.join(str(item) for item in items)
        if key == "Fn::Select":
            index, items = self.resolve(argument)
            return items[int(index)]
        if key == "Fn::Split":
            delimiter, text = self.resolve(argument)
            return text.split(delimiter)
        if key == "Fn::FindInMap":
            mapping, top, second = self.resolve(argument)
            try:
                return self.template["Mappings"][mapping][top][second]
            except KeyError:
                raise TemplateError(f"!FindInMap {mapping}.{top}.{second}: not found") from None
        if key == "Fn::Base64":
            return base64.b64encode(str(self.resolve(argument)).encode()).decode()
        if key == "Fn::GetAZs":
            return [f"{self.region}{zone}" for zone in "abc"]
        if key == "Fn::ToJsonString":
            return json.dumps(self.resolve(argument), separators=(",", ":"))
        if key == "Fn::Length":
            return len(self.resolve(argument))
        raise TemplateError(f"{key} is not supported by the local stack")

    def _sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            text, variables = argument[0], self.resolve(argument[1])
        else:
            text, variables = argument, {}

        def replace(match: re.Match) -> str:
            expression = match.group(1)
            if expression.startswith("!"):
                return "${" + expression[1:] + "}"  # ${!Literal} stays literal
            if expression in variables:
                return str(variables[expression])
            if "." in expression and not expression.startswith("AWS::"):
                logical_id, attribute = expression.split(".", 1)
                return str(self.get_att(logical_id, attribute))
            return str(self.ref(expression))

        return _SUB_VARIABLE.sub(replace, text)


def api_id(logical_id: str) -> str:
    """A stable, readable stand-in for an API Gateway id (AWS makes up 10 characters)."""
    return logical_id.lower()[:10]


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _as_env_value(value: Any) -> str:
    # CloudFormation hands environment variables to Lambda as strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# ------------------------------------------------------------------- SAM Globals


def _is_intrinsic(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and (
        next(iter(node)) in ("Ref", "Condition") or next(iter(node)).startswith("Fn::"))


def merge_globals(global_properties: dict, properties: dict) -> dict:
    """SAM's Globals rules: maps merge (the function wins), lists add up (globals
    first), anything else is overridden by the function."""
    merged = copy.deepcopy(global_properties)
    for key, value in properties.items():
        current = merged.get(key)
        if isinstance(current, dict) and isinstance(value, dict) and not (
                _is_intrinsic(current) or _is_intrinsic(value)):
            merged[key] = merge_globals(current, value)
        elif isinstance(current, list) and isinstance(value, list):
            merged[key] = current + value
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ------------------------------------------------------------------------ loading


def load_template(path: str | Path, *, parameter_overrides: dict[str, str] | None = None,
                  stack_name: str = DEFAULT_STACK_NAME, region: str = DEFAULT_REGION,
                  account_id: str = DEFAULT_ACCOUNT_ID,
                  sqs_endpoint: str | None = None) -> TemplateModel:
    """Read a SAM template and resolve what the local stack runs.

    `parameter_overrides` replace parameter defaults. `sqs_endpoint` is the base of
    queue URLs (!Ref Queue); pass the emulator's URL so they match what it answers.
    """
    path = Path(path).resolve()
    template = read_template(path)
    declared = template.get("Parameters") or {}
    unknown = set(parameter_overrides or {}) - set(declared)
    if unknown:
        raise TemplateError(f"unknown parameter override(s): {', '.join(sorted(unknown))}")
    parameters = {name: _as_env_value(spec["Default"])
                  for name, spec in declared.items() if "Default" in spec}
    parameters.update({k: str(v) for k, v in (parameter_overrides or {}).items()})

    resolver = _Resolver(template, stack_name=stack_name, region=region,
                         account_id=account_id, parameters=parameters,
                         sqs_endpoint=sqs_endpoint)
    model = TemplateModel(path=path, stack_name=stack_name, region=region,
                          account_id=account_id, parameters=parameters)
    function_globals = ((template.get("Globals") or {}).get("Function")) or {}

    for logical_id, resource in resolver.resources.items():
        if "Condition" in resource and not resolver.condition(resource["Condition"]):
            continue
        kind = resource.get("Type", "")
        properties = resource.get("Properties") or {}
        if kind == "AWS::Serverless::Function":
            model.functions[logical_id] = _function(
                resolver, logical_id, merge_globals(function_globals, properties), path.parent)
        elif kind == "AWS::DynamoDB::Table":
            name = resolver.physical_name(logical_id)
            model.tables[logical_id] = TableSpec(
                logical_id, name, resolver.get_att(logical_id, "Arn"), resolver.resolve(properties))
        elif kind == "AWS::SQS::Queue":
            model.queues[logical_id] = _queue(resolver, logical_id, properties)
        elif kind == "AWS::SecretsManager::Secret":
            model.secrets[logical_id] = SecretSpec(
                logical_id, resolver.physical_name(logical_id), resolver.ref(logical_id))
        elif kind == "AWS::SSM::Parameter":
            resolved = resolver.resolve(properties)
            model.ssm_parameters[logical_id] = ParameterSpec(
                logical_id, resolver.physical_name(logical_id),
                str(resolved.get("Type", "String")), str(resolved.get("Value", "")))
    return model


def _queue(resolver: _Resolver, logical_id: str, properties: dict) -> QueueSpec:
    resolved = resolver.resolve(properties)
    redrive = resolved.get("RedrivePolicy")
    if isinstance(redrive, str):
        redrive = json.loads(redrive)
    name = resolver.physical_name(logical_id)
    return QueueSpec(
        logical_id=logical_id, name=name, url=resolver.queue_url(name),
        arn=resolver.get_att(logical_id, "Arn"), properties=resolved,
        dead_letter_arn=(redrive or {}).get("deadLetterTargetArn"),
        max_receive_count=int(redrive["maxReceiveCount"]) if redrive else None)


def _function(resolver: _Resolver, logical_id: str, properties: dict, root: Path) -> FunctionSpec:
    code_uri = resolver.resolve(properties.get("CodeUri"))
    if not isinstance(code_uri, str):
        raise TemplateError(f"{logical_id}: only a local CodeUri folder is supported")
    environment = resolver.resolve((properties.get("Environment") or {}).get("Variables") or {})
    events = tuple(
        event
        for event_name, spec in (properties.get("Events") or {}).items()
        if (event := _event(resolver, logical_id, event_name, spec)) is not None)
    return FunctionSpec(
        logical_id=logical_id,
        name=resolver.physical_name(logical_id),
        arn=resolver.get_att(logical_id, "Arn"),
        code_dir=(root / code_uri).resolve(),
        handler=str(resolver.resolve(properties.get("Handler", "app.handler"))),
        timeout=int(resolver.resolve(properties.get("Timeout", 3))),
        memory_size=int(resolver.resolve(properties.get("MemorySize", 128))),
        environment={key: _as_env_value(value) for key, value in environment.items()},
        layer_dirs=_layer_dirs(resolver, properties.get("Layers") or [], root),
        events=events,
    )


def _layer_dirs(resolver: _Resolver, layers: list, root: Path) -> tuple[Path, ...]:
    # Only layers built from this template have local code; a published layer ARN
    # has nothing to put on sys.path, so the function must not need it locally.
    dirs = []
    for layer in layers:
        if isinstance(layer, dict) and "Ref" in layer and layer["Ref"] in resolver.resources:
            properties = resolver.resources[layer["Ref"]].get("Properties") or {}
            content = resolver.resolve(properties.get("ContentUri") or properties.get("Content"))
            if isinstance(content, str):
                dirs.append((root / content).resolve())
    return tuple(dirs)


def _event(resolver: _Resolver, function_id: str, name: str, spec: dict):
    kind = spec.get("Type")
    raw = spec.get("Properties") or {}
    if kind in ("Api", "HttpApi"):
        return _api_event(resolver, name, kind, raw)
    properties = resolver.resolve(raw)
    if kind == "SQS":
        window = float(properties.get("MaximumBatchingWindowInSeconds", 0))
        return SqsEvent(
            name=name, queue_arn=str(properties["Queue"]),
            batch_size=int(properties.get("BatchSize", 10)), batching_window=window,
            report_batch_item_failures="ReportBatchItemFailures" in (
                properties.get("FunctionResponseTypes") or []),
            enabled=_truthy(properties.get("Enabled", True)))
    if kind in ("Schedule", "ScheduleV2"):
        text = properties.get("Input")
        if text is not None and not isinstance(text, str):
            text = json.dumps(text)
        state = str(properties.get("State", "ENABLED")).upper()
        return ScheduleEvent(
            name=name, kind=kind,
            expression=str(properties.get("Schedule") or properties.get("ScheduleExpression")),
            timezone=str(properties.get("ScheduleExpressionTimezone", "UTC")),
            input=text,
            schedule_name=str(properties.get("Name") or f"{resolver.stack_name}-{function_id}{name}"),
            enabled=_truthy(properties.get("Enabled", True)) and state != "DISABLED")
    return None  # other event types (S3, SNS, ...) do not run locally


def _api_event(resolver: _Resolver, name: str, kind: str, raw: dict) -> ApiEvent:
    id_key = "RestApiId" if kind == "Api" else "ApiId"
    reference = raw.get(id_key)
    if isinstance(reference, dict) and "Ref" in reference:
        api_logical_id = reference["Ref"]
    else:  # SAM's implicit API
        api_logical_id = "ServerlessRestApi" if kind == "Api" else "ServerlessHttpApi"
    api_properties = (resolver.resources.get(api_logical_id) or {}).get("Properties") or {}
    default_stage = "Prod" if kind == "Api" else "$default"
    stage = str(resolver.resolve(api_properties.get("StageName", default_stage)))
    path = resolver.resolve(raw.get("Path"))
    method = resolver.resolve(raw.get("Method"))
    if kind == "HttpApi" and path is None:  # SAM: no Path/Method is the $default route
        path, method = "/{proxy+}", "ANY"
    if not path or not method:
        raise TemplateError(f"{kind} event {name} needs Path and Method")
    method = str(method).upper()
    return ApiEvent(name=name, kind=kind, path=str(path),
                    method="ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
                    api_id=api_logical_id, stage=stage)
