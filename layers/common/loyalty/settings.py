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
    )
