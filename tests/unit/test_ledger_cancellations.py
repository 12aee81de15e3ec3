"""How the DynamoDB adapter reads a cancelled transaction, for every transaction the
services make: each item's cancellation reason, one at a time, mapped to the error the
services act on. A stub botocore client answers as DynamoDB would (no network); the
transactions are the ones the services really commit (recorded over the in-memory fake).

  ConditionalCheckFailed on the idempotency record or a new redemption / dispute: a
    duplicate (AlreadyApplied); on the stock: out of stock (Conflict); on the account's
    version or last entry, a lot, the order, a redemption's or dispute's status: the
    record moved since it was read (ConcurrentUpdate: read again and retry).
  ThrottlingError, TransactionConflict, ProvisionedThroughputExceeded: Transient (the
    caller or the queue retries later), never a duplicate.
The profile write's reasons are in test_contacts.py."""
from __future__ import annotations

from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from loyalty.adapters.ledger import DynamoLedgerStore
from loyalty.adapters.ledger.orders import IdempotencyItem
from loyalty.adapters.memory import MemoryLedgerStore
from loyalty.domain import parse_time
from loyalty.errors import AlreadyApplied, ConcurrentUpdate, Conflict, LoyaltyError, Transient
from loyalty.records import Dispute
from loyalty.rules import build_rules
from loyalty.services.adjustments import adjust_points
from loyalty.services.expiry import expire_due_lots
from loyalty.services.orders import OrderEvent, handle_order_event
from loyalty.services.redemptions import cancel_redemption, fulfil_redemption, redeem
from tests.orders_only import ORDERS_ONLY
from tests.unit.dynamo_stub import Answer, StubDynamo

T0 = parse_time("2026-03-10T10:00:00+08:00")
RULES = build_rules({"catalog": [{"item_id": "rare", "name": "Rare", "points": 10, "stock": 5},
                                 {"item_id": "mug", "name": "Mug", "points": 20, "fulfilment": "pending"}],
                    **ORDERS_ONLY})
RETRY_LATER = ["ThrottlingError", "TransactionConflict", "ProvisionedThroughputExceeded"]


def paid(event_id: str, order_id: str, amount: int, at=T0) -> OrderEvent:
    return OrderEvent(event_id, "order.paid", at, order_id, "m1", amount, "CNY", None, "h-" + event_id)


class Recording(MemoryLedgerStore):
    """The fake, keeping every Change the services commit."""

    def __init__(self):
        super().__init__()
        self.changes = []

    def commit(self, change):
        super().commit(change)
        self.changes.append(change)


def credit(store):
    handle_order_event(store, RULES, paid("e1", "o1", 12345), T0)


def refund(store):
    credit(store)
    handle_order_event(store, RULES, OrderEvent("e2", "order.refunded", T0, "o1", "m1", 12345, "CNY", 5000, "h2"), T0)


def redemption(store):
    credit(store)
    redeem(store, RULES, "m1", "rare", "k1", T0)


def cancel(store):
    redemption(store)
    cancel_redemption(store, RULES, "m1", store.list_redemptions("m1")[0].redemption_id, "asked", T0)


def fulfil(store):
    credit(store)
    mug, _ = redeem(store, RULES, "m1", "mug", "k1", T0)
    fulfil_redemption(store, "m1", mug.redemption_id, T0)


def expiry(store):
    credit(store)
    expire_due_lots(store, T0 + timedelta(days=370), 4, 7)


def expiry_after_re_reading(store):
    """The member has an entry after the run's time: the blind write loses, the member
    is read again and the second write checks the account's version."""
    credit(store)
    adjust_points(store, RULES, "m1", 5, "late", "op", "a1", "h", T0 + timedelta(days=400))
    summary = expire_due_lots(store, T0 + timedelta(days=370), 4, 7)
    assert summary.retried_members == 1


def adjustment_up(store):
    adjust_points(store, RULES, "m1", 500, "goodwill", "op", "a1", "h1", T0)


def adjustment_down(store):
    credit(store)
    adjust_points(store, RULES, "m1", -20, "correction", "op", "a2", "h2", T0)


OPERATIONS = [credit, refund, redemption, cancel, fulfil, expiry, expiry_after_re_reading, adjustment_up,
              adjustment_down]


def committed(operation):
    """The last Change the operation commits."""
    store = Recording()
    operation(store)
    return store.changes[-1]


