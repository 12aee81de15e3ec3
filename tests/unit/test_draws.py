"""The published draw algorithm: its commitment, its determinism, its fairness, and the
verifier that recomputes a record."""
import hashlib
import hmac
import json
import subprocess
import sys
from collections import Counter

import pytest

from loyalty.engagement import draws

SEED = "00" * 31 + "2a"
ENTRANTS = [f"m-{i:03d}" for i in range(20)]


def _by_the_docstring(seed: str, entrants: list[str], k: int) -> list[str]:
    """The algorithm as its docstring publishes it, written again from the text."""
    key = bytes.fromhex(seed)
    pool = sorted(entrants, key=lambda e: e.encode())
    digest = hashlib.sha256("\n".join(pool).encode()).hexdigest()
    out = []
    for i in range(min(k, len(pool))):
        m = len(pool) - i
        t = 0
        while True:
            v = int.from_bytes(hmac.new(key, f"v1|{digest}|{i}|{t}".encode(), hashlib.sha256).digest(), "big")
            if v < (2 ** 256) - (2 ** 256) % m:
                break
            t += 1
        j = i + v % m
        pool[i], pool[j] = pool[j], pool[i]
        out.append(pool[i])
    return out


def test_the_commitment_is_the_sha256_of_the_seed_bytes():
    assert draws.commitment(SEED) == hashlib.sha256(bytes.fromhex(SEED)).hexdigest()
    assert draws.commitment(draws.new_seed()) != draws.commitment(draws.new_seed())


def test_the_winners_are_what_the_published_text_computes_whatever_the_entrants_order():
    shuffled = list(reversed(ENTRANTS))
    winners = draws.pick_winners(SEED, shuffled, 3)
    assert winners == _by_the_docstring(SEED, ENTRANTS, 3)
    assert winners == draws.pick_winners(SEED, ENTRANTS, 3)
    assert len(set(winners)) == 3 and set(winners) <= set(ENTRANTS)


def test_fewer_entrants_than_winners_all_win_and_none_wins_nothing():
    assert sorted(draws.pick_winners(SEED, ["b", "a"], 5)) == ["a", "b"]
    assert draws.pick_winners(SEED, [], 3) == []
    assert draws.pick_winners(SEED, ENTRANTS, 0) == []


def test_a_shorter_draw_is_the_start_of_a_longer_one():
    assert draws.pick_winners(SEED, ENTRANTS, 5)[:2] == draws.pick_winners(SEED, ENTRANTS, 2)


def test_another_seed_or_entrant_list_gives_another_draw():
    other = "11" * 32
    assert draws.pick_winners(other, ENTRANTS, 5) != draws.pick_winners(SEED, ENTRANTS, 5)
    assert draws.entrants_hash(ENTRANTS) != draws.entrants_hash(ENTRANTS[:-1])


def test_each_entrant_is_about_as_likely_to_win():
    wins = Counter()
    for n in range(2000):
        seed = hashlib.sha256(str(n).encode()).hexdigest()
        wins.update(draws.pick_winners(seed, ENTRANTS[:10], 1))
    # 2000 draws over 10 entrants: 200 each expected; a biased draw would stray far
    assert min(wins.values()) > 140 and max(wins.values()) < 260
    chi2 = sum((c - 200) ** 2 / 200 for c in wins.values())
    assert chi2 < 27.9   # p = 0.001 at 9 degrees of freedom


@pytest.mark.parametrize("seed", ["", "zz" * 32, "AB" * 32, "00" * 16])
def test_a_malformed_seed_is_refused(seed):
    with pytest.raises(draws.DrawError):
        draws.pick_winners(seed, ENTRANTS, 1)


def test_an_entrant_listed_twice_is_refused():
    with pytest.raises(draws.DrawError):
        draws.entrants_hash(["a", "a"])


def _record(entrants, k=3, seed=SEED):
    return {"draw_id": "d1", "commitment": draws.commitment(seed), "seed": seed,
            "entrants_hash": draws.entrants_hash(entrants), "entrants": len(entrants),
            "winners": draws.pick_winners(seed, entrants, k)}


def test_the_verifier_holds_an_honest_record_and_names_what_a_tampered_one_gets_wrong():
    record = _record(ENTRANTS)
    assert draws.verify(record, ENTRANTS) == []
    assert "commitment" in " ".join(draws.verify({**record, "seed": "11" * 32}, ENTRANTS))
    assert "winners" in " ".join(draws.verify({**record, "winners": ENTRANTS[:3]}, ENTRANTS))
    assert "entrants hash" in " ".join(draws.verify(record, ENTRANTS + ["m-999"]))
    assert draws.verify({k: v for k, v in record.items() if k != "seed"}, ENTRANTS) == ["the record has no 'seed'"]


def test_the_cli_recomputes_a_record_from_files(tmp_path):
    record = _record(ENTRANTS)
    (tmp_path / "draw.json").write_text(json.dumps(record))
    (tmp_path / "entrants.txt").write_text("\n".join(reversed(ENTRANTS)) + "\n")
    run = [sys.executable, "-m", "loyalty.engagement.verify_draw", str(tmp_path / "draw.json")]
    ok = subprocess.run(run + [str(tmp_path / "entrants.txt")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK d1: 20 entrants")
    (tmp_path / "draw.json").write_text(json.dumps({**record, "winners": list(reversed(record["winners"]))}))
    bad = subprocess.run(run + [str(tmp_path / "entrants.txt")], capture_output=True, text=True)
    assert bad.returncode == 1 and "FAIL the winners recomputed" in bad.stdout
    (tmp_path / "inline.json").write_text(json.dumps({**record, "entrant_ids": ENTRANTS}))
    inline = subprocess.run(run[:-1] + [str(tmp_path / "inline.json")], capture_output=True, text=True)
    assert inline.returncode == 0, inline.stdout + inline.stderr
