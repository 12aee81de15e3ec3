"""What the local IAM check asks for each request, and how it decides (no network).

Requests are serialized by botocore itself, as a handler's client would send them, and
caught before they leave: the mapping sees exactly the wire format of AWS's SDK."""

from __future__ import annotations

from urllib.parse import urlsplit

import boto3
import pytest

from infra.local.iam import AccessControl, RolePolicies, iam_mode
from infra.local.iam_requests import ArnContext, AwsCall, parse_call, permissions
from infra.local.template import TemplateError

ACCOUNT = "123456789012"
ARNS = ArnContext(ACCOUNT, {"app-Secrets": "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-Secrets"})
TABLE = "arn:aws:dynamodb:us-east-1:123456789012:table/app-Table"
QUEUE_URL = "http://127.0.0.1:5000/123456789012/app-Jobs"


class Sent(Exception):
    """The request botocore was about to send."""


_clients: dict = {}


def wire(service: str, operation: str, region: str = "us-east-1", **params) -> tuple[dict, bytes]:
    """(WSGI environ, body) of the request boto3 sends for `operation`."""
    key = (service, region)
    if key not in _clients:
        client = boto3.session.Session().client(
            service, region_name=region, endpoint_url="http://127.0.0.1:5000",
            aws_access_key_id="testing", aws_secret_access_key="testing")

        def stop(request, **kwargs):
            raise Sent(request)
        client.meta.events.register("before-send", stop)
        _clients[key] = client
    with pytest.raises(Sent) as sent:
        getattr(_clients[key], operation)(**params)
    request = sent.value.args[0]
    url = urlsplit(request.url)
    environ = {"PATH_INFO": url.path or "/", "QUERY_STRING": url.query,
               **{"HTTP_" + name.upper().replace("-", "_"): value.decode() if isinstance(value, bytes) else value
                  for name, value in request.headers.items()}}
    environ["CONTENT_TYPE"] = environ.pop("HTTP_CONTENT_TYPE", "")
    body = request.body or b""
    return environ, body.encode() if isinstance(body, str) else body


def needs(service: str, operation: str, **params) -> list[tuple[str, str]]:
    return permissions(parse_call(*wire(service, operation, **params)), ARNS)


def key(pk: str) -> dict:
    return {"PK": {"S": pk}, "SK": {"S": "x"}}


# ------------------------------------------------------------------ DynamoDB


def test_dynamodb_query_of_an_index_needs_the_index_and_of_the_table_the_table():
    assert needs("dynamodb", "query", TableName="app-Table", IndexName="ByDay",
                 KeyConditionExpression="D = :d", ExpressionAttributeValues={":d": {"S": "1"}}) == [
        ("dynamodb:Query", f"{TABLE}/index/ByDay")]
    assert needs("dynamodb", "query", TableName="app-Table", KeyConditionExpression="PK = :p",
                 ExpressionAttributeValues={":p": {"S": "1"}}) == [("dynamodb:Query", TABLE)]
    assert needs("dynamodb", "scan", TableName="app-Table", IndexName="ByDay") == [
        ("dynamodb:Scan", f"{TABLE}/index/ByDay")]


def test_dynamodb_single_item_calls_and_a_table_named_by_its_arn():
    assert needs("dynamodb", "get_item", TableName="app-Table", Key=key("a")) == [("dynamodb:GetItem", TABLE)]
    assert needs("dynamodb", "put_item", TableName=TABLE, Item=key("a")) == [("dynamodb:PutItem", TABLE)]
    assert needs("dynamodb", "describe_table", TableName="app-Table") == [("dynamodb:DescribeTable", TABLE)]
    assert needs("dynamodb", "list_tables") == [("dynamodb:ListTables", "*")]


def test_dynamodb_batches_need_their_action_on_every_table():
    other = "arn:aws:dynamodb:us-east-1:123456789012:table/app-Other"
    assert needs("dynamodb", "batch_get_item", RequestItems={
        "app-Table": {"Keys": [key("a")]}, "app-Other": {"Keys": [key("b")]}}) == [
        ("dynamodb:BatchGetItem", TABLE), ("dynamodb:BatchGetItem", other)]
    assert needs("dynamodb", "batch_write_item", RequestItems={
        "app-Table": [{"PutRequest": {"Item": key("a")}}]}) == [("dynamodb:BatchWriteItem", TABLE)]


def test_a_transaction_needs_each_items_own_action_on_its_table():
    other = "arn:aws:dynamodb:us-east-1:123456789012:table/app-Other"
    assert needs("dynamodb", "transact_write_items", TransactItems=[
        {"Put": {"TableName": "app-Table", "Item": key("a")}},
        {"Update": {"TableName": "app-Table", "Key": key("b"), "UpdateExpression": "SET n = :n",
                    "ExpressionAttributeValues": {":n": {"N": "1"}}}},
        {"Delete": {"TableName": "app-Other", "Key": key("c")}},
        {"ConditionCheck": {"TableName": "app-Table", "Key": key("d"), "ConditionExpression": "attribute_exists(PK)"}},
        {"Put": {"TableName": "app-Table", "Item": key("e")}},
    ]) == [("dynamodb:PutItem", TABLE), ("dynamodb:UpdateItem", TABLE), ("dynamodb:DeleteItem", other),
           ("dynamodb:ConditionCheckItem", TABLE)]
    assert needs("dynamodb", "transact_get_items", TransactItems=[
        {"Get": {"TableName": "app-Table", "Key": key("a")}}, {"Get": {"TableName": "app-Other", "Key": key("b")}}]) == [
        ("dynamodb:GetItem", TABLE), ("dynamodb:GetItem", other)]


