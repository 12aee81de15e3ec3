"""The local stack enforces each function's IAM policies, by action and resource, and
refuses what AWS would refuse with the service's own AccessDenied.

Runs tests/fixtures/local_iam in-process: one probe function deployed with different
policies (each lacking something on purpose), making real boto3 calls over HTTP to
the emulator. `stack.runtime.invoke` lets the function's exception reach the test as
the handler would see it.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import pytest
import requests
from botocore.exceptions import ClientError

from infra.local import LocalStack
from infra.local.emulator import emulator_client
from infra.local.iam import HEADER

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "local_iam" / "template.yaml"
STACK = "local-iam-test"  # its own resource names: moto's state is shared per process
ACCOUNT, REGION = "123456789012", "us-east-1"


@pytest.fixture(scope="module")
def stack():
    with LocalStack(FIXTURE, port=0, time_scale=0.01, stack_name=STACK, sandbox=False) as running:
        yield running


@pytest.fixture(scope="module")
def aws(stack):
    """The developer's own clients (no function header: never checked)."""
    clients = {}

    def get(service):
        if service not in clients:
            clients[service] = emulator_client(service, stack.emulator_url)
        return clients[service]
    return get


def call(stack, function, service, operation, **params):
    return stack.runtime.invoke(function, {"service": service, "operation": operation, "params": params})


def refused(stack, function, service, operation, **params) -> ClientError:
    with pytest.raises(ClientError) as raised:
        call(stack, function, service, operation, **params)
    return raised.value


def principal(function):
    return f"arn:aws:sts::{ACCOUNT}:assumed-role/{STACK}-{function}Role/{STACK}-{function}"


def not_allowed(function, action, resource):
    return (f"User: {principal(function)} is not authorized to perform: {action} on resource: {resource} "
            f"because no identity-based policy allows the {action} action")


def table_arn(stack):
    return stack.model.tables["Table"].arn


def key(pk):
    return {"PK": {"S": pk}, "SK": {"S": "x"}}


# ------------------------------------------------------------------ DynamoDB


def test_a_missing_permission_fails_the_call_as_boto3_raises_it_in_aws(stack):
    # given ReaderFunction, allowed GetItem and Query on the table but not PutItem
    table = stack.model.tables["Table"].name

    # when it writes
    error = refused(stack, "ReaderFunction", "dynamodb", "put_item", TableName=table, Item=key("p-1"))

    # then boto3 raises AWS's AccessDeniedException, word for word
    assert error.response["Error"]["Code"] == "AccessDeniedException"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.response["Error"]["Message"] == not_allowed("ReaderFunction", "dynamodb:PutItem", table_arn(stack))
    assert error.operation_name == "PutItem"


