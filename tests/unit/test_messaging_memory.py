"""The messaging store's behaviour over the in-memory fake."""
import pytest

from loyalty.adapters.memory import MemoryLedgerStore
from loyalty.adapters.messaging_memory import MemoryMessagingStore
from loyalty.channels.wechat import MemoryTokenStore
from tests.messaging_contract import *  # noqa: F401,F403 - the shared behaviour


@pytest.fixture
def ledger():
    return MemoryLedgerStore()


@pytest.fixture
def msgs(ledger):
    return MemoryMessagingStore(ledger)


@pytest.fixture
def token_store():
    return MemoryTokenStore()
