"""The reconcile command against the emulator: silent on a sound ledger, loud on a broken one."""
from loyalty.adapters.ledger import DynamoLedgerStore
from loyalty.rules import build_rules
from loyalty.services.orders import handle_order_event
from loyalty.tools import reconcile
from tests.ledger_contract import T0, paid
from tests.orders_only import ORDERS_ONLY


def test_reconcile_passes_on_a_sound_ledger_and_names_a_tampered_member(fresh_aws):
    store = DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], 4, client=fresh_aws.client("dynamodb"))
    handle_order_event(store, build_rules(ORDERS_ONLY), paid("e1", "o1", 12345, member="good"), T0)
    handle_order_event(store, build_rules(ORDERS_ONLY), paid("e2", "o2", 5000, member="bad"), T0)
    lines: list[str] = []
    assert reconcile.main(out=lines.append) == 0
    assert lines[-1] == "reconcile: 2 members checked, 0 mismatched"

    # someone edits a balance by hand, outside the ledger
    fresh_aws.client("dynamodb").update_item(
        TableName=fresh_aws.environ["TABLE_NAME"], Key={"PK": {"S": "MEMBER#bad"}, "SK": {"S": "PROFILE"}},
        UpdateExpression="SET balance = :b", ExpressionAttributeValues={":b": {"N": "999"}})
    lines.clear()
    assert reconcile.main(out=lines.append) == 1
    assert lines[0].startswith("MISMATCH bad: balance 999, entries 50, lots 50")
