"""Milestones, referrals, the member day and their reversal through the HTTP API, as a
member app (profile, consent, points, ledger, redemptions) and the order system (signed
callbacks) call it, on a local stack of its own that runs the default rules."""
import uuid

import pytest

from infra.local.testing import spawn_local_stack
from tests.e2e.conftest import Api, paid, token


@pytest.fixture(scope="module")
def engaged():
    """A stack with the programme's default rules (the shared one runs the order-only rules)."""
    with spawn_local_stack(env={"POWERTOOLS_LOG_LEVEL": "WARNING", "LOCAL_RULES": "{}"}, timeout=120) as running:
        yield Api(running.api_url, token(running.api_url, subject="e2e-engagement", expires_in=86400))


def new_member() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


def refund(member: str, order_id: str, amount: int, kind: str = "order.cancelled", refund_minor: int | None = None,
           event_id: str | None = None) -> dict:
    body = {"event_id": event_id or f"{order_id}-{kind}", "type": kind, "occurred_at": "2026-11-21T10:00:00+08:00",
            "order": {"order_id": order_id, "member_id": member, "amount_minor": amount, "currency": "CNY"}}
    if refund_minor is not None:
        body["order"]["refund_amount_minor"] = refund_minor
    return body


def by_rule(api: Api, member: str) -> dict[str, int]:
    response = api.get(f"/members/{member}/ledger")
    assert response.status_code == 200, response.text
    found: dict[str, int] = {}
    for entry in response.json()["entries"]:
        rule = entry.get("meta", {}).get("rule")
        if rule:
            found[rule] = found.get(rule, 0) + entry["amount"]
    return found


def test_a_referral_and_the_first_order_milestone_are_credited_and_a_cancellation_reverses_them(engaged):
    api, ana, bo = engaged, new_member(), new_member()
    assert api.put(f"/members/{ana}", {"name": "Ana"}).status_code == 200
    joined = api.put(f"/members/{bo}", {"name": "Bo", "referrer": ana})
    assert joined.status_code == 200 and joined.json()["referrer"] == ana
    assert (api.balance(ana), api.balance(bo)) == (50, 50)

    credited = api.order(paid(bo, f"{bo}-o1", 5000))
    assert credited.status_code == 200 and credited.json()["points"] == 50 + 100
    assert api.order(paid(bo, f"{bo}-o1", 5000)).json() == credited.json()       # the retry: the same answer
    assert api.balance(ana) == 50 + 200
    assert by_rule(api, bo) == {"referral_join": 50, "first_order": 100}
    assert by_rule(api, ana) == {"referral_join_referrer": 50, "referral_first_order": 200}
    reasons = [e["reason"] for e in api.get(f"/members/{bo}/ledger").json()["entries"]]
    assert any("first_order" in r for r in reasons)

    reversed_ = api.order(refund(bo, f"{bo}-o1", 5000))
    assert reversed_.status_code == 200 and reversed_.json()["points"] == -150
    assert (api.balance(ana), api.balance(bo)) == (50, 50)
    assert by_rule(api, bo)["first_order"] == 0 and by_rule(api, ana)["referral_first_order"] == 0


def test_a_partial_refund_takes_back_the_milestone_in_proportion(engaged):
    api, member = engaged, new_member()
    assert api.order(paid(member, f"{member}-o1", 20000)).json()["points"] == 220 + 100
    part = api.order(refund(member, f"{member}-o1", 20000, "order.refunded", 5000))
    assert part.status_code == 200 and part.json()["points"] == -(55 + 25)
    assert by_rule(api, member) == {"first_order": 75}


