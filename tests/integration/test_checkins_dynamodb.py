"""Daily check-ins over DynamoDB in the emulator: the same tests as the fake's, and the
faults the emulator never makes on its own."""

import pytest

from loyalty.adapters.ledger import DynamoLedgerStore
from tests.checkins_contract import *  # noqa: F401,F403 - the shared behaviour
from tests.checkins_contract import T0, account, check_in, join
from tests.integration.faults import cancel_next_transaction


@pytest.fixture
def store(fresh_aws):
    return DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=fresh_aws.client("dynamodb"))



def test_a_transaction_conflict_is_transient_never_a_duplicate_and_the_retry_credits_once(store, fresh_aws,
                                                                                          stored_text):
    from loyalty.errors import Transient
    join(store)
    before = stored_text()
    cancel_next_transaction(store.table._client, "None", "TransactionConflict")
    with pytest.raises(Transient):
        check_in(store, T0)
    assert stored_text() == before
    assert check_in(store, T0)["points"] == 10              # the caller's retry (a 503 is retried)
    assert check_in(store, T0)["already_checked_in"] is True
    assert account(store).balance == 10
