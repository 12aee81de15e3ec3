"""The check-in challenge's set-up, enrolment and standings through 127.0.0.1 (E5): an
operator puts a challenge and invites members; one agrees by replying 同意 on WhatsApp,
another through the member app's API; the leaderboard and the participant view show
the points their credits gave (credits seeded from the test process, as the check-ins
that make them are another part's)."""
import uuid
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import requests

from infra.local.emulator import emulator_client
from tests.e2e.test_webhooks_e2e import member_with_phone, post_whatsapp, wa_text


def service_now(api) -> datetime:
    """The service's clock: the local stack's simulated one once a schedule has run."""
    clock = requests.get(api.base + "/_local/health", timeout=10).json()["clock"]
    return datetime.fromisoformat(clock.replace("Z", "+00:00")) if clock else datetime.now(timezone.utc)


def wa_text_now(api, phone_digits: str, text: str) -> dict:
    """A member's WhatsApp message sent at the service's clock (which other tests on this
    stack may have moved on), as the provider would stamp it."""
    body = wa_text(phone_digits, text)
    body["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = str(int(service_now(api).timestamp()))
    return body


def today(api) -> str:
    return service_now(api).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()


@pytest.fixture
def challenge(api) -> str:
    challenge_id = f"c-{uuid.uuid4().hex[:10]}"
    start = today(api)
    draw_day = (datetime.fromisoformat(start) + timedelta(days=10)).date().isoformat()
    body = {"name": "冬季90天打卡挑战", "starts_on": start, "days": 90,
            "draws": [{"draw_id": "d1", "on": draw_day, "winners": 2}]}
    created = api.put(f"/challenges/{challenge_id}", body)
    assert created.status_code == 201, created.text
    assert api.put(f"/challenges/{challenge_id}", body).status_code == 200
    return challenge_id


def ledger_store(api):
    from loyalty.adapters.ledger import DynamoLedgerStore
    url = requests.get(api.base + "/_local/health", timeout=10).json()["emulator_url"]
    client = emulator_client("dynamodb", url)
    (table,) = [t for t in client.list_tables()["TableNames"] if "Loyalty" in t or "loyalty" in t][:1]
    return DynamoLedgerStore(table, shards=8, client=client)


def credit(store, challenge_id: str, member_id: str, points: int, month: str) -> None:
    from loyalty.engagement.challenges import ParticipantCredit, shard_of
    from loyalty.records import Change
    account = store.load_account(member_id, with_lots=False)
    store.commit(Change(member_id=member_id, expected_version=account.version, engagement=account.engagement,
                        participants=(ParticipantCredit(challenge_id, member_id, shard_of(member_id), points,
                                                        month),)))


def test_a_challenge_is_shown_with_its_commitments_and_bad_ones_are_refused(api, challenge):
    shown = api.get(f"/challenges/{challenge}")
    assert shown.status_code == 200, shown.text
    view = shown.json()
    assert view["status"] == "active" and view["days"] == 90 and len(view["draws"][0]["commitment"]) == 64
    assert "seed" not in view["draws"][0]
    bad = api.put(f"/challenges/{challenge}-2", {"name": "x", "starts_on": today(api), "days": "ninety"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["field"] == "days"
    outside = api.put(f"/challenges/{challenge}-3", {"name": "x", "starts_on": today(api), "days": 5,
                                                     "draws": [{"draw_id": "d", "on": "2001-01-01", "winners": 1}]})
    assert outside.status_code == 400 and outside.json()["errors"][0]["field"] == "draws"
    assert api.put("/challenges/bad%20id", {"name": "x", "starts_on": today(api)}).status_code == 400
    assert api.get(f"/challenges/{challenge}-2").status_code == 404
    started = api.put(f"/challenges/{challenge}", {"name": "x", "starts_on": today(api), "days": 30})
    assert started.status_code == 409


def test_invitation_agreement_by_reply_and_by_api_then_the_leaderboard(api, challenge):
    phone = "+852" + str(uuid.uuid4().int)[:8]
    ana, bo, cy = (f"m-{uuid.uuid4().hex[:10]}" for _ in range(3))
    member_with_phone(api, ana, phone)
    for other, name in ((bo, "Bo"), (cy, None)):
        assert api.put(f"/members/{other}", {"name": name, "locale": "en"} if name else {"locale": "en"}).ok

    invited = api.post(f"/challenges/{challenge}/invitations", {"member_ids": [ana, bo, "m-nobody-here"]})
    assert invited.status_code == 200, invited.text
    assert invited.json() == {"invited": 2, "skipped": [{"member_id": "m-nobody-here", "reason": "unknown_member"}]}
    again = api.post(f"/challenges/{challenge}/invitations", {"member_ids": [ana]}).json()
    assert again == {"invited": 0, "skipped": [{"member_id": ana, "reason": "already_invited"}]}
    api.post("/_local/drain")
    invitations = [m for m in api.get(f"/members/{ana}/messages").json()["messages"]
                   if m["template"] == "challenge_invitation"]
    assert len(invitations) == 1 and invitations[0]["status"] != "skipped", invitations   # sent, or deferred to a window

    # Ana agrees on WhatsApp: enrolled, with the message as proof, and told so
    assert post_whatsapp(api, wa_text_now(api, phone[1:], "同意")).status_code == 200
    api.post("/_local/drain")
    replies = [m for m in api.get(f"/members/{ana}/messages").json()["messages"] if m["kind"] == "reply"]
    assert [m["template"] for m in replies] == ["challenge_enrolled"]
    now = service_now(api).isoformat()
    first = api.post(f"/challenges/{challenge}/enrolments", {"member_id": ana, "agreed_at": now, "source": "app"})
    assert first.status_code == 200 and first.json()["source"] == "keyword:whatsapp"   # the first enrolment

    # Bo and Cy through the member app's API
    for who in (bo, cy):
        enrolled = api.post(f"/challenges/{challenge}/enrolments", {"member_id": who, "agreed_at": now,
                                                                    "source": "app", "proof": "consent-v3"})
        assert enrolled.status_code == 200, enrolled.text
    far = (service_now(api) - timedelta(days=3)).isoformat()
    late = api.post(f"/challenges/{challenge}/enrolments", {"member_id": bo, "agreed_at": far})
    assert late.status_code == 400 and late.json()["errors"][0]["field"] == "agreed_at"
    assert api.post(f"/challenges/{challenge}/enrolments",
                    {"member_id": "m-nobody-here", "agreed_at": now}).status_code == 404

    month = today(api)[:7]
    store = ledger_store(api)
    credit(store, challenge, ana, 30, month)
    credit(store, challenge, bo, 30, month)
    credit(store, challenge, cy, 10, month)
    board = api.get(f"/challenges/{challenge}/leaderboard", params={"period": "all", "limit": 10})
    assert board.status_code == 200, board.text
    entries = board.json()["entries"]
    assert [(e["rank"], e["points"]) for e in entries] == [(1, 30), (1, 30), (3, 10)]
    assert {e["member_id"]: e["name"] for e in entries} == {ana: "A*", bo: "B*", cy: "*"}
    monthly = api.get(f"/challenges/{challenge}/leaderboard", params={"period": month}).json()["entries"]
    assert [e["points"] for e in monthly] == [30, 30, 10]
    assert api.get(f"/challenges/{challenge}/leaderboard", params={"period": "2026-13"}).json()["errors"][0][
        "field"] == "period"
    assert api.get(f"/challenges/{challenge}/leaderboard", params={"limit": "101"}).status_code == 400
    assert api.get("/challenges/c-nope/leaderboard").status_code == 404

    standing = api.get(f"/challenges/{challenge}/participants/{cy}")
    assert standing.status_code == 200, standing.text
    assert {k: standing.json()[k] for k in ("points", "rank", "streak", "days_checked_in")} == {
        "points": 10, "rank": 3, "streak": 0, "days_checked_in": 0}
    assert api.get(f"/challenges/{challenge}/participants/m-nobody-here").status_code == 404

    left = api.http.delete(f"{api.base}/challenges/{challenge}/enrolments/{cy}", timeout=30)
    assert left.status_code == 200 and left.json()["opted_out"] is True
    assert [e["member_id"] for e in api.get(f"/challenges/{challenge}/leaderboard").json()["entries"]] == [
        e["member_id"] for e in entries[:2]]
    assert api.post(f"/challenges/{challenge}/enrolments", {"member_id": cy, "agreed_at": now}).status_code == 409
