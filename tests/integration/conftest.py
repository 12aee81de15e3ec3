"""Integration tests talk to the AWS emulator over HTTP, as boto3 does in Lambda."""
import json
import os

import pytest

from infra.local.testing import start_emulator
from tests.orders_only import ORDERS_ONLY_JSON

# The rules parameter the emulator starts with: the order-only rules (tests/orders_only.py)
os.environ.setdefault("LOCAL_RULES", ORDERS_ONLY_JSON)


@pytest.fixture(scope="session")
def aws():
    with start_emulator() as session:
        yield session


@pytest.fixture
def fresh_aws(aws):
    """The emulator emptied and its resources re-created, and the adapters' caches cleared."""
    from loyalty import wiring

    aws.reset()
    wiring.reset()
    yield aws


# What the table holds, as one comparable text (the contracts' "a refusal changed nothing").
@pytest.fixture
def stored_text(fresh_aws):
    client, table = fresh_aws.client("dynamodb"), fresh_aws.environ["TABLE_NAME"]

    def everything() -> str:
        items = [item for page in client.get_paginator("scan").paginate(TableName=table, ConsistentRead=True)
                 for item in page["Items"]]
        return json.dumps(sorted(json.dumps(i, sort_keys=True) for i in items))
    return everything
