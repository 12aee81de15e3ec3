"""What an AWS request asks IAM for: the (action, resource ARN) pairs AWS would check.

    call = parse_call(environ, body)     # one request to the emulator, as boto3 sent it
    permissions(call, arns)              # [("dynamodb:Query", "arn:...:table/T/index/I"), ...]

Every pair must be allowed for the request to go through (infra/local/iam.py decides).
Mapped with resource ARNs, as AWS authorizes them:

- DynamoDB: TableName (a name or an ARN) is the table, `<table>/index/<IndexName>` for
  a Query or Scan of an index; BatchGetItem / BatchWriteItem: each table of
  RequestItems; TransactWriteItems: each item by its own action (Put → PutItem, Update →
  UpdateItem, Delete → DeleteItem, ConditionCheck → ConditionCheckItem) on its table;
  TransactGetItems: GetItem on each table.
- SQS: QueueUrl (or QueueName) is the queue ARN; the batch operations need their
  single-message actions (SendMessageBatch → sqs:SendMessage).
- Secrets Manager: SecretId (name, partial or full ARN) is the secret's ARN.
- SSM: Name(s) or Path is `arn:aws:ssm:<region>:<account>:parameter/<name>`.

Any other operation of these services is checked on its ResourceArn or on "*"; any
other service by action alone (resource "*", see iam.py).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import parse_qsl, urlparse

# X-Amz-Target prefixes of the JSON protocol services that are mapped here.
_TARGET_SERVICES = {"DynamoDB_20120810": "dynamodb", "AmazonSQS": "sqs",
                    "secretsmanager": "secretsmanager", "AmazonSSM": "ssm"}
_CREDENTIAL_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class AwsCall:
    """One request to the emulator: who it is for and what it asks."""

    service: str  # the signing name: "dynamodb", "sqs", "secretsmanager", "ssm", ...
    operation: str  # "Query", "SendMessageBatch"; "" when the request does not say
    params: dict = field(default_factory=dict)  # the JSON body or the query protocol's form
    protocol: str = "json"  # "json" (X-Amz-Target), "query" (Action=...) or "rest"
    region: str = "us-east-1"
    path: str = "/"


def parse_call(environ: dict, body: bytes, default_region: str = "us-east-1") -> AwsCall | None:
    """The AWS call a WSGI request makes; None for what is not an AWS API call (moto's
    own /moto-api, a browser)."""
    scope = _CREDENTIAL_SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    region, signed_service = (scope.group(1), scope.group(2)) if scope else (default_region, "")
    path = environ.get("PATH_INFO", "/") or "/"
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        prefix, _, operation = target.rpartition(".")
        service = _TARGET_SERVICES.get(prefix, signed_service or prefix.lower())
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
        return AwsCall(service, operation, params if isinstance(params, dict) else {}, "json", region, path)
    if not signed_service:
        return None
    form = dict(parse_qsl(environ.get("QUERY_STRING", "")))
    if environ.get("CONTENT_TYPE", "").startswith("application/x-www-form-urlencoded"):
        form.update(parse_qsl(body.decode("utf-8", "replace")))
    if "Action" in form:
        return AwsCall(signed_service, form["Action"], form, "query", region, path)
    return AwsCall(signed_service, "", {}, "rest", region, path)


@dataclass(frozen=True)
class ArnContext:
    """What turning names into ARNs needs: the account, and how the template's secrets
    are named locally (name or moto's full ARN → the ARN their policies use)."""

    account_id: str
    secrets: dict[str, str] = field(default_factory=dict)  # name -> ARN as !Ref gives it locally

    def table(self, call: AwsCall, name: str) -> str:
        return name if name.startswith("arn:") else f"arn:aws:dynamodb:{call.region}:{self.account_id}:table/{name}"

    def queue_from_url(self, call: AwsCall, url: str) -> str:
        parts = [part for part in urlparse(url).path.split("/") if part]
        if len(parts) < 2:
            return "*"
        return f"arn:aws:sqs:{call.region}:{parts[-2]}:{parts[-1]}"

    def queue_from_name(self, call: AwsCall, name: str, owner: str | None = None) -> str:
        return f"arn:aws:sqs:{call.region}:{owner or self.account_id}:{name}"

    def secret(self, call: AwsCall, secret_id: str) -> str:
        """The template secret's ARN as its policies name it (the partial ARN that !Ref
        gives locally, standing for the full one !Ref gives in AWS); others as named."""
        for name, arn in self.secrets.items():
            if secret_id in (name, arn):
                return arn
            # moto's full ARN: the partial one plus "-" and six random characters
            if secret_id.startswith(arn + "-") and len(secret_id) == len(arn) + 7:
                return arn
        if secret_id.startswith("arn:"):
            return secret_id
        return f"arn:aws:secretsmanager:{call.region}:{self.account_id}:secret:{secret_id}"

    def parameter(self, call: AwsCall, name: str) -> str:
        if name.startswith("arn:"):
            return name
        name = name.split(":", 1)[0]  # "name:3" or "name:label" selects a version of "name"
        return f"arn:aws:ssm:{call.region}:{self.account_id}:parameter/{name.lstrip('/')}"


Permission = tuple[str, str]  # (action, resource ARN or "*")


def permissions(call: AwsCall, arns: ArnContext) -> list[Permission]:
    """Every (action, resource) the call needs, in request order, without repeats."""
    mapper = _MAPPERS.get(call.service)
    if mapper is not None:
        needed = mapper(call, arns)
    elif call.operation:
        needed = [(f"{call.service}:{call.operation}", "*")]
    else:  # a REST request whose operation the path would tell: only service:* allows it
        needed = [(f"{call.service}:*", "*")]
    return list(dict.fromkeys(needed))


def _generic(call: AwsCall) -> list[Permission]:
    resource = call.params.get("ResourceArn")
    return [(f"{call.service}:{call.operation}", resource if isinstance(resource, str) else "*")]


def _dynamodb(call: AwsCall, arns: ArnContext) -> list[Permission]:
    op, params = call.operation, call.params
    if op == "TransactWriteItems":
        actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
                   "ConditionCheck": "ConditionCheckItem"}
        return [(f"dynamodb:{actions.get(kind, kind)}", arns.table(call, request.get("TableName", "")))
                for item in params.get("TransactItems", []) for kind, request in item.items()]
    if op == "TransactGetItems":
        return [("dynamodb:GetItem", arns.table(call, request.get("TableName", "")))
                for item in params.get("TransactItems", []) for request in item.values()]
    if op in ("BatchGetItem", "BatchWriteItem"):
        return [(f"dynamodb:{op}", arns.table(call, table)) for table in params.get("RequestItems", {})]
    if isinstance(params.get("TableName"), str):
        table = arns.table(call, params["TableName"])
        if op in ("Query", "Scan") and params.get("IndexName"):
            return [(f"dynamodb:{op}", f"{table}/index/{params['IndexName']}")]
        return [(f"dynamodb:{op}", table)]
    return _generic(call)


