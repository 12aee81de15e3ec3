"""The results store (draw results, lists, final rankings, lucky-draw seeds and entries)
and the writes of the results into the ledger: behaviour every store must show, run on
the in-memory fakes (tests/unit) and on DynamoDB in the emulator (tests/integration).
Each module that imports these provides `ledger` and `results` fixtures over one table."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest

from loyalty.domain import EntryType, parse_time
from loyalty.engagement import challenge_results as cr
from loyalty.engagement import draws, lucky_draws
from loyalty.engagement.outcomes import DrawResult, FinalRanking
from loyalty.errors import Conflict
from loyalty.records import Change
from loyalty.rules import build_rules
from loyalty.services.adjustments import adjust_points
from loyalty.services.queries import reconcile
from loyalty.services.redemptions import cancel_redemption, redeem
from tests.challenge_fakes import FakeChallengeReader

T0 = parse_time("2026-12-20T10:00:00+08:00")
AFTER = parse_time("2027-01-01T00:00:00+08:00")
RULES = build_rules({"catalog": [
    {"item_id": "coupon", "name": "Coupon", "points": 100},
    {"item_id": "lucky", "name": "Lucky draw entry", "points": 50, "kind": "perk", "discountable": False,
     "lucky_draw": {"draw_id": "lucky-2026-12", "on": "2026-12-31", "winners": 2}}]})


def _fund(ledger, member: str, points: int = 1000) -> None:
    adjust_points(ledger, RULES, member, points, "funds", "ops", f"fund-{member}", f"h-{member}", T0)


def _owe(ledger, member: str, points: int, at) -> None:
    """A negative balance (as a refund of spent points leaves one)."""
    from loyalty.domain import LedgerEntry
    account = ledger.load_account(member, with_lots=False)
    ledger.commit(Change(member_id=member, expected_version=account.version, balance_delta=-points,
                         debt_delta=points, last_tx=at,
                         entries=(LedgerEntry(entry_id=f"owe-{member}", type=EntryType.REFUND, amount=-points,
                                              recorded_at=at, reason="refund of spent points", source="test"),)))


def _draw(owner="challenge:c1", draw_id="d1", **more) -> DrawResult:
    seed = draws.new_seed()
    fields = dict(owner=owner, draw_id=draw_id, on="2026-12-01", commitment=draws.commitment(seed), seed=seed,
                  entrants_hash=draws.entrants_hash(["a", "b"]), entrants=2, winners=("b",),
                  run_at="2026-12-02T00:00:00+08:00", algorithm=draws.ALGORITHM)
    return DrawResult(**{**fields, **more})


# --- the store -----------------------------------------------------------------------------

def test_a_list_is_stored_under_its_hash_in_parts_and_read_back_whole(results):
    lines = [f"{i}\tmember-{i:06d}\t{1000 - i}" for i in range(30000)]   # ~ 600 KB: more than one item
    results.put_list("challenge:c1", "h1", lines)
    results.put_list("challenge:c1", "h1", lines)
    assert results.get_list("challenge:c1", "h1") == lines
    results.put_list("challenge:c1", "empty", [])
    assert results.get_list("challenge:c1", "empty") == []
    assert results.get_list("challenge:c1", "other") is None
    assert results.get_list("challenge:c2", "h1") is None


def test_the_first_draw_result_recorded_stays(results):
    first = _draw()
    assert results.record_draw(first) == first
    assert results.record_draw(_draw(winners=("a",))) == first
    assert results.get_draw("challenge:c1", "d1") == first
    assert results.get_draw("challenge:c1", "d2") is None and results.get_draw("lucky:d1", "d1") is None
    lucky = _draw(owner="lucky:x", draw_id="x", winners=("r-1",), winner_members=("m1",))
    assert results.record_draw(lucky) == lucky and results.get_draw("lucky:x", "x") == lucky


def test_the_final_ranking_is_recorded_once_and_its_progress_only_moves_forward(results):
    final = FinalRanking(challenge_id="c1", snapshot_hash="h", participants=3, left=0, base=1, top_half=2,
                         top_tenth=3, top_half_rank=2, top_tenth_rank=1, rewarded=3, points=9,
                         recorded_at="2027-04-01T00:00:00+08:00")
    assert results.record_final(final) == final
    assert results.record_final(replace(final, snapshot_hash="other")) == final
    results.save_progress("c1", 2, None)
    results.save_progress("c1", 1, None)
    assert results.get_final("c1").credited == 2
    results.save_progress("c1", 3, "2027-04-01T00:01:00+08:00")
    assert (results.get_final("c1").credited, results.get_final("c1").done_at) == (3, "2027-04-01T00:01:00+08:00")
    results.save_progress("nothing", 5, None)
    assert results.get_final("nothing") is None


def test_a_lucky_seed_is_made_once_and_never_replaced(results):
    seed, other = draws.new_seed(), draws.new_seed()
    assert results.lucky_seed("x", seed) == seed
    assert results.lucky_seed("x", other) == seed
    assert results.lucky_seeds(["x", "y"]) == {"x": (seed, None)}
    results.close_lucky_draw("x", "2027-01-01T00:00:00+08:00")
    results.close_lucky_draw("x", "2027-01-02T00:00:00+08:00")
    assert results.lucky_seeds(["x"]) == {"x": (seed, "2027-01-01T00:00:00+08:00")}
    assert results.lucky_seeds([]) == {}


# --- lucky draws through the redemption path ------------------------------------------------

def test_each_redemption_of_a_lucky_item_is_one_entry_and_the_run_is_verifiable(ledger, results):
    for m in ("m1", "m2", "m3"):
        _fund(ledger, m)
    lucky_draws.prepare_entry(results, RULES, "lucky")
    shown = lucky_draws.with_draws(results, RULES, {"items": [{"item_id": "lucky"}, {"item_id": "coupon"}]})
    commitment = shown["items"][0]["lucky_draw"]["commitment"]
    assert "lucky_draw" not in shown["items"][1] and shown["items"][0]["lucky_draw"]["status"] == "open"
    entries = [redeem(ledger, RULES, m, "lucky", key, T0)[0].redemption_id
               for m, key in (("m1", "a"), ("m1", "b"), ("m2", "a"), ("m3", "a"))]
    assert redeem(ledger, RULES, "m1", "lucky", "a", T0)[1] is False   # a retry: still one entry
    redeem(ledger, RULES, "m1", "coupon", "c", T0)                     # not an entry
    assert ledger.load_account("m1", with_lots=False).balance == 1000 - 50 - 50 - 100
    with pytest.raises(Conflict, match="has ended"):
        lucky_draws.run_lucky_draw(results, RULES, "lucky", parse_time("2026-12-31T23:00:00+08:00"))
    record = lucky_draws.run_lucky_draw(results, RULES, "lucky", AFTER)
    assert record["commitment"] == commitment and record["entrants"] == 4 and len(record["winners"]) == 2
    owners = {r["redemption_id"]: r["member_id"] for r in record["winning_entries"]}
    assert set(owners) == set(record["winners"]) <= set(entries)
    listed = lucky_draws.lucky_entrants(results, RULES, "lucky")
    assert listed["entrant_ids"] == sorted(entries) and draws.verify(record, listed["entrant_ids"]) == []
    assert lucky_draws.run_lucky_draw(results, RULES, "lucky", parse_time("2027-01-05T00:00:00+08:00")) == record
    # closed: a later entry is refused and costs nothing
    with pytest.raises(Conflict, match="closed"):
        redeem(ledger, RULES, "m2", "lucky", "late", AFTER)
    assert ledger.load_account("m2", with_lots=False).balance == 950
    assert lucky_draws.with_draws(results, RULES, {"items": [{"item_id": "lucky"}]})["items"][0]["lucky_draw"][
        "status"] == "closed"
    assert reconcile(ledger)[1] == []


def test_a_lucky_entry_is_not_cancelled(ledger, results):
    _fund(ledger, "m1")
    redemption, _ = redeem(ledger, RULES, "m1", "lucky", "a", T0)
    with pytest.raises(Conflict, match="not cancelled"):
        cancel_redemption(ledger, RULES, "m1", redemption.redemption_id, "changed my mind", T0)
    assert ledger.load_account("m1", with_lots=False).balance == 950


def test_a_draw_with_no_entries_draws_no_one(ledger, results):
    record = lucky_draws.run_lucky_draw(results, RULES, "lucky", AFTER)
    assert (record["entrants"], record["winners"]) == (0, [])
    assert lucky_draws.lucky_entrants(results, RULES, "lucky")["entrant_ids"] == []


def test_entries_racing_the_run_are_either_drawn_or_refused(ledger, results):
    members = [f"m{i:02d}" for i in range(12)]
    for m in members:
        _fund(ledger, m)
    barrier = threading.Barrier(len(members) + 1)

    def enter(m):
        barrier.wait()
        try:
            return redeem(ledger, RULES, m, "lucky", "k", AFTER)[0].redemption_id
        except Conflict:
            return None

    def run():
        barrier.wait()
        return lucky_draws.run_lucky_draw(results, RULES, "lucky", AFTER)

    with ThreadPoolExecutor(len(members) + 1) as pool:
        entered = [pool.submit(enter, m) for m in members]
        record = pool.submit(run).result()
        accepted = {f.result() for f in entered} - {None}
    assert set(lucky_draws.lucky_entrants(results, RULES, "lucky")["entrant_ids"]) == accepted
    assert record["entrants"] == len(accepted)


# --- rewards into the ledger ----------------------------------------------------------------

def test_rewards_are_one_write_each_paid_once_over_runs(ledger, results):
    reader = FakeChallengeReader(page_size=2)
    reader.put_challenge("c1", "2026-09-01", days=90, rewards={"base": 10, "top_half": 20, "top_tenth": 30})
    for i, points in enumerate((50, 40, 40, 10, 0)):
        reader.enrol("c1", f"m{i}", points=points)
    _fund(ledger, "m4", 5)   # an earlier entry: the blind write still comes after it
    done = cr.finish_challenge(reader, results, ledger, RULES, "c1", parse_time("2026-12-01T00:00:00+08:00"))
    assert done["status"] == "done" and done["participants"] == 5
    balances = {f"m{i}": ledger.load_account(f"m{i}", with_lots=False).balance for i in range(5)}
    assert balances == {"m0": 60, "m1": 30, "m2": 30, "m3": 10, "m4": 15}   # P = 5: top 50% rank <= 3, top 10% rank 1
    again = cr.finish_challenge(reader, results, ledger, RULES, "c1", parse_time("2026-12-02T00:00:00+08:00"))
    assert again == done
    assert {m: ledger.load_account(m, with_lots=False).balance for m in balances} == balances
    (entry,) = [e for e in ledger.all_entries("m0") if e.type == EntryType.CHALLENGE and "10%" in e.reason]
    assert entry.reason == "challenge c1: top 10%" and entry.amount == 30 and entry.source == "challenge:c1"
    assert reconcile(ledger)[1] == []


def test_a_reward_to_a_member_with_newer_entries_or_a_debt_reads_and_settles(ledger, results):
    reader = FakeChallengeReader()
    reader.put_challenge("c1", "2026-09-01", days=90, rewards={"base": 100, "top_half": 0, "top_tenth": 0})
    reader.enrol("c1", "late", points=1)
    reader.enrol("c1", "owes", points=1)
    finish_at = parse_time("2026-12-01T00:00:00+08:00")
    adjust_points(ledger, RULES, "late", 5, "later", "ops", "late-1", "h-late", finish_at.replace(hour=9))
    _owe(ledger, "owes", 40, T0.replace(month=10))
    cr.finish_challenge(reader, results, ledger, RULES, "c1", finish_at)
    assert ledger.load_account("late", with_lots=False).balance == 105
    owes = ledger.load_account("owes")
    assert (owes.balance, owes.debt) == (60, 0)
    assert reconcile(ledger)[1] == []


def test_a_blind_reward_is_refused_to_a_member_with_a_debt(ledger):
    _owe(ledger, "owes", 40, T0)
    final = FinalRanking(challenge_id="c1", snapshot_hash="h", participants=1, left=0, base=5, top_half=0,
                         top_tenth=0, top_half_rank=1, top_tenth_rank=1, rewarded=1, points=5,
                         recorded_at="2027-04-01T00:00:00+08:00")
    # the one write the reward tries first, if the member has a debt: refused, nothing written
    calls = []
    real = ledger.commit

    def spy(change: Change):
        calls.append(change.expected_version)
        return real(change)

    ledger.commit = spy
    cr.credit_reward(ledger, RULES, final, "owes", 1, 3, [("base", 5)], AFTER)
    ledger.commit = real
    assert calls[0] is None and calls[1] is not None and len(calls) == 2
    assert ledger.load_account("owes", with_lots=False).balance == -35


def test_a_finish_cut_midway_resumes_from_its_progress_and_pays_each_member_once(ledger, results):
    reader = FakeChallengeReader(page_size=50)
    reader.put_challenge("c1", "2026-09-01", days=90, rewards={"base": 10, "top_half": 5, "top_tenth": 1})
    for i in range(120):
        reader.enrol("c1", f"m{i:03d}", points=i % 30)
    finish_at = parse_time("2026-12-01T00:00:00+08:00")
    real, count = ledger.commit, {"n": 0}

    def crashing(change: Change):
        count["n"] += 1
        if count["n"] == 110:
            raise RuntimeError("cut")
        real(change)

    ledger.commit = crashing
    with pytest.raises(RuntimeError):
        cr.finish_challenge(reader, results, ledger, RULES, "c1", finish_at)
    ledger.commit = real
    assert results.get_final("c1").credited == 100
    done = cr.finish_challenge(reader, results, ledger, RULES, "c1", finish_at)
    assert done["status"] == "done" and done["credited"] == 120
    paid = sum(ledger.load_account(f"m{i:03d}", with_lots=False).balance for i in range(120))
    assert paid == done["points"]
