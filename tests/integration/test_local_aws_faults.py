"""Faults in the functions' AWS calls (infra/local/aws_faults.py): injected by the
emulator only on requests that carry X-Local-Function, answered in the service's wire
format so that boto3 raises what AWS would make it raise."""
from __future__ import annotations

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from infra.local import LocalStack
from infra.local.aws_faults import AwsFaults
from infra.local.iam import acting_as


@pytest.fixture(scope="module")
def stack():
    with LocalStack(port=0, sandbox=False, stack_name="faults-test") as running:
        yield running


@pytest.fixture
def ddb(stack):
    # one attempt: what botocore would retry is seen as it comes
    return boto3.client("dynamodb", endpoint_url=stack.emulator_url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing",
                        config=Config(retries={"total_max_attempts": 1, "mode": "standard"}))


@pytest.fixture
def table(stack):
    return stack.model.tables["LoyaltyTable"].name


@pytest.fixture(autouse=True)
def faults_off(stack):
    yield
    stack.aws_faults.configure({"share": 0})


def put(ddb, table, pk):
    ddb.put_item(TableName=table, Item={"PK": {"S": pk}, "SK": {"S": "1"}})


def written(ddb, table, pk) -> bool:
    return "Item" in ddb.get_item(TableName=table, Key={"PK": {"S": pk}, "SK": {"S": "1"}})


def transact(ddb, table, pk):
    ddb.transact_write_items(TransactItems=[
        {"Put": {"TableName": table, "Item": {"PK": {"S": pk}, "SK": {"S": str(n)}}}} for n in (1, 2, 3)])


def test_requests_without_the_function_header_are_never_touched(stack, ddb, table):
    stack.aws_faults.configure({"share": 1})
    put(ddb, table, "F#untouched")                   # tests, pollers, the stack itself
    assert written(ddb, table, "F#untouched")
    assert stack.aws_faults.public()["counts"]["requests"] == 0


def test_throttling_is_dynamodb_s_own_400_and_nothing_is_written(stack, ddb, table):
    stack.aws_faults.configure({"share": 1, "seed": 3, "kinds": {"throttle": 1}})
    codes = set()
    with acting_as("OrderWebhookFunction"):
        for n in range(8):
            with pytest.raises(ClientError) as raised:
                put(ddb, table, f"F#throttled{n}")
            codes.add(raised.value.response["Error"]["Code"])
            assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert codes == {"ProvisionedThroughputExceededException", "ThrottlingException"}
    assert not any(written(ddb, table, f"F#throttled{n}") for n in range(8))

    # a throttled transaction: also as DynamoDB reports it inside one, a cancellation reason
    seen = set()
    with acting_as("OrderWebhookFunction"):
        for n in range(12):
            with pytest.raises(ClientError) as raised:
                transact(ddb, table, f"F#throttled-transaction{n}")
            error = raised.value.response
            seen.add((error["Error"]["Code"],
                      tuple(sorted(reason["Code"] for reason in error.get("CancellationReasons", [])))))
    assert ("TransactionCanceledException", ("None", "None", "ThrottlingError")) in seen
    assert {code for code, _ in seen} == {"TransactionCanceledException", "ProvisionedThroughputExceededException",
                                          "ThrottlingException"}


def test_a_transaction_conflict_names_one_item_and_single_writes_are_not_conflicted(stack, ddb, table):
    stack.aws_faults.configure({"share": 1, "kinds": {"conflict": 1}})
    with acting_as("OrderWebhookFunction"):
        with pytest.raises(ClientError) as raised:
            transact(ddb, table, "F#conflicted")
        put(ddb, table, "F#single")                  # conflict applies to transactions only
    error = raised.value.response
    assert error["Error"]["Code"] == "TransactionCanceledException"
    reasons = [reason["Code"] for reason in error["CancellationReasons"]]
    assert sorted(reasons) == ["None", "None", "TransactionConflict"]
    assert not written(ddb, table, "F#conflicted") and written(ddb, table, "F#single")


def test_a_reset_does_nothing_and_a_timeout_does_the_work_but_loses_the_answer(stack, ddb, table):
    with acting_as("OrderWebhookFunction"):
        stack.aws_faults.configure({"share": 1, "kinds": {"reset": 1}})
        with pytest.raises(ConnectionClosedError):
            put(ddb, table, "F#reset")
        stack.aws_faults.configure({"share": 1, "kinds": {"timeout": 1}})
        with pytest.raises(ConnectionClosedError):
            transact(ddb, table, "F#timeout")
    assert not written(ddb, table, "F#reset")
    assert written(ddb, table, "F#timeout")          # done: a retry would write it again
    counts = stack.aws_faults.public()["counts"]
    assert counts["by_kind"] == {"timeout": counts["injected"]}
    assert counts["by_function"] == {"OrderWebhookFunction": counts["injected"]}
    assert set(counts["by_operation"]) == {"dynamodb:TransactWriteItems"}


def test_the_control_route_sets_shows_and_stops_faults(stack):
    url = f"{stack.api_url}/_local/aws-faults"
    answer = requests.post(url, json={"share": 0.25, "seed": 9, "kinds": {"throttle": 3, "timeout": 1}}, timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"share": 0.25, "seed": 9, "kinds": {"throttle": 3.0, "timeout": 1.0},
                             "counts": {"requests": 0, "injected": 0, "by_kind": {}, "by_function": {},
                                        "by_operation": {}}}
    assert requests.get(url, timeout=5).json()["share"] == 0.25
    assert requests.delete(url, timeout=5).json()["share"] == 0.0
    for body in ({"share": 2}, {"kinds": {"fire": 1}}, {"share": 0.1, "seed": "x"}, {"shares": 1}):
        assert requests.post(url, json=body, timeout=5).status_code == 400, body


def test_the_environment_variable_turns_faults_on_at_start():
    faults = AwsFaults.from_env({"LOCAL_AWS_FAULTS": "share=0.1, seed=7, throttle=2, reset=1"})
    assert (faults.share, faults.seed, faults.kinds) == (0.1, 7, {"throttle": 2.0, "reset": 1.0})
    assert AwsFaults.from_env({}).share == 0
    with pytest.raises(ValueError):
        AwsFaults.from_env({"LOCAL_AWS_FAULTS": "share=0.1,lightning=1"})


def test_functions_operations_and_count_narrow_what_fails(stack, ddb, table):
    stack.aws_faults.configure({"share": 1, "kinds": {"reset": 1}, "functions": ["SendSmsFunction"],
                                "operations": ["dynamodb:PutItem"], "count": 1})
    with acting_as("OrderWebhookFunction"):
        put(ddb, table, "F#other-function")
    with acting_as("SendSmsFunction"):
        ddb.get_item(TableName=table, Key={"PK": {"S": "F#x"}, "SK": {"S": "1"}})     # another operation
        with pytest.raises(ConnectionClosedError):
            put(ddb, table, "F#counted")
        put(ddb, table, "F#after-the-count")
    assert written(ddb, table, "F#other-function") and written(ddb, table, "F#after-the-count")
    assert stack.aws_faults.public()["counts"]["injected"] == 1
    assert stack.aws_faults.public()["functions"] == ["SendSmsFunction"]
