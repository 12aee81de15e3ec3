"""Activities, tasks, risk control and reviews over DynamoDB in the emulator: the same
tests as the fake's."""
import json

import pytest

from loyalty.adapters.ledger import DynamoLedgerStore
from tests.activities_contract import *  # noqa: F401,F403 - the shared behaviour


@pytest.fixture
def store(fresh_aws):
    return DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=fresh_aws.client("dynamodb"))


@pytest.fixture
def stored_text(fresh_aws):
    client, table = fresh_aws.client("dynamodb"), fresh_aws.environ["TABLE_NAME"]

    def everything() -> str:
        items = [item for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
                 for item in page["Items"]]
        return json.dumps(sorted(json.dumps(i, sort_keys=True) for i in items))
    return everything