_SQS_BATCH = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
              "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def _sqs(call: AwsCall, arns: ArnContext) -> list[Permission]:
    action = f"sqs:{_SQS_BATCH.get(call.operation, call.operation)}"
    params = call.params
    if params.get("QueueUrl"):
        return [(action, arns.queue_from_url(call, params["QueueUrl"]))]
    if params.get("QueueName"):
        return [(action, arns.queue_from_name(call, params["QueueName"], params.get("QueueOwnerAWSAccountId")))]
    if call.protocol == "query" and call.path.count("/") >= 2:  # the query protocol may post to the queue URL
        return [(action, arns.queue_from_url(call, call.path))]
    return [(action, params["SourceArn"] if params.get("SourceArn") else "*")]


def _secretsmanager(call: AwsCall, arns: ArnContext) -> list[Permission]:
    op, params = call.operation, call.params
    if op == "BatchGetSecretValue":
        return [("secretsmanager:BatchGetSecretValue", "*")] + [
            ("secretsmanager:GetSecretValue", arns.secret(call, secret_id))
            for secret_id in params.get("SecretIdList", [])]
    secret_id = params.get("SecretId") or (params.get("Name") if op == "CreateSecret" else None)
    if isinstance(secret_id, str):
        return [(f"secretsmanager:{op}", arns.secret(call, secret_id))]
    return _generic(call)


def _ssm(call: AwsCall, arns: ArnContext) -> list[Permission]:
    op, params = call.operation, call.params
    action = f"ssm:{op}"
    if isinstance(params.get("Names"), list):
        return [(action, arns.parameter(call, name)) for name in params["Names"]]
    for key in ("Name", "Path"):
        if isinstance(params.get(key), str):
            return [(action, arns.parameter(call, params[key]))]
    return _generic(call)


_MAPPERS: dict[str, Callable[[AwsCall, ArnContext], list[Permission]]] = {
    "dynamodb": _dynamodb, "sqs": _sqs, "secretsmanager": _secretsmanager, "ssm": _ssm}

MAPPED_SERVICES = frozenset(_MAPPERS)  # checked by resource; any other service by action alone
