"""The check-in challenge store (E5): set-up, invitations, enrolment, participant credits
and the leaderboard, as every store must show them; run against the in-memory fake
(tests/unit) and DynamoDB in the emulator (tests/integration). Each module that imports
these provides a `store` fixture."""
from __future__ import annotations

from datetime import date, timedelta

import pytest

from loyalty.domain import parse_time
from loyalty.engagement import draws
from loyalty.engagement.challenge_setup import invite, put_challenge
from loyalty.engagement.challenges import ChallengeSpec, ParticipantCredit, shard_of
from loyalty.engagement.enrolment import enrol, without_credits
from loyalty.engagement.standings import leaderboard, participant_view, top_entries
from loyalty.errors import Conflict, Invalid, NotFound
from loyalty.records import Change, Profile

ZONE = "Asia/Shanghai"
NOW = parse_time("2026-12-01T10:00:00+08:00")          # the day before the challenge starts
START = date(2026, 12, 2)


def spec(**changes) -> ChallengeSpec:
    body = {"name": "Winter 90", "starts_on": START.isoformat(), "days": 90,
            "draws": [{"draw_id": "d1", "on": "2026-12-15", "winners": 2}], **changes}
    return ChallengeSpec.model_validate(body)


class Queues:
    def __init__(self):
        self.sent: list[tuple[str, dict]] = []

    def send(self, name: str, body: dict, delay_s: int = 0) -> None:
        self.sent.append((name, body))


def member(store, member_id: str, name: str | None = None) -> None:
    store.put_profile(Profile(member_id=member_id, name=name))


def enrolled(store, member_id: str, challenge_id: str = "c1", name: str | None = None) -> dict:
    member(store, member_id, name)
    return enrol(store, challenge_id, member_id, NOW, "api", "app-tap-1", NOW, ZONE)


def credit(store, member_id: str, points: int, day: int | None = None, month: str = "2026-12",
           challenge_id: str = "c1", streak: int | None = None, shards: int = 8) -> None:
    account = store.load_account(member_id, with_lots=False)
    local = (START + timedelta(days=day - 1)).isoformat() if day else None
    store.commit(Change(member_id=member_id, expected_version=account.version, engagement=account.engagement,
                        participants=(ParticipantCredit(challenge_id, member_id, shard_of(member_id, shards), points,
                                                        month, day=day, local_date=local, streak=streak),)))


# --- set-up -------------------------------------------------------------------------------

def test_a_challenge_is_created_then_shown_with_its_commitments_never_its_seeds(store):
    view, created = put_challenge(store, "c1", spec(), NOW, ZONE)
    assert created and view["status"] == "upcoming" and view["ends_on"] == "2027-03-01"
    (draw,) = view["draws"]
    assert set(draw) == {"draw_id", "on", "winners", "commitment"}
    seed = store.get_challenge("c1").draws[0].seed
    assert draw["commitment"] == draws.commitment(seed)
    assert seed not in repr(view)
    again, created_again = put_challenge(store, "c1", spec(), NOW, ZONE)
    assert not created_again and again == view


