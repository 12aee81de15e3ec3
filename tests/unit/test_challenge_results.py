"""A challenge's results on the fakes: draws from the participants' check-in bitmaps, the
final ranking and its rewards, the stats."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from loyalty.adapters.memory import MemoryLedgerStore
from loyalty.adapters.results_memory import MemoryResultsStore
from loyalty.domain import EntryType, parse_time
from loyalty.engagement import challenge_results as cr
from loyalty.engagement import draws
from loyalty.errors import Conflict, NotFound
from loyalty.records import Change
from loyalty.rules import build_rules
from loyalty.services.queries import reconcile
from tests.challenge_fakes import FakeChallengeReader

RULES = build_rules()   # programme time zone Asia/Shanghai
START = "2026-01-01"
AFTER_DAY_3 = parse_time("2026-01-04T00:00:00+08:00")
AFTER_END = parse_time("2026-04-01T00:00:01+08:00")   # 90 days from 1 January end on 31 March


@pytest.fixture
def reader():
    r = FakeChallengeReader(page_size=3)
    r.put_challenge("q1", START, draws_=(("d3", "2026-01-03", 2),), rewards={"base": 100, "top_half": 200,
                                                                             "top_tenth": 500})
    return r


@pytest.fixture
def results():
    return MemoryResultsStore()


# --- draws ---------------------------------------------------------------------------------

def test_the_entrants_are_those_who_checked_in_on_the_draws_day_and_did_not_leave(reader, results):
    # given day 3's bit set for a, b and e (e left), and c checked in only on days 1-2
    reader.enrol("q1", "a", checked="111")
    reader.enrol("q1", "b", checked="0010")
    reader.enrol("q1", "c", checked="11")
    reader.enrol("q1", "d", checked="")
    reader.enrol("q1", "e", checked="111", opted_out=True)
    answer = cr.run_challenge_draw(reader, results, RULES, "q1", "d3", AFTER_DAY_3)
    assert set(answer) == {"draw_id", "commitment", "seed", "entrants_hash", "entrants", "winners"}
    assert answer["entrants"] == 2 and sorted(answer["winners"]) == ["a", "b"]
    listed = cr.draw_entrants(reader, results, "q1", "d3")
    assert listed == {"draw_id": "d3", "entrant_ids": ["a", "b"]}
    assert draws.verify(answer, listed["entrant_ids"]) == []
    seed = reader.challenges["q1"].draws[0].seed
    assert answer["seed"] == seed and answer["commitment"] == draws.commitment(seed)
    assert answer["winners"] == draws.pick_winners(seed, ["a", "b"], 2)


def test_a_draw_runs_once_its_day_has_ended_in_the_programme_time_zone(reader, results):
    reader.enrol("q1", "a", checked="111")
    with pytest.raises(Conflict, match="has ended"):
        cr.run_challenge_draw(reader, results, RULES, "q1", "d3", parse_time("2026-01-03T23:59:59+08:00"))
    with pytest.raises(Conflict, match="not run yet"):
        cr.draw_entrants(reader, results, "q1", "d3")
    assert results.draws == {} and results.lists == {}
    # 16:00 UTC on the 3rd is midnight in Shanghai
    assert cr.run_challenge_draw(reader, results, RULES, "q1", "d3", parse_time("2026-01-03T16:00:00Z"))["entrants"] == 1


def test_an_unknown_challenge_or_draw_is_not_found(reader, results):
    with pytest.raises(NotFound):
        cr.run_challenge_draw(reader, results, RULES, "nope", "d3", AFTER_DAY_3)
    with pytest.raises(NotFound):
        cr.run_challenge_draw(reader, results, RULES, "q1", "d9", AFTER_DAY_3)
    with pytest.raises(NotFound):
        cr.draw_entrants(reader, results, "q1", "d9")


def test_running_a_draw_again_answers_the_first_record_even_if_check_ins_moved(reader, results):
    for m in "abcdef":
        reader.enrol("q1", m, checked="111")
    first = cr.run_challenge_draw(reader, results, RULES, "q1", "d3", AFTER_DAY_3)
    reader.move("q1", "a", checked="110")
    reader.enrol("q1", "z", checked="111")
    assert cr.run_challenge_draw(reader, results, RULES, "q1", "d3", AFTER_DAY_3) == first
    assert cr.draw_entrants(reader, results, "q1", "d3")["entrant_ids"] == list("abcdef")
    assert cr.draw_result_view(results, "q1", "d3")["winners"] == first["winners"]
    assert cr.draw_result_view(results, "q1", "nothing") is None


def test_concurrent_runs_record_one_result(reader, results):
    for i in range(40):
        reader.enrol("q1", f"m{i:02d}", checked="111")
    barrier = threading.Barrier(6)

    def run(_):
        barrier.wait()
        return cr.run_challenge_draw(reader, results, RULES, "q1", "d3", AFTER_DAY_3)

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(run, range(6)))
    assert all(a == answers[0] for a in answers) and len(results.draws) == 1


# --- the final ranking and the rewards -----------------------------------------------------

def _points(store, member):
    return store.load_account(member, with_lots=False).balance


def _challenge_entries(store, member):
    return [e for e in store.all_entries(member) if e.type == EntryType.CHALLENGE]


def test_ranks_share_ties_and_the_snapshot_hash_is_the_documented_one():
    ranking = cr.ranked([("b", 10), ("a", 10), ("c", 5), ("d", 7)])
    assert ranking == [(1, "a", 10), (1, "b", 10), (3, "d", 7), (4, "c", 5)]
    lines = cr.snapshot_lines(ranking)
    assert lines[0] == "1\ta\t10"
    import hashlib
    assert cr.snapshot_hash(lines) == hashlib.sha256(b"1\ta\t10\n1\tb\t10\n3\td\t7\n4\tc\t5").hexdigest()
    assert cr.cutoffs(10) == (5, 1) and cr.cutoffs(11) == (6, 2) and cr.cutoffs(1) == (1, 1)


def test_rewards_with_ties_at_the_half_and_tenth_boundaries(reader, results):
    # 10 participants: top 50% = rank <= 5, top 10% = rank <= 1; ties take in all tied
    scores = {"p0": 90, "p1": 90, "p2": 70, "p3": 60, "p4": 50, "p5": 50, "p6": 40, "p7": 30, "p8": 0, "p9": 0}
    for m, s in scores.items():
        reader.enrol("q1", m, points=s)
    reader.enrol("q1", "gone", points=500, opted_out=True)
    store = MemoryLedgerStore()
    answer = cr.finish_challenge(reader, results, store, RULES, "q1", AFTER_END)
    assert answer["status"] == "done" and answer["participants"] == 10 and answer["left"] == 1
    expected = {"p0": 800, "p1": 800, "p2": 300, "p3": 300, "p4": 300, "p5": 300, "p6": 100, "p7": 100,
                "p8": 100, "p9": 100}
    assert {m: _points(store, m) for m in scores} == expected
    assert _points(store, "gone") == 0
    assert answer["rewarded"] == 10 and answer["points"] == sum(expected.values())
    reasons = sorted(e.reason for e in _challenge_entries(store, "p0"))
    assert reasons == ["challenge q1: base", "challenge q1: top 10%", "challenge q1: top 50%"]
    (lot,) = store.load_account("p0").lots
    assert lot.points == 800 and lot.source == "challenge:q1"
    assert reconcile(store)[1] == []


def test_zero_points_members_are_never_in_a_top_group_and_zero_rewards_are_skipped(reader, results):
    reader.put_challenge("q2", START, rewards={"base": 0, "top_half": 50, "top_tenth": 0})
    reader.enrol("q2", "a", points=0)
    reader.enrol("q2", "b", points=0)
    store = MemoryLedgerStore()
    answer = cr.finish_challenge(reader, results, store, RULES, "q2", AFTER_END)
    assert answer["rewarded"] == 0 and answer["status"] == "done"
    assert store.idempotency == {} and store.entries == {}


def test_finishing_before_the_last_day_has_ended_is_a_conflict(reader, results):
    reader.enrol("q1", "a", points=5)
    with pytest.raises(Conflict, match="2026-03-31"):
        cr.finish_challenge(reader, results, MemoryLedgerStore(), RULES, "q1",
                            parse_time("2026-03-31T23:59:00+08:00"))
    assert results.finals == {}
    with pytest.raises(NotFound):
        cr.finish_challenge(reader, results, MemoryLedgerStore(), RULES, "nope", AFTER_END)


def test_a_re_run_credits_nothing_and_keeps_the_snapshot_even_if_points_moved(reader, results):
    for i in range(7):
        reader.enrol("q1", f"m{i}", points=10 * i)
    store = MemoryLedgerStore()
    first = cr.finish_challenge(reader, results, store, RULES, "q1", AFTER_END)
    balances = {m: _points(store, m) for m in (f"m{i}" for i in range(7))}
    commits = len(store.idempotency)
    reader.move("q1", "m0", points=1000)
    again = cr.finish_challenge(reader, results, store, RULES, "q1", parse_time("2026-04-05T00:00:00+08:00"))
    assert again == first
    assert {m: _points(store, m) for m in balances} == balances and len(store.idempotency) == commits


def test_a_run_cut_midway_resumes_and_pays_each_member_once(reader, results):
    for i in range(250):
        reader.enrol("q1", f"m{i:03d}", points=i)
    store = MemoryLedgerStore()
    calls = {"n": 0}
    real = store.commit

    def crashing(change: Change):
        calls["n"] += 1
        if calls["n"] == 160:
            raise RuntimeError("the Lambda ran out of time")
        real(change)

    store.commit = crashing
    with pytest.raises(RuntimeError):
        cr.finish_challenge(reader, results, store, RULES, "q1", AFTER_END)
    assert results.finals["q1"].credited == 100 and results.finals["q1"].done_at is None
    store.commit = real
    answer = cr.finish_challenge(reader, results, store, RULES, "q1", AFTER_END)
    assert answer["status"] == "done" and answer["credited"] == 250
    assert len(store.idempotency) == 250
    assert all(len(_challenge_entries(store, f"m{i:03d}")) >= 1 for i in range(250))
    assert sum(_points(store, f"m{i:03d}") for i in range(250)) == answer["points"]
    assert reconcile(store)[1] == []


def test_a_limited_run_stops_and_the_next_one_continues(reader, results):
    for i in range(12):
        reader.enrol("q1", f"m{i:02d}", points=i)
    store = MemoryLedgerStore()
    part = cr.finish_challenge(reader, results, store, RULES, "q1", AFTER_END, max_credits=5)
    assert part["status"] == "in_progress" and part["credited"] == 5 and len(store.idempotency) == 5
    rest = cr.finish_challenge(reader, results, store, RULES, "q1", AFTER_END)
    assert rest["status"] == "done" and rest["credited"] == 12 and len(store.idempotency) == 12


def test_concurrent_finishes_pay_each_member_once(reader, results):
    for i in range(60):
        reader.enrol("q1", f"m{i:02d}", points=i % 7)
    store = MemoryLedgerStore()
    barrier = threading.Barrier(4)

    def run(_):
        barrier.wait()
        return cr.finish_challenge(reader, results, store, RULES, "q1", AFTER_END)

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(run, range(4)))
    assert {a["snapshot_hash"] for a in answers} == {answers[0]["snapshot_hash"]}
    assert sum(_points(store, f"m{i:02d}") for i in range(60)) == answers[0]["points"]
    assert all(len({e.reason for e in _challenge_entries(store, f"m{i:02d}")})
               == len(_challenge_entries(store, f"m{i:02d}")) for i in range(60))


def test_a_member_with_a_debt_has_it_settled_first(reader, results):
    from loyalty.domain import Account
    reader.enrol("q1", "owes", points=3)
    store = MemoryLedgerStore()
    store.accounts["owes"] = Account(member_id="owes", balance=-30, debt=30, version=4)
    cr.finish_challenge(reader, results, store, RULES, "q1", AFTER_END)
    account = store.load_account("owes")
    assert account.balance == 800 - 30 and account.debt == 0 and account.lots[0].remaining == 770


def test_the_results_view_shows_the_hash_and_the_members_reward(reader, results):
    reader.enrol("q1", "a", points=9)
    reader.enrol("q1", "b", points=1)
    store = MemoryLedgerStore()
    assert cr.results_view(reader, results, store, "q1", "a")["status"] == "not_final"
    done = cr.finish_challenge(reader, results, store, RULES, "q1", AFTER_END)
    view = cr.results_view(reader, results, store, "q1", "a")
    assert view["snapshot_hash"] == done["snapshot_hash"]
    assert view["member"] == {"member_id": "a", "rank": 1, "points": 9, "reward": 800,
                              "parts": {"base": 100, "top 50%": 200, "top 10%": 500}}
    assert cr.results_view(reader, results, store, "q1", "x")["member"]["reward"] == 0


def test_reads_every_shard_page_by_page(reader, results):
    for i in range(100):
        reader.enrol("q1", f"m{i:03d}", points=i)
    reader.items_read = reader.queries = 0
    cr.finish_challenge(reader, results, MemoryLedgerStore(), RULES, "q1", AFTER_END)
    assert reader.items_read == 100 and reader.queries <= 100 / 3 + 8 + 1


# --- stats ---------------------------------------------------------------------------------

def test_stats_on_a_hand_built_set(reader):
    reader.put_challenge("s", START, days=14)
    # 14 days: 2 weeks. a: every day; b: week 1 only; c: week 2 only; d: enrolled on day 8, checks day 8
    reader.enrol("s", "a", checked="1" * 14, orders=1, redemptions=2)
    reader.enrol("s", "b", checked="1111111", orders=0, redemptions=1)
    reader.enrol("s", "c", checked="0000000" + "1111111")
    reader.enrol("s", "d", checked="0000000" + "1", enrolled_at="2026-01-08T12:00:00+08:00", opted_out=True)
    stats = cr.challenge_stats(reader, RULES, "s", parse_time("2026-01-20T10:00:00+08:00"))
    assert stats["participants"] == 4 and stats["days_so_far"] == 14 and stats["left"] == 1
    day1, day8 = stats["daily_checkin_rate"]["days"][0], stats["daily_checkin_rate"]["days"][7]
    assert (day1["participants"], day1["checked_in"], day1["rate"]) == (3, 2, 0.6667)
    assert (day8["participants"], day8["checked_in"], day8["rate"]) == (4, 3, 0.75)
    # checked: days 1-7: 2 of 3 each (14/21), days 8-14: a, c every day and d on day 8 (15/28)
    assert stats["daily_checkin_rate"]["value"] == round(29 / 49, 4)
    assert stats["daily_checkin_rate"]["healthy"] == ">60%" and stats["daily_checkin_rate"]["is_healthy"] is False
    assert stats["weekly_retention"]["weeks"] == [{"week": 2, "active_before": 2, "retained": 1, "rate": 0.5}]
    assert stats["redemption_rate"] == {"value": 0.5, "healthy": "30-50%", "is_healthy": True, "participants": 2}
    assert stats["repurchase_conversion"] == {"value": 0.25, "healthy": ">20%", "is_healthy": True,
                                              "participants": 1}


def test_stats_before_the_start_have_no_days(reader):
    reader.enrol("q1", "a")
    stats = cr.challenge_stats(reader, RULES, "q1", parse_time("2025-12-30T10:00:00+08:00"))
    assert stats["days_so_far"] == 0 and stats["daily_checkin_rate"]["value"] is None


def test_a_challenge_without_participants_finishes_with_nothing_to_pay(reader, results):
    answer = cr.finish_challenge(reader, results, MemoryLedgerStore(), RULES, "q1", AFTER_END)
    assert (answer["status"], answer["participants"], answer["rewarded"]) == ("done", 0, 0)
    assert answer["snapshot_hash"] == cr.snapshot_hash([])


def test_lucky_draw_items_are_validated_configuration():
    from loyalty.errors import Invalid
    item = {"item_id": "l1", "name": "Lucky", "points": 50, "lucky_draw": {"draw_id": "d", "on": "2026-12-31",
                                                                          "winners": 1}}
    assert build_rules({"catalog": [item]}).item("l1").lucky_draw.winners == 1
    with pytest.raises(Invalid, match="lucky draw ids must be unique"):
        build_rules({"catalog": [item, {**item, "item_id": "l2"}]})
    with pytest.raises(Invalid, match="winners"):
        build_rules({"catalog": [{**item, "lucky_draw": {"draw_id": "d", "on": "2026-12-31", "winners": 0}}]})


def test_a_run_told_to_stop_saves_its_progress_and_the_next_continues(reader, results):
    for i in range(8):
        reader.enrol("q1", f"m{i}", points=i)
    store, asked = MemoryLedgerStore(), []

    def stop() -> bool:   # a Lambda running out of time after 3 rewards
        asked.append(1)
        return len(asked) > 3

    part = cr.finish_challenge(reader, results, store, RULES, "q1", AFTER_END, should_stop=stop)
    assert (part["status"], part["credited"], len(store.idempotency)) == ("in_progress", 3, 3)
    assert cr.finish_challenge(reader, results, store, RULES, "q1", AFTER_END)["status"] == "done"
    assert len(store.idempotency) == 8
