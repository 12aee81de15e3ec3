"""The results store and the results' writes into the ledger, on DynamoDB in the
emulator: the same tests as the fakes'."""
import pytest

from loyalty.adapters.ledger import DynamoLedgerStore, LedgerTable
from loyalty.adapters.ledger.results import DynamoResultsStore
from tests.results_contract import *  # noqa: F401,F403 - the shared behaviour


@pytest.fixture
def ledger(fresh_aws):
    return DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=fresh_aws.client("dynamodb"))


@pytest.fixture
def results(fresh_aws):
    return DynamoResultsStore(LedgerTable(fresh_aws.environ["TABLE_NAME"], fresh_aws.client("dynamodb")))