def test_the_region_comes_from_the_request_signature():
    call = parse_call(*wire("dynamodb", "get_item", region="eu-west-1", TableName="app-Table", Key=key("a")))
    assert permissions(call, ARNS) == [
        ("dynamodb:GetItem", "arn:aws:dynamodb:eu-west-1:123456789012:table/app-Table")]


# ------------------------------------------------------------------ SQS


def test_sqs_calls_need_the_queue_of_their_url_and_batches_the_single_action():
    queue = "arn:aws:sqs:us-east-1:123456789012:app-Jobs"
    assert needs("sqs", "send_message", QueueUrl=QUEUE_URL, MessageBody="x") == [("sqs:SendMessage", queue)]
    assert needs("sqs", "send_message_batch", QueueUrl=QUEUE_URL, Entries=[{"Id": "1", "MessageBody": "x"}]) == [
        ("sqs:SendMessage", queue)]
    assert needs("sqs", "delete_message_batch", QueueUrl=QUEUE_URL, Entries=[{"Id": "1", "ReceiptHandle": "r"}]) == [
        ("sqs:DeleteMessage", queue)]
    assert needs("sqs", "change_message_visibility_batch", QueueUrl=QUEUE_URL, Entries=[
        {"Id": "1", "ReceiptHandle": "r", "VisibilityTimeout": 1}]) == [("sqs:ChangeMessageVisibility", queue)]
    assert needs("sqs", "receive_message", QueueUrl=QUEUE_URL) == [("sqs:ReceiveMessage", queue)]
    assert needs("sqs", "get_queue_url", QueueName="app-Jobs", QueueOwnerAWSAccountId="210987654321") == [
        ("sqs:GetQueueUrl", "arn:aws:sqs:us-east-1:210987654321:app-Jobs")]
    assert needs("sqs", "list_queues") == [("sqs:ListQueues", "*")]


def test_boto3_speaks_sqs_json_and_the_query_protocol_is_mapped_too():
    environ, _ = wire("sqs", "send_message", QueueUrl=QUEUE_URL, MessageBody="x")
    assert environ["HTTP_X_AMZ_TARGET"] == "AmazonSQS.SendMessage"
    form = {"CONTENT_TYPE": "application/x-www-form-urlencoded", "PATH_INFO": "/123456789012/app-Jobs",
            "HTTP_AUTHORIZATION": "AWS4-HMAC-SHA256 Credential=k/20260101/us-east-1/sqs/aws4_request, x"}
    call = parse_call(form, b"Action=SendMessage&MessageBody=x")
    assert call.protocol == "query"
    assert permissions(call, ARNS) == [("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:app-Jobs")]
    in_url = parse_call({**form, "CONTENT_TYPE": "", "PATH_INFO": "/",
                         "QUERY_STRING": f"Action=ReceiveMessage&QueueUrl={QUEUE_URL}"}, b"")
    assert permissions(in_url, ARNS) == [("sqs:ReceiveMessage", "arn:aws:sqs:us-east-1:123456789012:app-Jobs")]


# ------------------------------------------------------------------ Secrets Manager and SSM


def test_a_template_secret_is_the_arn_its_policies_name_however_it_is_called():
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app-Secrets"
    for secret_id in ("app-Secrets", arn, arn + "-AbC123"):
        assert needs("secretsmanager", "get_secret_value", SecretId=secret_id) == [
            ("secretsmanager:GetSecretValue", arn)]
    assert needs("secretsmanager", "get_secret_value", SecretId="other") == [
        ("secretsmanager:GetSecretValue", "arn:aws:secretsmanager:us-east-1:123456789012:secret:other")]
    assert needs("secretsmanager", "batch_get_secret_value", SecretIdList=["app-Secrets"]) == [
        ("secretsmanager:BatchGetSecretValue", "*"), ("secretsmanager:GetSecretValue", arn)]
    assert needs("secretsmanager", "list_secrets") == [("secretsmanager:ListSecrets", "*")]


def test_an_ssm_parameter_is_its_arn_without_the_leading_slash_or_a_version():
    base = "arn:aws:ssm:us-east-1:123456789012:parameter/"
    assert needs("ssm", "get_parameter", Name="app-Rules") == [("ssm:GetParameter", base + "app-Rules")]
    assert needs("ssm", "get_parameter", Name="/app/rules:3") == [("ssm:GetParameter", base + "app/rules")]
    assert needs("ssm", "get_parameters", Names=["a", "/b"]) == [
        ("ssm:GetParameters", base + "a"), ("ssm:GetParameters", base + "b")]
    assert needs("ssm", "get_parameters_by_path", Path="/app") == [("ssm:GetParametersByPath", base + "app")]
    assert needs("ssm", "describe_parameters") == [("ssm:DescribeParameters", "*")]


