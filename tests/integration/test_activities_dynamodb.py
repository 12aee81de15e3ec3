"""Activities, tasks, risk control and reviews over DynamoDB in the emulator: the same
tests as the fake's."""

import pytest

from loyalty.adapters.ledger import DynamoLedgerStore
from tests.activities_contract import *  # noqa: F401,F403 - the shared behaviour


@pytest.fixture
def store(fresh_aws):
    return DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=fresh_aws.client("dynamodb"))

