"""The results store and the results' writes into the ledger, on the in-memory fakes."""
import pytest

from loyalty.adapters.memory import MemoryLedgerStore
from loyalty.adapters.results_memory import MemoryResultsStore
from tests.results_contract import *  # noqa: F401,F403 - the shared behaviour


@pytest.fixture
def ledger():
    return MemoryLedgerStore()


@pytest.fixture
def results(ledger):
    return MemoryResultsStore(ledger)
