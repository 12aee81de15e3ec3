"""Optimistic concurrency: read, plan, commit; on a lost race read again."""
from __future__ import annotations

from typing import Callable, TypeVar

from ..errors import ConcurrentUpdate, Transient

T = TypeVar("T")

# Each lost race means another writer won, so N writers finish in at most N rounds.
MAX_ATTEMPTS = 64


def with_retries(attempt: Callable[[], T]) -> T:
    """Run `attempt` until it does not lose a race."""
    for _ in range(MAX_ATTEMPTS):
        try:
            return attempt()
        except ConcurrentUpdate:
            continue
    raise Transient("too many concurrent updates to one member; retry later")
