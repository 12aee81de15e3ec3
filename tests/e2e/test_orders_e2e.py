"""The order callback contract, through 127.0.0.1 as the order system calls it."""
import json
import time
from datetime import datetime, timedelta, timezone
from concurrent.futures import ThreadPoolExecutor

from loyalty.domain import add_months
from tests.e2e.conftest import paid


def test_many_concurrent_copies_of_one_event_are_credited_once(api, member):
    body = paid(member, f"o-{member}", 12345)
    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda _: api.order(body), range(24)))
    assert {r.status_code for r in responses} == {200}
    assert {r.text for r in responses} == {responses[0].text}
    assert responses[0].json() == {"event_id": body["event_id"], "member_id": member, "points": 143, "balance": 143}
    assert api.balance(member) == 143
    entries = api.get(f"/members/{member}/ledger").json()["entries"]
    assert [e["type"] for e in entries] == ["EARN"]


def test_many_concurrent_events_for_one_member_lose_no_update(api, member):
    bodies = [paid(member, f"o-{member}-{i}", 500 + 100 * i) for i in range(20)]  # 5..24 units, no bonus
    with ThreadPoolExecutor(max_workers=10) as pool:
        responses = list(pool.map(api.order, bodies))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    expected = sum(5 + i for i in range(20))
    assert api.balance(member) == expected
    assert sorted(r.json()["balance"] for r in responses)[-1] == expected
    ledger = api.get(f"/members/{member}/ledger", params={"limit": 200}).json()["entries"]
    assert len(ledger) == 20 and ledger[0]["balance_after"] == expected and ledger[-1]["balance_after"] == ledger[-1]["amount"]


def test_wrong_old_or_missing_signatures_change_nothing(api, member):
    body = paid(member, f"o-{member}", 50000)
    assert api.order(body, secret="wrong").status_code == 401
    assert api.order(body, signed_at=int(time.time()) - 301).status_code == 401
    raw = json.dumps(body).encode()
    assert api.http.post(api.base + "/webhooks/orders", data=raw, timeout=30).status_code == 401
    assert api.balance(member) == 0
    assert api.order(body).status_code == 200  # the same event, properly signed, is not "used up"
    assert api.balance(member) == 520


def test_a_replayed_signed_request_after_five_minutes_is_refused(api, member):
    body = paid(member, f"o-{member}", 50000)
    stale = int(time.time()) - 6 * 60
    response = api.order(body, signed_at=stale)
    assert response.status_code == 401 and "window" in response.json()["message"]


def test_bad_bodies_get_400_with_the_problems_and_change_nothing(api, member):
    response = api.order({"event_id": "", "type": "order.paid", "occurred_at": "yesterday",
                          "order": {"order_id": "x", "member_id": member, "amount_minor": "12", "currency": "RMB!"}})
    assert response.status_code == 400
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"event_id", "occurred_at", "order.amount_minor", "order.currency"}
    assert api.order(b"{not json").status_code == 400
    assert api.balance(member) == 0


def test_same_event_id_with_a_different_body_is_409_and_changes_nothing(api, member):
    first = api.order(paid(member, f"o-{member}", 10000))
    assert first.status_code == 200
    clash = api.order(paid(member, f"o-{member}", 99900, event_id=first.json()["event_id"]))
    assert clash.status_code == 409
    assert api.balance(member) == 120
    assert api.order(paid(member, f"o-{member}", 10000)).json() == first.json()


def test_refunds_and_cancellations_take_points_back(api, member):
    order = f"o-{member}"
    api.order(paid(member, order, 20000))
    refund = {"event_id": f"{order}-r1", "type": "order.refunded", "occurred_at": "2026-11-21T10:00:00+08:00",
              "order": {"order_id": order, "member_id": member, "amount_minor": 20000, "currency": "CNY",
                        "refund_amount_minor": 5000}}
    assert api.order(refund).json()["points"] == -55
    too_much = {**refund, "event_id": f"{order}-r2",
                "order": {**refund["order"], "refund_amount_minor": 16000}}
    assert api.order(too_much).status_code == 409
    cancel = {"event_id": f"{order}-c", "type": "order.cancelled", "occurred_at": "2026-11-22T10:00:00+08:00",
              "order": {"order_id": order, "member_id": member, "amount_minor": 20000, "currency": "CNY"}}
    assert api.order(cancel).json() == {"event_id": f"{order}-c", "member_id": member, "points": -165, "balance": 0}


def test_expiry_runs_before_on_and_after_the_due_date(api, member):
    shanghai = timezone(timedelta(hours=8))
    earned = (datetime.now(shanghai) - timedelta(days=100)).replace(hour=9, minute=30, second=0, microsecond=0)
    later = earned + timedelta(days=15)
    api.order(paid(member, f"o-{member}", 30000, occurred_at=earned.isoformat()))
    api.order(paid(member, f"o2-{member}", 5000, occurred_at=later.isoformat()))
    assert api.balance(member) == 370
    due = add_months(earned, 12)
    api.schedule("ExpiryScanFunction", (due - timedelta(seconds=1)).isoformat())   # the moment before
    assert api.balance(member) == 370
    api.schedule("ExpiryScanFunction", due.isoformat())                            # the due moment
    assert api.balance(member) == 50
    api.schedule("expiry_scan", (due + timedelta(days=1)).isoformat())             # after: nothing twice
    api.schedule("ExpiryScan", due.isoformat())                                    # the same date again
    assert api.balance(member) == 50
    entries = api.get(f"/members/{member}/ledger").json()["entries"]
    assert [(e["type"], e["amount"]) for e in entries] == [("EXPIRE", -320), ("EARN", 50), ("EARN", 320)]
    api.schedule("ExpiryScanFunction", add_months(later, 12).isoformat())
    assert api.balance(member) == 0


def test_the_schedules_endpoint_refuses_what_it_cannot_run(api):
    assert api.post("/_local/schedules/NoSuchFunction", {"time": "2026-01-01T00:00:00Z"}).status_code == 404
    assert api.post("/_local/schedules/ExpiryScanFunction", {"time": "soon"}).status_code == 400
    drained = api.post("/_local/drain")
    assert drained.status_code == 200
