"""Ledger figures: calls per credit and per duplicate, items read by the nightly expiry."""
from __future__ import annotations

import importlib.util
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.logs import say
from loyalty.domain import Lot, parse_time
from loyalty.web.signatures import sign_order_body

ROOT = Path(__file__).resolve().parents[1]


def handler(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "functions" / name / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.handler


class Context:
    function_name, memory_limit_in_mb, aws_request_id = "bench", 512, "bench"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:bench"


def order_event(body: dict) -> dict:
    raw = json.dumps(body)
    return {"version": "2.0", "routeKey": "POST /webhooks/orders", "rawPath": "/webhooks/orders", "rawQueryString": "",
            "headers": {"x-signature": sign_order_body("local-order-secret", raw.encode(), int(time.time()))},
            "requestContext": {"requestId": "bench", "stage": "$default", "routeKey": "POST /webhooks/orders",
                               "http": {"method": "POST", "path": "/webhooks/orders"}},
            "body": raw, "isBase64Encoded": False}


def credits(counter, row, n: int = 30, meter=None, profiles: dict | None = None) -> None:
    orders = handler("order_webhook")
    events = [{"event_id": f"bench-{i}", "type": "order.paid", "occurred_at": "2026-11-20T14:03:00+08:00",
               "order": {"order_id": f"bench-o{i}", "member_id": f"bench-m{i % 5}", "amount_minor": 1000 + i * 137,
                         "currency": "CNY"}} for i in range(n)]
    orders(order_event({**events[0], "event_id": "warm", "order": {**events[0]["order"], "order_id": "warm"}}), Context())
    counter.reset()
    meter and meter.reset()
    for event in events:
        assert orders(order_event(event), Context())["statusCode"] == 200
    if meter:
        profiles["paid order"] = queued_profile(meter.reset().per(n), api_requests=1, invocations=1)
    writes, reads, scans = counter.writes / n, counter.reads / n, counter.calls["Scan"]
    row("credit one paid order: DynamoDB write calls", f"{writes:.2f}", "1", writes == 1)
    row("credit one paid order: DynamoDB read calls", f"{reads:.2f}", "≤ 1", reads <= 1)
    row("credit one paid order: Scans", str(scans), "0", scans == 0)
    counter.reset()
    for event in events:
        assert orders(order_event(event), Context())["statusCode"] == 200
    row("duplicate order event: write calls", str(counter.writes), "0 (nothing that changes state)", counter.writes == 0)
    # the duplicate is answered from the record it reads: a counter blind to the adapter's
    # client would show 0 reads here (and 0 writes above)
    row("duplicate order event: read calls", f"{counter.reads / n:.2f}", "1 (the counter sees them)",
        counter.reads == n)
    if meter:   # a partial refund of each order (its lots read, then one transaction)
        meter.reset()
        for i, event in enumerate(events):
            refund = {**event, "event_id": f"bench-refund-{i}", "type": "order.refunded",
                      "order": {**event["order"], "refund_amount_minor": event["order"]["amount_minor"] // 2}}
            assert orders(order_event(refund), Context())["statusCode"] == 200
        profiles["refund"] = queued_profile(meter.reset().per(n), api_requests=1, invocations=1)


def queued_profile(units, **requests):
    """A profile whose SQS sends are each received and deleted by a Lambda poller too."""
    from bench.cost import Profile
    return Profile(units, sqs_requests=2 * units.sqs_requests, **requests)


def activity_event(member: str, body: dict) -> dict:
    """POST /members/{member}/activities as API Gateway hands it over, a member app's token admitted."""
    path = f"/members/{member}/activities"
    return {"version": "2.0", "routeKey": "POST /members/{member_id}/activities", "rawPath": path,
            "rawQueryString": "", "headers": {"content-type": "application/json"},
            "pathParameters": {"member_id": member},
            "requestContext": {"requestId": "bench", "stage": "$default", "routeKey": "POST /members/{member_id}/activities",
                               "http": {"method": "POST", "path": path},
                               "authorizer": {"jwt": {"claims": {"sub": "bench-app", "scope": "loyalty/members.write"},
                                                      "scopes": ["loyalty/members.write"]}}},
            "body": json.dumps(body), "isBase64Encoded": False}


def activity_credits(counter, row, n: int = 30, meter=None, profiles: dict | None = None) -> None:
    """One activity credit through the members API: the member's item, its idempotency
    record and the device's and IP's sightings in one read, everything in one write."""
    members_api = handler("members_api")
    at = datetime.now(timezone.utc).isoformat()
    bodies = [(f"bench-act-m{i}", {"activity_id": f"bench-a{i}", "type": "share", "occurred_at": at,
                                   "device_id": f"bench-device-{i}", "ip": f"198.51.100.{i}"}) for i in range(n)]
    assert members_api(activity_event("bench-act-warm", {**bodies[0][1], "activity_id": "warm"}),
                       Context())["statusCode"] == 200
    counter.reset()
    if meter:
        meter.reset()
    for member, body in bodies:
        answer = members_api(activity_event(member, body), Context())
        assert answer["statusCode"] == 200 and json.loads(answer["body"])["status"] == "credited", answer
    if meter:   # the reference month's cost line (bench/cost.py and queued_profile, from main's bench)
        profiles["activity credit"] = queued_profile(meter.reset().per(n), api_requests=1, invocations=1)  # noqa: F821
    writes, reads, scans = counter.writes / n, counter.reads / n, counter.calls["Scan"]
    row("one activity credit: DynamoDB write calls", f"{writes:.2f}", "1", writes == 1)
    row("one activity credit: DynamoDB read calls", f"{reads:.2f}", "≤ 1", reads <= 1)
    row("one activity credit: Scans", str(scans), "0", scans == 0)
    counter.reset()
    for member, body in bodies:
        assert members_api(activity_event(member, body), Context())["statusCode"] == 200
    row("duplicate activity: write calls", str(counter.writes), "0", counter.writes == 0)


def referred_first_orders(aws, counter, row, n: int = 10) -> None:
    """The first paid order of a referred member: the order, its milestone and the
    referrer's reward in one transaction; the referrer's account is the one extra read."""
    from loyalty.records import Profile
    from loyalty.rules import build_rules
    from loyalty.services.members import update_profile
    from loyalty.services.adjustments import adjust_points
    from loyalty.services.orders import first_order_review_id
    store, rules, at = ledger_store(aws), build_rules(), parse_time("2026-11-20T14:03:00+08:00")
    for i in range(n):   # set up through the service, not counted
        update_profile(store, store, Profile(f"bench-ref{i}"), rules, at)
        update_profile(store, store, Profile(f"bench-new{i}", referrer=f"bench-ref{i}"), rules, at)
    orders = handler("order_webhook")
    counter.reset()
    for i in range(n):
        body = {"event_id": f"bench-first-{i}", "type": "order.paid", "occurred_at": "2026-11-20T14:03:00+08:00",
                "order": {"order_id": f"bench-first-o{i}", "member_id": f"bench-new{i}", "amount_minor": 5000,
                          "currency": "CNY"}}
        response = orders(order_event(body), Context())
        assert response["statusCode"] == 200 and json.loads(response["body"])["points"] == 150, response
    writes, reads = counter.writes / n, counter.reads / n
    row("a referred member's first order (+ milestone, referrer's reward): write calls", f"{writes:.2f}", "1",
        writes == 1)
    row("a referred member's first order: read calls", f"{reads:.2f}", "≤ 2 (+ the referrer's account, once per member)",
        reads <= 2)
    for i in range(n):   # rings, not counted: ring{i} referred by loop{i}, whom ring{i} referred
        adjust_points(store, rules, f"bench-loop{i}", 10, "goodwill", "op", f"bench-loop-a{i}", "h", at)   # exists
        update_profile(store, store, Profile(f"bench-ring{i}", referrer=f"bench-loop{i}"), rules, at)
        update_profile(store, store, Profile(f"bench-loop{i}", referrer=f"bench-ring{i}"), rules, at)
    counter.reset()
    for i in range(n):   # loop{i}'s first order: its referrer's 200 held in ring{i}'s review queue
        body = {"event_id": f"bench-flagged-{i}", "type": "order.paid", "occurred_at": "2026-11-20T14:03:00+08:00",
                "order": {"order_id": f"bench-flagged-o{i}", "member_id": f"bench-loop{i}", "amount_minor": 5000,
                          "currency": "CNY"}}
        response = orders(order_event(body), Context())
        assert response["statusCode"] == 200 and json.loads(response["body"])["points"] == 150, response
    held = store.get_review(first_order_review_id(f"bench-ring0", "bench-flagged-o0"))
    assert held is not None and held.status == "open" and held.points == 200, held
    writes, reads = counter.writes / n, counter.reads / n
    row("a flagged referral's first order (the referrer's 200 held for review): write calls", f"{writes:.2f}", "1",
        writes == 1)
    row("a flagged referral's first order: read calls", f"{reads:.2f}", "≤ 2", reads <= 2)


def ledger_store(aws):
    """The ledger adapter on the emulator, to load the figures' data (not counted)."""
    from loyalty.adapters.ledger import DynamoLedgerStore
    return DynamoLedgerStore(aws.environ["TABLE_NAME"], int(aws.environ.get("EXPIRY_INDEX_SHARDS", "4")),
                             client=aws.client("dynamodb"))


def load_lots(store, lots: list[tuple[str, Lot]], with_members: bool) -> None:
    """Each member's lot exactly as a credit writes it (and, `with_members`, the member's
    item with that balance), 25 items to a BatchWriteItem."""
    from loyalty.adapters.ledger.base import member_pk
    from loyalty.adapters.ledger.lots import lot_item
    from loyalty.adapters.ledger.members import PROFILE
    with store.Lot.batch_write() as batch:
        for member, lot in lots:
            batch.save(lot_item(store.Lot, member, lot, store.shards))
            if with_members:
                batch.save(store.Member(member_pk(member), PROFILE, member_id=member, balance=lot.remaining, debt=0,
                                        version=1, last_tx=lot.earned_at))


def nightly_expiry(aws, counter, row, members: int, due: int, meter=None, nightly: dict | None = None) -> None:
    """`members` members with one lot each; `due` of them expire before the run."""
    aws.reset()  # only the members loaded here, nothing left over from the credits
    run_at = parse_time("2027-11-21T00:05:00+08:00")
    say(f"loading {members} members with one lot each, {due} of them due ...")
    lots = []
    for i in range(members):
        expires = run_at - timedelta(hours=1 + i % 20) if i < due else run_at + timedelta(days=1 + i % 300)
        lots.append((f"member-{i:06d}", Lot(lot_id=f"o-{i}", earned_at=expires - timedelta(days=365),
                                            expires_at=expires, points=100, remaining=100, source=f"order:{i}")))
    load_lots(ledger_store(aws), lots, with_members=True)
    expiry = handler("expiry_scan")
    counter.reset()
    meter and meter.reset()
    summary = expiry({"time": run_at.isoformat()}, Context())
    if meter:
        from bench.cost import MONTH, Profile
        per_night = (MONTH["paid_orders"] + MONTH["activities"]) // MONTH["nights"]   # lots due a night, steady state
        nightly["nightly expiry"] = (per_night, Profile(meter.reset().per(max(summary["lots_expired"], 1))))
    shards = int(aws.environ.get("EXPIRY_INDEX_SHARDS", "4"))
    pages = counter.calls["Query"]
    row(f"nightly expiry, {members} members: lots expired", str(summary["lots_expired"]), str(due),
        summary["lots_expired"] == due)
    row(f"nightly expiry, {members} members, k={due} due: items read", str(counter.items_read),
        f"≤ 1.05·k = {1.05 * due:.0f}", counter.items_read <= 1.05 * due)
    days = len(summary["days"])
    row("nightly expiry: index pages (Query calls)", str(pages), f"≤ {days} days × {shards} shards = {days * shards}",
        pages <= days * shards)
    row("nightly expiry: Scans", str(counter.calls["Scan"]), "0", counter.calls["Scan"] == 0)
    writes = counter.writes
    row("nightly expiry: write calls per member with due lots", f"{writes / max(summary['members'], 1):.2f}", "1",
        writes == summary["members"])
    counter.reset()
    again = expiry({"time": run_at.isoformat()}, Context())
    row("nightly expiry re-run: lots expired / writes", f"{again['lots_expired']} / {counter.writes}", "0 / 0",
        again["lots_expired"] == 0 and counter.writes == 0)
