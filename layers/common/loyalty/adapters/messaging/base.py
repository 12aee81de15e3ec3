"""What every messaging model shares: the table's key attributes, the attribute types the
items have always been written with, models bound to one table and one boto3 client, and
the one place where DynamoDB's answers become our errors.

Models are declared once, unbound (`Meta.table_name` is a placeholder), and bound per
store with `bind`: the table name comes from the settings (or a test), and every call a
model makes goes through the store's own boto3 client. That client is the one the rest
of the layer uses, so the benchmark's botocore hooks count PynamoDB's calls and the local
stack's IAM check (a header added to botocore's HTTP send) sees them."""
from __future__ import annotations

import json
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from pynamodb.attributes import Attribute, UnicodeAttribute
from pynamodb.constants import STRING
from pynamodb.exceptions import PynamoDBException, TransactWriteError, VerboseClientError
from pynamodb.models import Model

from ...errors import Transient
from ..ledger.base import IsoTime  # noqa: F401 - one ISO time attribute for both stores' models
from ..table import TRANSIENT_CODES

M = TypeVar("M", bound=Model)

CONDITION_FAILED = "ConditionalCheckFailedException"
CONDITION_FAILED_REASON = "ConditionalCheckFailed"     # the same, as a cancelled transaction's reason
# A cancelled transaction's per-item reasons that are worth retrying as they are.
TRANSIENT_REASONS = {"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded",
                     "RequestLimitExceeded", "InternalServerError"}


class TableItem(Model):
    """Every item of the loyalty table: PK / SK."""

    class Meta:
        table_name = "unbound"   # see bind()

    PK = UnicodeAttribute(hash_key=True)
    SK = UnicodeAttribute(range_key=True)


class JsonText(Attribute[Any]):
    """A JSON document in a string, UTF-8 as written (not \\u escapes: item sizes are billed)."""

    attr_type = STRING

    def serialize(self, value: Any) -> str:
        return json.dumps(value, ensure_ascii=False, default=str)

    def deserialize(self, value: str) -> Any:
        return json.loads(value)


def bind(model: type[M], table_name: str, client: Any) -> type[M]:
    """`model` on `table_name`, calling DynamoDB through `client`."""
    meta = type("Meta", (), {"table_name": table_name, "region": client.meta.region_name})
    bound = type(model.__name__, (model,), {"Meta": meta, "__module__": model.__module__,
                                            "__qualname__": model.__qualname__})
    # PynamoDB would otherwise build a botocore client of its own; ours carries the hooks.
    bound._get_connection().connection._client = client
    return bound


def botocore_error(exc: Exception) -> Exception:
    """The botocore exception behind a PynamoDB one (PynamoDB wraps ClientError in a
    VerboseClientError of its own, which keeps only the error's code and message)."""
    cause = exc.cause if isinstance(exc, PynamoDBException) and exc.cause is not None else exc
    if isinstance(cause, VerboseClientError) and isinstance(cause.__cause__, ClientError):
        cause = cause.__cause__
    return cause


def response_code(exc: Exception) -> str | None:
    """The DynamoDB error code behind a PynamoDB or botocore exception."""
    return (getattr(botocore_error(exc), "response", None) or {}).get("Error", {}).get("Code")


def transient(exc: Exception) -> Exception:
    """`exc` as our error: Transient for throttling, server errors and lost connections,
    else botocore's own error (access denied, validation: a bug or a deployment fault,
    not to be retried as if it would go away), never a PynamoDB type."""
    cause = botocore_error(exc)
    code = response_code(exc)
    if code in TRANSIENT_CODES or isinstance(cause, BotoCoreError):
        error = Transient(code or type(cause).__name__)
        error.__cause__ = exc
        return error
    return cause


def cancellation_codes(exc: Exception) -> list[str] | None:
    """A cancelled transaction's reason codes, one per item in the order the items were
    sent ("None" for an item that was not a reason); None when the call failed for
    another reason. From botocore's error or PynamoDB's TransactWriteError alike."""
    if response_code(exc) != "TransactionCanceledException":
        return None
    if isinstance(exc, TransactWriteError):
        return [reason.code if reason is not None else "None" for reason in exc.cancellation_reasons]
    return [r.get("Code") or "None" for r in getattr(exc, "response", {}).get("CancellationReasons") or []]


def raise_if_transient(codes: list[str], exc: Exception) -> None:
    """A transaction cancelled for throttling or a conflict with another transaction is
    retried (Transient), never read as "the condition failed"; one refused as invalid
    (ValidationError, ItemCollectionSizeLimitExceeded) is not going to pass as it is."""
    others = [c for c in codes if c not in ("None", CONDITION_FAILED_REASON)]
    if others and all(c in TRANSIENT_REASONS for c in others):
        raise Transient("transaction cancelled: " + ", ".join(others)) from exc
    if others:
        raise transient(exc)
