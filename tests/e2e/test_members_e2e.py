"""The members API through 127.0.0.1, as an app backend or an operator calls it."""
import uuid

from tests.e2e.conftest import paid


def test_profile_is_stored_validated_and_shown_with_the_balance(api, member):
    profile = {"name": "Ana", "phone": "+85291234567", "locale": "zh-HK", "time_zone": "Asia/Hong_Kong",
               "preferred_channels": ["whatsapp", "sms"], "birthday": "1990-04-01"}
    assert api.put(f"/members/{member}", profile).status_code == 200
    shown = api.get(f"/members/{member}").json()
    assert shown["phone"] == "+85291234567" and shown["balance"] == 0
    bad = api.put(f"/members/{member}", {"phone": "12345", "locale": "fr", "time_zone": "Mars/Olympus", "x": 1})
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"phone", "locale", "time_zone", "x"}
    assert api.get(f"/members/{member}").json()["phone"] == "+85291234567"
    assert api.get("/members/nobody-" + uuid.uuid4().hex[:6]).status_code == 404


def test_consent_history_is_kept_and_the_latest_decision_counts(api, member):
    path = f"/members/{member}/consents/whatsapp"
    assert api.put(path, {"status": "opted_in", "source": "checkout_checkbox", "at": "2026-11-01T10:00:00+08:00"}).ok
    assert api.put(path, {"status": "opted_out", "source": "keyword", "at": "2026-11-05T10:00:00+08:00"}).ok
    late = api.put(path, {"status": "opted_in", "source": "import", "at": "2026-10-01T10:00:00+08:00"})
    assert late.json()["status"] == "opted_out"  # an older decision arriving late does not win
    history = api.get(path).json()["history"]
    assert [h["status"] for h in history] == ["opted_out", "opted_in", "opted_in"]
    assert api.put(f"/members/{member}/consents/fax", {"status": "opted_in", "source": "x",
                                                       "at": "2026-11-01T10:00:00+08:00"}).status_code == 400


