"""The ledger's behaviour over DynamoDB in the emulator: the same tests as the fake's."""
import pytest

from loyalty.adapters.ledger import DynamoLedgerStore
from tests.ledger_contract import *  # noqa: F401,F403 - the shared behaviour


@pytest.fixture
def store(fresh_aws):
    return DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=fresh_aws.client("dynamodb"))


# --- contacts: the transaction's conditions, when a read is overtaken before the write ----

def overtaken(fresh_aws, before_write):
    """A store whose first TransactWriteItems is preceded by `before_write()` (another
    writer, on its own client): the race, made deterministic."""
    client = fresh_aws.client("dynamodb")
    pending = [before_write]

    def interfere(**_):
        if pending:
            pending.pop()()

    client.meta.events.register("before-call.dynamodb.TransactWriteItems", interfere)
    return DynamoLedgerStore(fresh_aws.environ["TABLE_NAME"], shards=4, client=client)


def test_a_claim_overtaken_by_another_members_claim_is_refused_by_its_condition(store, fresh_aws):
    from loyalty.errors import ContactTaken
    from loyalty.records import Profile
    store.put_profile(Profile("bo", name="Bo", phone="+85291230002"))
    late = overtaken(fresh_aws, lambda: store.put_profile(Profile("ana", phone="+85291230001")))
    with pytest.raises(ContactTaken) as refused:
        late.put_profile(Profile("bo", name="Bob", phone="+85291230001"))   # read: free; written: held
    assert refused.value.problems == [{"field": "phone", "problem": "held by another member"}]
    assert store.get_profile("bo") == Profile("bo", name="Bo", phone="+85291230002")
    assert store.member_for_contact("PHONE", "+85291230001") == "ana"
    assert store.member_for_contact("PHONE", "+85291230002") == "bo"


def test_a_profile_changed_after_it_was_read_is_read_again_and_leaves_no_alias_behind(store, fresh_aws):
    from loyalty.errors import ConcurrentUpdate
    from loyalty.records import Profile
    from loyalty.services.members import update_profile
    store.put_profile(Profile("ana", phone="+85291230001"))
    late = overtaken(fresh_aws, lambda: store.put_profile(Profile("ana", phone="+85291230003")))
    with pytest.raises(ConcurrentUpdate):
        late.put_profile(Profile("ana", phone="+85291230002"))
    assert store.get_profile("ana").phone == "+85291230003"
    late = overtaken(fresh_aws, lambda: store.put_profile(Profile("ana", phone="+85291230004")))
    assert update_profile(late, late, Profile("ana", phone="+85291230002"))["phone"] == "+85291230002"  # 2nd try
    assert {p: store.member_for_contact("PHONE", p) for p in
            ("+85291230001", "+85291230002", "+85291230003", "+85291230004")} == {
        "+85291230001": None, "+85291230002": "ana", "+85291230003": None, "+85291230004": None}


def test_an_alias_another_member_took_before_claims_were_checked_is_left_to_them(store, fresh_aws):
    """Data written before contacts had one owner: bo's alias for ana's old phone. Ana
    changing her phone does not delete bo's alias; ana claiming it again is refused."""
    from loyalty.adapters.ledger.members import ALIAS, alias_pk
    from loyalty.errors import ContactTaken
    from loyalty.records import Profile
    store.put_profile(Profile("ana", phone="+85291230001"))
    store.Alias(alias_pk("PHONE", "+85291230001"), ALIAS, member_id="bo").save()
    with pytest.raises(ContactTaken):
        store.put_profile(Profile("ana", name="Ana", phone="+85291230001"))
    store.put_profile(Profile("ana", phone="+85291230009"))
    assert store.member_for_contact("PHONE", "+85291230001") == "bo"
    assert store.member_for_contact("PHONE", "+85291230009") == "ana"
