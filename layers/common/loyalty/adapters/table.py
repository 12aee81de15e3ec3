"""What every adapter on the loyalty table shares: the DynamoDB error codes that mean
"try again later", read as `Transient` in one place per adapter's base."""
from __future__ import annotations

TRANSIENT_CODES = {"ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded",
                   "InternalServerError", "ServiceUnavailable", "TransactionInProgressException"}