def test_what_the_policies_allow_goes_through(stack, aws):
    table = stack.model.tables["Table"].name
    aws("dynamodb").put_item(TableName=table, Item=key("r-1"))  # the developer: not checked

    assert call(stack, "ReaderFunction", "dynamodb", "get_item", TableName=table, Key=key("r-1"))["Item"] == key("r-1")
    found = call(stack, "ReaderFunction", "dynamodb", "query", TableName=table,
                 KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": "r-1"}})
    assert found["Count"] == 1


def test_query_on_the_index_is_allowed_and_on_the_base_table_refused(stack, aws):
    # given a function allowed to Query the index only (ExpiryScanFunction's bug)
    table = stack.model.tables["Table"].name
    aws("dynamodb").put_item(TableName=table, Item={**key("i-1"), "KIND": {"S": "lot"}})

    on_index = call(stack, "IndexReaderFunction", "dynamodb", "query", TableName=table, IndexName="ByKind",
                    KeyConditionExpression="KIND = :k", ExpressionAttributeValues={":k": {"S": "lot"}})
    error = refused(stack, "IndexReaderFunction", "dynamodb", "query", TableName=table,
                    KeyConditionExpression="PK = :pk", ExpressionAttributeValues={":pk": {"S": "i-1"}})

    assert on_index["Count"] >= 1
    assert error.response["Error"]["Code"] == "AccessDeniedException"
    assert error.response["Error"]["Message"] == not_allowed("IndexReaderFunction", "dynamodb:Query",
                                                             table_arn(stack))
    # and a Query of another index is not the one it may read
    other = refused(stack, "IndexReaderFunction", "dynamodb", "query", TableName=table, IndexName="Other",
                    KeyConditionExpression="KIND = :k", ExpressionAttributeValues={":k": {"S": "lot"}})
    assert f"on resource: {table_arn(stack)}/index/Other " in other.response["Error"]["Message"]


def test_each_item_of_a_transaction_needs_its_own_action(stack):
    # given NoDeleteFunction: DynamoDBCrudPolicy, and a Deny on DeleteItem
    table = stack.model.tables["Table"].name
    call(stack, "NoDeleteFunction", "dynamodb", "transact_write_items", TransactItems=[
        {"Put": {"TableName": table, "Item": key("t-1")}},
        {"ConditionCheck": {"TableName": table, "Key": key("t-1b"), "ConditionExpression": "attribute_not_exists(PK)"}}])

    error = refused(stack, "NoDeleteFunction", "dynamodb", "transact_write_items", TransactItems=[
        {"Put": {"TableName": table, "Item": key("t-2")}},
        {"Delete": {"TableName": table, "Key": key("t-1")}}])

    assert error.response["Error"]["Code"] == "AccessDeniedException"
    assert error.response["Error"]["Message"] == (
        f"User: {principal('NoDeleteFunction')} is not authorized to perform: dynamodb:DeleteItem on resource: "
        f"{table_arn(stack)} with an explicit deny in an identity-based policy")
    # nothing of the refused transaction was written
    assert "Item" not in call(stack, "NoDeleteFunction", "dynamodb", "get_item", TableName=table, Key=key("t-2"))


def test_batch_reads_need_the_action_on_every_table(stack):
    table = stack.model.tables["Table"].name
    error = refused(stack, "ReaderFunction", "dynamodb", "batch_get_item",
                    RequestItems={table: {"Keys": [key("r-1")]}})
    assert error.response["Error"]["Message"] == not_allowed("ReaderFunction", "dynamodb:BatchGetItem",
                                                             table_arn(stack))
    assert call(stack, "NoDeleteFunction", "dynamodb", "batch_get_item",
                RequestItems={table: {"Keys": [key("t-1")]}})["Responses"][table] == [key("t-1")]


# ------------------------------------------------------------------ SQS


def test_a_function_may_send_to_queue_a_and_not_to_queue_b(stack):
    queue_a, queue_b = stack.model.queues["QueueA"], stack.model.queues["QueueB"]

    sent = call(stack, "SenderFunction", "sqs", "send_message", QueueUrl=queue_a.url, MessageBody="to a")
    error = refused(stack, "SenderFunction", "sqs", "send_message", QueueUrl=queue_b.url, MessageBody="to b")
    batch = refused(stack, "SenderFunction", "sqs", "send_message_batch", QueueUrl=queue_b.url,
                    Entries=[{"Id": "1", "MessageBody": "to b"}])

    assert sent["MessageId"]
    # SQS's JSON protocol answers 403 and names the query code, AccessDenied, as boto3 reports it
    assert error.response["Error"]["Code"] == "AccessDenied"
    assert error.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert error.response["Error"]["Message"] == not_allowed("SenderFunction", "sqs:SendMessage", queue_b.arn)
    assert batch.response["Error"]["Message"] == not_allowed("SenderFunction", "sqs:SendMessage", queue_b.arn)
    # sending is all it may do, even on queue A
    receive = refused(stack, "SenderFunction", "sqs", "receive_message", QueueUrl=queue_a.url)
    assert receive.response["Error"]["Message"] == not_allowed("SenderFunction", "sqs:ReceiveMessage", queue_a.arn)


def test_the_poller_feeds_a_consumer_that_has_no_sqs_statement_of_its_own(stack, aws):
    # given ConsumerFunction consumes QueueB; its Policies grant no SQS action at all
    queue_b = stack.model.queues["QueueB"]
    body = f"job-{uuid.uuid4().hex[:8]}"

    # when a message arrives
    aws("sqs").send_message(QueueUrl=queue_b.url, MessageBody=body)
    summary = stack.drain(timeout=30)

    # then the poller received it, the function ran, and the message was deleted
    assert summary["drained"] is True and summary["queues"]["QueueB"]["in_flight"] == 0
    item = aws("dynamodb").get_item(TableName=stack.model.tables["Table"].name,
                                    Key={"PK": {"S": f"RECEIVED#{body}"}, "SK": {"S": queue_b.arn}})
    assert "Item" in item
    # and, as in AWS (AWSLambdaSQSQueueExecutionRole), the function may receive itself, but not send
    assert "Messages" not in call(stack, "ConsumerFunction", "sqs", "receive_message", QueueUrl=queue_b.url)
    error = refused(stack, "ConsumerFunction", "sqs", "send_message", QueueUrl=queue_b.url, MessageBody="x")
    assert error.response["Error"]["Code"] == "AccessDenied"


# ------------------------------------------------------------------ Secrets Manager and SSM


def test_a_function_reads_only_the_secret_and_parameter_its_policies_name(stack, aws):
    secret_a, secret_b = stack.model.secrets["SecretA"], stack.model.secrets["SecretB"]
    parameter_a, parameter_b = stack.model.ssm_parameters["ParameterA"], stack.model.ssm_parameters["ParameterB"]
    full_arn_a = aws("secretsmanager").describe_secret(SecretId=secret_a.name)["ARN"]  # moto's, with a suffix

    # the secret it may read, however it is named: name, partial ARN (!Ref), full ARN
    for secret_id in (secret_a.name, secret_a.arn, full_arn_a):
        assert call(stack, "ConfigReaderFunction", "secretsmanager", "get_secret_value", SecretId=secret_id)["Name"] \
            == secret_a.name
    assert call(stack, "ConfigReaderFunction", "ssm", "get_parameter", Name=parameter_a.name)["Parameter"]["Value"] == "a"

    secret = refused(stack, "ConfigReaderFunction", "secretsmanager", "get_secret_value", SecretId=secret_b.arn)
    parameter = refused(stack, "ConfigReaderFunction", "ssm", "get_parameter", Name=parameter_b.name)
    both = refused(stack, "ConfigReaderFunction", "ssm", "get_parameters", Names=[parameter_a.name, parameter_b.name])

    parameter_b_arn = f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{parameter_b.name}"
    assert secret.response["Error"]["Code"] == "AccessDeniedException"
    assert secret.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert secret.response["Error"]["Message"] == not_allowed("ConfigReaderFunction", "secretsmanager:GetSecretValue",
                                                              secret_b.arn)
    assert parameter.response["Error"]["Code"] == "AccessDeniedException"
    assert parameter.response["Error"]["Message"] == not_allowed("ConfigReaderFunction", "ssm:GetParameter",
                                                                 parameter_b_arn)
    assert both.response["Error"]["Message"] == not_allowed("ConfigReaderFunction", "ssm:GetParameters",
                                                            parameter_b_arn)


# ------------------------------------------------------------------ other services, identity


def test_other_services_are_checked_by_action(stack):
    # AWSLambdaBasicExecutionRole, which SAM attaches to every function, allows this
    call(stack, "ReaderFunction", "logs", "create_log_group", logGroupName=f"/local-iam/{uuid.uuid4().hex[:6]}")
    # and nothing allows this
    error = refused(stack, "ReaderFunction", "logs", "describe_log_groups")
    assert error.response["Error"]["Code"] == "AccessDeniedException"
    assert error.response["Error"]["Message"] == not_allowed("ReaderFunction", "logs:DescribeLogGroups", "*")


def test_calls_without_a_function_are_not_checked(stack, aws):
    # the developer, test fixtures and the stack itself play AWS: anything goes
    aws("dynamodb").delete_item(TableName=stack.model.tables["Table"].name, Key=key("nobody"))
    aws("sqs").send_message(QueueUrl=stack.model.queues["QueueA"].url, MessageBody="from the developer")


def test_the_answers_are_each_services_own_wire_format(stack):
    """What goes over the wire, without boto3 in between."""
    def post(function, target, version, document):
        return requests.post(stack.emulator_url, data=json.dumps(document), timeout=10, headers={
            HEADER: function, "X-Amz-Target": target, "Content-Type": f"application/x-amz-json-{version}",
            "Authorization": f"AWS4-HMAC-SHA256 Credential=testing/{time.strftime('%Y%m%d')}/{REGION}/x/aws4_request, "
                             "SignedHeaders=host, Signature=0"})

    table = stack.model.tables["Table"]
    dynamodb = post("IndexReaderFunction", "DynamoDB_20120810.GetItem", "1.0",
                    {"TableName": table.name, "Key": key("w-1")})
    assert dynamodb.status_code == 400
    assert dynamodb.headers["Content-Type"] == "application/x-amz-json-1.0"
    assert dynamodb.json() == {"__type": "com.amazon.coral.service#AccessDeniedException",
                               "message": not_allowed("IndexReaderFunction", "dynamodb:GetItem", table.arn)}

    queue = stack.model.queues["QueueB"]
    sqs = post("SenderFunction", "AmazonSQS.SendMessage", "1.0", {"QueueUrl": queue.url, "MessageBody": "x"})
    assert sqs.status_code == 403
    assert sqs.headers["x-amzn-query-error"] == "AccessDenied;Sender"
    assert sqs.json() == {"__type": "com.amazon.coral.service#AccessDeniedException",
                          "message": not_allowed("SenderFunction", "sqs:SendMessage", queue.arn)}

    secret = stack.model.secrets["SecretB"]
    secrets = post("ConfigReaderFunction", "secretsmanager.GetSecretValue", "1.1", {"SecretId": secret.name})
    assert secrets.status_code == 400
    assert secrets.json() == {"__type": "AccessDeniedException", "Message": not_allowed(
        "ConfigReaderFunction", "secretsmanager:GetSecretValue", secret.arn)}

    parameter = stack.model.ssm_parameters["ParameterB"]
    ssm = post("ConfigReaderFunction", "AmazonSSM.GetParameter", "1.1", {"Name": parameter.name})
    assert ssm.status_code == 400
    assert ssm.json() == {"__type": "AccessDeniedException", "message": not_allowed(
        "ConfigReaderFunction", "ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter/{parameter.name}")}

    # a header naming a function this stack does not run is refused, never waved through
    unknown = post("NoSuchFunction", "DynamoDB_20120810.GetItem", "1.0", {"TableName": table.name, "Key": key("w")})
    assert unknown.status_code == 400
