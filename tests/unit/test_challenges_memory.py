"""The check-in challenge store over the in-memory fake."""
import pytest

from loyalty.adapters.memory import MemoryLedgerStore
from tests.challenges_contract import *  # noqa: F401,F403 - the shared behaviour


@pytest.fixture
def store():
    return MemoryLedgerStore()
