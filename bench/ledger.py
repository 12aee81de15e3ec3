"""Ledger figures: calls per credit and per duplicate, items read by the nightly expiry."""
from __future__ import annotations

import importlib.util
import json
import time
from datetime import timedelta
from pathlib import Path

from bench.logs import say
from loyalty.domain import Lot, LotWrite, parse_time, utc_key
from loyalty.records import Change
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


def credits(counter, row, n: int = 30) -> None:
    orders = handler("order_webhook")
    events = [{"event_id": f"bench-{i}", "type": "order.paid", "occurred_at": "2026-11-20T14:03:00+08:00",
               "order": {"order_id": f"bench-o{i}", "member_id": f"bench-m{i % 5}", "amount_minor": 1000 + i * 137,
                         "currency": "CNY"}} for i in range(n)]
    orders(order_event({**events[0], "event_id": "warm", "order": {**events[0]["order"], "order_id": "warm"}}), Context())
    counter.reset()
    for event in events:
        assert orders(order_event(event), Context())["statusCode"] == 200
    writes, reads, scans = counter.writes / n, counter.reads / n, counter.calls["Scan"]
    row("credit one paid order: DynamoDB write calls", f"{writes:.2f}", "1", writes == 1)
    row("credit one paid order: DynamoDB read calls", f"{reads:.2f}", "≤ 1", reads <= 1)
    row("credit one paid order: Scans", str(scans), "0", scans == 0)
    counter.reset()
    for event in events:
        assert orders(order_event(event), Context())["statusCode"] == 200
    row("duplicate order event: write calls", str(counter.writes), "0 (nothing that changes state)", counter.writes == 0)


def nightly_expiry(aws, counter, row, members: int, due: int) -> None:
    """`members` members with one lot each; `due` of them expire before the run."""
    from loyalty.adapters.dynamo import DynamoLedgerStore
    aws.reset()  # only the members loaded here, nothing left over from the credits
    table = aws.environ["TABLE_NAME"]
    store = DynamoLedgerStore(table, int(aws.environ.get("EXPIRY_INDEX_SHARDS", "4")), client=aws.client("dynamodb"))
    run_at = parse_time("2027-11-21T00:05:00+08:00")
    say(f"loading {members} members with one lot each, {due} of them due ...")
    puts = []
    for i in range(members):
        member = f"member-{i:06d}"
        expires = run_at - timedelta(hours=1 + i % 20) if i < due else run_at + timedelta(days=1 + i % 300)
        lot = Lot(lot_id=f"o-{i}", earned_at=expires - timedelta(days=365), expires_at=expires, points=100,
                  remaining=100, source=f"order:{i}")
        items, _ = store._transaction(Change(member_id=member, expected_version=0, lots=(LotWrite(lot, new=True),)))
        puts.append(items[1]["Put"]["Item"])  # the lot exactly as the service writes it
        puts.append({"PK": {"S": f"MEMBER#{member}"}, "SK": {"S": "PROFILE"}, "member_id": {"S": member},
                     "balance": {"N": "100"}, "debt": {"N": "0"}, "version": {"N": "1"},
                     "last_tx": {"S": utc_key(lot.earned_at)}})
    client = aws.client("dynamodb")
    for start in range(0, len(puts), 25):
        client.batch_write_item(RequestItems={table: [{"PutRequest": {"Item": item}} for item in puts[start:start + 25]]})
    expiry = handler("expiry_scan")
    counter.reset()
    summary = expiry({"time": run_at.isoformat()}, Context())
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
