"""The emulator writes answers that carry items as JSON itself (infra/local/moto_patches.py):
what boto3 reads from them is what it reads from moto's own serializer, for every type of
attribute value, every operation that answers items, and consumed capacity."""
import pytest

from infra.local import moto_patches

ITEM = {"PK": {"S": "T#1"}, "SK": {"S": "A"}, "s": {"S": "我的积分 & <x>"}, "n": {"N": "-12.5"},
        "b": {"B": b"\x00\xffbytes"}, "t": {"BOOL": True}, "z": {"NULL": True},
        "l": {"L": [{"S": "x"}, {"N": "1"}, {"M": {"k": {"B": b"\x01"}}}]},
        "m": {"M": {"inner": {"SS": ["a", "b"]}, "nums": {"NS": ["1", "2.5"]}}}, "bs": {"BS": [b"\x02", b"\x03"]}}
KEY = {"PK": ITEM["PK"], "SK": ITEM["SK"]}


def _answers(client, table):
    def clean(answer):
        return {k: v for k, v in answer.items() if k != "ResponseMetadata"}
    client.put_item(TableName=table, Item=ITEM)
    client.put_item(TableName=table, Item={**ITEM, "SK": {"S": "B"}})
    answers = {
        "get": client.get_item(TableName=table, Key=KEY, ConsistentRead=True, ReturnConsumedCapacity="TOTAL"),
        "get-none": client.get_item(TableName=table, Key={"PK": {"S": "T#none"}, "SK": {"S": "A"}}),
        "query": client.query(TableName=table, KeyConditionExpression="PK = :p", ReturnConsumedCapacity="INDEXES",
                              ExpressionAttributeValues={":p": ITEM["PK"]}, Limit=1),
        "count": client.query(TableName=table, KeyConditionExpression="PK = :p", Select="COUNT",
                              ExpressionAttributeValues={":p": ITEM["PK"]}),
        "scan": client.scan(TableName=table, ConsistentRead=True),
        "batch": client.batch_get_item(RequestItems={table: {"Keys": [KEY], "ConsistentRead": True}}),
        "transact": client.transact_get_items(TransactItems=[{"Get": {"TableName": table, "Key": KEY}}]),
        "put-old": client.put_item(TableName=table, Item=ITEM, ReturnValues="ALL_OLD"),
        "update-new": client.update_item(TableName=table, Key=KEY, UpdateExpression="SET c = :c",
                                         ExpressionAttributeValues={":c": {"N": "1"}}, ReturnValues="ALL_NEW"),
        "delete-old": client.delete_item(TableName=table, Key=KEY, ReturnValues="ALL_OLD"),
    }
    return {name: clean(answer) for name, answer in answers.items()}


@pytest.fixture
def table(fresh_aws):
    return fresh_aws.client("dynamodb"), fresh_aws.environ["TABLE_NAME"]


def test_item_answers_read_the_same_as_motos_serializer(table, monkeypatch):
    client, name = table
    plain = _answers(client, name)
    monkeypatch.setattr(moto_patches, "PLAIN_ITEM_ANSWERS", False)
    assert plain == _answers(client, name)
    assert plain["get"]["Item"]["b"] == {"B": b"\x00\xffbytes"} and plain["get"]["Item"]["s"]["S"] == "我的积分 & <x>"
    assert plain["query"]["Count"] == 1 and "LastEvaluatedKey" in plain["query"]


def test_an_error_still_reads_as_the_service_error(table):
    client, name = table
    client.put_item(TableName=name, Item=ITEM)
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        client.put_item(TableName=name, Item=ITEM, ConditionExpression="attribute_not_exists(PK)")
    with pytest.raises(client.exceptions.ResourceNotFoundException):
        client.get_item(TableName="no-such-table", Key=KEY)
