"""The demo story `make run` prints as a timeline.

Everything goes through the local stack's HTTP API, as an order system, an operator and
the scheduler would use it. Dates are relative to today, so the story works any day:
Ana's first order was almost a year ago, and its points are about to expire.
"""
from __future__ import annotations

import json
import os
import time
from datetime import date, datetime, timedelta, timezone
from typing import Callable

import requests

from loyalty.web.signatures import sign_order_body

SHANGHAI = timezone(timedelta(hours=8))


class Story:
    def __init__(self, base_url: str, out: Callable[[str], None]):
        self.base = base_url.rstrip("/")
        self.out = out
        self.http = requests.Session()
        self.secret = os.environ.get("ORDER_WEBHOOK_SECRET", "local-order-secret")
        # The shop's backend and the operator console each hold an access token (in AWS:
        # the Cognito token URL; here the local user pool). One token with all four
        # scopes keeps the story short; the story shows what happens without one.
        self.token = self.http.post(self.base + "/_local/token", json={"subject": "demo-operator"},
                                    timeout=30).json()["access_token"]
        self.http.headers["Authorization"] = f"Bearer {self.token}"

    def say(self, when: datetime | str, text: str) -> None:
        stamp = when if isinstance(when, str) else when.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")
        self.out(f"  {stamp:<16}  {text}")

    def call(self, method: str, path: str, body: dict | None = None, expect: tuple[int, ...] = (200, 201)) -> dict:
        response = self.http.request(method, self.base + path, json=body, timeout=30)
        if response.status_code not in expect:
            raise RuntimeError(f"{method} {path} answered {response.status_code}: {response.text}")
        return response.json()

    def order(self, event_id: str, kind: str, at: datetime, order_id: str, member: str, amount: int,
              currency: str = "CNY", refund: int | None = None) -> tuple[int, dict]:
        order = {"order_id": order_id, "member_id": member, "amount_minor": amount, "currency": currency}
        if refund is not None:
            order["refund_amount_minor"] = refund
        raw = json.dumps({"event_id": event_id, "type": kind, "occurred_at": at.isoformat(), "order": order}).encode()
        response = self.http.post(self.base + "/webhooks/orders", data=raw, timeout=30, headers={
            "Content-Type": "application/json", "X-Signature": sign_order_body(self.secret, raw, int(time.time()))})
        return response.status_code, response.json()


