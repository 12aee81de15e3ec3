"""Create the template's tables, queues, secrets and parameters in the emulator.

Everything is created from the template model, so a table index or a queue's
redrive policy added to template.yaml exists locally on the next run. Creating what
already exists is a no-op, so this can run again after a partial start.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping

from botocore.exceptions import ClientError

from .emulator import emulator_client
from .template import QueueSpec, TableSpec, TemplateModel

log = logging.getLogger(__name__)

# The local stack's secrets (DESIGN.md, "Local secrets"): each can be overridden by an
# environment variable of the same name. In AWS they live in Secrets Manager.
LOCAL_SECRETS = {
    "ORDER_WEBHOOK_SECRET": "local-order-secret",
    "WHATSAPP_APP_SECRET": "local-whatsapp-secret",
    "WHATSAPP_VERIFY_TOKEN": "local-verify-token",
    "TWILIO_AUTH_TOKEN": "local-twilio-token",
    "WECHAT_TOKEN": "local-wechat-token",
    # provider credentials the local provider sandbox checks
    "WHATSAPP_ACCESS_TOKEN": "local-whatsapp-access-token",
    "WECHAT_APP_SECRET": "local-wechat-app-secret",
    "ALIYUN_ACCESS_KEY_SECRET": "local-aliyun-secret",
    "ALIYUN_CALLBACK_TOKEN": "local-aliyun-callback-token",
}

# CloudFormation queue properties that are SQS queue attributes of the same name.
_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication", "DeduplicationScope", "DelaySeconds", "FifoQueue",
    "FifoThroughputLimit", "KmsDataKeyReusePeriodSeconds", "KmsMasterKeyId",
    "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled", "VisibilityTimeout",
)


def local_secret_values(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The local secret values, environment variables of the same name winning."""
    environ = os.environ if environ is None else environ
    return {name: environ.get(name) or default for name, default in LOCAL_SECRETS.items()}


def create_resources(model: TemplateModel, endpoint_url: str,
                     secret_values: Mapping[str, str] | None = None) -> None:
    """Create every table, queue, secret and SSM parameter of `model` in the emulator
    at `endpoint_url`. Secrets get `secret_values` (default: local_secret_values())
    as one JSON SecretString."""
    values = dict(secret_values) if secret_values is not None else local_secret_values()
    dynamodb = emulator_client("dynamodb", endpoint_url, model.region)
    for table in model.tables.values():
        create_table(dynamodb, table)
    sqs = emulator_client("sqs", endpoint_url, model.region)
    for queue in _dead_letter_queues_first(model):
        create_queue(sqs, queue)
    secretsmanager = emulator_client("secretsmanager", endpoint_url, model.region)
    for secret in model.secrets.values():
        _ignore_if_exists(secretsmanager.create_secret, "ResourceExistsException",
                          Name=secret.name, SecretString=json.dumps(values))
    ssm = emulator_client("ssm", endpoint_url, model.region)
    for logical_id, parameter in model.ssm_parameters.items():
        # LOCAL_RULES: the merchant's rule overrides to start the local stack with (JSON)
        value = os.environ.get("LOCAL_RULES") or parameter.value if logical_id == "RulesParameter" else parameter.value
        _ignore_if_exists(ssm.put_parameter, "ParameterAlreadyExists",
                          Name=parameter.name, Value=value, Type=parameter.type)
    log.debug("created %d table(s), %d queue(s), %d secret(s), %d parameter(s)",
              len(model.tables), len(model.queues), len(model.secrets), len(model.ssm_parameters))


def create_table(dynamodb, table: TableSpec) -> None:
    """CreateTable from a table's CloudFormation properties (keys, indexes, billing,
    TTL); properties without a local meaning (PITR, SSE, tags) are left out."""
    properties = table.properties
    request = {
        "TableName": table.name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": properties.get("BillingMode", "PROVISIONED"),
    }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "ProvisionedThroughput",
                "StreamSpecification"):
        if key in properties:
            request[key] = properties[key]
    if request["BillingMode"] == "PAY_PER_REQUEST":
        for index in request.get("GlobalSecondaryIndexes", []):
            index.pop("ProvisionedThroughput", None)
    created = _ignore_if_exists(dynamodb.create_table, "ResourceInUseException", **request)
    ttl = properties.get("TimeToLiveSpecification")
    if created and ttl and str(ttl.get("Enabled")).lower() == "true":
        dynamodb.update_time_to_live(
            TableName=table.name,
            TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True})


def create_queue(sqs, queue: QueueSpec) -> None:
    """CreateQueue with the queue's attributes, its RedrivePolicy as SQS wants it
    (JSON text, maxReceiveCount a number). The dead-letter queue must exist first."""
    properties = queue.properties
    attributes = {key: _attribute_text(properties[key])
                  for key in _QUEUE_ATTRIBUTES if key in properties}
    if queue.dead_letter_arn:
        attributes["RedrivePolicy"] = json.dumps({
            "deadLetterTargetArn": queue.dead_letter_arn,
            "maxReceiveCount": queue.max_receive_count,
        })
    if "RedriveAllowPolicy" in properties:
        attributes["RedriveAllowPolicy"] = _attribute_text(properties["RedriveAllowPolicy"])
    try:
        sqs.create_queue(QueueName=queue.name, Attributes=attributes)
    except ClientError as exc:
        # Same name, other attributes (the template changed): bring them up to date.
        if exc.response["Error"]["Code"] not in ("QueueAlreadyExists", "QueueNameExists"):
            raise
        attributes.pop("FifoQueue", None)  # cannot be changed after creation
        sqs.set_queue_attributes(QueueUrl=queue.url, Attributes=attributes)


def _dead_letter_queues_first(model: TemplateModel) -> list[QueueSpec]:
    # A RedrivePolicy can only name a queue that exists; DLQs of DLQs are allowed.
    ordered: list[QueueSpec] = []

    def visit(queue: QueueSpec, seen: tuple[str, ...] = ()) -> None:
        if queue in ordered or queue.logical_id in seen:
            return
        if queue.dead_letter_arn:
            visit(model.queue_by_arn(queue.dead_letter_arn), seen + (queue.logical_id,))
        ordered.append(queue)

    for queue in model.queues.values():
        visit(queue)
    return ordered


def _attribute_text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _ignore_if_exists(call, error_code: str, **request) -> bool:
    """Run a create call; False instead of an error if the resource already exists."""
    try:
        call(**request)
        return True
    except ClientError as exc:
        if exc.response["Error"]["Code"] != error_code:
            raise
        return False