def kind_of(item: dict) -> str:
    [(_, body)] = item.items()
    key = body.get("Item") or body["Key"]
    pk, sk = key["PK"]["S"], key["SK"]["S"]
    for prefix, kind in (("IDEM#", "idempotency"), ("ORDER#", "order"), ("STOCK#", "stock")):
        if pk.startswith(prefix):
            return kind
    return {"PROFILE": "account", "LOT#": "lot", "REDEMPTION#": "redemption", "TX#": "entry"}[
        next(s for s in ("PROFILE", "LOT#", "REDEMPTION#", "TX#") if sk.startswith(s))]


def on_condition(kind: str, change) -> type[LoyaltyError]:
    """What a failed condition on an item of `kind` means."""
    if kind == "redemption":
        return AlreadyApplied if change.redemption_expected_status is None else ConcurrentUpdate
    return {"idempotency": AlreadyApplied, "stock": Conflict, "order": ConcurrentUpdate, "account": ConcurrentUpdate,
            "lot": ConcurrentUpdate}[kind]


def answering(reasons: list[str] | None = None, code: str = "TransactionCanceledException") -> StubDynamo:
    def answer(operation, params):
        assert operation == "TransactWriteItems"
        if reasons is None and code == "TransactionCanceledException":
            return {}
        raise Answer(code, **({"CancellationReasons": [{"Code": r} for r in reasons]} if reasons is not None else {}))
    return StubDynamo(answer)


def commit(dynamo: StubDynamo, change) -> None:
    DynamoLedgerStore("T", 4, client=dynamo.client).commit(change)


def sent(change) -> list[dict]:
    """The items of the transaction the adapter sends for `change`, in order."""
    dynamo = answering()
    commit(dynamo, change)
    [params] = dynamo.params("TransactWriteItems")
    return params["TransactItems"]


@pytest.fixture(scope="module", params=OPERATIONS, ids=lambda op: op.__name__)
def transaction(request):
    change = committed(request.param)
    return change, sent(change)


def test_each_condition_that_fails_is_read_by_its_item(transaction):
    change, items = transaction
    kinds = [kind_of(item) for item in items]
    checked = 0
    for i, (item, kind) in enumerate(zip(items, kinds)):
        [(_, body)] = item.items()
        if "ConditionExpression" not in body:   # entries, and stock given back: nothing to fail
            assert kind == "entry" or (kind == "stock" and change.stock.delta < 0)
            continue
        reasons = ["None"] * len(items)
        reasons[i] = "ConditionalCheckFailed"
        with pytest.raises(LoyaltyError) as caught:
            commit(answering(reasons), change)
        assert type(caught.value) is on_condition(kind, change), (i, kinds)
        checked += 1
    assert checked >= 2


@pytest.mark.parametrize("reason", RETRY_LATER)
def test_a_reason_to_retry_later_on_any_item_is_transient_never_a_duplicate(transaction, reason):
    change, items = transaction
    for i in range(len(items)):
        reasons = ["None"] * len(items)
        reasons[i] = reason
        with pytest.raises(Transient):
            commit(answering(reasons), change)


def test_a_failed_condition_wins_over_a_conflict_elsewhere(transaction):
    change, items = transaction
    kinds = [kind_of(item) for item in items]
    account = kinds.index("account")
    for i, kind in enumerate(kinds):
        if i == account or kind == "entry":
            continue
        reasons = ["None"] * len(items)
        reasons[i], reasons[account] = "ConditionalCheckFailed", "TransactionConflict"
        with pytest.raises(LoyaltyError) as caught:
            commit(answering(reasons), change)
        assert type(caught.value) is on_condition(kind, change), (i, kinds)
        reasons[i], reasons[account] = "TransactionConflict", "ConditionalCheckFailed"
        with pytest.raises(ConcurrentUpdate):
            commit(answering(reasons), change)


@pytest.mark.parametrize("reasons", [["ValidationError"], []])
def test_a_cancellation_of_no_known_reason_is_passed_on_as_dynamodbs_error(transaction, reasons):
    change, items = transaction
    with pytest.raises(ClientError) as caught:
        commit(answering(reasons + ["None"] * (len(items) - len(reasons))), change)
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"


@pytest.mark.parametrize("code", ["ThrottlingException", "ProvisionedThroughputExceededException",
                                  "InternalServerError", "TransactionInProgressException"])