def run(base_url: str, out: Callable[[str], None] = print) -> None:
    """Tell the demo story against the local stack at `base_url`."""
    s = Story(base_url, out)
    now = datetime.now(SHANGHAI).replace(second=0, microsecond=0)
    first = (now - timedelta(days=360)).replace(hour=14, minute=3)
    out("")
    out("Demo story: a member's year in points (every step is an HTTP call to " + s.base + ")")
    out("")
    anonymous = requests.get(s.base + "/members/ana/points", timeout=30)
    member_only = s.http.post(s.base + "/_local/token", json={"subject": "shop-backend",
                                                               "scopes": ["loyalty/members.read"]}, timeout=30).json()
    forbidden = requests.post(s.base + "/members/ana/adjustments", timeout=30,
                              json={"points": 1000, "reason": "free points", "idempotency_key": "x"},
                              headers={"Authorization": f"Bearer {member_only['access_token']}"})
    s.say(first - timedelta(minutes=6), f"no token: GET /members/ana/points -> {anonymous.status_code}; a backend token "
                                        f"with members.read only: POST .../adjustments -> {forbidden.status_code}")
    s.call("PUT", "/members/ana", {"name": "Ana", "phone": "+85291234567", "locale": "zh-HK",
                                    "time_zone": "Asia/Hong_Kong", "preferred_channels": ["whatsapp", "sms"]})
    s.say(first - timedelta(minutes=5), "Ana joins: PUT /members/ana (zh-HK, WhatsApp then SMS)")
    s.call("PUT", "/members/ana/consents/whatsapp", {"status": "opted_in", "source": "checkout_checkbox",
                                                     "at": (first - timedelta(minutes=4)).isoformat()})
    s.say(first - timedelta(minutes=4), "Ana ticks 'send me WhatsApp updates' at checkout: consent recorded")

    _, paid = s.order("evt-A1001-paid", "order.paid", first, "A1001", "ana", 123450, "HKD")
    milestone = paid["points"] - 1254   # 1,234 for HK$1,234.50, +20 over HK$100: the rest is the first-order milestone
    s.say(first, f"order A1001 paid, HK$1,234.50  -> {paid['points']:+} points (1 per HK$1, +20 over HK$100"
                 f"{f', +{milestone} for a first order' if milestone else ''}), balance {paid['balance']}")
    status, again = s.order("evt-A1001-paid", "order.paid", first, "A1001", "ana", 123450, "HKD")
    s.say(first, f"the order system retries the same callback -> {status}, {again['points']:+} again in the answer, "
                 f"balance still {again['balance']}: credited once")
    status, clash = s.order("evt-A1001-paid", "order.paid", first, "A1001", "ana", 999900, "HKD")
    s.say(first, f"same event id, different amount -> {status}: {clash['message']}")

    second = now - timedelta(days=20)
    _, paid2 = s.order("evt-A1002-paid", "order.paid", second, "A1002", "ana", 8800, "HKD")
    s.say(second, f"order A1002 paid, HK$88.00  -> {paid2['points']:+}, balance {paid2['balance']}")
    _, refund = s.order("evt-A1002-refund-1", "order.refunded", second + timedelta(days=2), "A1002", "ana", 8800,
                        "HKD", refund=4000)
    s.say(second + timedelta(days=2), f"HK$40.00 of A1002 refunded -> {refund['points']:+} (in proportion), "
                                      f"balance {refund['balance']}")

    redemption = s.call("POST", "/members/ana/redemptions", {"item_id": "coupon-10", "idempotency_key": "ana-r1"})
    s.say(now, f"Ana redeems '10 off your next order' for {redemption['points']} points -> code {redemption['code']}, "
               f"balance {redemption['balance']} (taken from the lot that expires first)")
    points = s.call("GET", "/members/ana/points")
    for item in points["expiring"]:
        s.say(now, f"  {item['points']:>5} points expire on {item['date']}")

    _, bob = s.order("evt-B77-paid", "order.paid", now - timedelta(days=3), "B77", "bob", 600000)
    s.call("POST", "/members/bob/redemptions", {"item_id": "coupon-50", "idempotency_key": "bob-r1"})
    _, cancel = s.order("evt-B77-cancelled", "order.cancelled", now, "B77", "bob", 600000)
    s.say(now, f"Bob earns {bob['points']}, spends 4500 on a coupon, then his order is cancelled -> "
               f"{cancel['points']:+}: balance {cancel['balance']} (a debt his next points settle first)")

    _tiers(s, now)
    _engagement(s, now)
    _messaging(s, first, now)

    expiry_day = first.replace(year=first.year + 1) + timedelta(days=1)
    run_at = expiry_day.replace(hour=0, minute=5)
    summary = s.call("POST", "/_local/schedules/ExpiryScanFunction", {"time": run_at.isoformat()})
    result = summary.get("result", {})
    s.say(run_at, f"nightly expiry (EventBridge schedule, run on demand): {result.get('lots_expired')} lot(s), "
                  f"{result.get('points_expired')} points expired")
    again = s.call("POST", "/_local/schedules/ExpiryScanFunction", {"time": run_at.isoformat()})
    s.say(run_at, f"the same night run again -> {again.get('result', {}).get('points_expired')} points: never twice")
    points = s.call("GET", "/members/ana/points")
    s.say(run_at, f"Ana's balance {points['balance']}; next expiry "
                  f"{points['expiring'][0]['date'] if points['expiring'] else '-'}")
    ledger = s.call("GET", "/members/ana/ledger?limit=10")
    out("")
    out("  Ana's ledger (GET /members/ana/ledger), newest first:")
    for entry in ledger["entries"]:
        out(f"    {entry['type']:<9}{entry['amount']:>+7}  balance {entry['balance_after']:>6}  {entry['reason']}")
    _challenge(s)
    out("")
    from loyalty import wiring
    from loyalty.services.queries import reconcile
    checked, bad = reconcile(wiring.ledger_store())
    out(f"  reconcile: {checked} members, balance = sum of entries = sum of lots - debt: "
        f"{'ok' if not bad else f'{len(bad)} MISMATCHED'}")
    out("")


