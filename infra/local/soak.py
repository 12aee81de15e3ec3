"""The fault soak: members, orders, refunds, redemptions, reminders and replies through the
local stack over HTTP while AWS and the providers fail, then the invariants checked.

    make soak                                  # SOAK_ORDERS=300 SOAK_FAULT_SHARE=0.05 SOAK_SEED=1
    python -m infra.local.soak --orders 300 --fault-share 0.05 --seed 1 [--url http://127.0.0.1:3000]

Without --url it starts its own local stack (a subprocess, as `make run DEMO=0` does)
and stops it at the end. The story, all of it from the seed:

1. members on WhatsApp, SMS through Twilio (+852), SMS through Aliyun (+86) and WeChat,
   each with a profile and consent;
2. faults on: a share of the functions' AWS calls (POST /_local/aws-faults: DynamoDB
   throttling, transaction conflicts, connection resets, answers lost after the work was
   done) and of the sends (POST /_local/faults with "share": HTTP 500, 503 and 429 from
   every provider), plus a few sends that time out past the senders' 8 s read timeout,
   half of them accepted by the provider all the same;
3. per member, in order (members in parallel): paid orders (the first one old enough for
   its points to expire within days), refunds and cancellations (some reported before the
   payment), redemptions when the balance allows, and 我的积分 on the member's channel;
4. reminders: the planner at 04:30, outside the send windows, so they are deferred to
   12:00; then the next night's expiry run, whose catch-up fires the 15-minute release at
   12:00 (schedules.py);
5. STOP from some members; faults off; the queues drained.

Every HTTP call is retried on 5xx, 429 and connection errors with the same body, as an
order system or a provider would (a provider's retry re-posts the same push). Then the
invariants: 0 points lost or doubled (each member's balance equals the balance the driver
computed from the answers it got, independently of the application, and each order
earned once; `python -m loyalty.tools.reconcile` clean against the emulator); every
message the provider accepted is one of ours and was accepted once (our id: WhatsApp
biz_opaque_callback_data, Twilio's status-callback URL, Aliyun OutId, WeChat
client_msg_id), and every message of ours is sent once or visibly failed or
dead-lettered (GET /members/{id}/messages; the dead-letter queues count at least those);
no reply lost (each 我的积分 and STOP got its reply, or shows failed).
Exit status 0 when all hold.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import random
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ElementTree
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
ORDER_SECRET = os.environ.get("ORDER_WEBHOOK_SECRET", "local-order-secret")
SHANGHAI = timezone(timedelta(hours=8))
CATALOG = {"free-shipping": 300, "coupon-10": 1000}       # default_rules.json, the two cheapest
FINAL = {"sent", "delivered", "read", "failed", "undelivered", "skipped", "suppressed", "dead_lettered"}
SENT = {"sent", "delivered", "read"}
KINDS = ("whatsapp", "twilio", "aliyun", "wechat")         # a member's channel, by provider
CHANNEL = {"whatsapp": "whatsapp", "twilio": "sms", "aliyun": "sms", "wechat": "wechat"}


@dataclass
class SoakConfig:
    """The knobs (make soak: SOAK_ORDERS, SOAK_FAULT_SHARE, SOAK_SEED, SOAK_TIMEOUTS, SOAK_WORKERS,
    SOAK_TIME_SCALE)."""

    orders: int = 300
    fault_share: float = 0.05            # of the functions' AWS calls, and of the sends
    seed: int = 1
    timeouts: int = 4                    # sends held past the senders' read timeout
    workers: int = 8
    url: str | None = None               # a running stack; None: start one
    members: int | None = None           # default: orders / 3
    # The stack's SQS timers. At the stacks' usual 0.01 the sender's 300 s wait for the
    # receipt of a send whose answer was lost shrinks to 3 s, less than the wall-clock time
    # the sandbox's receipt takes to reach the record under the soak's load: the retry then
    # sends again where AWS would still be waiting (a duplicate the local clock made).
    time_scale: float = 0.1


@dataclass
class Member:
    member_id: str
    provider: str                        # whatsapp | twilio | aliyun | wechat
    contact: str                         # +E.164 phone, or the OpenID
    expected: int = 0                    # the balance the driver computed
    tier: int = 0                        # the tier's rank (TIERS) the driver computed: upgrades only here
    orders: dict = field(default_factory=dict)       # order_id -> {"amount", "earned", "refunded", "taken", "paid"}
    redeemed: list = field(default_factory=list)
    inbound: list = field(default_factory=list)      # {"keyword", "id", "status", "reply"}
    stopped: bool = False
    events: int = 0
    expect: Counter = field(default_factory=Counter)  # (kind, template) -> messages the story must produce
    problems: list = field(default_factory=list)


@dataclass
class SoakReport:
    config: SoakConfig
    figures: dict = field(default_factory=dict)
    problems: dict = field(default_factory=lambda: defaultdict(list))   # invariant -> [what is wrong]

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())


class Client:
    """The HTTP calls of an order system, a member backend and a provider, with retries."""

    def __init__(self, base: str, token: str, attempts: int = 10):
        self.base = base.rstrip("/")
        self.token = token
        self.attempts = attempts
        self._local = threading.local()
        self.retries = Counter()

    @property
    def http(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def call(self, method: str, path: str, body=None, *, auth: bool = True, raw: bytes | None = None,
             headers: dict | None = None, sign=None, what: str = "") -> requests.Response:
        """Until an answer that is not 5xx, 429 or a dropped connection (then the last)."""
        url = path if path.startswith("http") else self.base + path
        last = None
        for attempt in range(self.attempts):
            sent_headers = dict(headers or {})
            if auth:
                sent_headers["Authorization"] = f"Bearer {self.token}"
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            if data is not None and "Content-Type" not in sent_headers:
                sent_headers["Content-Type"] = "application/json"
            if sign is not None:
                sent_headers.update(sign(data))
            try:
                last = self.http.request(method, url, data=data, headers=sent_headers, timeout=120)
                if last.status_code < 500 and last.status_code != 429:
                    return last
            except requests.RequestException:
                last = None
            self.retries[what or path.split("/")[1]] += 1
            time.sleep(min(2.0, 0.2 * 2 ** attempt))
        if last is None:
            raise ConnectionError(f"{method} {path}: no answer after {self.attempts} attempts")
        return last


def sign_order(raw: bytes) -> dict:
    t = int(time.time())
    v1 = hmac.new(ORDER_SECRET.encode(), f"{t}.".encode() + raw, hashlib.sha256).hexdigest()
    return {"X-Signature": f"t={t},v1={v1}"}


def earned_for(amount_minor: int) -> int:
    """Points of a paid CNY order under the default rules, computed here, not by the app:
    1 per yuan, floor, plus 20 from 100 yuan."""
    return amount_minor // 100 + (20 if amount_minor >= 10000 else 0)


# default_rules.json's tiers (E7), computed here: (threshold in 90 days, multiplier %)
TIERS = ((0, 100), (2000, 110), (6000, 125), (15000, 150))


def tier_for(points: int) -> int:
    return max(rank for rank, (threshold, _) in enumerate(TIERS) if points >= threshold)


def qualifying(member: "Member", today) -> int:
    """Points the member's paid orders earned in the 90 programme-local days to `today`,
    less what refunds took back (the soak's orders are reported in sequence per member)."""
    start = today - timedelta(days=89)
    return sum(state["earned"] - state["taken"] for state in member.orders.values()
               if state["paid"] and start <= state["occurred"].astimezone(SHANGHAI).date() <= today)


def taken_back_target(earned: int, amount: int, refunded: int) -> int:
    """Proportional, in the member's favour, all of it on a full refund (DESIGN.md)."""
    return earned if refunded >= amount else earned * refunded // amount


# ------------------------------------------------------------------ the story


def plan_members(config: SoakConfig, rng: random.Random) -> list[Member]:
    count = config.members or max(4, config.orders // 3)
    tag = f"{config.seed % 1000:03d}"
    members = []
    for index in range(count):
        provider = KINDS[index % len(KINDS)]
        if provider in ("whatsapp", "twilio"):
            contact = f"+8529{tag}{index:04d}"             # +852, 8 digits
        elif provider == "aliyun":
            contact = f"+86138{tag}{index:05d}"[:14]      # +86 138..., 11 digits
        else:
            contact = f"oSoak{tag}{index:05d}{rng.randrange(16 ** 8):08x}"
        members.append(Member(f"soak-{tag}-{index:04d}", provider, contact))
    return members


def setup_member(client: Client, member: Member) -> None:
    profile = {"name": f"Soak {member.member_id[-4:]}", "time_zone": "Asia/Shanghai",
               "locale": "en" if member.provider in ("whatsapp", "twilio") else "zh-CN",
               "preferred_channels": [CHANNEL[member.provider]]}
    if member.provider == "wechat":
        profile["wechat_openid"] = member.contact
    else:
        profile["phone"] = member.contact
    for path, body in ((f"/members/{member.member_id}", profile),
                       (f"/members/{member.member_id}/consents/{CHANNEL[member.provider]}",
                        {"status": "opted_in", "source": "soak", "at": "2026-01-01T00:00:00+08:00"})):
        answer = client.call("PUT", path, body, what="profile")
        if answer.status_code != 200:
            member.problems.append(f"PUT {path} -> {answer.status_code} {answer.text[:200]}")


def plan_events(member: Member, orders: int, rng: random.Random, now: datetime) -> list[tuple]:
    """The member's order events, in the order they are reported."""
    events = []
    for number in range(orders):
        order_id = f"{member.member_id}-o{number}"
        amount = rng.choice([rng.randrange(500, 9999), rng.randrange(10000, 300000)])
        occurred = (now - timedelta(days=360)).replace(hour=15, minute=0, second=0, microsecond=0) if number == 0 \
            else now - timedelta(days=rng.randrange(1, 40), minutes=rng.randrange(1440))
        paid = ("paid", order_id, amount, occurred, None)
        fate = rng.random()
        if number > 0 and fate < 0.06:        # a refund reported before its payment
            refund = rng.randrange(1, amount + 1)
            events += [("refunded", order_id, amount, occurred + timedelta(hours=1), refund), paid]
        elif number > 0 and fate < 0.18:      # one or two partial refunds
            first = rng.randrange(1, amount // 2 + 1)
            events += [paid, ("refunded", order_id, amount, occurred + timedelta(days=1), first)]
            if rng.random() < 0.5:
                events.append(("refunded", order_id, amount, occurred + timedelta(days=2),
                               rng.randrange(1, amount - first + 1)))
        elif number > 0 and fate < 0.26:      # cancelled after payment
            events += [paid, ("cancelled", order_id, amount, occurred + timedelta(days=1), None)]
        else:
            events.append(paid)
    return events


def report_order(client: Client, member: Member, event: tuple) -> None:
    kind, order_id, amount, occurred, refund = event
    body = {"event_id": f"{order_id}-{kind}-{refund or 0}", "type": f"order.{kind}",
            "occurred_at": occurred.astimezone(SHANGHAI).isoformat(),
            "order": {"order_id": order_id, "member_id": member.member_id, "amount_minor": amount,
                      "currency": "CNY", **({"refund_amount_minor": refund} if refund else {})}}
    raw = json.dumps(body).encode()
    member.events += 1
    answer = client.call("POST", "/webhooks/orders", raw=raw, auth=False, sign=sign_order, what="order")
    state = member.orders.setdefault(order_id, {"amount": amount, "earned": 0, "refunded": 0, "taken": 0,
                                                "paid": False, "cancelled": False})
    # what the application must have done, computed here
    if kind == "paid":
        base = earned_for(amount)
        state["paid"], state["earned"], state["occurred"] = True, base + base * (TIERS[member.tier][1] - 100) // 100, \
            occurred
        expected = state["earned"]
    elif kind == "cancelled":
        state["cancelled"] = True
        state["refunded"] = amount
        expected = 0
    else:
        state["refunded"] += refund
        expected = 0
    if state["paid"]:
        target = taken_back_target(state["earned"], amount, state["refunded"])
        expected -= target - state["taken"]
        state["taken"] = target
    member.expected += expected
    if kind == "paid" and expected > 0:
        member.expect["notice", "points_credited"] += 1
    if kind == "paid":
        reached = tier_for(qualifying(member, datetime.now(SHANGHAI).date()))
        if reached > member.tier:                # the order that crosses a threshold upgrades (no downgrade
            member.tier = reached                # is due within the soak's 40 days of orders)
            member.expect["notice", "tier_up"] += 1
    if answer.status_code != 200:
        member.problems.append(f"order {body['event_id']} -> {answer.status_code} {answer.text[:200]}")
        return
    got = answer.json()
    if got.get("points") != expected or got.get("balance") != member.expected:
        member.problems.append(f"order {body['event_id']}: answered points {got.get('points')}, balance "
                               f"{got.get('balance')}; expected {expected}, {member.expected}")


def redeem(client: Client, member: Member, rng: random.Random) -> None:
    for item, cost in sorted(CATALOG.items(), key=lambda pair: -pair[1]):
        if member.expected >= cost and rng.random() < 0.7:
            key = f"{member.member_id}-r{len(member.redeemed)}"
            answer = client.call("POST", f"/members/{member.member_id}/redemptions",
                                 {"item_id": item, "idempotency_key": key}, what="redemption")
            if answer.status_code in (200, 201):
                member.expected -= cost
                member.redeemed.append((item, cost))
                member.expect["notice", "redemption_confirmed"] += 1
                if answer.json().get("balance") not in (None, member.expected):
                    member.problems.append(f"redemption {key}: balance {answer.json().get('balance')}, "
                                           f"expected {member.expected}")
            else:
                member.problems.append(f"redemption {key} of {item} with {member.expected} points -> "
                                       f"{answer.status_code} {answer.text[:200]}")


def write_in(client: Client, member: Member, text: str) -> None:
    """The member writes `text`: the sandbox posts the signed push to our webhook, and when
    our webhook fails (5xx), the very same push is posted again, as providers retry."""
    answer = client.call("POST", "/_local/inbound", {"channel": member.provider, "from": member.contact,
                                                     "text": text}, auth=False, what="inbound")
    entry = {"keyword": text, "id": None, "status": None, "reply": None, "attempts": []}
    member.inbound.append(entry)
    if answer.status_code != 200:
        member.problems.append(f"inbound {text!r} -> {answer.status_code} {answer.text[:200]}")
        return
    push = answer.json()
    entry["id"] = inbound_id(member.provider, push["payload"])
    status, body = push["status"], push.get("body")
    entry["attempts"].append(status)
    tries = 0
    while (status is None or status >= 500) and tries < client.attempts:
        tries += 1
        client.retries["inbound-push"] += 1
        time.sleep(min(2.0, 0.2 * 2 ** tries))
        try:
            again = client.http.post(push["url"], data=push["payload"].encode("utf-8"), headers=push["headers"],
                                     timeout=60)
            status, body = again.status_code, again.text
        except requests.RequestException:
            status = None
        entry["attempts"].append(status)
    entry["status"], entry["reply"] = status, body
    if status != 200:
        member.problems.append(f"inbound {text!r} ({entry['id']}): our webhook answered {status} every time")
    if text.upper() == "STOP":
        member.stopped = True
        if member.provider != "twilio":          # Twilio confirms a STOP itself
            member.expect["reply", "opt_out_confirmed"] += 1
    else:
        member.expect["reply", "balance_reply"] += 1


def inbound_id(provider: str, payload: str) -> str:
    """The provider's id of a pushed member message: what our reply says it answers."""
    if provider == "whatsapp":
        return json.loads(payload)["entry"][0]["changes"][0]["value"]["messages"][0]["id"]
    if provider == "twilio":
        return dict(parse_qsl(payload))["MessageSid"]
    if provider == "aliyun":
        return str(json.loads(payload)[0]["sequence_id"])
    return ElementTree.fromstring(payload).findtext("MsgId")


def member_story(client: Client, member: Member, orders: int, seed: int, now: datetime) -> None:
    rng = random.Random(f"{seed}:{member.member_id}")
    for event in plan_events(member, orders, rng, now):
        report_order(client, member, event)
    redeem(client, member, rng)
    old_lot = next(iter(member.orders.values()))["earned"] if member.orders else 0
    if old_lot > sum(cost for _, cost in member.redeemed):
        member.expect["reminder", "points_expiring"] += 1   # redemptions spend the lot that expires first
    if rng.random() < 0.6:
        write_in(client, member, "我的积分")


# ------------------------------------------------------------------ faults


def faults_on(client: Client, config: SoakConfig) -> None:
    share = config.fault_share
    answer = client.call("POST", "/_local/aws-faults", {
        "share": share, "seed": config.seed, "kinds": {"throttle": 2, "conflict": 1, "reset": 1, "timeout": 1}},
        auth=False)
    answer.raise_for_status()
    client.call("DELETE", "/_local/faults", auth=False)
    if share > 0:
        for number, provider in enumerate(("whatsapp", "twilio", "aliyun", "wechat")):
            for index, status in enumerate((500, 503, 429)):
                body = {"provider": provider, "status": status, "share": share / 3,
                        "seed": config.seed * 100 + number * 10 + index}
                client.call("POST", "/_local/faults", body, auth=False).raise_for_status()
    for number in range(config.timeouts):
        # past the senders' 8 s read timeout; every other one is accepted all the same
        body = {"provider": ("whatsapp", "twilio", "aliyun", "wechat")[number % 4], "timeout": True, "hold": 8.3,
                "count": 1, "then": "accept" if number % 2 else "error"}
        client.call("POST", "/_local/faults", body, auth=False).raise_for_status()


def faults_off(client: Client) -> tuple[dict, list]:
    aws = client.call("DELETE", "/_local/aws-faults", auth=False).json()
    pending = client.call("GET", "/_local/faults", auth=False).json()
    client.call("DELETE", "/_local/faults", auth=False)
    return aws, pending


# ------------------------------------------------------------------ the checks


def check_points(client: Client, members: list[Member], report: SoakReport) -> None:
    problems = report.problems["points"]
    for member in members:
        problems += [f"{member.member_id}: {p}" for p in member.problems if p.startswith(("order", "redemption"))]
        report.problems["setup"] += [f"{member.member_id}: {p}" for p in member.problems if p.startswith("PUT")]
        points = client.call("GET", f"/members/{member.member_id}/points", what="check")
        if points.status_code != 200:
            problems.append(f"{member.member_id}: GET points -> {points.status_code}")
            continue
        balance = points.json()["balance"]
        if balance != member.expected:
            problems.append(f"{member.member_id}: balance {balance}, expected {member.expected} (computed from "
                            f"{len(member.orders)} orders and {len(member.redeemed)} redemptions)")
        entries, cursor = [], None
        while True:
            page = client.call("GET", f"/members/{member.member_id}/ledger?limit=200"
                                      + (f"&cursor={cursor}" if cursor else ""), what="check").json()
            entries += page["entries"]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        ids = Counter(entry["entry_id"] for entry in entries)
        problems += [f"{member.member_id}: entry {i} listed {n} times" for i, n in ids.items() if n > 1]
        if sum(entry["amount"] for entry in entries) != balance:
            problems.append(f"{member.member_id}: entries add up to {sum(e['amount'] for e in entries)}, "
                            f"balance {balance}")
        # an order's own EARN entry; a rule's (the tier multiplier) names the rule in its meta
        earns = Counter(entry["source"] for entry in entries
                        if entry["type"] == "EARN" and "rule" not in entry.get("meta", {}))
        for order_id, state in member.orders.items():
            wanted = 1 if state["paid"] and state["earned"] > 0 else 0
            if earns.get(f"order:{order_id}", 0) != wanted:
                problems.append(f"{member.member_id}: order {order_id} earned {earns.get(f'order:{order_id}', 0)} "
                                f"times, expected {wanted}")


def reconcile(health: dict, report: SoakReport) -> None:
    environment = {**os.environ, "AWS_ENDPOINT_URL": health["emulator_url"],
                   "TABLE_NAME": f"{health['stack_name']}-LoyaltyTable", "AWS_DEFAULT_REGION": health["region"],
                   "AWS_REGION": health["region"], "AWS_ACCESS_KEY_ID": "testing",
                   "AWS_SECRET_ACCESS_KEY": "testing", "POWERTOOLS_LOG_LEVEL": "WARNING",
                   "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "layers" / "common"), str(REPO_ROOT)])}
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        environment.pop(name, None)
    run = subprocess.run([sys.executable, "-m", "loyalty.tools.reconcile"], env=environment, cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=300)
    report.figures["reconcile"] = (run.stdout.strip().splitlines() or [run.stderr.strip()[-300:]])[-1]
    if run.returncode != 0:
        report.problems["reconcile"].append((run.stdout + run.stderr).strip()[-2000:])


def our_id(record: dict) -> str | None:
    """Our message id, as the provider echoes it."""
    if record["provider"] == "whatsapp":
        return record.get("biz_opaque_callback_data")
    if record["provider"] == "twilio" and record.get("status_callback"):
        return (parse_qs(urlsplit(record["status_callback"]).query).get("m") or [None])[0]
    if record["provider"] == "aliyun":
        return record.get("out_id")
    return record.get("client_msg_id")       # WeChat template messages; subscription and text have none


def check_messages(client: Client, members: list[Member], drained: dict, report: SoakReport) -> None:
    problems, replies = report.problems["messages"], report.problems["replies"]
    outbox = client.call("GET", "/_local/outbox", auth=False).json()
    contacts = {member.contact.lstrip("+"): member for member in members}
    accepted = defaultdict(list)                 # our id -> what the providers accepted with it
    anonymous = Counter()                        # member -> accepted sends that carry no id of ours (WeChat)
    for record in outbox:
        member = contacts.get(record["to"]) or contacts.get("86" + record["to"])
        if member is None:
            continue
        key = our_id(record)
        if key:
            accepted[key].append(record)
        else:
            anonymous[member.member_id] += 1
    ours, dead, statuses = set(), 0, Counter()
    for member in members:
        records = client.call("GET", f"/members/{member.member_id}/messages?limit=200", what="check").json()["messages"]
        replies_to, unnamed, found, stuck_unnamed = {}, 0, Counter(), []
        for message in records:
            ours.add(message["message_id"])
            statuses[message["status"]] += 1
            history = [h["status"] for h in message["history"]]
            found[message["kind"], message["template"]] += 1
            copies = len(accepted.get(message["message_id"], []))
            first = message["history"][0].get("detail", "") if message["history"] else ""
            if message["kind"] == "reply" and first.startswith("in reply to "):
                replies_to[first[len("in reply to "):]] = message
            if message["status"] == "sending":
                if message["channel"] == "wechat" and not copies:
                    stuck_unnamed.append(message)    # told apart below, by count
                    continue
                tag = "stuck-sending-sent" if copies else "stuck-sending-unsent"
                problems.append(f"[{tag}] {member.member_id}: {message['kind']} {message['message_id']} still "
                                f"sending, accepted by the provider {copies} time(s) ({' -> '.join(history)})")
                continue
            if message["status"] == "deferred" and message["template"] == "tier_down":
                # The nightly tier review downgrades a member whose back-dated orders left the
                # window (the driver does not model downgrades); the notice waits for the
                # member's next send window, which may be after the soak's last clock.
                report.figures["tier_down_deferred"] = report.figures.get("tier_down_deferred", 0) + 1
                continue
            if message["status"] not in FINAL:
                problems.append(f"[not-final] {member.member_id}: {message['kind']} {message['message_id']} still "
                                f"{message['status']} ({' -> '.join(history)})")
            dead += message["status"] == "dead_lettered"
            if str(message.get("provider_message_id") or "").startswith("passive:"):
                continue                         # WeChat's answer in the webhook response: nothing sent
            sent = message["status"] in SENT or "sent" in history
            if message["channel"] == "wechat" and sent and copies == 0:
                unnamed += 1                     # a subscription message or a text: counted, not named
            elif sent and copies != 1:
                problems.append(f"[{'duplicate' if copies else 'sent-not-accepted'}] {member.member_id}: "
                                f"{message['kind']} {message['message_id']} says {message['status']}; the "
                                f"provider accepted it {copies} time(s)")
            elif not sent and copies:
                problems.append(f"[accepted-not-recorded] {member.member_id}: {message['kind']} "
                                f"{message['message_id']} says {message['status']}, yet the provider accepted "
                                f"it {copies} time(s)")
        for what in sorted(set(member.expect) | set(found)):
            if what in member.expect and found[what] < member.expect[what]:
                problems.append(f"[lost] {member.member_id}: {member.expect[what]} {what[0]} {what[1]} expected, "
                                f"{found[what]} recorded")
            elif what in member.expect and found[what] > member.expect[what]:
                problems.append(f"[extra] {member.member_id}: {member.expect[what]} {what[0]} {what[1]} expected, "
                                f"{found[what]} recorded")
        # WeChat subscription messages and texts carry no id of ours: what WeChat accepted
        # without one must be what our records say was sent, plus those stuck "sending"
        # that went out before their record could say so.
        extra = anonymous[member.member_id] - unnamed
        if not 0 <= extra <= len(stuck_unnamed):
            problems.append(f"[wechat-count] {member.member_id}: WeChat accepted {anonymous[member.member_id]} "
                            f"messages without an id of ours; our records show {unnamed} of those sent and "
                            f"{len(stuck_unnamed)} still sending")
        for number, message in enumerate(stuck_unnamed):
            tag = "stuck-sending-sent" if number < extra else "stuck-sending-unsent"
            problems.append(f"[{tag}] {member.member_id}: {message['kind']} {message['message_id']} (WeChat, no id "
                            f"of ours) still sending; WeChat accepted {extra} such message(s) not recorded as sent")
        replies += [f"[webhook-refused] {member.member_id}: {p}" for p in member.problems if p.startswith("inbound")]
        for entry in member.inbound:
            if entry["id"] is None or (entry["keyword"] == "STOP" and member.provider == "twilio"):
                continue                         # Twilio answers STOP itself
            reply = replies_to.get(str(entry["id"]))
            if reply is None and member.provider == "wechat" and "<Content>" in (entry["reply"] or ""):
                replies.append(f"[reply-unrecorded] {member.member_id}: {entry['keyword']} got its passive reply "
                               f"({entry['id']}), but no record of it")
            elif reply is None:
                replies.append(f"[reply-lost] {member.member_id}: {entry['keyword']} ({member.provider} "
                               f"{entry['id']}, our webhook answered {entry['attempts']}) got no reply")
            elif reply["status"] not in FINAL:
                tag = "stuck-sending" if reply["status"] == "sending" else "reply-not-final"
                replies.append(f"[{tag}] {member.member_id}: the reply to {entry['keyword']} is still "
                               f"{reply['status']}")
            elif member.provider == "wechat" and "<Content>" not in (entry["reply"] or ""):
                replies.append(f"[passive-reply-missing] {member.member_id}: WeChat's passive reply to "
                               f"{entry['keyword']} is not in the webhook's answer")
    problems += [f"[unknown-send] the provider accepted {key} ({records[0]['provider']}), which no record of "
                 "ours names" for key, records in accepted.items() if key not in ours]
    in_dlqs = sum(drained.get("dead_letter", {}).get(name, 0) for name in ("WhatsAppDLQ", "SmsDLQ", "WeChatDLQ"))
    if dead > in_dlqs:
        problems.append(f"[dead-letter-count] {dead} messages say dead_lettered; the channels' dead-letter "
                        f"queues hold {in_dlqs}")
    report.figures.update(messages=sum(statuses.values()), statuses=dict(statuses), provider_accepted=len(outbox),
                          dead_lettered=dead, in_dead_letter_queues=in_dlqs)


# ------------------------------------------------------------------ the run


def run_soak(config: SoakConfig, out=print) -> SoakReport:
    """Run the story against `config.url` (or a stack of its own) and check the invariants."""
    if config.url:
        return _run(config, config.url, out)
    from .testing import spawn_local_stack
    with spawn_local_stack(env={"POWERTOOLS_LOG_LEVEL": os.environ.get("SOAK_LOG", "WARNING"),
                                "POWERTOOLS_METRICS_DISABLED": "true", "LOCAL_TIME_SCALE": str(config.time_scale)},
                           timeout=120) as running:
        report = _run(config, running.api_url, out)
        report.figures["stack_log"] = str(running.log_path)
        return report


def _run(config: SoakConfig, base: str, out) -> SoakReport:
    started = time.monotonic()
    report = SoakReport(config)
    rng = random.Random(config.seed)
    token = requests.post(f"{base}/_local/token", json={"subject": "soak", "expires_in": 43200},
                          timeout=30).json()["access_token"]
    client = Client(base, token)
    health = client.call("GET", "/_local/health", auth=False).json()
    if health.get("clock"):
        out(f"note: the stack's clock is already at {health['clock']}; the reminders' schedule runs assume it is "
            "not ahead of the real time")
    now = datetime.now(SHANGHAI)
    members = plan_members(config, rng)
    spread = [config.orders // len(members) + (1 if index < config.orders % len(members) else 0)
              for index in range(len(members))]
    with ThreadPoolExecutor(config.workers) as pool:
        list(pool.map(lambda member: setup_member(client, member), members))
        faults_on(client, config)
        out(f"soak: {len(members)} members, {config.orders} orders, fault share {config.fault_share}, "
            f"seed {config.seed}, {config.timeouts} provider timeouts")
        list(pool.map(lambda pair: member_story(client, pair[0], pair[1], config.seed, now), zip(members, spread)))
        client.call("POST", "/_local/drain", {"timeout": 120}, auth=False)

        # reminders: planned at 04:30 three days before the old lots expire, deferred to 12:00
        expires = state_expiry(now)
        night = (expires - timedelta(days=3)).replace(hour=4, minute=30)
        planned = client.call("POST", "/_local/schedules/ReminderScanFunction", {"time": night.isoformat()},
                              auth=False, what="schedule")
        released = client.call("POST", "/_local/schedules/ExpiryScanFunction",
                               {"time": (night + timedelta(days=1)).replace(hour=0, minute=5).isoformat()},
                               auth=False, what="schedule")
        for name, answer in (("planning", planned), ("next night", released)):
            if answer.status_code != 200:
                report.problems["schedules"].append(f"{name} -> {answer.status_code} {answer.text[:300]}")
        if released.status_code == 200:
            caught = released.json()["caught_up"]
            report.figures["catch_up"] = {"mode": caught["mode"], "ran": caught["ran"], "failed": caught["failed"],
                                          "released": sum((run.get("result") or {}).get("released", 0)
                                                          for s in caught["schedules"] for run in s["runs"])}
        if planned.status_code == 200:
            report.figures["reminder_jobs"] = (planned.json().get("result") or {}).get("jobs")

        stoppers = [member for member in members if rng.random() < 0.15]
        list(pool.map(lambda member: write_in(client, member, "STOP"), stoppers))
        client.call("POST", "/_local/drain", {"timeout": 120}, auth=False)
    aws, pending = faults_off(client)
    drained = client.call("POST", "/_local/drain", {"timeout": 180}, auth=False).json()
    if not drained.get("drained"):
        report.problems["messages"].append(f"the queues did not drain: {drained}")
    sandbox = client.call("GET", "/_local/sandbox/stats", auth=False).json()

    check_points(client, members, report)
    reconcile(health, report)
    check_messages(client, members, drained, report)
    report.figures.update(
        members=len(members), orders=config.orders,
        order_events=sum(m.events for m in members),
        refunded_orders=sum(1 for m in members for s in m.orders.values() if s["refunded"] and not s["cancelled"]),
        cancelled_orders=sum(1 for m in members for s in m.orders.values() if s["cancelled"]),
        redemptions=sum(len(m.redeemed) for m in members),
        inbound=Counter(entry["keyword"] for m in members for entry in m.inbound),
        points_expected=sum(m.expected for m in members),
        aws_faults=aws["counts"], provider_faults=sandbox.get("faults_injected"),
        provider_fault_hits={f"{f['provider']}:{f.get('status') or 'timeout'}": f.get("hits", f.get("count"))
                             for f in pending},
        client_retries=dict(client.retries), dead_letter=drained.get("dead_letter"),
        seconds=round(time.monotonic() - started, 1))
    return report


def state_expiry(now: datetime) -> datetime:
    """When the members' first (old) orders expire: 360 days ago at 15:00, 12 months on."""
    earned = (now - timedelta(days=360)).replace(hour=15, minute=0, second=0, microsecond=0)
    try:
        return earned.replace(year=earned.year + 1)
    except ValueError:  # 29 February
        return earned.replace(year=earned.year + 1, day=28)


def print_report(report: SoakReport, out=print) -> None:
    figures = report.figures
    out("")
    out("Soak figures")
    for name, value in figures.items():
        out(f"  {name:<24} {json.dumps(value, ensure_ascii=False, default=str)}")
    out("")
    for invariant in ("setup", "points", "reconcile", "messages", "replies", "schedules"):
        problems = report.problems.get(invariant, [])
        tags = Counter(p[1:p.index("]")] for p in problems if p.startswith("["))
        out(f"{'PASS' if not problems else 'FAIL'} {invariant}" + (f": {len(problems)} problem(s)" if problems else "")
            + (f" {dict(tags)}" if tags else ""))
        for problem in problems[:25]:
            out(f"     {problem}")
        if len(problems) > 25:
            out(f"     ... and {len(problems) - 25} more")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.soak", description=__doc__.split("\n\n")[0])
    environ = os.environ
    parser.add_argument("--orders", type=int, default=int(environ.get("SOAK_ORDERS", 300)))
    parser.add_argument("--fault-share", type=float, default=float(environ.get("SOAK_FAULT_SHARE", 0.05)))
    parser.add_argument("--seed", type=int, default=int(environ.get("SOAK_SEED", 1)))
    parser.add_argument("--timeouts", type=int, default=int(environ.get("SOAK_TIMEOUTS", 4)))
    parser.add_argument("--workers", type=int, default=int(environ.get("SOAK_WORKERS", 8)))
    parser.add_argument("--members", type=int, default=None)
    parser.add_argument("--time-scale", type=float, default=float(environ.get("SOAK_TIME_SCALE", 0.1)),
                        help="the stack's SQS timers (SoakConfig.time_scale)")
    parser.add_argument("--url", default=environ.get("SOAK_URL") or None, help="a running local stack")
    parser.add_argument("--report", default=environ.get("SOAK_REPORT", ".soak/report.json"),
                        help="where to write the figures and every problem, as JSON")
    args = parser.parse_args(argv)
    config = SoakConfig(orders=args.orders, fault_share=args.fault_share, seed=args.seed, timeouts=args.timeouts,
                        workers=args.workers, url=args.url, members=args.members, time_scale=args.time_scale)
    report = run_soak(config)
    print_report(report)
    if args.report:
        path = Path(args.report)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"config": config.__dict__, "figures": report.figures,
                                    "problems": report.problems}, ensure_ascii=False, indent=2, default=str))
        print(f"report: {path}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