def test_referral_mistakes_are_4xx_that_name_the_field_and_change_nothing(engaged):
    api, ana, bo = engaged, new_member(), new_member()
    api.put(f"/members/{ana}", {"name": "Ana"})
    own = api.put(f"/members/{bo}", {"name": "Bo", "referrer": bo})
    assert own.status_code == 400 and "referrer" in own.text
    unknown = api.put(f"/members/{bo}", {"name": "Bo", "referrer": new_member()})
    assert unknown.status_code == 400 and "referrer" in unknown.text
    assert api.get(f"/members/{bo}").status_code == 404
    api.put(f"/members/{bo}", {"name": "Bo", "referrer": ana})
    switched = api.put(f"/members/{bo}", {"name": "Bo", "referrer": new_member()})
    assert switched.status_code == 409
    assert api.get(f"/members/{bo}").json()["referrer"] == ana
    assert (api.balance(ana), api.balance(bo)) == (50, 50)


def test_every_third_order_puts_a_gift_voucher_in_the_members_redemptions(engaged):
    api, member = engaged, new_member()
    for i in range(3):
        assert api.order(paid(member, f"{member}-o{i}", 1000)).status_code == 200
    [gift] = api.get(f"/members/{member}/redemptions").json()["redemptions"]
    assert (gift["item_id"], gift["points"], gift["status"]) == ("upgrade-gift", 0, "completed") and gift["code"]


def test_the_first_opt_in_and_a_completed_profile_earn_their_milestones_once(engaged):
    api, member = engaged, new_member()
    consent = {"status": "opted_in", "source": "checkout_checkbox", "at": "2026-11-20T10:00:00+08:00"}
    assert api.put(f"/members/{member}/consents/whatsapp", consent).status_code == 200
    assert api.put(f"/members/{member}/consents/sms", consent).status_code == 200
    profile = {"name": "Ana", "phone": "+8529" + member[-7:].translate(str.maketrans("abcdef", "123456")),
               "locale": "en", "birthday": "1990-05-01"}
    assert api.put(f"/members/{member}", profile).status_code == 200, api.put(f"/members/{member}", profile).text
    assert api.put(f"/members/{member}", profile).status_code == 200
    assert by_rule(api, member) == {"first_opt_in": 50, "profile_completed": 30}
    assert api.get(f"/members/{member}/points").json()["pending"] == 0


def test_an_order_on_the_member_day_earns_double(engaged):
    api, member = engaged, new_member()
    api.order(paid(member, f"{member}-o0", 1000))
    day = api.order(paid(member, f"{member}-o1", 10000, occurred_at="2026-11-18T12:00:00+08:00"))
    assert day.json()["points"] == 240
    assert by_rule(api, member)["member_day"] == 120


@pytest.fixture(scope="module")
def windowed():
    """A stack whose merchant set a 14-day return window."""
    rules = '{"pending": {"return_window_days": 14}}'
    with spawn_local_stack(env={"POWERTOOLS_LOG_LEVEL": "WARNING", "LOCAL_RULES": rules}, timeout=120) as running:
        yield Api(running.api_url, token(running.api_url, subject="e2e-window", expires_in=86400))


def test_with_a_return_window_order_points_are_pending_until_the_nightly_release(windowed):
    api, member, other = windowed, new_member(), new_member()
    future = "2027-01-10T12:00:00+08:00"          # the window ends after the service's clock: still pending
    assert api.order(paid(member, f"{member}-o1", 5000, occurred_at=future)).json()["points"] == 0
    assert api.order(paid(other, f"{other}-o1", 5000, occurred_at=future)).json()["points"] == 0
    points = api.get(f"/members/{member}/points").json()
    assert (points["balance"], points["pending"], points["spendable"]) == (0, 150, 0)
    refused = api.post(f"/members/{member}/redemptions", {"item_id": "free-shipping", "idempotency_key": "k1"})
    assert refused.status_code == 409                                   # pending points are not spendable
    cancelled = api.order(refund(other, f"{other}-o1", 5000))           # inside the window: no debt
    assert cancelled.status_code == 200 and cancelled.json()["points"] == 0
    api.schedule("ExpiryScanFunction", "2027-01-25T00:05:00+08:00")      # the night after the window
    points = api.get(f"/members/{member}/points").json()
    assert (points["balance"], points["pending"]) == (150, 0)
    assert by_rule(api, member) == {"first_order": 100}
    other_points = api.get(f"/members/{other}/points").json()
    assert (other_points["balance"], other_points["pending"]) == (0, 0)


