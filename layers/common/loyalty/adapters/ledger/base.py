"""What the ledger's item models share: the table's key, the attribute types of their
items, the one connection a store's models go through, the ordered transaction, and
the one place where throttling and server errors become `Transient`.

PynamoDB gives each model class its own botocore session and client, created from the
model's `Meta` (pynamodb#876, #1245: there is no public way to share one). A store
binds the models it uses to its table instead (`LedgerTable.bind`): subclasses that
name the table and share one connection over one botocore client, the layer's boto3
client, made on first use from the settings (nothing at import). So a container loads
DynamoDB's service model once, and the benchmark's botocore hooks and the local
stack's IAM header see every call the models make.
"""
from __future__ import annotations

import inspect
import json
import threading
from contextlib import contextmanager
from datetime import datetime
from functools import wraps
from typing import Any, Hashable, Iterator, NoReturn, TypeVar

from botocore.exceptions import ClientError
from pynamodb.attributes import Attribute, UnicodeAttribute
from pynamodb.connection import Connection, TableConnection
from pynamodb.connection.base import MetaTable
from pynamodb.constants import STRING
from pynamodb.exceptions import PynamoDBException
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action
from pynamodb.models import Model
from pynamodb.pagination import ResultIterator

from ...domain import parse_time, utc_key
from ...errors import Transient
from ...settings import settings
from ..table import TRANSIENT_CODES

M = TypeVar("M", bound=Model)

EXPIRY_INDEX = "ExpiryIndex"
TIER_REVIEW_INDEX = "TierReviews"
LEADERBOARD_INDEX = "Leaderboard"

# The table's keys as template.yaml declares them (the ledger's part: MemberMessages is
# the messaging side's). PynamoDB needs them to type keys and key conditions.
SCHEMA = {
    "KeySchema": [{"AttributeName": "PK", "KeyType": "HASH"}, {"AttributeName": "SK", "KeyType": "RANGE"}],
    "AttributeDefinitions": [{"AttributeName": name, "AttributeType": "S"}
                             for name in ("PK", "SK", "EXP_PK", "EXP_SK", "TIER_PK", "TIER_SK", "LB_PK")]
                            + [{"AttributeName": "LB_SK", "AttributeType": "N"}],
    "GlobalSecondaryIndexes": [{"IndexName": EXPIRY_INDEX, "KeySchema": [
        {"AttributeName": "EXP_PK", "KeyType": "HASH"}, {"AttributeName": "EXP_SK", "KeyType": "RANGE"}]},
        {"IndexName": TIER_REVIEW_INDEX, "KeySchema": [
            {"AttributeName": "TIER_PK", "KeyType": "HASH"}, {"AttributeName": "TIER_SK", "KeyType": "RANGE"}]},
        {"IndexName": LEADERBOARD_INDEX, "KeySchema": [
            {"AttributeName": "LB_PK", "KeyType": "HASH"}, {"AttributeName": "LB_SK", "KeyType": "RANGE"}]}],
}


def member_pk(member_id: str) -> str:
    return f"MEMBER#{member_id}"


# --- attribute types --------------------------------------------------------------------

class IsoTime(Attribute[datetime]):
    """A time as ISO 8601 text with the offset it was given in (views show it so)."""

    attr_type = STRING

    def serialize(self, value: datetime) -> str:
        return value.isoformat()

    def deserialize(self, value: str) -> datetime:
        return parse_time(value)


class UtcKeyTime(Attribute[datetime]):
    """A time as fixed-width UTC text, which sorts (and compares in a condition) like time."""

    attr_type = STRING

    def serialize(self, value: datetime) -> str:
        return utc_key(value)

    def deserialize(self, value: str) -> datetime:
        return parse_time(value)


