"""Tiers and the per-member catalog over the in-memory store."""
import pytest

from loyalty.adapters.memory import MemoryLedgerStore
from tests.tiers_contract import *  # noqa: F401,F403 - the shared behaviour


@pytest.fixture
def store():
    return MemoryLedgerStore()