def test_redemption_is_idempotent_checked_and_cancellable(api, member):
    api.order(paid(member, f"o-{member}", 150000))  # 1520 points
    catalog = api.get("/catalog").json()["items"]
    assert any(item["item_id"] == "coupon-10" for item in catalog)
    first = api.post(f"/members/{member}/redemptions", {"item_id": "coupon-10", "idempotency_key": "k1"})
    assert first.status_code == 201 and first.json()["balance"] == 520 and first.json()["code"]
    again = api.post(f"/members/{member}/redemptions", {"item_id": "coupon-10", "idempotency_key": "k1"})
    assert again.status_code == 200 and again.json()["code"] == first.json()["code"]
    assert api.post(f"/members/{member}/redemptions", {"item_id": "coupon-10", "idempotency_key": "k2"}).status_code == 409
    assert api.post(f"/members/{member}/redemptions", {"item_id": "nope", "idempotency_key": "k3"}).status_code == 400
    assert api.post(f"/members/{member}/redemptions", {"item_id": "coupon-10"}).status_code == 400
    rid = first.json()["redemption_id"]
    cancelled = api.post(f"/members/{member}/redemptions/{rid}/cancel", {"reason": "changed mind"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert api.balance(member) == 1520
    assert api.post(f"/members/{member}/redemptions/r-unknown/cancel").status_code == 404
    listed = api.get(f"/members/{member}/redemptions").json()["redemptions"]
    assert [r["status"] for r in listed] == ["cancelled"]


def test_operator_adjustments_and_the_paged_ledger(api, member):
    body = {"points": 300, "reason": "service recovery", "operator_id": "op-1", "idempotency_key": "adj-1"}
    assert api.post(f"/members/{member}/adjustments", body).status_code == 201
    assert api.post(f"/members/{member}/adjustments", body).status_code == 200
    assert api.post(f"/members/{member}/adjustments", {**body, "points": 0, "idempotency_key": "adj-2"}).status_code == 400
    assert api.post(f"/members/{member}/adjustments",
                    {**body, "points": -301, "idempotency_key": "adj-3"}).status_code == 409
    for i in range(4):
        api.order(paid(member, f"o-{member}-{i}", 1000))
    page = api.get(f"/members/{member}/ledger", params={"limit": 2}).json()
    rest = api.get(f"/members/{member}/ledger", params={"limit": 10, "cursor": page["next_cursor"]}).json()
    entries = page["entries"] + rest["entries"]
    assert [e["type"] for e in entries] == ["EARN"] * 4 + ["ADJUST"]
    assert [e["balance_after"] for e in entries] == [340, 330, 320, 310, 300]
    assert api.get(f"/members/{member}/ledger", params={"cursor": "bogus"}).status_code == 400
    assert api.get(f"/members/{member}/ledger", params={"limit": "0"}).status_code == 400


def test_unknown_routes_and_methods(api):
    assert api.get("/nothing-here").status_code == 404
    assert api.http.delete(api.base + "/webhooks/orders", timeout=10).status_code in (403, 404, 405)


def test_a_disputed_entry_is_reviewed_and_corrected_by_a_new_entry(api, member):
    api.order(paid(member, f"o-{member}", 12345))
    entry_id = api.get(f"/members/{member}/ledger").json()["entries"][0]["entry_id"]
    filed = api.post(f"/members/{member}/disputes",
                     {"entry_id": entry_id, "reason": "bonus missing", "idempotency_key": "d1"})
    assert filed.status_code == 201 and filed.json()["status"] == "open"
    dispute_id = filed.json()["dispute_id"]
    assert dispute_id in [d["dispute_id"] for d in api.get("/disputes", params={"limit": 200}).json()["disputes"]]
    assert api.post(f"/members/{member}/disputes",
                    {"entry_id": "nope", "reason": "x", "idempotency_key": "d2"}).status_code == 400
    resolve = {"outcome": "upheld", "points": 20, "operator_id": "op-9", "note": "bonus added"}
    resolved = api.post(f"/members/{member}/disputes/{dispute_id}/resolve", resolve)
    assert resolved.status_code == 200 and resolved.json()["status"] == "upheld"
    assert api.post(f"/members/{member}/disputes/{dispute_id}/resolve", resolve).status_code == 200
    assert api.balance(member) == 163
    assert dispute_id not in [d["dispute_id"] for d in api.get("/disputes").json()["disputes"]]


def test_a_phone_belongs_to_one_member_and_its_messages_follow_it_when_released(api, member):
    from tests.e2e.test_webhooks_e2e import post_whatsapp, wa_text
    other = f"m-{uuid.uuid4().hex[:12]}"
    phone, others_phone, next_phone = ("+852" + str(uuid.uuid4().int)[:8] for _ in range(3))
    assert api.put(f"/members/{member}", {"name": "Ana", "phone": phone}).status_code == 200
    assert api.put(f"/members/{other}", {"name": "Bo", "phone": others_phone}).status_code == 200
    for who in (member, other):
        assert api.put(f"/members/{who}/consents/whatsapp", {"status": "opted_in", "source": "checkout_checkbox",
                                                            "at": "2026-01-01T00:00:00+08:00"}).ok

    taken = api.put(f"/members/{other}", {"name": "Bob", "phone": phone})
    assert taken.status_code == 409
    assert taken.json()["errors"] == [{"field": "phone", "problem": "held by another member"}]
    assert member not in taken.text
    assert api.get(f"/members/{member}").json()["phone"] == phone
    unchanged = api.get(f"/members/{other}").json()
    assert (unchanged["name"], unchanged["phone"]) == ("Bo", others_phone)
    assert api.put(f"/members/{member}", {"name": "Ana", "phone": phone}).status_code == 200  # her own: fine

    def consent(who: str) -> str:
        return api.get(f"/members/{who}/consents/whatsapp").json()["status"]

    assert post_whatsapp(api, wa_text(phone[1:], "STOP")).status_code == 200      # reaches the holder
    assert (consent(member), consent(other)) == ("opted_out", "opted_in")

    assert api.put(f"/members/{member}", {"name": "Ana", "phone": next_phone}).status_code == 200   # releases it
    assert api.put(f"/members/{other}", {"name": "Bob", "phone": phone}).status_code == 200
    assert api.get(f"/members/{other}").json()["phone"] == phone
    assert post_whatsapp(api, wa_text(phone[1:], "STOP")).status_code == 200      # now reaches the new holder
    assert consent(other) == "opted_out"
    assert len(api.get(f"/members/{member}/consents/whatsapp").json()["history"]) == 2   # hers: nothing new
    third = f"m-{uuid.uuid4().hex[:12]}"
    assert api.put(f"/members/{third}", {"name": "Cy", "phone": others_phone}).status_code == 200  # Bo's old one
