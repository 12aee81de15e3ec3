"""Secrets (Secrets Manager) and rule overrides (SSM), cached for a few minutes so a
rotation or a rules change reaches warm functions without a redeploy."""
from __future__ import annotations

import json
import os
import threading
import time
from typing import Callable

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from ..errors import Transient

_TTL_S = 300.0
_lock = threading.Lock()
_cache: dict[str, tuple[float, object]] = {}


def _cached(key: str, load: Callable[[], object]) -> object:
    # The monotonic clock only ages a cache entry; it never reaches business logic.
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < _TTL_S:
            return hit[1]
    value = load()
    with _lock:
        _cache[key] = (now, value)
    return value


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def secret(name: str, secrets_id: str | None) -> str | None:
    """A secret by name: an environment variable of that name wins (local runs, tests);
    otherwise the key `name` of the JSON secret `secrets_id`."""
    if os.environ.get(name):
        return os.environ[name]
    if not secrets_id:
        return None

    def load() -> dict:
        try:
            value = boto3.client("secretsmanager").get_secret_value(SecretId=secrets_id)["SecretString"]
        except (ClientError, BotoCoreError) as exc:
            raise Transient(f"cannot read secrets: {type(exc).__name__}") from exc
        return json.loads(value)

    return _cached(f"secret:{secrets_id}", load).get(name)  # type: ignore[union-attr]


def rule_overrides(parameter: str | None) -> dict:
    """The merchant's overrides of the default rules (a JSON object in SSM)."""
    if not parameter:
        return {}

    def load() -> dict:
        try:
            value = boto3.client("ssm").get_parameter(Name=parameter)["Parameter"]["Value"]
        except (ClientError, BotoCoreError) as exc:
            raise Transient(f"cannot read rules: {type(exc).__name__}") from exc
        document = json.loads(value or "{}")
        if not isinstance(document, dict):
            raise ValueError(f"{parameter} must hold a JSON object")
        return document

    return _cached(f"rules:{parameter}", load)  # type: ignore[return-value]