# ------------------------------------------------------------------ other services


def test_other_services_need_their_action():
    assert needs("logs", "describe_log_groups") == [("logs:DescribeLogGroups", "*")]
    # a REST service's operation is in its path, which is not read: only lambda:* allows it
    assert needs("lambda", "list_functions") == [("lambda:*", "*")]


def test_what_is_not_an_aws_call_is_not_mapped():
    assert parse_call({"PATH_INFO": "/moto-api/reset"}, b"") is None


# ------------------------------------------------------------------ the decision


def role(*statements: dict) -> RolePolicies:
    return RolePolicies("Fn", "arn:aws:sts::123456789012:assumed-role/app-FnRole/app-Fn",
                        ({"Version": "2012-10-17", "Statement": list(statements)},))


def test_an_allow_is_needed_and_a_deny_wins():
    policies = role({"Effect": "Allow", "Action": "dynamodb:*", "Resource": TABLE},
                    {"Effect": "Deny", "Action": "dynamodb:DeleteItem", "Resource": "*"})
    assert policies.decide("dynamodb:GetItem", TABLE) is None
    assert policies.decide("dynamodb:GetItem", TABLE + "/index/I").explicit is False
    denied = policies.decide("dynamodb:DeleteItem", TABLE)
    assert denied.explicit is True
    assert denied.message == ("User: arn:aws:sts::123456789012:assumed-role/app-FnRole/app-Fn is not authorized to "
                              f"perform: dynamodb:DeleteItem on resource: {TABLE} with an explicit deny in an "
                              "identity-based policy")


def test_actions_match_without_case_and_resources_with_it():
    policies = role({"Effect": "Allow", "Action": "DynamoDB:getitem", "Resource": TABLE})
    assert policies.decide("dynamodb:GetItem", TABLE) is None
    assert policies.decide("dynamodb:GetItem", TABLE.upper()) is not None


def test_wildcards_are_iams_not_regular_expressions():
    policies = role({"Effect": "Allow", "Action": "sqs:SendMessage*",
                     "Resource": "arn:aws:sqs:us-east-1:123456789012:app.Jobs-??"})
    assert policies.decide("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:app.Jobs-01") is None
    assert policies.decide("sqs:SendMessageBatch", "arn:aws:sqs:us-east-1:123456789012:app.Jobs-01") is None
    # "." is a dot, "?" exactly one character
    assert policies.decide("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:appXJobs-01") is not None
    assert policies.decide("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:app.Jobs-1") is not None
    assert policies.decide("sqs:SendMessage", "arn:aws:sqs:us-east-1:123456789012:app.Jobs-001") is not None


def test_by_action_alone_any_resource_of_a_statement_counts():
    policies = role({"Effect": "Allow", "Action": "sns:Publish", "Resource": "arn:aws:sns:us-east-1:1:topic"})
    assert policies.decide("sns:Publish", "*") is not None
    assert policies.decide("sns:Publish", "*", by_action_only=True) is None
    assert policies.decide("sns:Subscribe", "*", by_action_only=True) is not None


def test_statements_moto_cannot_evaluate_are_refused_rather_than_misread():
    for extra in ({"Condition": {"StringEquals": {"aws:RequestedRegion": "us-east-1"}}}, {"NotResource": "x"}):
        with pytest.raises(TemplateError, match="not supported"):
            role({"Effect": "Allow", "Action": "s3:*", "Resource": "*", **extra})
    with pytest.raises(TemplateError, match="needs Resource and Action"):
        role({"Effect": "Allow", "Resource": "*"})


def test_report_mode_is_off_unless_asked():
    assert iam_mode({}) == "enforce"
    assert iam_mode({"LOCAL_IAM": "report"}) == "report"
    with pytest.raises(ValueError):
        iam_mode({"LOCAL_IAM": "off"})


def test_report_mode_lets_a_refused_call_through(tmp_path):
    template = tmp_path / "template.yaml"
    template.write_text("Transform: AWS::Serverless-2016-10-31\nResources:\n  Fn:\n"
                        "    Type: AWS::Serverless::Function\n    Properties: {CodeUri: ., Handler: app.handler}\n")
    from infra.local.template import load_template
    model = load_template(template)
    environ, body = wire("dynamodb", "get_item", TableName="app-Table", Key=key("a"))
    environ["HTTP_X_LOCAL_FUNCTION"] = "Fn"
    assert AccessControl(model, mode="enforce")(environ, body)[0] == "400 Bad Request"
    assert AccessControl(model, mode="report")(environ, body) is None
    assert AccessControl(model, mode="enforce")({**environ, "HTTP_X_LOCAL_FUNCTION": ""}, body) is None


def test_a_call_is_an_aws_call_with_its_parameters():
    call = parse_call(*wire("dynamodb", "get_item", TableName="app-Table", Key=key("a")))
    assert call == AwsCall("dynamodb", "GetItem", {"TableName": "app-Table", "Key": key("a")}, "json", "us-east-1", "/")