class JsonText(Attribute[Any]):
    """A JSON document stored as text, UTF-8 as written (PynamoDB's JSONAttribute escapes
    every non-ASCII character, which makes Chinese names and reasons 2-3 times larger)."""

    attr_type = STRING

    def serialize(self, value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    def deserialize(self, value: str) -> Any:
        return json.loads(value)


class LedgerModel(Model):
    """Every item of the table: PK / SK. Unbound (no table, so no I/O by mistake): a
    store works on `LedgerTable.bind(Model)`."""

    class Meta:
        table_name = None
        region = None
        host = None

    pk = UnicodeAttribute(hash_key=True, attr_name="PK")
    sk = UnicodeAttribute(range_key=True, attr_name="SK")


# --- the table and its one connection ---------------------------------------------------

class _OnOneClient(Connection):
    """PynamoDB's connection over one botocore client: the one handed in (tests, the
    benchmark), else the layer's boto3 client, made on the first call."""

    def __init__(self, client: Any | None):
        super().__init__()
        self._given = client
        self._making = threading.Lock()

    @property
    def client(self):
        if self._given is None:
            with self._making:
                if self._given is None:
                    import boto3  # on first use, not at handler import
                    s = settings()
                    self._given = boto3.client("dynamodb", region_name=s.region, endpoint_url=s.dynamodb_endpoint)
        return self._given


class LedgerTable:
    """The loyalty table as the ledger's models see it: its name (the settings' unless
    given) and one PynamoDB connection, both settled on first use."""

    def __init__(self, name: str | None = None, client: Any | None = None):
        self._name, self._client = name, client
        self._lock = threading.RLock()
        self._connection: TableConnection | None = None
        self._bound: dict[type, type] = {}

    @property
    def name(self) -> str:
        if self._name is None:
            self._name = settings().table_name
        return self._name

    @property
    def connection(self) -> TableConnection:
        with self._lock:
            if self._connection is None:
                table = TableConnection(self.name)
                table.connection = _OnOneClient(self._client)
                table.connection.add_meta_table(MetaTable({"TableName": self.name, **SCHEMA}))
                self._connection = table
            return self._connection

    def bind(self, model: type[M]) -> type[M]:
        """`model` on this table: a subclass whose Meta names the table and whose
        connection is the table's (the same subclass each time)."""
        with self._lock:
            bound = self._bound.get(model)
            if bound is None:
                s = settings()
                meta = type("Meta", (), {"table_name": self.name, "region": s.region, "host": s.dynamodb_endpoint})
                bound = type(model.__name__, (model,), {"Meta": meta, "__module__": model.__module__,
                                                        "__qualname__": model.__qualname__})
                bound._connection = self.connection  # shared, instead of one client per model
                self._bound[model] = bound
            return bound

    def batch_get(self, keys: list[tuple[type[M], str, str]]) -> dict[tuple[str, str], Model]:
        """Items of several models in one consistent BatchGetItem, by (PK, SK), each read by
        its own model."""
        models = {(pk, sk): model for model, pk, sk in keys}
        request: list[dict] = [{"PK": pk, "SK": sk} for _, pk, sk in keys]
        found: dict[tuple[str, str], Model] = {}
        for _ in range(8):
            # the connection, not a model: Model.batch_get reads the items of one model only
            response = self.connection.batch_get_item(request, consistent_read=True)
            for raw in response.get("Responses", {}).get(self.name, []):
                key = LedgerModel.from_raw_data(raw)
                found[key.pk, key.sk] = models[key.pk, key.sk].from_raw_data(raw)
            request = response.get("UnprocessedKeys", {}).get(self.name, {}).get("Keys", [])
            if not request:
                return found
        raise Transient("BatchGetItem left keys unprocessed")


def raw_pages(results: ResultIterator) -> Iterator[list[dict]]:
    """A query's or scan's pages as DynamoDB answered them: to work page by page, or when
    the items of one query are of several models."""
    for page in results.page_iter:
        yield page.get("Items", [])


def sort_key(raw: dict) -> str:
    """The SK of an item as DynamoDB answered it (to tell which model reads it)."""
    return LedgerModel.from_raw_data(raw).sk


def raw_key(model: type[Model], pk: str, sk: str) -> dict:
    """The key as DynamoDB writes it, to continue a query from (ExclusiveStartKey)."""
    return model.get_operation_kwargs_from_class(pk, sk)["Key"]


# --- errors -------------------------------------------------------------------------------

@contextmanager
def _translated_errors() -> Iterator[None]:
    try:
        yield
    except (PynamoDBException, ClientError) as exc:
        code = exc.cause_response_code if isinstance(exc, PynamoDBException) else exc.response["Error"]["Code"]
        if code in TRANSIENT_CODES:
            raise Transient(code) from exc
        raise


def translated(method):
    """Throttling and server faults of the calls `method` makes become Transient, once
    (generators too: their calls happen while they are iterated); every other error
    stays what it is."""
    if inspect.isgeneratorfunction(method):
        @wraps(method)
        def generator(*args, **kwargs):
            with _translated_errors():
                yield from method(*args, **kwargs)
        return generator

    @wraps(method)
    def call(*args, **kwargs):
        with _translated_errors():
            return method(*args, **kwargs)
    return call


# Cancellation reasons that say "try again later", not "your condition did not hold".
RETRY_LATER = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}


