"""Four speed-ups of moto for the local emulator, none changing what it answers, and one
behaviour of DynamoDB's that moto lacks.

1. A faster TransactWriteItems.

moto 5.2 snapshots a whole table (copy.deepcopy) once per item of every transaction, so a
transaction on a table of 40,000 items takes seconds and concurrent ones time out. This
replacement keeps DynamoDB's semantics: every condition is checked against the state
before the transaction; if any fails, nothing is written and the cancellation reasons come
back in request order. Only the touched items are snapshotted, to undo a write that moto
rejects half-way (a type error in an update expression).

2. moto's server finds the service of every request with `list_of_moto_modules()`, which
lists moto's package folder and stats each of its ~150 entries, twice per request: about
2 ms of the 3 ms moto spends on a GetItem. The folder does not change while the process
runs, so the list is read once.

3. A Query reads what it asks for. moto's Table.query starts from `all_items()`, which
sorts every item of the table, then keeps the query's partition: each Query costs
O(n log n) in the table's size (a 9-query ReleaseDeferred run took 0.4 s once the e2e
suite had filled the table). Here `all_items()` answers, for that one call, the
partition's items (a base-table query) or the items whose index keys match (an index
query, still a pass over the table but no sort of all of it), in the order moto's
own would give them; moto does the rest as before.

4. TransactWriteItems is idempotent under its ClientRequestToken, as in DynamoDB: a
repeat of a successful call with the same token and the same items within 10 minutes
succeeds without writing anything again; the same token with other items is
IdempotentParameterMismatchException. botocore fills the token once per call and sends
it again on every retry, so in AWS a transaction whose answer was lost (a read timeout)
is retried into a success. moto ignores the token: the retry ran the transaction again,
its conditions failed on its own writes, and the caller read a cancellation, so the
local stack failed where AWS does not.

5. Answers that carry items (Query, Scan, GetItem, ...) are written as JSON directly,
not through moto's shape-walking serializer (`_plain_item_answers`).
"""
from __future__ import annotations

import copy
from typing import Any

_applied = False


def apply() -> None:
    """Install the replacement (idempotent)."""
    global _applied
    if _applied:
        return
    from moto.dynamodb.exceptions import (ConditionalCheckFailed, MockValidationException,
                                          MultipleTransactionsException, TooManyTransactionsException,
                                          TransactionCanceledException, TransactWriteSingleOpException)
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models import get_filter_expression  # moto's own condition parser

    def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
        if len(transact_items) > 100:
            raise TooManyTransactionsException()
        seen: set[tuple[str, str]] = set()
        planned: list[tuple[str, dict, str, dict]] = []
        errors: list[tuple[Any, Any, Any]] = []
        for item in transact_items:
            if len(item) > 1:
                raise TransactWriteSingleOpException
            op_type, op = next(iter(item.items()))
            table_name = op["TableName"]
            table = self.get_table(table_name)
            if op_type == "Put":
                key = {table.hash_key_attr: op["Item"][table.hash_key_attr]}
                if table.range_key_attr is not None:
                    key[table.range_key_attr] = op["Item"][table.range_key_attr]
            else:
                key = op["Key"]
            marker = (table_name, str(dict(sorted(key.items()))))
            if marker in seen:
                raise MultipleTransactionsException()
            seen.add(marker)
            planned.append((op_type, op, table_name, key))
            current = self.get_item(table_name, key)
            failed_item = None
            try:
                condition = op.get("ConditionExpression")
                if condition is not None:
                    expression = get_filter_expression(condition, op.get("ExpressionAttributeNames"),
                                                       op.get("ExpressionAttributeValues"))
                    if not expression.expr(current):
                        if op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
                            failed_item = current.to_json()["Attributes"]
                        raise ConditionalCheckFailed(item=failed_item)
                errors.append((None, None, None))
            except ConditionalCheckFailed as exc:
                errors.append(("ConditionalCheckFailed", str(exc.message), failed_item))
        if any(code is not None for code, _, _ in errors):
            raise TransactionCanceledException(errors)

        before = {}
        for _, _, table_name, key in planned:
            current = self.get_item(table_name, key)
            before[(table_name, str(dict(sorted(key.items()))))] = (
                table_name, key, copy.deepcopy(current.to_json()["Attributes"]) if current else None)
        try:
            for op_type, op, table_name, key in planned:
                names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
                if op_type == "Put":
                    self.put_item(table_name, op["Item"])
                elif op_type == "Delete":
                    self.delete_item(table_name, key)
                elif op_type == "Update":
                    self.update_item(table_name, key, update_expression=op["UpdateExpression"],
                                     expression_attribute_names=names, expression_attribute_values=values)
        except MockValidationException:
            for table_name, key, attributes in before.values():
                if attributes is None:
                    self.delete_item(table_name, key)
                else:
                    self.put_item(table_name, attributes)
            raise

    DynamoDBBackend.transact_write_items = transact_write_items
    _idempotent_transactions()
    _cache_module_list()
    _query_the_partition()
    _plain_item_answers()
    _applied = True


