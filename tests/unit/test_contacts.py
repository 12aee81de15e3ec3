"""One member per phone number or OpenID: how the DynamoDB adapter reads a cancelled
profile write (a stub botocore client answers as DynamoDB would), the service's retry, and the
API's answer. The behaviour itself is in tests/ledger_contract.py, over both stores."""
import json

import pytest
from botocore.exceptions import ClientError

from loyalty.adapters.ledger import DynamoLedgerStore
from loyalty.adapters.ledger.base import LedgerModel
from loyalty.adapters.ledger.members import AliasItem, MemberItem
from loyalty.adapters.memory import MemoryLedgerStore
from loyalty.errors import ConcurrentUpdate, ContactTaken, Transient
from loyalty.records import Profile
from loyalty.services.members import update_profile
from loyalty.web.responses import error_body
from tests.unit.dynamo_stub import Answer, StubDynamo, readable

OLD, NEW = "+85291230001", "+85291230002"


def stub(holders: dict[str, str], reasons: list[str] | None = None, code="TransactionCanceledException") -> StubDynamo:
    """Ana's profile holds OLD; `holders` says who holds which alias; the transaction
    answers with `reasons` (or succeeds: its items are in `stub.params`)."""
    def answer(operation: str, params: dict) -> dict:
        if operation == "GetItem":
            return {"Item": MemberItem("MEMBER#ana", "PROFILE", profile={"name": "Ana", "phone": OLD}).serialize()}
        if operation == "BatchGetItem":
            [(table, request)] = params["RequestItems"].items()
            pks = [LedgerModel.from_raw_data(key).pk for key in request["Keys"]]
            return {"Responses": {table: [AliasItem(pk, "ALIAS", member_id=holders[pk]).serialize()
                                          for pk in pks if pk in holders]}, "UnprocessedKeys": {}}
        assert operation == "TransactWriteItems"
        if reasons is None and code == "TransactionCanceledException":
            return {}
        raise Answer(code, **({"CancellationReasons": [{"Code": r} for r in reasons]} if reasons is not None else {}))
    return StubDynamo(answer)


def put_new_phone(dynamo: StubDynamo) -> Profile:
    return DynamoLedgerStore("T", 4, client=dynamo.client).put_profile(Profile("ana", name="Ana", phone=NEW))


def written(dynamo: StubDynamo) -> list[dict] | None:
    sent = dynamo.params("TransactWriteItems")
    return sent[-1]["TransactItems"] if sent else None


def test_the_write_claims_the_new_contact_releases_the_old_and_checks_the_profile_read():
    dynamo = stub({f"PHONE#{OLD}": "ana"})
    put_new_phone(dynamo)
    update, claim, release = written(dynamo)
    was = json.dumps({"name": "Ana", "phone": OLD})
    assert readable(update["Update"]) == f"profile = {was!r}"
    assert json.loads(update["Update"]["ExpressionAttributeValues"][":0"]["S"]) == {"name": "Ana", "phone": OLD}
    assert claim["Put"]["Item"]["PK"]["S"] == f"PHONE#{NEW}"
    assert readable(claim["Put"]) == "(attribute_not_exists (PK) OR member_id = 'ana')"
    assert release["Delete"]["Key"]["PK"]["S"] == f"PHONE#{OLD}"
    assert readable(release["Delete"]) == "member_id = 'ana'"


def test_an_old_contact_another_member_holds_is_not_released():
    dynamo = stub({f"PHONE#{OLD}": "bo"})
    put_new_phone(dynamo)
    assert [next(iter(item)) for item in written(dynamo)] == ["Update", "Put"]


def test_a_contact_seen_held_by_another_member_is_refused_before_any_write():
    dynamo = stub({f"PHONE#{OLD}": "ana", f"PHONE#{NEW}": "bo"})
    with pytest.raises(ContactTaken):
        put_new_phone(dynamo)
    assert written(dynamo) is None


# Items in the transaction: the profile, the claim of NEW, the release of OLD.
@pytest.mark.parametrize("reasons, raised", [
    (["None", "ConditionalCheckFailed", "None"], ContactTaken),
    (["TransactionConflict", "ConditionalCheckFailed", "None"], ContactTaken),
    (["ConditionalCheckFailed", "None", "None"], ConcurrentUpdate),
    (["None", "None", "ConditionalCheckFailed"], ConcurrentUpdate),
    (["ConditionalCheckFailed", "TransactionConflict", "None"], ConcurrentUpdate),
    (["None", "TransactionConflict", "None"], Transient),
    (["None", "None", "ThrottlingError"], Transient),
    (["ProvisionedThroughputExceeded", "None", "None"], Transient),
])
def test_a_cancelled_write_is_read_by_the_reason_of_each_item(reasons, raised):
    with pytest.raises(raised) as caught:
        put_new_phone(stub({f"PHONE#{OLD}": "ana"}, reasons))
    assert type(caught.value) is raised
    if raised is ContactTaken:
        assert caught.value.problems == [{"field": "phone", "problem": "held by another member"}]


@pytest.mark.parametrize("reasons", [["ValidationError", "None", "None"], []])
def test_a_cancellation_of_no_known_reason_is_not_passed_off_as_a_conflict(reasons):
    with pytest.raises(ClientError):
        put_new_phone(stub({f"PHONE#{OLD}": "ana"}, reasons))


def test_throttling_of_the_whole_call_is_transient():
    with pytest.raises(Transient):
        put_new_phone(stub({f"PHONE#{OLD}": "ana"}, code="ProvisionedThroughputExceededException"))


class Overtaken(MemoryLedgerStore):
    """Loses the race on its first `lost` writes."""

    def __init__(self, lost: int):
        super().__init__()
        self.lost = lost

    def put_profile(self, profile):
        if self.lost:
            self.lost -= 1
            raise ConcurrentUpdate("moved")
        return super().put_profile(profile)


def test_the_service_reads_again_after_a_lost_race_and_never_after_a_refusal():
    store = Overtaken(lost=2)
    assert update_profile(store, store, Profile("ana", phone=OLD))["phone"] == OLD
    store.put_profile(Profile("bo", phone=NEW))
    calls = []
    store.put_profile = lambda p: calls.append(p) or MemoryLedgerStore.put_profile(store, p)
    with pytest.raises(ContactTaken):
        update_profile(store, store, Profile("ana", phone=NEW))
    assert len(calls) == 1


def test_the_api_answers_409_naming_the_field_not_the_holder():
    status, body = error_body(ContactTaken(["phone"]))
    assert status == 409
    assert body == {"message": "phone is held by another member",
                                            "errors": [{"field": "phone", "problem": "held by another member"}]}
