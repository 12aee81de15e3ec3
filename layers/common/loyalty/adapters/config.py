"""Secrets (Secrets Manager) and rule overrides (SSM), cached for a few minutes so a
rotation or a rules change reaches warm functions without a redeploy.

A read that fails for a passing reason (throttling, a 5xx, a timeout, a dropped
connection) is tried again twice, quickly; if it still fails it raises Transient. One
that fails for a reason of the deployment's (access denied, no such secret or parameter,
not a JSON object) is not tried again on the spot: it is logged as a configuration error
and raises ConfigUnreadable, a Transient too. Neither is cached, and neither ever reads as
"not configured": only a readable secret without the key asked for does (None).
"""
from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from typing import Any, Callable

from ..errors import ConfigUnreadable, Transient

logger = logging.getLogger(__name__)

_TTL_S = 300.0              # how stale a value may be: a rotation reaches warm containers within this
_REFRESH_AFTER_S = 60.0     # a value this old may be read again at once (refresh): at most once a minute
_ATTEMPTS = 3               # one read and two quick retries of a passing fault
_BACKOFF_S = (0.05, 0.2)    # before the 2nd and 3rd attempts (with jitter)
# botocore's own retries are off: the loop below is the one bound (and what the tests count).
_CLIENT_CONFIG = {"connect_timeout": 1, "read_timeout": 2, "retries": {"total_max_attempts": 1}}

_THROTTLED = {"Throttling", "ThrottlingException", "ThrottledException", "RequestThrottledException",
              "TooManyRequestsException", "RequestLimitExceeded", "RequestThrottled", "LimitExceededException",
              "RequestTimeout", "RequestTimeoutException", "PriorRequestNotComplete"}

_clock: Callable[[], float] = time.monotonic   # ages cache entries only; never reaches business logic
_sleep: Callable[[float], None] = time.sleep

_lock = threading.Lock()
_cache: dict[str, tuple[float, object]] = {}
_loading: dict[str, threading.Lock] = {}       # one load at a time per key; the others wait for it
_clients: dict[str, Any] = {}


def _client(service: str):
    with _lock:
        if service not in _clients:
            import boto3  # on first use, not at handler import
            from botocore.config import Config
            _clients[service] = boto3.client(service, config=Config(**_CLIENT_CONFIG))
        return _clients[service]


def _cached(key: str, load: Callable[[], object]) -> object:
    """The value for `key`, loaded at most every _TTL_S; concurrent callers of a missing or
    stale key wait for one load instead of each making their own. A load that raises
    leaves nothing behind: the next caller tries again."""
    with _lock:
        hit = _cache.get(key)
        if hit and _clock() - hit[0] < _TTL_S:
            return hit[1]
        loading = _loading.setdefault(key, threading.Lock())
    with loading:
        with _lock:
            hit = _cache.get(key)
            if hit and _clock() - hit[0] < _TTL_S:  # loaded by the caller we waited for
                return hit[1]
        started = _clock()
        value = load()
        with _lock:
            _cache[key] = (started, value)
        return value


def clear_cache() -> None:
    with _lock:
        _cache.clear()
        _clients.clear()


def is_transient(exc: BaseException) -> bool:
    """A passing fault of the call, worth trying again: throttling, a 5xx, a timeout, a
    connection that failed or dropped."""
    from botocore.exceptions import ClientError, ConnectionError, HTTPClientError
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return exc.response.get("Error", {}).get("Code") in _THROTTLED or status >= 500
    return isinstance(exc, (ConnectionError, HTTPClientError))


def _read(what: str, label: str, call: Callable[[], Any]) -> Any:
    """`call()`, tried again (quickly, twice) while it fails for a passing reason. `what`
    names the resource in logs; `label`, in the error (which may reach a caller), does not."""
    from botocore.exceptions import BotoCoreError, ClientError
    for attempt in range(_ATTEMPTS):
        try:
            return call()
        except (ClientError, BotoCoreError) as exc:
            kind = _error_name(exc)
            if not is_transient(exc):
                logger.error("configuration error: cannot read %s (%s); check that it exists and that the "
                             "function's role may read it", what, kind)
                raise ConfigUnreadable(f"cannot read {label}: {kind}") from exc
            if attempt == _ATTEMPTS - 1:
                logger.warning("cannot read %s after %d attempts (%s)", what, _ATTEMPTS, kind)
                raise Transient(f"cannot read {label}: {kind}") from exc
            _sleep(_BACKOFF_S[attempt] * random.uniform(0.5, 1.5))
    raise AssertionError("unreachable")


def _error_name(exc: BaseException) -> str:
    from botocore.exceptions import ClientError
    if isinstance(exc, ClientError):
        return exc.response.get("Error", {}).get("Code") or type(exc).__name__
    return type(exc).__name__


def _document(what: str, label: str, text: str | None) -> dict:
    """The JSON object a secret or a parameter holds (never logged: it may be a secret)."""
    try:
        document = json.loads(text) if text is not None else None
    except ValueError:
        document = None
    if not isinstance(document, dict):
        logger.error("configuration error: %s does not hold a JSON object", what)
        raise ConfigUnreadable(f"{label} does not hold a JSON object")
    return document


def secret(name: str, secrets_id: str | None) -> str | None:
    """A secret by name: an environment variable of that name wins (local runs, tests);
    otherwise the key `name` of the JSON secret `secrets_id`. None only when it is not
    configured (no secret, or the secret has no such key); a secret that cannot be read
    raises Transient (ConfigUnreadable when the deployment is at fault)."""
    if os.environ.get(name):
        return os.environ[name]
    if not secrets_id:
        return None

    def load() -> dict:
        what, label = f"secret {secrets_id}", "the secrets"
        value = _read(what, label, lambda: _client("secretsmanager").get_secret_value(SecretId=secrets_id))
        return _document(what, label, value.get("SecretString"))

    return _cached(f"secret:{secrets_id}", load).get(name)  # type: ignore[union-attr]


def refresh_secrets(secrets_id: str | None) -> bool:
    """Forget the cached secret `secrets_id` if it is more than a minute old, so that the
    next read gets what is stored now (a webhook whose signature failed: the secret may
    have been rotated since it was cached). True when something was forgotten; at most once
    a minute, however many requests ask."""
    if not secrets_id:
        return False
    key = f"secret:{secrets_id}"
    with _lock:
        hit = _cache.get(key)
        if hit is None or _clock() - hit[0] < _REFRESH_AFTER_S:
            return False
        del _cache[key]
        return True


def rule_overrides(parameter: str | None) -> dict:
    """The merchant's overrides of the default rules (a JSON object in SSM)."""
    if not parameter:
        return {}

    def load() -> dict:
        what, label = f"parameter {parameter}", "the rules parameter"
        value = _read(what, label, lambda: _client("ssm").get_parameter(Name=parameter))
        return _document(what, label, value["Parameter"]["Value"] or "{}")

    return _cached(f"rules:{parameter}", load)  # type: ignore[return-value]