def test_a_throttled_or_failed_call_is_transient(transaction, code):
    change, _ = transaction
    with pytest.raises(Transient):
        commit(answering(code=code), change)


def test_the_transactions_items_are_sent_in_the_order_of_the_change():
    change = committed(redemption)
    assert [kind_of(item) for item in sent(change)] == ["redemption", "stock", "account", "lot", "entry"]
    change = committed(credit)
    assert [kind_of(item) for item in sent(change)] == ["idempotency", "order", "account", "lot", "entry"]


# --- the services, on the stub: a duplicate is answered from its record, a conflict is not ---------

def test_a_credit_whose_idempotency_record_exists_answers_the_first_credit_without_writing_again():
    answer = {"event_id": "e1", "member_id": "m1", "points": 143, "balance": 143}

    def dynamo(operation, params):
        if operation == "BatchGetItem":   # read before the other delivery's write landed
            return {"Responses": {"T": []}, "UnprocessedKeys": {}}
        if operation == "TransactWriteItems":
            raise Answer("TransactionCanceledException", CancellationReasons=[
                {"Code": "ConditionalCheckFailed"}] + [{"Code": "None"}] * (len(params["TransactItems"]) - 1))
        assert operation == "GetItem" and params["Key"]["PK"]["S"] == "IDEM#order-event#e1"
        return {"Item": IdempotencyItem("IDEM#order-event#e1", "IDEM", body_hash="h-e1", member_id="m1",
                                        response=answer).serialize()}

    stub = StubDynamo(dynamo)
    store = DynamoLedgerStore("T", 4, client=stub.client)
    assert handle_order_event(store, RULES, paid("e1", "o1", 12345), T0) == answer
    assert [op for op, _ in stub.calls] == ["BatchGetItem", "TransactWriteItems", "GetItem"]


@pytest.mark.parametrize("reason", RETRY_LATER)
def test_a_credit_cancelled_by_a_conflict_on_its_idempotency_record_is_transient_not_a_duplicate(reason):
    def dynamo(operation, params):
        if operation == "BatchGetItem":
            return {"Responses": {"T": []}, "UnprocessedKeys": {}}
        assert operation == "TransactWriteItems"
        raise Answer("TransactionCanceledException", CancellationReasons=[
            {"Code": reason}] + [{"Code": "None"}] * (len(params["TransactItems"]) - 1))

    stub = StubDynamo(dynamo)
    with pytest.raises(Transient):
        handle_order_event(DynamoLedgerStore("T", 4, client=stub.client), RULES, paid("e1", "o1", 12345), T0)
    assert [op for op, _ in stub.calls] == ["BatchGetItem", "TransactWriteItems"]  # no replay read


# --- disputes: the dispute and its place in the review queue ------------------------------------

OPEN = Dispute("d-1", "m1", "entry-1", "bonus missing", "open", T0)
UPHELD = Dispute("d-1", "m1", "entry-1", "bonus missing", "upheld", T0, "added", "op-1", 20, T0)


@pytest.mark.parametrize("dispute, expected_status, on_dispute", [
    (OPEN, None, AlreadyApplied),            # filed again: the dispute exists
    (UPHELD, "open", ConcurrentUpdate),      # resolved meanwhile by someone else
])
def test_a_cancelled_dispute_write_is_read_by_the_reason_of_each_item(dispute, expected_status, on_dispute):
    def save(reasons=None, code="TransactionCanceledException"):
        dynamo = answering(reasons, code)
        DynamoLedgerStore("T", 4, client=dynamo.client).save_dispute(dispute, expected_status)
        return dynamo

    [params] = save().params("TransactWriteItems")
    assert [next(iter(item)) for item in params["TransactItems"]] == (
        ["Put", "Put"] if dispute.status == "open" else ["Put", "Delete"])
    with pytest.raises(on_dispute):
        save(["ConditionalCheckFailed", "None"])
    with pytest.raises(on_dispute):
        save(["ConditionalCheckFailed", "TransactionConflict"])
    for reason in RETRY_LATER:
        for reasons in ([reason, "None"], ["None", reason]):
            with pytest.raises(Transient):
                save(reasons)
    with pytest.raises(ClientError):
        save(["ValidationError", "None"])
    with pytest.raises(Transient):
        save(code="ThrottlingException")
