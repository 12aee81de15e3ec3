"""Count AWS calls the way DESIGN.md's figures are stated, with botocore event hooks."""
from __future__ import annotations

from collections import Counter

import boto3

WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
READS = {"GetItem", "BatchGetItem", "Query", "Scan", "TransactGetItems"}


def _acting_function() -> str | None:
    """The function of the local stack on whose behalf a call is made (infra/local/iam.py)."""
    from infra.local.iam import _acting
    return _acting.get()


class CallCounter:
    """Counts DynamoDB calls and items read by every client of the default boto3 session
    created after `install()`."""

    def __init__(self):
        self.calls: Counter[str] = Counter()
        self.by_function: Counter[str] = Counter()   # the local stack's function making the call
        self.index_queries_by_function: Counter[tuple[str, str]] = Counter()   # (function, index)
        self.index_queries: Counter[str] = Counter()
        self.items_read = 0

    def install(self) -> "CallCounter":
        boto3.setup_default_session()
        boto3.DEFAULT_SESSION.events.register("after-call.dynamodb", self._after)
        boto3.DEFAULT_SESSION.events.register("provide-client-params.dynamodb.Query", self._query_params)
        return self

    def _query_params(self, params=None, **_):
        if params and params.get("IndexName"):
            self.index_queries[params["IndexName"]] += 1
            self.index_queries_by_function[_acting_function() or "-", params["IndexName"]] += 1

    def _after(self, parsed=None, model=None, **_):
        name = model.name
        self.calls[name] += 1
        self.by_function[_acting_function() or "-"] += 1
        if name in ("Query", "Scan"):
            self.items_read += parsed.get("ScannedCount", parsed.get("Count", 0))
        elif name == "GetItem":
            self.items_read += 1 if "Item" in parsed else 0
        elif name in ("BatchGetItem",):
            self.items_read += sum(len(items) for items in parsed.get("Responses", {}).values())
        elif name == "TransactGetItems":
            self.items_read += sum(1 for r in parsed.get("Responses", []) if r.get("Item"))

    def reset(self) -> None:
        self.calls.clear()
        self.by_function.clear()
        self.index_queries_by_function.clear()
        self.index_queries.clear()
        self.items_read = 0

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def writes(self) -> int:
        return sum(n for op, n in self.calls.items() if op in WRITES)

    @property
    def reads(self) -> int:
        return sum(n for op, n in self.calls.items() if op in READS)
