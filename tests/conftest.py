import pytest

# The shared behaviour module is imported by test modules: rewrite its asserts too.
pytest.register_assert_rewrite("tests.ledger_contract", "tests.messaging_contract", "tests.results_contract", "tests.unit")

# The longest files first (a whole quarter in simulated time, the short fault soak), so
# that with two test processes (`make test`) each starts on one and the rest fills in
# around them, instead of one of them starting last.
LONGEST_FIRST = ("test_quarter_e2e.py", "test_soak_e2e.py")


def pytest_collection_modifyitems(session, config, items):
    items.sort(key=lambda item: LONGEST_FIRST.index(item.path.name) if item.path.name in LONGEST_FIRST
                else len(LONGEST_FIRST))