def ring(api: Api) -> tuple[str, str]:
    """xi (known to the programme, not joined) -> yu -> xi: yu's referral is credited, xi's
    joins a ring and is held, each share in the queue of the member it belongs to."""
    xi, yu = new_member(), new_member()
    adjusted = api.post(f"/members/{xi}/adjustments", {"points": 10, "reason": "goodwill", "idempotency_key": f"{xi}-a"})
    assert adjusted.status_code in (200, 201), adjusted.text
    assert api.put(f"/members/{yu}", {"name": "Yu", "referrer": xi}).status_code == 200
    assert api.put(f"/members/{xi}", {"name": "Xi", "referrer": yu}).status_code == 200
    assert (api.balance(xi), api.balance(yu)) == (60, 50)
    return xi, yu


def referral_reviews(api: Api, member: str, status: str = "open") -> list[dict]:
    found, cursor = [], None
    while True:
        page = api.get("/reviews", params={"status": status, "limit": 200, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        found += [r for r in page.json()["reviews"] if r["member_id"] == member and r["kind"] == "referral"]
        cursor = page.json()["cursor"]
        if not cursor:
            return found


def test_a_referral_ring_waits_for_an_operator_who_approves_it_and_each_member_is_credited_once(engaged):
    api = engaged
    xi, yu = ring(api)
    [mine], [theirs] = referral_reviews(api, xi), referral_reviews(api, yu)
    assert mine["reason"].startswith("referral ring") and (mine["points"], theirs["points"]) == (50, 50)
    assert [api.get(f"/members/{m}/points").json()["pending"] for m in (xi, yu)] == [50, 50]
    for review in (mine, theirs):
        decided = api.post(f"/reviews/{review['review_id']}", {"decision": "approve", "note": "friends, checked"})
        assert decided.status_code == 200 and decided.json()["status"] == "approved", decided.text
        assert api.post(f"/reviews/{review['review_id']}", {"decision": "approve", "note": "again"}).json() == decided.json()
    assert (api.balance(xi), api.balance(yu)) == (110, 100)
    assert by_rule(api, xi) == by_rule(api, yu) == {"referral_join": 50, "referral_join_referrer": 50}   # each referred the other

    # xi stays flagged: its first order holds yu's 200 in yu's queue until an operator decides
    assert api.order(paid(xi, f"{xi}-o1", 5000)).json()["points"] == 50 + 100
    [first] = referral_reviews(api, yu)
    assert first["points"] == 200 and api.get(f"/members/{yu}/points").json()["pending"] == 200
    assert api.post(f"/reviews/{first['review_id']}", {"decision": "approve", "note": "ok"}).status_code == 200
    assert api.balance(yu) == 300 and by_rule(api, yu)["referral_first_order"] == 200
    assert [api.get(f"/members/{m}/points").json()["pending"] for m in (xi, yu)] == [0, 0]


def test_a_rejected_referral_credits_nothing_and_a_cancelled_first_order_closes_its_review(engaged):
    api = engaged
    xi, yu = ring(api)
    for review in referral_reviews(api, xi) + referral_reviews(api, yu):
        assert api.post(f"/reviews/{review['review_id']}", {"decision": "reject", "note": "a ring"}).status_code == 200
    assert (api.balance(xi), api.balance(yu)) == (60, 50)
    api.order(paid(xi, f"{xi}-o1", 5000))
    [first] = referral_reviews(api, yu)
    assert api.order(refund(xi, f"{xi}-o1", 5000)).status_code == 200          # cancelled: nothing left to approve
    assert referral_reviews(api, yu) == []
    assert api.post(f"/reviews/{first['review_id']}", {"decision": "approve", "note": "late"}).status_code == 409
    assert (api.balance(yu), api.get(f"/members/{yu}/points").json()["pending"]) == (50, 0)
