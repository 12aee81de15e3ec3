"""Messaging figures, measured through the whole local stack (in this process, so the
botocore hooks see every handler's calls) and its provider sandbox."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import requests

from loyalty.domain import Lot, add_months, parse_time
from loyalty.web.signatures import sign_order_body

SHANGHAI = timezone(timedelta(hours=8))


class Client:
    def __init__(self, base: str):
        self.base, self.http = base, requests.Session()
        token = self.http.post(base + "/_local/token", json={"subject": "bench"}, timeout=10).json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {token}"

    def put(self, path, body):
        return self.http.put(self.base + path, json=body, timeout=60)

    def post(self, path, body=None):
        return self.http.post(self.base + path, json=body, timeout=120)

    def get(self, path, **kw):
        return self.http.get(self.base + path, timeout=60, **kw)

    def order(self, body: dict):
        import json
        import time
        raw = json.dumps(body).encode()
        return self.http.post(self.base + "/webhooks/orders", data=raw, timeout=60, headers={
            "X-Signature": sign_order_body("local-order-secret", raw, int(time.time()))})


def member(api: Client, member_id: str, channel: str) -> str:
    phone = "+8529" + str(uuid.uuid4().int)[:7]
    api.put(f"/members/{member_id}", {"name": "Ana", "phone": phone, "wechat_openid": "o" + uuid.uuid4().hex[:20],
                                      "locale": "en", "time_zone": "Asia/Shanghai", "preferred_channels": [channel]})
    api.put(f"/members/{member_id}/consents/{channel}",
            {"status": "opted_in", "source": "bench", "at": "2026-01-01T00:00:00+08:00"})
    return phone


def run(counter, row, n: int = 20, meter=None, profiles: dict | None = None) -> None:
    from infra.local.stack import LocalStack
    from loyalty import wiring
    wiring.reset()  # the clients cached so far point at the previous emulator
    with LocalStack(port=0) as stack:
        api = Client(stack.api_url)
        api.post("/_local/sandbox/config", {"auto_receipts": False})
        earned = (datetime.now(SHANGHAI) - timedelta(days=100)).replace(hour=15, minute=0, second=0, microsecond=0)
        due = add_months(earned, 12)
        night = (due - timedelta(days=7)).replace(hour=12, minute=5)
        ids = [f"bench-r{i}" for i in range(n)]
        for member_id in ids:
            member(api, member_id, "whatsapp")
            api.order({"event_id": f"e-{member_id}", "type": "order.paid", "occurred_at": earned.isoformat(),
                       "order": {"order_id": f"o-{member_id}", "member_id": member_id, "amount_minor": 50000,
                                 "currency": "CNY"}})
        # one member with points at every stage (30, 7, 3 and 0 days): still one reminder that night
        stages_phone = member(api, "bench-stages", "whatsapp")
        for days, amount in ((30, 300000), (7, 50000), (3, 50000), (0, 50000)):
            when = (night + timedelta(days=days) - timedelta(days=365)).replace(hour=15)
            api.order({"event_id": f"e-stage-{days}", "type": "order.paid", "occurred_at": when.isoformat(),
                       "order": {"order_id": f"o-stage-{days}", "member_id": "bench-stages", "amount_minor": amount,
                                 "currency": "CNY"}})
        api.post("/_local/drain")
        api.http.delete(api.base + "/_local/outbox", timeout=30)
        before = api.get("/_local/sandbox/stats").json()["sends_accepted"]
        counter.reset()
        meter and meter.reset()
        api.post("/_local/schedules/ReminderScanFunction", {"time": night.isoformat()})
        api.post("/_local/drain")
        sending = meter.reset() if meter else None
        after = api.get("/_local/sandbox/stats").json()["sends_accepted"]
        sent = sum(after.values()) - sum(before.values())
        reminders = n + 1
        # A reminder's calls are the planner's (less its index pages: the planning figure counts
        # those), the dispatcher's and the sender's. The clock's jump to the night also runs the
        # sweeps and nightly runs it passed (the local stack's catch-up, as AWS would have): not
        # the reminders'.
        path = ("ReminderScanFunction", "DispatcherFunction", "SendWhatsAppFunction")
        planner_pages = counter.index_queries_by_function["ReminderScanFunction", "ExpiryIndex"]
        per_reminder = (sum(counter.by_function[name] for name in path) - planner_pages) / reminders
        row("one reminder, end to end: provider HTTP calls", f"{sent / reminders:.2f}", "1", sent == reminders)
        row("one reminder, end to end: DynamoDB calls", f"{per_reminder:.2f}", "≤ 4", per_reminder <= 4)
        outbox = api.get("/_local/outbox").json()
        stage_member = [m for m in outbox if m["to"] == stages_phone.lstrip("+") and m["template"] == "points_expiring"]
        per_member = {}
        for m in outbox:
            per_member[m["to"]] = per_member.get(m["to"], 0) + 1
        row("reminders to one member in one night (lots at 30/7/3/0 days)", str(max(per_member.values())), "≤ 1",
            max(per_member.values()) <= 1 and len(stage_member) >= 1)

        records = [m for m in outbox if m["provider_message_id"]]
        counter.reset()
        meter and meter.reset()
        for m in records:
            api.post("/_local/receipts", {"provider": "whatsapp", "provider_message_id": m["provider_message_id"],
                                          "status": "delivered"})
        if meter:
            # a reminder: planned, dispatched (job queue, dispatcher), sent (channel queue, sender),
            # its receipt (webhook); a notice takes the same path from the job queue on
            from bench.cost import Profile
            receipt = meter.reset().per(len(records))
            message = sending.per(reminders)
            message.add(receipt)
            for name in ("reminder with its receipt", "notice with its receipt"):
                profiles[name] = Profile(message, api_requests=1, invocations=3,
                                         sqs_requests=2 * sending.per(reminders).sqs_requests)
        per_receipt = counter.total / len(records)
        queries = counter.calls["Query"] + counter.calls["Scan"]
        row("one delivery receipt: DynamoDB calls", f"{per_receipt:.2f}", "≤ 2, 0 Scans, 0 Queries",
            per_receipt <= 2 and queries == 0)

        tokens_before = sum(api.get("/_local/sandbox/stats").json()["wechat_token_fetches"].values())
        wechat = [f"bench-w{i}" for i in range(100)]
        for member_id in wechat:
            member(api, member_id, "wechat")
            api.order({"event_id": f"e-{member_id}", "type": "order.paid", "occurred_at": earned.isoformat(),
                       "order": {"order_id": f"o-{member_id}", "member_id": member_id, "amount_minor": 10000,
                                 "currency": "CNY"}})
        api.post("/_local/drain")
        stats = api.get("/_local/sandbox/stats").json()
        fetches = sum(stats["wechat_token_fetches"].values()) - tokens_before
        row("WeChat access-token fetches for 100 sends", str(fetches), "≤ 1 per 7,000 s per account", fetches <= 1)

        # WeChat receipts carry only WeChat's own id: one read of the id alias, one write
        sent_wechat = [m for m in api.get("/_local/outbox").json()
                       if m["channel"] == "wechat" and m["provider_message_id"]]
        counter.reset()
        for m in sent_wechat:
            api.post("/_local/receipts", {"provider": "wechat", "provider_message_id": m["provider_message_id"],
                                          "status": "success"})
        per_receipt = counter.total / max(len(sent_wechat), 1)
        queries = counter.calls["Query"] + counter.calls["Scan"]
        # each found its message (none kept for later as a receipt of an unknown message)
        found = counter.calls["UpdateItem"] == len(sent_wechat) and counter.calls["PutItem"] == 0
        row("one WeChat delivery receipt: DynamoDB calls", f"{per_receipt:.2f}", "≤ 2, 0 Scans, 0 Queries",
            bool(sent_wechat) and found and per_receipt <= 2 and queries == 0)


def planning(aws, counter, row, members: int, due: int) -> None:
    """`members` members with one lot each; `due` of them at a reminder stage tonight."""
    from bench.ledger import ledger_store, load_lots
    aws.reset()
    night = parse_time("2027-11-10T11:55:00+08:00")
    lots = []
    for i in range(members):
        if i < due:
            expires = night + timedelta(days=(7, 3, 0)[i % 3], hours=3)
        else:
            expires = night + timedelta(days=8 + i % 20)   # not at a stage: never read
            if (expires - night).days == 30:
                expires += timedelta(days=1)
        lots.append((f"member-{i:06d}", Lot(lot_id=f"o-{i}", earned_at=expires - timedelta(days=365),
                                            expires_at=expires, points=200, remaining=200, source=f"order:{i}")))
    load_lots(ledger_store(aws), lots, with_members=False)
    from bench.ledger import Context, handler
    scan = handler("reminder_scan")
    counter.reset()
    result = scan({"time": night.isoformat()}, Context())
    row(f"reminder planning, {members} members: jobs", str(result["jobs"]), str(due), result["jobs"] == due)
    row(f"reminder planning, k={due} due: items read", str(counter.items_read), f"≤ 1.05·k = {1.05 * due:.0f}",
        counter.items_read <= 1.05 * due and counter.calls["Scan"] == 0)
    aws.reset()  # moto's state is per process: leave no jobs or members for the next figures
