"""The composition root: builds the adapters the handlers hand to the services, once per
container, on first use."""
from __future__ import annotations

from functools import cache

from .rules import Rules, build_rules
from .settings import settings


@cache
def ledger_store():
    from .adapters.dynamo import DynamoLedgerStore
    s = settings()
    return DynamoLedgerStore(s.table_name, s.expiry_shards)


def rules() -> Rules:
    """The rules in force: defaults merged with the merchant's overrides (cached)."""
    from .adapters import config  # boto3 loads on first use, not at handler import
    overrides = config.rule_overrides(settings().rules_parameter)
    return _built(repr(sorted(overrides.items())), overrides)


_built_cache: dict[str, Rules] = {}


def _built(key: str, overrides: dict) -> Rules:
    if key not in _built_cache:
        _built_cache.clear()
        _built_cache[key] = build_rules(overrides)
    return _built_cache[key]


def secret(name: str) -> str | None:
    from .adapters import config
    return config.secret(name, settings().secrets_id)
