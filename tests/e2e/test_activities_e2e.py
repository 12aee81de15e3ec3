"""Activities and the review queue through 127.0.0.1, as a member app reports what its
members did and an operator works the queue."""
import uuid
from datetime import datetime, timedelta, timezone

from tests.e2e.conftest import Api, token


def now(**delta) -> str:
    return (datetime.now(timezone.utc) + timedelta(**delta)).isoformat()


def activity(activity_id: str, type_: str, **extra) -> dict:
    return {"activity_id": activity_id, "type": type_, "occurred_at": now(), **extra}


def find_review(api, member: str, status: str = "open") -> dict:
    """The member's review in the queue of `status`, paging through it as an operator does."""
    cursor = None
    while True:
        page = api.get("/reviews", params={"status": status, "limit": 200, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        found = [r for r in body["reviews"] if r["member_id"] == member]
        if found:
            return found[0]
        cursor = body["cursor"]
        assert cursor, f"no {status} review of {member}"


def test_a_member_app_reports_activities_and_each_is_answered_once(api, member):
    path = f"/members/{member}/activities"
    body = activity("poll-1", "poll", device_id=f"dev-{member}")
    first = api.post(path, body)
    assert first.status_code == 200, first.text
    assert first.json() == {"activity_id": "poll-1", "type": "poll", "status": "credited", "points": 5, "balance": 5}
    assert api.post(path, body).json() == first.json()
    assert api.post(path, {**body, "type": "share"}).status_code == 409
    unknown = api.post(path, activity("x-1", "dance"))
    assert unknown.status_code == 400 and unknown.json()["errors"][0]["field"] == "type"
    bad = api.post(path, {"activity_id": "x-2", "type": "poll", "occurred_at": "yesterday", "ip": 7})
    assert bad.status_code == 400 and {e["field"] for e in bad.json()["errors"]} == {"occurred_at", "ip"}
    assert api.post(path, activity("share-1", "share")).json()["balance"] == 15
    (entry, _) = api.get(f"/members/{member}/ledger").json()["entries"]
    assert (entry["type"], entry["amount"], entry["reason"]) == ("ACTIVITY", 10, "activity: share")
    points = api.get(f"/members/{member}/points").json()
    assert (points["balance"], points["pending"]) == (15, 0)


def test_content_waits_for_an_operator_who_approves_it(stack, api, member):
    member_app = Api(stack.api_url, token(stack.api_url, subject="member-app",
                                          scopes=["loyalty/members.read", "loyalty/members.write"]))
    held = member_app.post(f"/members/{member}/activities", activity("ugc-1", "ugc"))
    assert held.json() == {"activity_id": "ugc-1", "type": "ugc", "status": "held", "points": 0, "balance": 0,
                           "reason": "ugc needs review"}
    assert member_app.get(f"/members/{member}/points").json()["pending"] == 50
    assert member_app.get("/reviews").status_code == 403      # the queue is the operators'

    operator = Api(stack.api_url, token(stack.api_url, subject="ops-ana",
                                        scopes=["loyalty/ops.read", "loyalty/ops.write"]))
    review = find_review(operator, member)
    assert (review["kind"], review["points"], review["reason"]) == ("activity", 50, "ugc needs review")
    assert member_app.post(f"/reviews/{review['review_id']}", {"decision": "approve"}).status_code == 403
    decided = operator.post(f"/reviews/{review['review_id']}", {"decision": "approve", "note": "genuine photo"})
    assert decided.status_code == 200, decided.text
    assert (decided.json()["status"], decided.json()["operator_id"]) == ("approved", "ops-ana")
    again = operator.post(f"/reviews/{review['review_id']}", {"decision": "approve", "note": "twice"})
    assert again.json() == decided.json()
    assert operator.post(f"/reviews/{review['review_id']}", {"decision": "reject"}).status_code == 409
    points = member_app.get(f"/members/{member}/points").json()
    assert (points["balance"], points["pending"]) == (50, 0)
    assert find_review(operator, member, "approved")["review_id"] == review["review_id"]
    assert operator.post("/reviews/r-nope", {"decision": "approve"}).status_code == 404
    assert operator.post(f"/reviews/{review['review_id']}", {"decision": "maybe"}).status_code == 400


def test_a_rejected_review_credits_nothing(api, member):
    api.post(f"/members/{member}/activities", activity("ugc-1", "ugc"))
    review = find_review(api, member)
    assert api.post(f"/reviews/{review['review_id']}", {"decision": "reject", "note": "stock photo"}).ok
    points = api.get(f"/members/{member}/points").json()
    assert (points["balance"], points["pending"], points["lots"]) == (0, 0, [])


def test_a_burst_is_held_for_review_with_its_reason(api, member):
    answers = [api.post(f"/members/{member}/activities", activity(f"p-{i}", "poll")).json() for i in range(5)]
    assert [a["status"] for a in answers] == ["credited"] * 4 + ["held"]
    assert answers[4]["reason"].startswith("burst: 5 activities within 60 s")
    assert find_review(api, member)["kind"] == "risk"


def test_a_third_member_on_one_device_is_held(api):
    device = f"dev-{uuid.uuid4().hex[:8]}"
    members = [f"m-{uuid.uuid4().hex[:12]}" for _ in range(3)]
    answers = [api.post(f"/members/{m}/activities", activity("share-1", "share", device_id=device)).json()
               for m in members]
    assert [a["status"] for a in answers] == ["credited", "credited", "held"]
    assert answers[2]["reason"] == "device shared by 3 members within 24 h"
    assert find_review(api, members[2])["points"] == 10
