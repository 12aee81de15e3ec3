"""Auditable draws (E5's surprise draws, E10's lucky-draw entries): a published,
deterministic algorithm over a secret seed, committed to before the draw.

The algorithm (version 1), which anyone can re-run from a published record:

1. The seed is 32 random bytes, written as 64 lower-case hex digits. Before the draw
   only its commitment is published: the hex SHA-256 of the 32 bytes.
2. The entrants are distinct ids, sorted by their UTF-8 bytes. Their hash is the hex
   SHA-256 of the ids joined by "\\n" (UTF-8, no trailing newline).
3. Winners are drawn one at a time, without replacement, by a partial Fisher-Yates
   shuffle of the sorted list: for draw i = 0, 1, ... the index j is chosen uniformly
   in [i, n) from HMAC-SHA256(key = seed bytes, message = "v1|<entrants hash>|<i>|<t>"),
   read as a 256-bit big-endian integer v, for t = 0, 1, ... until v is below the
   largest multiple of (n - i) not above 2^256 (rejection, so there is no modulo bias);
   then j = i + v mod (n - i), the entrants at i and j swap, and the entrant at i wins.

No `random` module is involved: the seed alone (with the entrant list) decides."""
from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Iterable, Sequence

ALGORITHM = "hmac-sha256-fisher-yates-v1"
_SPACE = 1 << 256


class DrawError(ValueError):
    """A seed or an entrant list the algorithm cannot use."""


def new_seed() -> str:
    """A fresh secret seed (from the operating system's CSPRNG)."""
    return secrets.token_hex(32)


def _seed_bytes(seed: str) -> bytes:
    try:
        raw = bytes.fromhex(seed)
    except (TypeError, ValueError) as exc:
        raise DrawError("the seed is 64 hex digits") from exc
    if len(raw) != 32 or seed != seed.lower():
        raise DrawError("the seed is 64 lower-case hex digits")
    return raw


def commitment(seed: str) -> str:
    """What is published before the draw: the hex SHA-256 of the seed's bytes."""
    return hashlib.sha256(_seed_bytes(seed)).hexdigest()


def sorted_entrants(entrants: Iterable[str]) -> list[str]:
    """The entrants in the algorithm's order (UTF-8 bytes); duplicates are refused."""
    listed = list(entrants)
    if len(set(listed)) != len(listed):
        raise DrawError("an entrant is listed twice")
    if any(not isinstance(e, str) or not e or "\n" in e for e in listed):
        raise DrawError("entrants are non-empty ids without a newline")
    return sorted(listed, key=lambda e: e.encode("utf-8"))


def entrants_hash(entrants: Iterable[str]) -> str:
    """The hex SHA-256 of the sorted entrant ids joined by newlines."""
    return hashlib.sha256("\n".join(sorted_entrants(entrants)).encode("utf-8")).hexdigest()


def _uniform(key: bytes, digest: str, i: int, bound: int) -> int:
    limit = _SPACE - (_SPACE % bound)
    t = 0
    while True:
        value = int.from_bytes(hmac.new(key, f"v1|{digest}|{i}|{t}".encode(), hashlib.sha256).digest(), "big")
        if value < limit:
            return value % bound
        t += 1


def pick_winners(seed: str, entrants: Iterable[str], winners: int) -> list[str]:
    """The winners, in the order drawn: min(winners, entrants) of them."""
    if winners < 0:
        raise DrawError("the number of winners is not negative")
    key = _seed_bytes(seed)
    pool = sorted_entrants(entrants)
    digest = hashlib.sha256("\n".join(pool).encode("utf-8")).hexdigest()
    chosen: list[str] = []
    for i in range(min(winners, len(pool))):
        j = i + _uniform(key, digest, i, len(pool) - i)
        pool[i], pool[j] = pool[j], pool[i]
        chosen.append(pool[i])
    return chosen


def verify(record: dict, entrants: Sequence[str]) -> list[str]:
    """The problems with a published draw record against its entrant list (none: it
    holds). The record is the run's answer: commitment, seed, entrants_hash, entrants
    (a count) and winners."""
    problems = []
    try:
        if commitment(record["seed"]) != record["commitment"]:
            problems.append("the seed does not match the commitment published before the draw")
        if entrants_hash(entrants) != record["entrants_hash"]:
            problems.append("the entrant list does not match the published entrants hash")
        if len(entrants) != record["entrants"]:
            problems.append(f"the record counts {record['entrants']} entrants, the list has {len(entrants)}")
        expected = pick_winners(record["seed"], entrants, len(record["winners"]))
        if expected != list(record["winners"]):
            problems.append(f"the winners recomputed are {expected}, the record says {list(record['winners'])}")
    except KeyError as exc:
        problems.append(f"the record has no {exc.args[0]!r}")
    except DrawError as exc:
        problems.append(str(exc))
    return problems