class Cancelled(Exception):
    """DynamoDB cancelled a transaction: each item's label with its reason ("None" for
    the items that were not the cause). `error` is DynamoDB's own error."""

    def __init__(self, labels: list[Hashable], codes: list[str], error: ClientError):
        self.reasons = list(zip(labels, codes + ["None"] * (len(labels) - len(codes))))
        self.error = error
        super().__init__(", ".join(f"{label}: {code}" for label, code in self.reasons if code != "None") or "no reason")

    def failed(self) -> list[Hashable]:
        """The items whose condition did not hold, in the transaction's order."""
        return [label for label, code in self.reasons if code == "ConditionalCheckFailed"]

    def otherwise(self) -> Exception:
        """When no condition failed: Transient if a reason says to retry later (a
        conflict with another transaction, throttling), else DynamoDB's error as it is
        (a reason nobody planned for is a bug, never a duplicate or a conflict)."""
        retry = sorted({code for _, code in self.reasons if code in RETRY_LATER})
        return Transient(",".join(retry)) if retry else self.error

    def reraise(self, error: Exception) -> NoReturn:
        """Raise what the adapter read the cancellation as, chained to DynamoDB's error."""
        if error is self.error:
            raise error from None
        raise error from self.error


class Transaction:
    """One TransactWriteItems. Its items keep the order they were added in, each with a
    label, so that a cancellation reason maps back to the item it is about."""

    def __init__(self, table: LedgerTable):
        self.table = table
        self.items: list[dict] = []
        self.labels: list[Hashable] = []

    def __len__(self) -> int:
        return len(self.items)

    def put(self, label: Hashable, item: Model, condition: Condition | None = None) -> None:
        self._add(label, {"Put": item.get_save_kwargs_from_instance(condition=condition)})

    def update(self, label: Hashable, item: Model, actions: list[Action], condition: Condition | None = None) -> None:
        self._add(label, {"Update": item.get_update_kwargs_from_instance(actions=actions, condition=condition,
                                                                         add_version_condition=False)})

    def delete(self, label: Hashable, item: Model, condition: Condition | None = None) -> None:
        self._add(label, {"Delete": item.get_delete_kwargs_from_instance(condition=condition,
                                                                         add_version_condition=False)})

    def check(self, label: Hashable, model: type[Model], pk: str, sk: str, condition: Condition) -> None:
        """A condition on an item the transaction does not write (ConditionCheck)."""
        self._add(label, {"ConditionCheck": model.get_operation_kwargs_from_class(pk, sk, condition=condition)})

    def _add(self, label: Hashable, item: dict) -> None:
        self.items.append(item)
        self.labels.append(label)

    def commit(self) -> None:
        """Write every item or none. Raises Cancelled (with each item's reason) when
        DynamoDB cancels it, Transient when the whole call is throttled or fails on
        DynamoDB's side."""
        if not self.items:
            return
        try:
            # PynamoDB's TransactWrite sends its items grouped by kind (checks, deletes,
            # puts, updates): sent through the connection as added, reason i is item i's.
            self.table.connection.connection.dispatch("TransactWriteItems", {"TransactItems": self.items})
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "TransactionCanceledException":
                raise Cancelled(self.labels, _reason_codes(exc), exc) from exc
            if code in TRANSIENT_CODES:
                raise Transient(code) from exc
            raise


def _reason_codes(exc: ClientError) -> list[str]:
    reasons = getattr(exc, "cancellation_reasons", None)  # PynamoDB's VerboseClientError
    if reasons is not None:
        return [reason.code if reason is not None else "None" for reason in reasons]
    return [r.get("Code", "None") for r in exc.response.get("CancellationReasons", [])]
