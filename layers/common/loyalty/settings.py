"""One typed settings object, read from the environment on first use."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache


@dataclass(frozen=True)
class Settings:
    table_name: str
    secrets_id: str | None
    rules_parameter: str | None
    program_timezone: str
    expiry_shards: int
    order_signature_tolerance_s: int
    max_body_bytes: int
    public_base_url: str
    send_max_receives: int      # the sender queues' maxReceiveCount
    sender_max_concurrency: int  # instances of one sender: each takes this share of a provider's rate
    region: str | None = None             # None: botocore's own resolution
    dynamodb_endpoint: str | None = None  # None: AWS's endpoint (the local stack sets AWS_ENDPOINT_URL)


@cache
def settings() -> Settings:
    env = os.environ
    return Settings(
        table_name=env.get("TABLE_NAME", "LoyaltyTable"),
        secrets_id=env.get("SECRETS_ID") or None,
        rules_parameter=env.get("RULES_PARAMETER") or None,
        program_timezone=env.get("PROGRAM_TIMEZONE", "Asia/Shanghai"),
        expiry_shards=int(env.get("EXPIRY_INDEX_SHARDS", "4")),
        order_signature_tolerance_s=int(env.get("ORDER_SIGNATURE_TOLERANCE_S", "300")),
        max_body_bytes=int(env.get("MAX_BODY_BYTES", str(64 * 1024))),
        public_base_url=env.get("PUBLIC_BASE_URL", "").rstrip("/"),
        send_max_receives=int(env.get("SEND_MAX_RECEIVES", "6")),
        sender_max_concurrency=max(1, int(env.get("SENDER_MAX_CONCURRENCY", "1"))),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        # botocore's order: the service's own variable first, then the global one
        dynamodb_endpoint=env.get("AWS_ENDPOINT_URL_DYNAMODB") or env.get("AWS_ENDPOINT_URL") or None,
    )
