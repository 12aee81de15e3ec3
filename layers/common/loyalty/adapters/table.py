"""What every adapter on the loyalty table shares: the lazily created client and the one
place where throttling and server errors become `Transient`."""
from __future__ import annotations

from typing import Any

from ..errors import Transient

TRANSIENT_CODES = {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
                   "InternalServerError", "ServiceUnavailable", "TransactionInProgressException"}


class DynamoTable:
    def __init__(self, table_name: str, client: Any | None = None):
        self.table = table_name
        self._client = client

    @property
    def client(self):
        if self._client is None:
            import boto3  # on first use, not at handler import
            self._client = boto3.client("dynamodb")
        return self._client

    def _call(self, operation: str, **kwargs) -> dict:
        from botocore.exceptions import ClientError
        try:
            return getattr(self.client, operation)(**kwargs)
        except ClientError as exc:
            if exc.response["Error"]["Code"] in TRANSIENT_CODES:
                raise Transient(exc.response["Error"]["Code"]) from exc
            raise

    def _call_if(self, operation: str, **kwargs) -> bool:
        """A conditional write: True when done, False when its condition did not hold."""
        from botocore.exceptions import ClientError
        try:
            self._call(operation, **kwargs)
            return True
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                return False
            raise
