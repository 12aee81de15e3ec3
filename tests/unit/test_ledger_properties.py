"""Random sequences of earn / refund / cancel / redeem / cancel-redemption / expire /
adjust / tier review keep the ledger's invariant: balance = sum of entries = sum of lots - debt.
With tiers (E7): orders earn the tier's multiplier, refunds lower qualifying points, a
member above the base tier is always in the review index, a review leaves nobody above
the tier their window reaches, and a per-member limit is never exceeded (E10).

Time also goes backwards: callers whose clocks are behind (by up to three days), past
nights run again, and nights missed in an outage run late. A night run for a time before
the member's newest entry is what makes the expiry's blind write lose and the member be
read again (its re-read path); the fixed-seed test at the end proves the examples take
that path (in the runs measured, 10-40% of the examples do)."""
import os
from datetime import timedelta

import hypothesis
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from loyalty.adapters.memory import MemoryLedgerStore
from loyalty.domain import parse_time
from loyalty.errors import Conflict, NotFound
from loyalty.rules import build_rules
from loyalty.services.adjustments import adjust_points
from loyalty.services.expiry import expire_due_lots
from loyalty.services.orders import OrderEvent, handle_order_event
from loyalty.services.queries import reconcile
from loyalty.engagement.tiers import local_day, qualifying_points
from loyalty.services.redemptions import cancel_redemption, redeem
from loyalty.services.tier_review import review_tiers

MEMBERS = ["alice", "bob"]
START = parse_time("2026-01-01T09:00:00+08:00")
MAX_SKEW = timedelta(days=3)   # how far behind a caller's clock may be