def _tiers(s: Story, now: datetime) -> None:
    """Dee crosses silver with an order (E7): the tier moves with it, she is told, her
    catalog shows what her tier may see (E10)."""
    s.call("PUT", "/members/dee", {"name": "Dee", "phone": "+85291230077", "locale": "en",
                                    "time_zone": "Asia/Hong_Kong", "preferred_channels": ["whatsapp"]})
    s.call("PUT", "/members/dee/consents/whatsapp", {"status": "opted_in", "source": "checkout_checkbox",
                                                     "at": (now - timedelta(days=30)).isoformat()})
    s.order("evt-D1-paid", "order.paid", now - timedelta(days=10), "D1", "dee", 150000)
    _, crossed = s.order("evt-D2-paid", "order.paid", now - timedelta(days=1), "D2", "dee", 60000)
    tier = s.call("GET", "/members/dee")["tier"]
    s.say(now - timedelta(days=1), f"Dee's order D2 takes her 90 days to {tier['qualifying_points']} points -> tier "
                                   f"{tier['name']} at once (next: {tier['next']['name']}, "
                                   f"{tier['next']['points_needed']} to go), tier-up notice queued")
    _, third = s.order("evt-D3-paid", "order.paid", now, "D3", "dee", 10000)
    s.say(now, f"Dee's next order earns {third['points']} (silver's x1.1 as its own entry)")
    for who in ("dee", "bob"):
        seen = s.call("GET", f"/catalog?member_id={who}")
        s.say(now, f"GET /catalog?member_id={who} ({seen['tier']}): "
                   f"{', '.join(i['item_id'] for i in seen['items'])}")
    bob = s.call("GET", "/members/bob")["tier"]
    s.say(now, f"Bob's cancelled order left his 90 days ({bob['qualifying_points']} points): he stays "
               f"{bob['name']} until the nightly review decides, with a warning first when there is time")


def _engagement(s: Story, now: datetime) -> None:
    """Ana refers Eve (E3), Eve earns beyond orders (E1, E2), an operator decides a review,
    and Eve's first order pays Ana's referral reward (E3)."""
    s.out("")
    joined = now - timedelta(hours=30)   # activities are told within 48 h of the service's clock
    s.call("PUT", "/members/eve", {"name": "Eve", "phone": "+85291230088", "locale": "en",
                                    "time_zone": "Asia/Hong_Kong", "preferred_channels": ["whatsapp"],
                                    "referrer": "ana"})
    eve = s.call("GET", "/members/eve/points")
    s.say(joined, f"Eve joins with Ana as her referrer: PUT /members/eve -> +50 each (Eve's balance "
                  f"{eve['balance']})")
    poll = s.call("POST", "/members/eve/activities", {"activity_id": "eve-poll-1", "type": "poll",
                                                     "occurred_at": joined.isoformat()})
    s.say(joined, f"Eve answers a poll: POST /members/eve/activities -> {poll['status']} {poll['points']:+}, "
                  f"balance {poll['balance']}")
    again = s.call("POST", "/members/eve/activities", {"activity_id": "eve-poll-1", "type": "poll",
                                                      "occurred_at": joined.isoformat()})
    s.say(joined, f"the app sends the same activity again -> {again['status']} {again['points']:+}, balance "
                  f"{again['balance']}: credited once")
    post = s.call("POST", "/members/eve/activities", {"activity_id": "eve-ugc-1", "type": "ugc",
                                                     "occurred_at": joined.isoformat()})
    pending = s.call("GET", "/members/eve/points")["pending"]
    s.say(joined, f"Eve posts a photo of her order (ugc) -> {post['status']}: {post['reason']}; "
                  f"{pending} points pending, not spendable")
    queue = s.call("GET", "/reviews?status=open")["reviews"]
    review = next(r for r in queue if r["member_id"] == "eve")
    decided = s.call("POST", f"/reviews/{review['review_id']}", {"decision": "approve", "note": "nice photo"})
    s.say(joined + timedelta(hours=3), f"an operator reads GET /reviews and approves it -> {decided['status']}, "
                                       f"Eve's balance {s.call('GET', '/members/eve/points')['balance']}")
    _, first = s.order("evt-E1-paid", "order.paid", now - timedelta(days=1), "E1", "eve", 30000, "HKD")
    ana = s.call("GET", "/members/ana/points")
    s.say(now - timedelta(days=1), f"Eve's first order, HK$300 -> {first['points']:+} (the order and the "
                                   f"first-order milestone), and Ana's referral reward: Ana's balance "
                                   f"{ana['balance']}")