def test_a_draw_keeps_its_seed_on_updates_and_new_draws_get_their_own(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    seed = store.get_challenge("c1").draws[0].seed
    later = NOW + timedelta(days=3)   # started
    view, _ = put_challenge(store, "c1", spec(name="Winter 90!", draws=[
        {"draw_id": "d1", "on": "2026-12-15", "winners": 2}, {"draw_id": "d2", "on": "2027-01-15", "winners": 1}]),
        later, ZONE)
    record = store.get_challenge("c1")
    assert view["name"] == "Winter 90!" and view["status"] == "active" and record.draws[0].seed == seed
    assert record.draws[1].seed != seed and record.version == 2


@pytest.mark.parametrize("changes", [{"starts_on": "2026-12-03"}, {"days": 30},
                                     {"rewards": {"base": 1, "top_half": 2, "top_tenth": 3}},
                                     {"draws": []},                                    # a draw whose day came
                                     {"draws": [{"draw_id": "d1", "on": "2026-12-15", "winners": 3}]}])
def test_what_was_promised_may_not_change_once_it_started(store, changes):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    with pytest.raises(Conflict):
        put_challenge(store, "c1", spec(**changes), parse_time("2026-12-16T09:00:00+08:00"), ZONE)
    assert store.get_challenge("c1").version == 1


def test_before_it_starts_anything_may_change_and_the_listing_follows_the_end(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    put_challenge(store, "c1", spec(days=30, draws=[]), NOW, ZONE)
    put_challenge(store, "c2", spec(name="Later", starts_on="2027-01-10", days=10, draws=[]), NOW, ZONE)
    assert [r.challenge_id for r in store.active_challenges(date(2026, 12, 31))] == ["c1"]
    assert store.active_challenges(date(2027, 1, 1)) == []            # c1 now ends on Dec 31
    assert [r.challenge_id for r in store.active_challenges(date(2027, 1, 10))] == ["c2"]
    assert store.active_challenges(date(2026, 12, 1)) == []           # upcoming only


# --- invitations ---------------------------------------------------------------------------

def test_invitations_are_recorded_once_and_unknown_members_reported(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    member(store, "m1")
    member(store, "m2")
    queues = Queues()
    answer = invite(store, queues, "c1", ["m1", "m2", "ghost", "m1"], "op", NOW, ZONE)
    assert answer == {"invited": 2, "skipped": [{"member_id": "ghost", "reason": "unknown_member"}]}
    assert sorted(job["job_id"] for _, job in queues.sent) == ["campaign#challenge-invitation#c1#m1",
                                                               "campaign#challenge-invitation#c1#m2"]
    assert {job["template"] for _, job in queues.sent} == {"challenge_invitation"}
    again = invite(store, Queues(), "c1", ["m1"], "op", NOW, ZONE)
    assert again == {"invited": 0, "skipped": [{"member_id": "m1", "reason": "already_invited"}]}
    assert [i.challenge_id for i in store.open_invitations("m1", NOW.date())] == ["c1"]
    assert store.open_invitations("m1", date(2027, 3, 2)) == []       # the challenge has ended


def test_too_many_invitations_or_an_unknown_challenge_change_nothing(store):
    with pytest.raises(NotFound):
        invite(store, Queues(), "nope", ["m1"], "op", NOW, ZONE)
    put_challenge(store, "c1", spec(), NOW, ZONE)
    with pytest.raises(Invalid):
        invite(store, Queues(), "c1", [f"m{i}" for i in range(501)], "op", NOW, ZONE)


# --- enrolment -----------------------------------------------------------------------------

def test_enrolment_makes_a_participant_records_consent_and_lists_the_challenge_on_the_member(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    answer = enrolled(store, "m1")
    assert answer == {"challenge_id": "c1", "member_id": "m1", "enrolled_at": NOW.isoformat(), "source": "api",
                      "starts_on": "2026-12-02", "ends_on": "2027-03-01"}
    (consent,) = store.consent_history("m1", "challenge:c1")
    assert (consent.status, consent.source, consent.proof, consent.at) == ("opted_in", "api", "app-tap-1", NOW)
    shard = shard_of("m1", 8)
    assert store.load_account("m1", with_lots=False).engagement.checkin.challenges == (
        ("c1", "2026-12-02", "2027-03-01", shard),)
    participant = store.get_participant("c1", "m1")
    assert (participant.shard, participant.points, participant.proof) == (shard, 0, "app-tap-1")
    assert [p.member_id for page in store.participants("c1", shard) for p in page] == ["m1"]
    # again, later and otherwise: the first enrolment's answer, nothing written twice
    later = NOW + timedelta(hours=1)
    assert enrol(store, "c1", "m1", later, "keyword:whatsapp", "x", later, ZONE) == answer
    assert len(store.consent_history("m1", "challenge:c1")) == 1


def test_enrolment_refusals(store):
    put_challenge(store, "c1", spec(days=10, draws=[]), NOW, ZONE)
    member(store, "m1")
    with pytest.raises(NotFound):
        enrol(store, "c1", "ghost", NOW, "api", None, NOW, ZONE)
    with pytest.raises(NotFound):
        enrol(store, "nope", "m1", NOW, "api", None, NOW, ZONE)
    with pytest.raises(Invalid, match="agreed_at"):
        enrol(store, "c1", "m1", NOW - timedelta(hours=49), "api", None, NOW, ZONE)
    ended = NOW + timedelta(days=12)
    with pytest.raises(Conflict):
        enrol(store, "c1", "m1", ended, "api", None, ended, ZONE)
    assert store.get_participant("c1", "m1") is None and store.consent_history("m1", "challenge:c1") == []


def test_participants_are_read_shard_by_shard_and_cover_everyone_once(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    for i in range(20):
        enrolled(store, f"m{i:02d}")
    seen = [p.member_id for shard in range(8) for page in store.participants("c1", shard) for p in page]
    assert sorted(seen) == [f"m{i:02d}" for i in range(20)]
    assert all(p.shard == shard for shard in range(8) for page in store.participants("c1", shard) for p in page)


# --- credits (Change.participants) --------------------------------------------------------------

def test_a_credit_lands_on_the_participant_with_the_points_and_a_day_counts_once(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    enrolled(store, "m1")
    credit(store, "m1", 10, day=1, streak=1)
    credit(store, "m1", 10, day=1, streak=1)       # the same day again: counted once
    credit(store, "m1", 15, day=3, streak=1, month="2027-01")
    credit(store, "m1", 5)                          # points without a check-in (an activity)
    p = store.get_participant("c1", "m1")
    assert (p.points, p.days_checked_in, p.checked, p.streak, p.last_checkin) == (40, 2, "101", 1, "2026-12-04")
    shard = shard_of("m1", 8)
    assert store.month_points("c1", "m1", shard, "2026-12") == 25
    assert store.month_points("c1", "m1", shard, "2027-01") == 15


def test_orders_and_redemptions_are_counted_on_the_participant(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    enrolled(store, "m1")
    account = store.load_account("m1", with_lots=False)
    store.commit(Change(member_id="m1", expected_version=account.version, participants=(
        ParticipantCredit("c1", "m1", shard_of("m1", 8), 0, "2026-12", orders=1, redemptions=1),)))
    p = store.get_participant("c1", "m1")
    assert (p.orders, p.redemptions, p.points) == (1, 1, 0)


def test_a_credit_of_a_member_who_is_not_a_participant_is_dropped_and_the_rest_committed_once(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    member(store, "m1")
    account = store.load_account("m1", with_lots=False)
    change = Change(member_id="m1", expected_version=account.version, balance_delta=10,
                    participants=(ParticipantCredit("c1", "m1", shard_of("m1", 8), 10, "2026-12", day=1, streak=1),))
    store.commit(change)
    assert store.load_account("m1", with_lots=False).balance == 10
    assert store.get_participant("c1", "m1") is None
    assert without_credits(change, ["c1"]).participants == ()


# --- leaderboard ---------------------------------------------------------------------------------

def test_the_leaderboard_ranks_ties_together_and_masks_names(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    for m, name, points in (("a", "Xu Li", 30), ("b", "王芳", 30), ("c", None, 10), ("d", "Dee", 50), ("e", "E", 0)):
        enrolled(store, m, name=name)
        if points:
            credit(store, m, points)
    board = leaderboard(store, "c1", "all", 10)["entries"]
    assert [(e["rank"], e["points"]) for e in board] == [(1, 50), (2, 30), (2, 30), (4, 10), (5, 0)]
    assert {e["member_id"]: e["name"] for e in board} == {"d": "D*", "a": "X*", "b": "王*", "c": "*", "e": "E*"}
    assert leaderboard(store, "c1", "all", 10) == leaderboard(store, "c1", "all", 10)   # a tie keeps its order
    assert [e["member_id"] for e in leaderboard(store, "c1", "all", 2)["entries"]] == [
        e["member_id"] for e in board[:2]]
    assert participant_view(store, "c1", "b")["rank"] == 2 and participant_view(store, "c1", "e")["rank"] == 5


def test_a_month_board_holds_that_months_points_only(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    enrolled(store, "a")
    enrolled(store, "b")
    credit(store, "a", 40, month="2026-12")
    credit(store, "b", 10, month="2026-12")
    credit(store, "b", 20, month="2027-01")
    assert [(e["member_id"], e["points"]) for e in leaderboard(store, "c1", "2027-01", 10)["entries"]] == [("b", 20)]
    assert [(e["member_id"], e["points"]) for e in leaderboard(store, "c1", "2026-12", 10)["entries"]] == [
        ("a", 40), ("b", 10)]
    assert leaderboard(store, "c1", "2027-02", 10)["entries"] == []
    with pytest.raises(NotFound):
        leaderboard(store, "nope", "all", 10)


def test_a_page_reads_at_most_its_entries_plus_one_per_shard(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    for i in range(30):
        enrolled(store, f"m{i:02d}")
        credit(store, f"m{i:02d}", i % 7)
    read = []
    original = store.board_page

    def counting(*args):
        page = original(*args)
        read.append(len(page))
        return page
    store.board_page = counting
    top = top_entries(store, "c1", "all", 8, 10)
    assert sum(read) <= 10 + 8 and [e.points for e in top] == sorted([i % 7 for i in range(30)], reverse=True)[:10]


def test_the_participant_view(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    enrolled(store, "m1")
    credit(store, "m1", 10, day=1, streak=1)
    assert participant_view(store, "c1", "m1") == {
        "challenge_id": "c1", "member_id": "m1", "points": 10, "rank": 1, "streak": 1, "days_checked_in": 1,
        "enrolled_at": NOW.isoformat(), "last_checkin": "2026-12-02"}
    member(store, "m2")
    with pytest.raises(NotFound):
        participant_view(store, "c1", "m2")


# --- leaving -----------------------------------------------------------------------------------

def test_a_member_who_leaves_is_off_the_boards_gets_no_credit_and_may_not_enrol_again(store):
    from loyalty.engagement.enrolment import leave
    put_challenge(store, "c1", spec(), NOW, ZONE)
    enrolled(store, "a")
    enrolled(store, "b")
    credit(store, "a", 40, month="2026-12")
    credit(store, "b", 10, month="2026-12")
    later = NOW + timedelta(days=2)
    assert leave(store, "c1", "a", "api", later) == {"challenge_id": "c1", "member_id": "a", "opted_out": True}
    assert leave(store, "c1", "a", "api", later)["opted_out"]                       # again: the same
    assert [e["member_id"] for e in leaderboard(store, "c1", "all", 10)["entries"]] == ["b"]
    assert [e["member_id"] for e in leaderboard(store, "c1", "2026-12", 10)["entries"]] == ["b"]
    assert store.get_participant("c1", "a").opted_out and participant_view(store, "c1", "a")["rank"] is None
    assert store.load_account("a", with_lots=False).engagement.checkin.challenges == ()
    assert [c.status for c in store.consent_history("a", "challenge:c1")] == ["opted_out", "opted_in"]
    with pytest.raises(Conflict):
        enrol(store, "c1", "a", later, "api", None, later, ZONE)
    with pytest.raises(NotFound):
        leave(store, "c1", "ghost", "api", later)


def test_two_credits_of_one_participant_in_one_change_land_as_one(store):
    put_challenge(store, "c1", spec(), NOW, ZONE)
    enrolled(store, "m1")
    account = store.load_account("m1", with_lots=False)
    shard = shard_of("m1", 8)
    store.commit(Change(member_id="m1", expected_version=account.version, participants=(
        ParticipantCredit("c1", "m1", shard, 10, "2026-12", day=1, local_date="2026-12-02", streak=1),
        ParticipantCredit("c1", "m1", shard, 5, "2026-12", orders=1))))
    p = store.get_participant("c1", "m1")
    assert (p.points, p.days_checked_in, p.streak, p.orders) == (15, 1, 1, 1)
    assert store.month_points("c1", "m1", shard, "2026-12") == 15
