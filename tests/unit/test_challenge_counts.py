"""A paid order or a redemption of an enrolled member, during a challenge they are in,
counts in the challenge's stats: a ParticipantCredit of 0 points in the Change that
records it (the challenge store persists Change.participants)."""
from dataclasses import replace

import pytest

from loyalty.adapters.memory import MemoryLedgerStore
from loyalty.domain import Account, parse_time
from loyalty.engagement.challenges import ParticipantCredit
from loyalty.engagement.state import CheckinState, Engagement
from loyalty.rules import build_rules
from loyalty.services.adjustments import adjust_points
from loyalty.services.orders import OrderEvent, handle_order_event
from loyalty.services.redemptions import redeem

RULES = build_rules({"catalog": [{"item_id": "coupon", "name": "Coupon", "points": 100}]})
ENROLLED = (("q4", "2026-11-01", "2027-01-29", 5), ("old", "2026-01-01", "2026-03-31", 2))
T0 = parse_time("2026-11-20T14:00:00+08:00")


@pytest.fixture
def store():
    store = MemoryLedgerStore()
    store.accounts["m1"] = Account(member_id="m1", engagement=Engagement(checkin=CheckinState(challenges=ENROLLED)))
    store.committed = []
    real = store.commit

    def spy(change):
        store.committed.append(change)
        real(change)

    store.commit = spy
    return store


def paid(event_id, order_id, at=T0, amount=10000):
    return OrderEvent(event_id, "order.paid", at, order_id, "m1", amount, "CNY", None, "h-" + event_id)


def test_a_paid_order_during_an_enrolled_challenge_counts_one_order(store):
    handle_order_event(store, RULES, paid("e1", "o1"), T0)
    (change,) = store.committed
    assert change.participants == (ParticipantCredit(challenge_id="q4", member_id="m1", shard=5, points=0,
                                                     month="2026-11", orders=1),)


def test_an_order_outside_the_challenge_or_paid_again_counts_nothing(store):
    handle_order_event(store, RULES, paid("e1", "o1", at=parse_time("2026-10-31T23:00:00+08:00")), T0)
    handle_order_event(store, RULES, paid("e2", "o2"), T0)
    handle_order_event(store, RULES, paid("e3", "o2"), T0)   # the same order under another event: earns once
    assert [len(c.participants) for c in store.committed] == [0, 1, 0]


def test_a_refund_takes_no_order_back(store):
    handle_order_event(store, RULES, paid("e1", "o1"), T0)
    refund = OrderEvent("e2", "order.refunded", T0, "o1", "m1", 10000, "CNY", 10000, "h-e2")
    handle_order_event(store, RULES, refund, T0)
    assert store.committed[-1].participants == ()


def test_a_member_in_no_challenge_has_no_participant_credit():
    store = MemoryLedgerStore()
    handle_order_event(store, RULES, paid("e1", "o1"), T0)
    assert store.load_account("m1", with_lots=False).balance > 0   # credited as ever


def test_a_redemption_during_the_challenge_counts_one_redemption(store):
    adjust_points(store, RULES, "m1", 500, "funds", "ops", "f1", "h1", T0)
    redeem(store, RULES, "m1", "coupon", "k1", T0)
    change = store.committed[-1]
    assert change.redemption is not None
    assert change.participants == (ParticipantCredit(challenge_id="q4", member_id="m1", shard=5, points=0,
                                                     month="2026-11", redemptions=1),)
    later = parse_time("2027-02-01T10:00:00+08:00")
    redeem(store, RULES, "m1", "coupon", "k2", later)
    assert store.committed[-1].participants == ()
