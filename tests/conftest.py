import pytest

# The shared behaviour module is imported by test modules: rewrite its asserts too.
pytest.register_assert_rewrite("tests.ledger_contract", "tests.messaging_contract", "tests.results_contract", "tests.unit")
