"""SAM's part: Globals merged into each function, its events read, the model loaded."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from .model import (ApiEvent, FunctionSpec, JwtAuthorizer, ParameterSpec, QueueSpec, ScheduleEvent, SecretSpec,
                    SqsEvent, TableSpec, TemplateError, TemplateModel, TokenClient)
from .policies import function_policies
from .resolver import as_env_value, Resolver, truthy
from .source import read_template

DEFAULT_STACK_NAME = "loyalty-local"
DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"  # moto's default account: ARNs line up with its own

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
    parameters = {name: as_env_value(spec["Default"])
                  for name, spec in declared.items() if "Default" in spec}
    parameters.update({k: str(v) for k, v in (parameter_overrides or {}).items()})

    resolver = Resolver(template, stack_name=stack_name, region=region,
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
    model.token_clients, model.scopes = _token_clients(resolver)
    return model


def _queue(resolver: Resolver, logical_id: str, properties: dict) -> QueueSpec:
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


def _function(resolver: Resolver, logical_id: str, properties: dict, root: Path) -> FunctionSpec:
    code_uri = resolver.resolve(properties.get("CodeUri"))
    if not isinstance(code_uri, str):
        raise TemplateError(f"{logical_id}: only a local CodeUri folder is supported")
    environment = resolver.resolve((properties.get("Environment") or {}).get("Variables") or {})
    events = tuple(
        event
        for event_name, spec in (properties.get("Events") or {}).items()
        if (event := _event(resolver, logical_id, event_name, spec)) is not None)
    invoke_config = resolver.resolve(properties.get("EventInvokeConfig") or {})
    on_failure = (invoke_config.get("DestinationConfig") or {}).get("OnFailure") or {}
    return FunctionSpec(
        logical_id=logical_id,
        name=resolver.physical_name(logical_id),
        arn=resolver.get_att(logical_id, "Arn"),
        code_dir=(root / code_uri).resolve(),
        handler=str(resolver.resolve(properties.get("Handler", "app.handler"))),
        timeout=int(resolver.resolve(properties.get("Timeout", 3))),
        memory_size=int(resolver.resolve(properties.get("MemorySize", 128))),
        environment={key: as_env_value(value) for key, value in environment.items()},
        layer_dirs=_layer_dirs(resolver, properties.get("Layers") or [], root),
        events=events,
        policies=function_policies(resolver, logical_id, properties),
        async_retries=int(invoke_config.get("MaximumRetryAttempts", 2)),
        on_failure_arn=str(on_failure["Destination"]) if on_failure.get("Type") == "SQS" else None,
    )


def _layer_dirs(resolver: Resolver, layers: list, root: Path) -> tuple[Path, ...]:
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


def _event(resolver: Resolver, function_id: str, name: str, spec: dict):
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
            enabled=truthy(properties.get("Enabled", True)))
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
            enabled=truthy(properties.get("Enabled", True)) and state != "DISABLED",
            dead_letter_arn=(properties.get("DeadLetterConfig") or {}).get("Arn"))
    return None  # other event types (S3, SNS, ...) do not run locally


def _api_event(resolver: Resolver, name: str, kind: str, raw: dict) -> ApiEvent:
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
    authorizer, scopes = _route_auth(resolver, name, kind, api_properties.get("Auth") or {}, raw.get("Auth") or {})
    return ApiEvent(name=name, kind=kind, path=str(path),
                    method="ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method,
                    api_id=api_logical_id, stage=stage, authorizer=authorizer, scopes=scopes)


def _route_auth(resolver: Resolver, name: str, kind: str, api_auth: dict,
                route_auth: dict) -> tuple[JwtAuthorizer | None, tuple[str, ...]]:
    """The authorizer and scopes API Gateway applies to one route, as SAM wires them: the
    route's `Auth.Authorizer` (NONE = open), else the API's DefaultAuthorizer; the route's
    AuthorizationScopes, else the authorizer's own. Kinds the local stack cannot check
    (Lambda, IAM, REST Cognito authorizers) fail here rather than run open."""
    api_auth, route_auth = resolver.resolve(api_auth), resolver.resolve(route_auth)
    chosen = route_auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
    if chosen in (None, "NONE"):
        return None, ()
    if chosen == "AWS_IAM" or kind != "HttpApi":
        raise TemplateError(f"event {name}: authorizer {chosen} ({kind}) is not supported locally; "
                            "the local stack checks HTTP API JWT authorizers")
    spec = (api_auth.get("Authorizers") or {}).get(chosen)
    if not isinstance(spec, dict) or "JwtConfiguration" not in spec:
        raise TemplateError(f"event {name}: authorizer {chosen} is not a JWT authorizer of its API")
    jwt = spec["JwtConfiguration"]
    authorizer = JwtAuthorizer(name=str(chosen), issuer=str(jwt.get("issuer", "")),
                               audience=tuple(str(a) for a in jwt.get("audience") or ()),
                               identity_source=str(spec.get("IdentitySource", "$request.header.Authorization")))
    if not authorizer.issuer or not authorizer.audience:
        raise TemplateError(f"authorizer {chosen}: JwtConfiguration needs issuer and audience")
    scopes = route_auth.get("AuthorizationScopes", spec.get("AuthorizationScopes")) or ()
    return authorizer, tuple(str(scope) for scope in scopes)


def _token_clients(resolver: Resolver) -> tuple[dict[str, TokenClient], tuple[str, ...]]:
    """Cognito app clients (their ids and allowed scopes) and the resource servers' scopes."""
    clients: dict[str, TokenClient] = {}
    scopes: list[str] = []
    for logical_id, resource in resolver.resources.items():
        kind = resource.get("Type", "")
        properties = resolver.resolve(resource.get("Properties") or {}) if kind.startswith("AWS::Cognito::") else {}
        if kind == "AWS::Cognito::UserPoolClient":
            clients[logical_id] = TokenClient(
                logical_id, resolver.ref(logical_id), tuple(properties.get("AllowedOAuthScopes") or ()),
                tuple(properties.get("AllowedOAuthFlows") or ()))
        elif kind == "AWS::Cognito::UserPoolResourceServer":
            scopes += [f"{properties['Identifier']}/{s['ScopeName']}" for s in properties.get("Scopes") or ()]
    return clients, tuple(scopes)
