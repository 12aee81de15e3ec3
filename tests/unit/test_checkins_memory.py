"""Daily check-ins over the in-memory store."""
import pytest

from loyalty.adapters.memory import MemoryLedgerStore
from tests.checkins_contract import *  # noqa: F401,F403 - the shared behaviour


@pytest.fixture
def store():
    return MemoryLedgerStore()


@pytest.fixture
def stored_text(store):
    return lambda: repr(vars(store))