def _challenge(s: Story) -> None:
    """A week of a 90-day check-in challenge (seed 002) in simulated time, each day a move
    of the stack's clock to 10:01 (the calendar plans at 00:20, sends at 10:00): the
    invitation held for its window, 同意 on WhatsApp and the app, a task a weekday, the
    Friday summary, check-ins by 签到 and through the app, a missed day, a caring nudge,
    the week's draw run and verified, the leaderboard."""
    s.out("")
    clock = _clock(s)   # where the story's schedules left the stack's clock
    eve = clock.astimezone(SHANGHAI).date()
    start = eve + timedelta(days=1)
    challenge = s.call("PUT", "/challenges/demo-q", {
        "name": "90 天打卡挑战", "starts_on": start.isoformat(), "days": 90,
        "draws": [{"draw_id": "week-1", "on": (start + timedelta(days=6)).isoformat(), "winners": 1}]})
    s.say(clock, f"an operator puts a 90-day check-in challenge from {start}: draw week-1's commitment "
                 f"{challenge['draws'][0]['commitment'][:16]}... is public before the draw")
    people = {"lin": ("Lin", "+8613912340001", "zh-CN", "whatsapp"), "kai": ("Kai", "+8613912340002", "en", "sms")}
    for member, (name, phone, locale, channel) in people.items():
        s.call("PUT", f"/members/{member}", {"name": name, "phone": phone, "locale": locale,
                                              "time_zone": "Asia/Shanghai", "preferred_channels": [channel]})
        s.call("PUT", f"/members/{member}/consents/{channel}", {"status": "opted_in", "source": "checkout_checkbox",
                                                                "at": (clock - timedelta(days=30)).isoformat()})
    s.call("POST", "/challenges/demo-q/invitations", {"member_ids": list(people)})
    s.say(clock, "invited: POST /challenges/demo-q/invitations (Lin on WhatsApp, Kai on SMS); it is past "
                 "midnight, so the invitation waits for its window")
    morning = _move(s, clock.astimezone(SHANGHAI).replace(hour=12, minute=5))
    for sent in _sent(s, people):
        s.say(morning, f"  -> {sent}")
    lin_phone = people["lin"][1].lstrip("+")
    s.call("POST", "/_local/inbound", {"channel": "whatsapp", "from": lin_phone, "text": "同意"})
    s.call("POST", "/challenges/demo-q/enrolments", {"member_id": "kai", "agreed_at": morning.isoformat(),
                                                     "source": "app", "proof": "member app: data-use notice 002"})
    s.say(morning, "Lin replies 同意 on WhatsApp, Kai agrees in the member app: both enrolled, each agreement "
                   "kept as consent with its proof")
    for n in range(1, 8):
        at = _move(s, _at(start + timedelta(days=n - 1), 10, 1))
        s.out(f"  day {n}, {at:%a %m-%d}")
        for sent in _sent(s, people):
            s.say(at, f"  calendar -> {sent}")
        s.call("POST", "/_local/inbound", {"channel": "whatsapp", "from": lin_phone, "text": "签到"})
        s.call("POST", "/_local/drain")
        reply = next((m.get("text") for m in s.call("GET", "/_local/outbox")
                      if m.get("to") == lin_phone and "/90" in (m.get("text") or "")), "")
        s.say(at, f"Lin sends 签到 on WhatsApp -> \"{reply}\"")
        if n in (3, 4, 5):
            s.say(at, "Kai does not check in")
            continue
        answer = s.call("POST", "/members/kai/checkins", {"at": at.replace(minute=30).isoformat()})
        s.say(at.replace(minute=30), f"Kai checks in in the app: streak {answer['streak']}, +{answer['points']}")
    after = _move(s, _at(start + timedelta(days=7), 0, 30))
    draw = s.call("POST", "/challenges/demo-q/draws/week-1/run")
    entrants = s.call("GET", "/challenges/demo-q/draws/week-1/entrants")
    from loyalty.engagement import draws
    problems = draws.verify(draw, entrants["entrant_ids"])
    s.say(after, f"draw week-1 (POST .../draws/week-1/run): {', '.join(draw['winners'])} of {draw['entrants']} "
                 f"entrants; the seed it reveals hashes to the commitment, and the winners recomputed from the "
                 f"record and the entrant list (make verify-draw) -> {'; '.join(problems) or 'OK'}")
    board = s.call("GET", "/challenges/demo-q/leaderboard?period=all&limit=10")["entries"]
    s.say(after, "leaderboard: " + ", ".join(f"{e['rank']}. {e['name']} {e['points']}" for e in board))


def _at(day: date, hour: int, minute: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SHANGHAI)


def _clock(s: Story) -> datetime:
    health = s.http.get(s.base + "/_local/health", timeout=30).json()
    return datetime.fromisoformat(health["clock"].replace("Z", "+00:00")) if health.get("clock") else \
        datetime.now(timezone.utc)


def _move(s: Story, at: datetime) -> datetime:
    """The clock moves to `at`: what the schedules would have run meanwhile runs (the
    calendar at 00:20, the release of what waited for its hour), the outbox emptied first."""
    s.http.delete(s.base + "/_local/outbox", timeout=30)
    s.call("POST", "/_local/schedules/ReleaseDeferredFunction", {"time": at.isoformat()})
    return at


