"""Random sequences of earn / refund / cancel / redeem / cancel-redemption / expire /
adjust keep the ledger's invariant: balance = sum of entries = sum of lots - debt."""
import os
from datetime import timedelta

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from loyalty.adapters.memory import MemoryLedgerStore
from loyalty.domain import parse_time
from loyalty.errors import Conflict
from loyalty.rules import build_rules
from loyalty.services.adjustments import adjust_points
from loyalty.services.expiry import expire_due_lots
from loyalty.services.orders import OrderEvent, handle_order_event
from loyalty.services.queries import reconcile
from loyalty.services.redemptions import cancel_redemption, redeem

MEMBERS = ["alice", "bob"]
START = parse_time("2026-01-01T09:00:00+08:00")


class LedgerMachine(RuleBasedStateMachine):
    @initialize(policy=st.sampled_from(["allow", "clamp"]))
    def setup(self, policy):
        self.store = MemoryLedgerStore()
        self.rules = build_rules({"refunds": {"negative_balance": policy}})
        self.now = START
        self.counter = 0
        self.orders: dict[str, tuple[str, int, int]] = {}  # order -> member, amount, refunded
        self.redemptions: list[tuple[str, str]] = []
        self.last_expiry = START - timedelta(days=400)

    def _id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    @rule(days=st.integers(0, 120))
    def time_passes(self, days):
        self.now += timedelta(days=days, minutes=1)

    @rule(member=st.sampled_from(MEMBERS), amount=st.integers(0, 300_000), back_days=st.integers(0, 30))
    def pay(self, member, amount, back_days):
        order_id = self._id("o")
        event = OrderEvent(self._id("e"), "order.paid", self.now - timedelta(days=back_days), order_id, member,
                           amount, "CNY", None, self._id("h"))
        result = handle_order_event(self.store, self.rules, event, self.now)
        assert result["points"] >= 0
        self.orders[order_id] = (member, amount, 0)

    @precondition(lambda self: self.orders)
    @rule(data=st.data(), full=st.booleans())
    def refund(self, data, full):
        order_id = data.draw(st.sampled_from(sorted(self.orders)))
        member, amount, refunded = self.orders[order_id]
        if full or amount - refunded <= 0:
            event = OrderEvent(self._id("e"), "order.cancelled", self.now, order_id, member, amount, "CNY", None,
                               self._id("h"))
            self.orders[order_id] = (member, amount, amount)
        else:
            part = data.draw(st.integers(1, amount - refunded))
            event = OrderEvent(self._id("e"), "order.refunded", self.now, order_id, member, amount, "CNY", part,
                               self._id("h"))
            self.orders[order_id] = (member, amount, refunded + part)
        result = handle_order_event(self.store, self.rules, event, self.now)
        assert result["points"] <= 0

    @rule(member=st.sampled_from(MEMBERS), item=st.sampled_from(["coupon-10", "free-shipping", "coffee-mug"]))
    def redeem_item(self, member, item):
        before = self.store.load_account(member, with_lots=False).balance
        try:
            redemption, _ = redeem(self.store, self.rules, member, item, self._id("k"), self.now)
        except Conflict:
            assert self.store.load_account(member, with_lots=False).balance == before
            return
        self.redemptions.append((member, redemption.redemption_id))

    @precondition(lambda self: self.redemptions)
    @rule(data=st.data())
    def cancel(self, data):
        member, redemption_id = data.draw(st.sampled_from(self.redemptions))
        cancel_redemption(self.store, self.rules, member, redemption_id, "test", self.now)

    @rule()
    def nightly_expiry(self):
        # nights are skipped at random here: sweep back to the previous run, as an
        # operator does after an outage
        catch_up = (self.now - self.last_expiry).days + 2
        expire_due_lots(self.store, self.now, 4, catch_up)
        self.last_expiry = self.now
        for member in MEMBERS:
            for lot in self.store.load_account(member).lots:
                assert not (lot.expires_at <= self.now and lot.remaining > 0)

    @rule(member=st.sampled_from(MEMBERS), points=st.integers(-2000, 2000).filter(bool))
    def adjust(self, member, points):
        try:
            adjust_points(self.store, self.rules, member, points, "test", "op", self._id("a"), "h", self.now)
        except Conflict:
            assert points < 0

    @invariant()
    def balance_equals_entries_equals_lots(self):
        if not hasattr(self, "store"):
            return
        _, bad = reconcile(self.store)
        assert bad == []
        for member in MEMBERS:
            account = self.store.load_account(member)
            assert all(lot.remaining >= 0 for lot in account.lots)
            assert account.debt >= 0
            if account.debt:  # a debt means nothing is left to spend
                assert not any(lot.spendable(self.now) for lot in account.lots)
            if self.rules.refunds.negative_balance == "clamp":
                assert account.balance >= 0


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=int(os.environ.get("LEDGER_EXAMPLES", "80")), stateful_step_count=40, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])
