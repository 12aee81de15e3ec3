"""The fault soak, short (infra/local/soak.py; `make soak` is the full run), and the
bugs it found, each reproduced on its own with one targeted fault.

The short run starts a stack of its own (faults in one stack must not disturb the
others' tests) with a fixed seed and small counts; every invariant must hold. Which
faults land where depends on the order in which concurrent requests reach the emulator,
so a short run may or may not meet a given bug; the reproductions below meet theirs
every time: the two messaging-store bugs the soak found (a transaction cancelled by a
conflict read as "exists already"; a claim whose answer was lost waiting out its own lease).
"""
import time

import pytest

from infra.local.soak import SoakConfig, print_report, run_soak
from tests.e2e.conftest import paid
from tests.e2e.test_delivery_e2e import new_member, outbox
from tests.e2e.test_reminders_e2e import messages


@pytest.fixture(scope="module")
def soak():
    report = run_soak(SoakConfig(orders=24, members=8, fault_share=0.1, seed=7, timeouts=1, workers=4),
                      out=lambda line: None)
    print_report(report)
    return report


def test_the_short_soak_loses_and_doubles_no_points(soak):
    assert soak.figures["orders"] == 24 and soak.figures["redemptions"] > 0
    assert soak.figures["aws_faults"]["injected"] > 0
    assert soak.problems.get("setup", []) == []
    assert soak.problems.get("points", []) == []
    assert soak.problems.get("reconcile", []) == [] and "0 mismatched" in soak.figures["reconcile"]
    assert soak.problems.get("schedules", []) == []


def test_the_short_soak_sends_each_message_once_and_answers_each_keyword(soak):
    assert soak.problems.get("messages", []) == []
    assert soak.problems.get("replies", []) == []


# --- the bugs, one fault each ----------------------------------------------------------------


def one_fault(api, function: str, operation: str, kind: str):
    answer = api.post("/_local/aws-faults", {"share": 1, "kinds": {kind: 1}, "functions": [function],
                                             "operations": [operation], "count": 1})
    assert answer.status_code == 200, answer.text


@pytest.fixture
def faults_off(api):
    api.post("/_local/drain")
    yield
    api.http.delete(api.base + "/_local/aws-faults", timeout=10)


def test_a_notice_is_not_lost_when_its_record_write_meets_a_transaction_conflict(api, member, faults_off):
    phone, _ = new_member(api, member)
    one_fault(api, "DispatcherFunction", "dynamodb:TransactWriteItems", "conflict")
    api.order(paid(member, f"o-{member}", 50000))
    api.post("/_local/drain")
    assert api.get("/_local/aws-faults").json()["counts"]["injected"] == 1
    [notice] = messages(api, member, kind="notice")          # today: no record at all, the job is gone
    assert notice["status"] in ("sent", "delivered", "read")


def test_a_sent_wechat_notice_is_marked_sent_when_mark_sent_meets_a_transaction_conflict(api, member, faults_off):
    _, openid = new_member(api, member, channels=("wechat",))
    one_fault(api, "SendWeChatFunction", "dynamodb:TransactWriteItems", "conflict")
    api.order(paid(member, f"o-{member}", 50000))
    api.post("/_local/drain")
    time.sleep(1.5)                                          # the sandbox's receipt, which finds nothing
    assert len(outbox(api, openid)) == 1                     # WeChat has it
    [notice] = messages(api, member, kind="notice")
    assert notice["status"] in ("sent", "delivered", "read")  # today: "sending", for good


def test_a_claim_whose_answer_was_lost_still_sends_the_message(api, member, faults_off):
    phone, _ = new_member(api, member)
    one_fault(api, "SendWhatsAppFunction", "dynamodb:UpdateItem", "timeout")
    api.order(paid(member, f"o-{member}", 50000))
    drained = api.post("/_local/drain").json()
    assert api.get("/_local/aws-faults").json()["counts"]["injected"] == 1
    [notice] = messages(api, member, kind="notice")
    assert notice["status"] in ("sent", "delivered", "read"), (notice, drained["dead_letter"])


def test_a_redemption_whose_commit_answer_was_lost_is_done_once_and_confirmed_once(api, member, faults_off):
    new_member(api, member)
    api.order(paid(member, f"o-{member}", 500000))
    api.post("/_local/drain")
    item = min(api.get("/catalog").json()["items"], key=lambda i: i["points"])
    # applied, answer lost: the SDK sends it again under the same ClientRequestToken, which
    # DynamoDB answers with success without writing again (so does the local emulator now)
    one_fault(api, "MembersApiFunction", "dynamodb:TransactWriteItems", "timeout")
    answer = api.post(f"/members/{member}/redemptions", {"item_id": item["item_id"], "idempotency_key": f"r-{member}"})
    assert answer.status_code == 201, answer.text
    assert api.get("/_local/aws-faults").json()["counts"]["injected"] == 1
    assert answer.json()["balance"] == 5020 - item["points"]
    api.post("/_local/drain")
    confirmed = [m for m in messages(api, member, kind="notice") if m["template"] == "redemption_confirmed"]
    assert len(confirmed) == 1 and confirmed[0]["status"] in ("sent", "delivered", "read")


def test_a_redemption_retried_after_its_notice_could_not_be_queued_confirms_it_then(api, member, faults_off):
    new_member(api, member)
    api.order(paid(member, f"o-{member}", 500000))
    api.post("/_local/drain")
    item = min(api.get("/catalog").json()["items"], key=lambda i: i["points"])["item_id"]
    answer = api.post("/_local/aws-faults", {"share": 1, "kinds": {"reset": 1}, "functions": ["MembersApiFunction"],
                                             "operations": ["sqs:SendMessage"], "count": 20})
    assert answer.status_code == 200, answer.text
    first = api.post(f"/members/{member}/redemptions", {"item_id": item, "idempotency_key": f"r-{member}"})
    assert first.status_code == 201, first.text                # the redemption stands; its notice is not queued
    api.http.delete(api.base + "/_local/aws-faults", timeout=10)
    api.post("/_local/drain")
    assert [m for m in messages(api, member, kind="notice") if m["template"] == "redemption_confirmed"] == []
    again = api.post(f"/members/{member}/redemptions", {"item_id": item, "idempotency_key": f"r-{member}"})
    assert again.status_code == 200 and again.json()["redemption_id"] == first.json()["redemption_id"]
    api.post("/_local/drain")
    confirmed = [m for m in messages(api, member, kind="notice") if m["template"] == "redemption_confirmed"]
    assert len(confirmed) == 1                                  # before: the replay queued nothing, ever
    api.post(f"/members/{member}/redemptions", {"item_id": item, "idempotency_key": f"r-{member}"})
    api.post("/_local/drain")
    assert len([m for m in messages(api, member, kind="notice") if m["template"] == "redemption_confirmed"]) == 1