def _sent(s: Story, people: dict) -> list[str]:
    """The challenge's messages in the outbox, one line each."""
    names = {phone[-10:]: name for name, phone, *_ in people.values()}   # Aliyun's numbers have no +86
    lines = []
    for m in s.call("GET", "/_local/outbox"):
        name = names.get((m.get("to") or "")[-10:])
        variables = m.get("variables") or []
        text = m.get("text") or " / ".join(str(v) for v in (variables.values() if isinstance(variables, dict)
                                                             else variables))
        if name and text:
            lines.append(f"{name} on {m['channel']} via {m['provider']}"
                         f"{' (' + m['template'] + ')' if m.get('template') else ''}: {text[:90]}")
    return lines


def _messaging(s: Story, first: datetime, now: datetime) -> None:
    """Reminders on all three channels, a receipt, a 我的积分 reply, a STOP."""
    s.out("")
    s.call("PUT", "/members/chen", {"name": "陈", "wechat_openid": "oChenDemo000000000001", "locale": "zh-CN",
                                     "preferred_channels": ["wechat"]})
    s.call("PUT", "/members/chen/consents/wechat", {"status": "opted_in", "source": "wechat_subscribe_popup",
                                                    "at": first.isoformat()})
    s.call("PUT", "/members/li", {"name": "李", "phone": "+8613800138000", "locale": "zh-CN",
                                   "preferred_channels": ["sms"]})
    s.call("PUT", "/members/li/consents/sms", {"status": "opted_in", "source": "checkout_checkbox",
                                               "at": first.isoformat()})
    s.order("evt-C1-paid", "order.paid", first, "C1", "chen", 88800)
    s.order("evt-L1-paid", "order.paid", first, "L1", "li", 66600)
    s.say(first, "Chen (WeChat) and Li (SMS, +86) also joined and bought on Ana's first day")
    s.call("POST", "/_local/drain")
    s.http.delete(s.base + "/_local/outbox", timeout=30)

    expires = first.replace(year=first.year + 1)
    night = (expires - timedelta(days=3)).replace(hour=12, minute=5)
    s.call("POST", "/_local/schedules/ReminderScanFunction", {"time": night.isoformat()})
    s.say(night, "reminder planning (3 days before): one job per member from the expiry index")
    for sent in s.call("GET", "/_local/outbox"):
        what = sent.get("template") or (sent.get("text") or "")[:40]
        s.say(night, f"  -> {sent['channel']:<8} via {sent['provider']:<8} to {sent['to'][:4]}***: {what} "
                     f"{sent.get('variables')}")
    reminder = None
    for _ in range(100):  # the sandbox posts its signed receipts back a moment later
        ana = s.call("GET", "/members/ana/messages")["messages"]
        reminder = next((m for m in ana if m["kind"] == "reminder"), None)
        if reminder and reminder["status"] == "delivered":
            break
        time.sleep(0.1)
    if reminder:
        s.say(night, f"Ana's reminder: {' -> '.join(h['status'] for h in reminder['history'])} "
                     f"(receipts from the provider, signed)")
    reply = s.call("POST", "/_local/inbound", {"channel": "wechat", "from": "oChenDemo000000000001",
                                                "text": "我的积分"})
    text = reply.get("body", "")
    start = text.find("<Content><![CDATA[")
    s.say(night, "Chen sends 我的积分 on WeChat -> " +
          (text[start + 18:text.find("]]>", start)] if start >= 0 else text[:80]))
    s.call("POST", "/_local/inbound", {"channel": "whatsapp", "from": "+85291234567", "text": "STOP"})
    consent = s.call("GET", "/members/ana/consents/whatsapp")
    s.say(night, f"Ana replies STOP on WhatsApp -> consent {consent['status']} at once, confirmed once")
    s.call("POST", "/_local/drain")
    s.http.delete(s.base + "/_local/outbox", timeout=30)
    day = expires.replace(hour=9, minute=0)
    s.call("POST", "/_local/schedules/ReminderScanFunction", {"time": day.isoformat()})
    s.call("POST", "/_local/schedules/ReleaseDeferredFunction", {"time": day.replace(hour=12).isoformat()})
    channels = sorted({m["channel"] for m in s.call("GET", "/_local/outbox")})
    s.say(day, f"on the day: planned at 09:00, held for the 12:00 window, sent on {', '.join(channels)}; "
               f"nothing to Ana after her STOP")
