"""The challenge results' routes of the members API, invoked as API Gateway calls them,
against the emulator (results and rewards in DynamoDB). The challenges and their
participants come from the test's fake reader until the challenge store is merged."""
import json

import pytest

from loyalty import wiring
from loyalty.engagement import verify_draw
from tests.challenge_fakes import FakeChallengeReader
from tests.integration.test_activities_handler import call
from tests.integration.test_handlers import load_handler


@pytest.fixture
def reader(monkeypatch):
    reader = FakeChallengeReader(page_size=2)
    # over long ago in real time, so the API's clock finds its days ended
    reader.put_challenge("q1", "2026-01-01", days=14, draws_=(("d3", "2026-01-03", 2), ("d9", "2026-01-09", 1)),
                         rewards={"base": 10, "top_half": 20, "top_tenth": 30})
    reader.enrol("q1", "m-a", points=90, checked="111", orders=1)
    reader.enrol("q1", "m-b", points=50, checked="011", redemptions=1)
    reader.enrol("q1", "m-c", points=50, checked="110")
    reader.enrol("q1", "m-d", points=0, checked="001", opted_out=True)
    monkeypatch.setattr(wiring, "challenge_reader", lambda: reader)
    return reader


@pytest.fixture
def members(fresh_aws):
    return load_handler("members_api")


def test_a_draw_run_through_the_api_is_recomputed_by_the_verifier(members, reader, tmp_path, capsys):
    status, record = call(members, "POST", "/challenges/q1/draws/d3/run", "/challenges/{challenge_id}/draws/{draw_id}/run")
    assert status == 200 and set(record) == {"draw_id", "commitment", "seed", "entrants_hash", "entrants", "winners"}
    assert record["entrants"] == 2 and sorted(record["winners"]) == ["m-a", "m-b"]
    assert record["commitment"] == reader.challenges["q1"].draws[0].commitment
    assert call(members, "POST", "/challenges/q1/draws/d3/run", "/challenges/{challenge_id}/draws/{draw_id}/run") \
        == (200, record)
    status, listed = call(members, "GET", "/challenges/q1/draws/d3/entrants",
                          "/challenges/{challenge_id}/draws/{draw_id}/entrants")
    assert (status, listed) == (200, {"draw_id": "d3", "entrant_ids": ["m-a", "m-b"]})
    # what an auditor does with the two answers
    (tmp_path / "draw.json").write_text(json.dumps(record))
    (tmp_path / "entrants.txt").write_text("\n".join(listed["entrant_ids"]) + "\n")
    assert verify_draw.main([str(tmp_path / "draw.json"), str(tmp_path / "entrants.txt")]) == 0
    assert capsys.readouterr().out.startswith("OK d3: 2 entrants")
    (tmp_path / "entrants.txt").write_text("m-a\nm-c\n")
    assert verify_draw.main([str(tmp_path / "draw.json"), str(tmp_path / "entrants.txt")]) == 1


def test_unknown_challenges_and_draws_are_404_and_entrants_before_the_run_409(members, reader):
    assert call(members, "POST", "/challenges/nope/draws/d3/run", "/challenges/{challenge_id}/draws/{draw_id}/run")[0] == 404
    assert call(members, "POST", "/challenges/q1/draws/zz/run", "/challenges/{challenge_id}/draws/{draw_id}/run")[0] == 404
    status, body = call(members, "GET", "/challenges/q1/draws/d9/entrants",
                        "/challenges/{challenge_id}/draws/{draw_id}/entrants")
    assert status == 409 and "not run" in body["message"]


def test_the_finish_pays_once_and_the_results_and_stats_show_it(members, reader):
    status, done = call(members, "POST", "/challenges/q1/finish", "/challenges/{challenge_id}/finish")
    assert status == 200 and done["status"] == "done" and (done["participants"], done["left"]) == (3, 1)
    # P = 3: top 50% rank <= 2 (m-a 1, m-b and m-c tied 2), top 10% rank 1
    assert call(members, "POST", "/challenges/q1/finish", "/challenges/{challenge_id}/finish") == (200, done)
    balances = {m: call(members, "GET", f"/members/{m}/points", "/members/{member_id}/points")[1]["balance"]
                for m in ("m-a", "m-b", "m-c", "m-d")}
    assert balances == {"m-a": 60, "m-b": 30, "m-c": 30, "m-d": 0}
    status, view = call(members, "GET", "/challenges/q1/results", "/challenges/{challenge_id}/results",
                        query="member_id=m-b")
    assert status == 200 and view["snapshot_hash"] == done["snapshot_hash"]
    assert view["member"] == {"member_id": "m-b", "rank": 2, "points": 50, "reward": 30,
                              "parts": {"base": 10, "top 50%": 20}}
    status, stats = call(members, "GET", "/challenges/q1/stats", "/challenges/{challenge_id}/stats")
    assert status == 200 and stats["days_so_far"] == 14 and stats["participants"] == 4
    assert stats["redemption_rate"]["value"] == 0.25 and stats["repurchase_conversion"]["value"] == 0.25
    assert stats["daily_checkin_rate"]["days"][2] == {"day": 3, "date": "2026-01-03", "participants": 4,
                                                      "checked_in": 3, "rate": 0.75}
