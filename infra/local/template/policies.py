"""SAM's part of IAM: a function's execution role, as the policy documents it holds.

SAM builds each function's role from its `Policies` property (when the function names
no `Role` of its own):

- an inline policy document (a map with `Statement`) is attached as it is;
- a policy template (`SQSSendMessagePolicy: {QueueName: ...}`) is expanded from SAM's
  definition: its `Ref`s to the template's own parameters take the given values;
- a string is an AWS managed policy, by name or ARN;
- `Fn::If` picks one of the above (or AWS::NoValue, nothing).

and adds on its own, whatever `Policies` says: AWSLambdaBasicExecutionRole (logs),
AWSXrayWriteOnlyAccess when `Tracing` is set and not `Disabled`, and for each `SQS`
event AWSLambdaSQSQueueExecutionRole (ReceiveMessage, DeleteMessage and
GetQueueAttributes on every queue: what the event source mapping polls with).

`function_policies` answers those documents with every intrinsic resolved, in that
order; infra/local/iam.py enforces them. Not modelled (a TemplateError says so): a
function's own `Role`, `PermissionsBoundary`; ignored: VpcConfig's managed policy,
DeadLetterQueue and EventInvokeConfig destinations (Lambda's own sends, not the code's).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from .model import TemplateError
from .resolver import Resolver, _NO_VALUE

# Copied from aws-sam-translator 1.115.0 (the version in .venv-sam, pinned by
# infra/sam-requirements.txt): samtranslator/policy_templates_data/policy_templates.json,
# "Definition" and "Parameters" of the templates the local stack supports. Copied, not
# read from .venv-sam at run time, so that the main virtualenv never depends on the SAM
# one; tests/unit/test_local_sam_policies.py checks the copy against that file.
SAM_POLICY_TEMPLATES: dict[str, dict[str, Any]] = {
    "AWSSecretsManagerGetSecretValuePolicy": {
        "Parameters": {"SecretArn": {}},
        "Definition": {"Statement": [{
            "Action": ["secretsmanager:GetSecretValue"],
            "Effect": "Allow",
            "Resource": {"Fn::Sub": ["${secretArn}", {"secretArn": {"Ref": "SecretArn"}}]},
        }]},
    },
    "SSMParameterReadPolicy": {
        "Parameters": {"ParameterName": {}},
        "Definition": {"Statement": [
            {"Action": ["ssm:DescribeParameters"], "Effect": "Allow", "Resource": "*"},
            {"Action": ["ssm:GetParameters", "ssm:GetParameter", "ssm:GetParametersByPath"],
             "Effect": "Allow",
             "Resource": {"Fn::Sub": [
                 "arn:${AWS::Partition}:ssm:${AWS::Region}:${AWS::AccountId}:parameter/${parameterName}",
                 {"parameterName": {"Ref": "ParameterName"}}]}},
        ]},
    },
    "SQSSendMessagePolicy": {
        "Parameters": {"QueueName": {}},
        "Definition": {"Statement": [{
            "Action": ["sqs:SendMessage*"],
            "Effect": "Allow",
            "Resource": {"Fn::Sub": ["arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${queueName}",
                                     {"queueName": {"Ref": "QueueName"}}]},
        }]},
    },
    "SQSPollerPolicy": {
        "Parameters": {"QueueName": {}},
        "Definition": {"Statement": [{
            "Action": ["sqs:ChangeMessageVisibility", "sqs:ChangeMessageVisibilityBatch", "sqs:DeleteMessage",
                       "sqs:DeleteMessageBatch", "sqs:GetQueueAttributes", "sqs:ReceiveMessage"],
            "Effect": "Allow",
            "Resource": {"Fn::Sub": ["arn:${AWS::Partition}:sqs:${AWS::Region}:${AWS::AccountId}:${queueName}",
                                     {"queueName": {"Ref": "QueueName"}}]},
        }]},
    },
    "DynamoDBCrudPolicy": {
        "Parameters": {"TableName": {}},
        "Definition": {"Statement": [{
            "Action": ["dynamodb:GetItem", "dynamodb:DeleteItem", "dynamodb:PutItem", "dynamodb:Scan",
                       "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:BatchGetItem",
                       "dynamodb:DescribeTable", "dynamodb:ConditionCheckItem"],
            "Effect": "Allow",
            "Resource": [
                {"Fn::Sub": ["arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${tableName}",
                             {"tableName": {"Ref": "TableName"}}]},
                {"Fn::Sub": ["arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${tableName}"
                             "/index/*", {"tableName": {"Ref": "TableName"}}]},
            ],
        }]},
    },
    "DynamoDBReadPolicy": {
        "Parameters": {"TableName": {}},
        "Definition": {"Statement": [{
            "Action": ["dynamodb:GetItem", "dynamodb:Scan", "dynamodb:Query", "dynamodb:BatchGetItem",
                       "dynamodb:DescribeTable"],
            "Effect": "Allow",
            "Resource": [
                {"Fn::Sub": ["arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${tableName}",
                             {"tableName": {"Ref": "TableName"}}]},
                {"Fn::Sub": ["arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/${tableName}"
                             "/index/*", {"tableName": {"Ref": "TableName"}}]},
            ],
        }]},
    },
}

# The AWS managed policies SAM attaches by itself, as AWS publishes them (the same
# documents as moto's copy in moto/iam/aws_managed_policies.py). Any other managed
# policy a template names is looked up in moto's copy.
IMPLIED_MANAGED_POLICIES: dict[str, dict[str, Any]] = {
    "AWSLambdaBasicExecutionRole": {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "*"}]},
    "AWSXrayWriteOnlyAccess": {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
                                      "xray:GetSamplingTargets", "xray:GetSamplingStatisticSummaries"],
        "Resource": ["*"]}]},
    "AWSLambdaSQSQueueExecutionRole": {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes",
                                      "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
        "Resource": "*"}]},
}

_AWS_MANAGED_ARN = "arn:aws:iam::aws:policy/"


def function_policies(resolver: Resolver, logical_id: str, properties: dict) -> tuple[dict, ...]:
    """The policy documents of the role SAM makes for one function (`properties` with
    Globals merged), intrinsics resolved: what `Policies` gives, then what SAM adds."""
    for unsupported in ("Role", "PermissionsBoundary"):
        if properties.get(unsupported) is not None:
            raise TemplateError(f"{logical_id}: {unsupported} is not supported by the local stack's IAM "
                                "check; give the function Policies instead")
    policies = properties.get("Policies") or []
    if not isinstance(policies, list):
        policies = [policies]
    # An EventInvokeConfig destination: SAM puts sqs:SendMessage on it in the role, first.
    documents = [_destination_policy(resolver, destination)
                 for destination in _invoke_destinations(resolver, properties)]
    for index, policy in enumerate(policies):
        document = policy_document(resolver, policy, f"{logical_id}.Policies[{index}]")
        if document is not None:
            documents.append(document)
    documents.append(copy.deepcopy(IMPLIED_MANAGED_POLICIES["AWSLambdaBasicExecutionRole"]))
    tracing = resolver.resolve(properties.get("Tracing"))
    if tracing and str(tracing) != "Disabled":
        documents.append(copy.deepcopy(IMPLIED_MANAGED_POLICIES["AWSXrayWriteOnlyAccess"]))
    if any((event or {}).get("Type") == "SQS" for event in (properties.get("Events") or {}).values()):
        documents.append(copy.deepcopy(IMPLIED_MANAGED_POLICIES["AWSLambdaSQSQueueExecutionRole"]))
    return tuple(documents)


def _invoke_destinations(resolver: Resolver, properties: dict) -> list[dict]:
    config = resolver.resolve((properties.get("EventInvokeConfig") or {}).get("DestinationConfig") or {})
    return [config[kind] for kind in ("OnSuccess", "OnFailure") if isinstance(config.get(kind), dict)]


def _destination_policy(resolver: Resolver, destination: dict) -> dict:
    kind = destination.get("Type")
    if kind != "SQS":
        raise TemplateError(f"EventInvokeConfig destination of type {kind} is not supported by the local IAM check")
    return {"Statement": [{"Action": "sqs:SendMessage", "Effect": "Allow", "Resource": destination["Destination"]}]}


def policy_document(resolver: Resolver, policy: Any, where: str) -> dict | None:
    """One entry of `Policies` as a resolved policy document; None for AWS::NoValue."""
    if isinstance(policy, dict) and set(policy) == {"Fn::If"}:
        condition, if_true, if_false = policy["Fn::If"]
        chosen = if_true if resolver.condition(condition) else if_false
        if chosen == {"Ref": "AWS::NoValue"}:
            return None
        return policy_document(resolver, chosen, where)
    if isinstance(policy, dict) and "Statement" in policy:
        return _document(resolver.resolve(policy), where)
    if isinstance(policy, dict) and len(policy) == 1 and next(iter(policy)) in SAM_POLICY_TEMPLATES:
        (name, values), = policy.items()
        return _document(resolver.resolve(expand_policy_template(name, values, where)), where)
    if isinstance(policy, str) or (isinstance(policy, dict) and len(policy) == 1 and (
            next(iter(policy)) == "Ref" or next(iter(policy)).startswith("Fn::"))):
        resolved = resolver.resolve(policy)
        if resolved is _NO_VALUE:
            return None
        return managed_policy(str(resolved), where)
    if isinstance(policy, dict) and len(policy) == 1:
        raise TemplateError(f"{where}: {next(iter(policy))} is not a policy template the local stack knows "
                            f"(it knows {', '.join(sorted(SAM_POLICY_TEMPLATES))}); add its definition to "
                            "infra/local/template/policies.py")
    raise TemplateError(f"{where}: not a policy document, policy template or managed policy: {policy!r}")


def expand_policy_template(name: str, values: Any, where: str = "") -> dict:
    """SAM's expansion of one policy template (its `to_statement`): the definition
    with each `Ref` to one of the template's parameters replaced by the given value.
    Other intrinsics stay, for the Resolver (CloudFormation) to evaluate."""
    spec = SAM_POLICY_TEMPLATES[name]
    if not isinstance(values, dict):
        raise TemplateError(f"{where}: {name} needs a map of parameter values")
    missing = sorted(set(spec["Parameters"]) - set(values))
    if missing:
        raise TemplateError(f"{where}: {name} needs {', '.join(missing)}")
    given = {key: value for key, value in values.items() if key in spec["Parameters"]}

    def substitute(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Ref"} and node["Ref"] in given:
                return copy.deepcopy(given[node["Ref"]])
            return {key: substitute(value) for key, value in node.items()}
        if isinstance(node, list):
            return [substitute(item) for item in node]
        return node

    return substitute(spec["Definition"])


def managed_policy(name_or_arn: str, where: str = "") -> dict:
    """An AWS managed policy's document, by name (AWSLambdaBasicExecutionRole) or ARN
    (arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole)."""
    name = name_or_arn.rsplit("/", 1)[-1] if name_or_arn.startswith(_AWS_MANAGED_ARN) else name_or_arn
    if name.startswith("arn:"):
        raise TemplateError(f"{where}: {name_or_arn} is not an AWS managed policy; the local stack cannot "
                            "read customer managed policies")
    if name in IMPLIED_MANAGED_POLICIES:
        return copy.deepcopy(IMPLIED_MANAGED_POLICIES[name])
    known = _moto_managed_policies()
    if name not in known:
        raise TemplateError(f"{where}: no AWS managed policy named {name!r}")
    return copy.deepcopy(known[name]["Document"])


_moto_policies: dict | None = None


def _moto_managed_policies() -> dict:
    global _moto_policies
    if _moto_policies is None:  # a large document: parsed only when a template names one
        from moto.iam.aws_managed_policies import aws_managed_policies_data
        _moto_policies = json.loads(aws_managed_policies_data)
    return _moto_policies


def _document(document: Any, where: str) -> dict:
    if not isinstance(document, dict) or "Statement" not in document:
        raise TemplateError(f"{where}: a policy document needs a Statement")
    return document