class LedgerMachine(RuleBasedStateMachine):
    re_reads = 0   # members the expiry had to read again, across every example run

    @initialize(policy=st.sampled_from(["allow", "clamp"]))
    def setup(self, policy):
        self.store = MemoryLedgerStore()
        self.rules = build_rules({"refunds": {"negative_balance": policy}})
        self.now = self.latest = START      # `latest`: the furthest any clock has been
        self.counter = 0
        self.orders: dict[str, tuple[str, int, int]] = {}  # order -> member, amount, refunded
        self.redemptions: list[tuple[str, str]] = []
        self.swept_until = START - timedelta(days=400)  # the latest time a nightly run has swept to
        self.reviewed_until = START - MAX_SKEW           # the latest tier review

    def _id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    @rule(days=st.integers(0, 120) | st.integers(300, 400))  # now and then long enough for lots to expire
    def time_passes(self, days):
        self.now = max(self.now, self.latest - MAX_SKEW) + timedelta(days=days, minutes=1)
        self.latest = max(self.latest, self.now)

    @rule(hours=st.integers(1, 72))
    def clock_goes_back(self, hours):
        """The next callers' clocks are behind the time already recorded."""
        self.now = max(self.now - timedelta(hours=hours), self.latest - MAX_SKEW)

    @rule(member=st.sampled_from(MEMBERS), amount=st.integers(0, 300_000), back_days=st.integers(0, 400))
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

    @rule(member=st.sampled_from(MEMBERS),
          item=st.sampled_from(["coupon-10", "free-shipping", "coffee-mug", "birthday-cake", "vip-lounge-pass"]))
    def redeem_item(self, member, item):
        before = self.store.load_account(member, with_lots=False).balance
        try:
            redemption, _ = redeem(self.store, self.rules, member, item, self._id("k"), self.now)
        except (Conflict, NotFound):
            assert self.store.load_account(member, with_lots=False).balance == before
            return
        self.redemptions.append((member, redemption.redemption_id))

    @precondition(lambda self: self.redemptions)
    @rule(data=st.data())
    def cancel(self, data):
        member, redemption_id = data.draw(st.sampled_from(self.redemptions))
        cancel_redemption(self.store, self.rules, member, redemption_id, "test", self.now)

    def _expire(self, at):
        # nights are skipped at random here: sweep back to the previous run, as an
        # operator does after an outage (and past what a clock behind may have put back)
        catch_up = max(0, (at - self.swept_until).days) + 2 + MAX_SKEW.days
        summary = expire_due_lots(self.store, at, 4, catch_up)
        self.swept_until = max(self.swept_until, at)
        if summary.retried_members:
            hypothesis.event("expiry: a member read again after the blind write lost")
            LedgerMachine.re_reads += summary.retried_members
        for member in MEMBERS:
            for lot in self.store.load_account(member).lots:
                assert not (lot.expires_at <= at and lot.remaining > 0)

    @rule()
    def nightly_expiry(self):
        self._expire(self.now)

    @rule(days_back=st.integers(1, 60))
    def rerun_a_past_night(self, days_back):
        """An operator runs the expiry again for an earlier date."""
        self._expire(self.now - timedelta(days=days_back))

    @precondition(lambda self: self.now - self.swept_until > timedelta(days=1))
    @rule(share=st.floats(0, 1))
    def run_a_missed_night(self, share):
        """After an outage, an operator runs one of the nights missed since the last run,
        while members have kept earning and spending since."""
        self._expire(self.swept_until + (self.now - self.swept_until) * share)

    @rule(member=st.sampled_from(MEMBERS), points=st.integers(-2000, 2000).filter(bool))
    def adjust(self, member, points):
        try:
            adjust_points(self.store, self.rules, member, points, "test", "op", self._id("a"), "h", self.now)
        except Conflict:
            assert points < 0

    @rule()
    def nightly_tier_review(self):
        """Tonight's review, at the furthest clock (every bucket is on or before its day),
        reading back far enough for every check day a skewed clock may have set."""
        class Queues:
            sent = []

            def send(self, name, body, delay_s=0):
                self.sent.append(body)

        day = local_day(self.latest, self.rules)
        catch_up = max(0, (self.latest - self.reviewed_until).days) + 2 + MAX_SKEW.days
        review_tiers(self.store, Queues(), self.rules, self.latest, 4, catch_up_days=catch_up)
        self.reviewed_until = self.latest
        tiers = self.rules.tiers
        for member in MEMBERS:
            state = self.store.load_account(member, with_lots=False).engagement.tier
            assert state.check_on is None or state.check_on > day.isoformat()
            assert tiers.rank(state.name) <= tiers.rank(tiers.for_points(qualifying_points(state, day, self.rules)).name)

    @invariant()
    def tiers_are_reviewable_and_limits_kept(self):
        if not hasattr(self, "store"):
            return
        for member in MEMBERS:
            state = self.store.load_account(member, with_lots=False).engagement.tier
            assert all(n > 0 for _, n in state.qualifying)
            assert len(state.qualifying) <= self.rules.tiers.window_days + MAX_SKEW.days + 1
            if self.rules.tiers.rank(state.name) > 0:   # above the base tier: the nightly review will see it
                assert state.check_on is not None and state.check_on <= state.review_on
            live = [r for r in self.store.list_redemptions(member)
                    if r.item_id == "birthday-cake" and r.status != "cancelled"]
            assert len(live) == dict(state.redeemed).get("birthday-cake", 0) <= 1

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
            if account.debt:  # a debt means nothing is left to spend (as of the latest clock)
                assert not any(lot.spendable(self.latest) for lot in account.lots)
            if self.rules.refunds.negative_balance == "clamp":
                assert account.balance >= 0


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(max_examples=int(os.environ.get("LEDGER_EXAMPLES", "80")), stateful_step_count=40, deadline=None,
                                      suppress_health_check=[HealthCheck.too_slow])


def test_the_examples_take_the_expirys_re_read_path():
    """A fixed-seed run of 100 examples, the invariant checked after every step: the
    expiry's blind write loses (a member's entry is later than the night being run) and
    the member is read again, more than a few times."""
    LedgerMachine.re_reads = 0
    run_state_machine_as_test(LedgerMachine, settings=settings(
        max_examples=100, stateful_step_count=40, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow]))
    assert LedgerMachine.re_reads >= 3