TOKEN_WINDOW_S = 600


def _idempotent_transactions() -> None:
    import hashlib
    import json
    import threading
    import time

    from moto.dynamodb.exceptions import DynamodbException
    from moto.dynamodb.exceptions import ERROR_TYPE_PREFIX
    from moto.dynamodb.responses import DynamoHandler

    class IdempotentParameterMismatch(DynamodbException):
        def __init__(self):
            super().__init__(ERROR_TYPE_PREFIX + "IdempotentParameterMismatchException",
                             message="The request uses the same client token as a previous, but non-identical "
                                     "request.")

    original = DynamoHandler.transact_write_items
    done: dict[str, tuple[str, float, Any]] = {}   # token -> (digest of the items, when, the answer)
    lock = threading.Lock()

    def transact_write_items(self: DynamoHandler) -> Any:
        token = self.body.get("ClientRequestToken")
        if not token:
            return original(self)
        digest = hashlib.sha256(json.dumps(self.body["TransactItems"], sort_keys=True).encode()).hexdigest()
        now = time.monotonic()
        with lock:
            seen = done.get(token)
            if seen is not None and now - seen[1] < TOKEN_WINDOW_S:
                if seen[0] != digest:
                    raise IdempotentParameterMismatch()
                return seen[2]
        answer = original(self)          # raises when cancelled: only a success is remembered
        with lock:
            if len(done) > 10000:
                for old in [t for t, (_, at, _) in done.items() if now - at >= TOKEN_WINDOW_S]:
                    del done[old]
            done[token] = (digest, now, answer)
        return answer

    DynamoHandler.transact_write_items = transact_write_items


def _cache_module_list() -> None:
    from moto import backends

    modules = tuple(backends.list_of_moto_modules())
    backends.list_of_moto_modules = lambda: modules


def _query_the_partition() -> None:
    import inspect

    from moto.dynamodb.models.table import Item, Table

    original = Table.query
    signature = inspect.signature(original)

    def order(item: Item) -> Any:
        return (item.hash_key, item.range_key) if item.range_key else item.hash_key

    def query(self: Table, *args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(self, *args, **kwargs).arguments
        hash_key, index_name = bound.get("hash_key"), bound.get("index_name")
        conditions = bound.get("hash_key_conditions") or []
        if index_name is None and hash_key is not None:
            partition = self.items.get(hash_key) if hash_key in self.items else None
            if partition is None:
                found = []
            else:
                found = list(partition.values()) if self.range_key_attr else [partition]
        elif index_name is not None and conditions:
            found = [item for hash_set in self.items.values()
                     for item in (hash_set.values() if self.range_key_attr else [hash_set])
                     if isinstance(item, Item) and all(_equal(item.attrs.get(name), value) for name, value in conditions)]
        else:
            return original(self, *args, **kwargs)
        self.all_items = lambda: sorted(found, key=order)  # this call only: the instance attribute
        try:
            return original(self, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = query


def _equal(attribute: Any, value: Any) -> bool:
    return attribute is not None and attribute == value  # DynamoType == None raises


PLAIN_ITEM_ANSWERS = True   # a test compares both ways
ITEM_ANSWERS = ("Query", "Scan", "GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem",
                "TransactGetItems")


def _plain_item_answers() -> None:
    """The answers that carry items, written as JSON directly. moto 5.2 serializes every
    answer by walking botocore's output shape, attribute value by attribute value: for a
    Query of a hundred items, most of what the emulator spends. Those answers are already
    DynamoDB's wire format once moto has made them plain (binary as bytes, which JSON
    carries in base64, as the service does); errors and every other operation go
    through moto's serializer as before."""
    import base64
    import json
    from datetime import datetime

    from moto.dynamodb.responses import DynamoHandler, DynamoResult

    original = DynamoHandler.serialized

    def wire(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode("ascii")
        if isinstance(value, datetime):
            return value.timestamp()
        raise TypeError(f"{type(value).__name__} in a DynamoDB answer")

    def serialized(self: DynamoHandler, action_result: Any) -> Any:
        if not PLAIN_ITEM_ANSWERS or type(action_result) is not DynamoResult or \
                self._get_action() not in ITEM_ANSWERS:
            return original(self, action_result)
        status, headers, _ = original(self, DynamoResult({}))   # the status and headers moto gives
        return status, headers, json.dumps(action_result.result, default=wire, separators=(",", ":"))

    DynamoHandler.serialized = serialized
