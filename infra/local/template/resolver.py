"""CloudFormation's intrinsic functions, evaluated against one template and its parameters.

Only what the application uses is resolved; anything else fails with a message that
names it, rather than running with a silently wrong value."""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from .model import TemplateError

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


class Resolver:
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
        if kind == "AWS::Cognito::UserPool":  # ids in Cognito's shapes, stable per stack
            return f"{self.region}_{_stable_id(self.stack_name, logical_id, 9, upper=True)}"
        if kind == "AWS::Cognito::UserPoolClient":
            return _stable_id(self.stack_name, logical_id, 26)
        if kind == "AWS::Cognito::UserPoolDomain":
            return str(self.resolve((self.resources[logical_id].get("Properties") or {}).get("Domain")))
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
        elif kind == "AWS::Cognito::UserPool":
            pool = self.ref(logical_id)
            values = {"Arn": self.arn("cognito-idp", f"userpool/{pool}"),
                      "ProviderURL": f"cognito-idp.{self.region}.amazonaws.com/{pool}",
                      "ProviderName": f"cognito-idp.{self.region}.amazonaws.com/{pool}", "UserPoolId": pool}
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
        if kind == "AWS::SQS::Queue" and truthy(self.resolve(properties.get("FifoQueue"))):
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


def _stable_id(stack_name: str, logical_id: str, length: int, upper: bool = False) -> str:
    import hashlib
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789" if upper else \
        "abcdefghijklmnopqrstuvwxyz0123456789"
    digest = hashlib.sha256(f"{stack_name}/{logical_id}".encode()).digest()
    return "".join(alphabet[byte % len(alphabet)] for byte in digest[:length])


def api_id(logical_id: str) -> str:
    """A stable, readable stand-in for an API Gateway id (AWS makes up 10 characters)."""
    return logical_id.lower()[:10]


def truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def as_env_value(value: Any) -> str:
    # CloudFormation hands environment variables to Lambda as strings.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

