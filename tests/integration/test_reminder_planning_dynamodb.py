"""3-7-1 planning over the DynamoDB expiry index in the emulator: the unit tests again."""
import pytest

from loyalty.adapters.ledger import DynamoLedgerStore
from tests.unit.test_reminder_planning import *  # noqa: F401,F403 - the same behaviour


@pytest.fixture
def store(fresh_aws):
    return DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=fresh_aws.client("dynamodb"))
