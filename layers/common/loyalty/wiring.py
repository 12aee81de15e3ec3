"""The composition root: builds the adapters the handlers hand to the services, once per
container, on first use."""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from .settings import settings

if TYPE_CHECKING:
    from .rules import Rules


@cache
def ledger_store():
    from .adapters.dynamo import DynamoLedgerStore
    s = settings()
    return DynamoLedgerStore(s.table_name, s.expiry_shards)


@cache
def messaging_store():
    from .adapters.messaging_dynamo import DynamoMessagingStore
    return DynamoMessagingStore(settings().table_name)


@cache
def queues():
    from .adapters.queues import SqsQueues
    return SqsQueues()


def rules() -> Rules:
    """The rules in force: defaults merged with the merchant's overrides (cached)."""
    from .adapters import config  # boto3 loads on first use, not at handler import
    overrides = config.rule_overrides(settings().rules_parameter)
    return _built(repr(sorted(overrides.items())), overrides)


_built_cache: dict[str, Rules] = {}


def _built(key: str, overrides: dict) -> Rules:
    from .errors import Invalid, Misconfigured
    from .rules import build_rules  # pydantic models built on first use
    if key not in _built_cache:
        try:
            rules = build_rules(overrides)
        except Invalid as exc:  # the merchant's document, not the caller's request, is wrong
            raise Misconfigured(f"the programme rules are invalid: {exc}") from exc
        _built_cache.clear()
        _built_cache[key] = rules
    return _built_cache[key]


def secret(name: str) -> str | None:
    from .adapters import config
    return config.secret(name, settings().secrets_id)
