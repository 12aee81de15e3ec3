"""Dispatching jobs over the messaging store's fake: one record per job however often it
is delivered, caps counted with the record, deferred jobs released whatever the delay."""
from datetime import timedelta

import pytest

from loyalty.errors import Transient
from loyalty.messaging.dispatcher import (campaign_jobs, dispatch_job, message_id_for, notice_job,
                                          release_deferred)
from loyalty.records import Consent
from tests.unit.messaging_fakes import NOW, RULES, Provider, Queues, ledger, member, msgs, send  # noqa: F401


def notice(event="ev-1"):
    return notice_job(event, "ana", "points_credited", {"points": 5, "balance": 5}, NOW)


def campaign(name: str, at=NOW) -> dict:
    [job] = campaign_jobs(name, "member_day_offer", ["ana"], {"offer": "double points"}, at)
    return job


def test_a_notice_is_recorded_and_routed_once(msgs, ledger):
    member(ledger)
    queues = Queues()
    assert dispatch_job(notice(), msgs, queues, RULES, NOW) == "queued:whatsapp"
    assert dispatch_job(notice(), msgs, queues, RULES, NOW) == "duplicate:requeued"     # not claimed yet
    send(msgs, Provider(), queues, message_id=message_id_for(notice()["job_id"]))
    assert dispatch_job(notice(), msgs, queues, RULES, NOW) == "duplicate"
    assert [name for name, _, _ in queues.sent] == ["whatsapp", "whatsapp"]


def test_a_job_redelivered_after_its_record_was_written_but_not_routed_is_routed_then(msgs, ledger):
    member(ledger)
    queues = Queues()
    queues.fail_next = 1                                 # the first run dies routing the message
    with pytest.raises(ConnectionError):
        dispatch_job(notice(), msgs, queues, RULES, NOW)
    assert msgs.message(message_id_for(notice()["job_id"])).status == "queued"
    assert dispatch_job(notice(), msgs, queues, RULES, NOW) == "duplicate:requeued"
    assert [name for name, _, _ in queues.sent] == ["whatsapp"]


def test_without_consent_the_job_is_recorded_as_skipped(msgs, ledger):
    member(ledger, channels=())
    assert dispatch_job(notice(), msgs, Queues(), RULES, NOW) == "skipped:no_consented_channel"
    assert msgs.message(message_id_for(notice()["job_id"])).status == "skipped"
    assert dispatch_job(notice(), msgs, Queues(), RULES, NOW) == "duplicate"


def test_a_write_that_meets_a_conflict_is_retried_by_the_queue_not_dropped(msgs, ledger):
    member(ledger)
    queues = Queues()
    msgs.faults["create_message"].append(Transient("TransactionConflict"))
    with pytest.raises(Transient):
        dispatch_job(notice(), msgs, queues, RULES, NOW)
    assert msgs.message(message_id_for(notice()["job_id"])) is None and queues.sent == []
    assert dispatch_job(notice(), msgs, queues, RULES, NOW) == "queued:whatsapp"


def test_marketing_counts_against_the_caps_with_its_record(msgs, ledger):
    member(ledger)
    assert dispatch_job(campaign("spring"), msgs, Queues(), RULES, NOW) == "queued:whatsapp"
    assert msgs.member_snapshot("ana").caps.day_count == 1
    assert dispatch_job(campaign("summer"), msgs, Queues(), RULES, NOW) == "skipped:cap_reached"


def test_a_marketing_job_whose_counters_moved_meanwhile_is_decided_again(msgs, ledger):
    member(ledger)
    raced = []
    msgs.before["create_message"].append(
        lambda: raced.append(dispatch_job(campaign("spring"), msgs, Queues(), RULES, NOW)))
    assert dispatch_job(campaign("summer"), msgs, Queues(), RULES, NOW) == "skipped:cap_reached"
    assert raced == ["queued:whatsapp"]
    assert msgs.message(message_id_for(campaign("summer")["job_id"])).status == "skipped"


def test_counters_that_keep_moving_end_in_a_retry_by_the_queue(msgs, ledger):
    from loyalty.errors import ConcurrentUpdate
    member(ledger)
    msgs.faults["create_message"].extend(ConcurrentUpdate("caps moved") for _ in range(3))
    with pytest.raises(Transient):
        dispatch_job(campaign("spring"), msgs, Queues(), RULES, NOW)


# --- deferred jobs ------------------------------------------------------------------------

NIGHT = NOW.replace(hour=14, minute=40)        # 22:40 in Hong Kong: marketing waits for the morning


def test_a_job_outside_its_window_waits_in_the_queue_when_the_window_is_near(msgs, ledger):
    member(ledger)
    queues = Queues()
    soon = NOW.replace(hour=3, minute=50)      # 11:50 in Hong Kong: the window opens at 12:00
    assert dispatch_job(campaign("spring", soon), msgs, queues, RULES, soon) == "deferred"
    [(name, released, delay)] = queues.sent
    assert (name, released["released"]) == ("jobs", True) and 600 <= delay <= 601
    assert msgs.due_deferred(NOW + timedelta(days=2)) == []


def test_a_deferred_job_is_released_however_long_it_waited_and_sent_once(msgs, ledger):
    member(ledger)
    queues = Queues()
    assert dispatch_job(campaign("night", NIGHT), msgs, queues, RULES, NIGHT) == "deferred"
    assert queues.sent == []
    [waiting] = msgs.member_messages("ana")
    opens = waiting.not_before
    assert release_deferred(msgs, queues, opens - timedelta(minutes=1)) == 0
    late = opens + timedelta(days=2, minutes=15)     # the releases of two days did not run
    assert release_deferred(msgs, queues, late) == 1
    assert release_deferred(msgs, queues, late) == 0
    [(name, job, _)] = queues.sent
    assert dispatch_job(job, msgs, queues, RULES, late) == "queued:whatsapp"
    assert dispatch_job(job, msgs, queues, RULES, late) == "duplicate"


def test_a_member_who_opted_out_while_a_job_waited_gets_nothing(msgs, ledger):
    member(ledger)
    queues = Queues()
    dispatch_job(campaign("night", NIGHT), msgs, queues, RULES, NIGHT)
    ledger.add_consent(Consent("ana", "whatsapp", "opted_out", "keyword:STOP", NIGHT + timedelta(hours=1)))
    [waiting] = msgs.member_messages("ana")
    release_deferred(msgs, queues, waiting.not_before)
    [(_, job, _)] = queues.sent
    assert dispatch_job(job, msgs, queues, RULES, waiting.not_before) == "skipped:no_consented_channel"
    assert msgs.message(waiting.message_id).status == "skipped"


def test_releases_come_at_most_limit_at_a_time(msgs):
    for i in range(3):
        msgs.defer({"job_id": f"j-{i}", "member_id": "ana", "template": "member_day_offer"}, NOW)
    queues = Queues()
    assert release_deferred(msgs, queues, NOW, limit=2) == 2
    assert release_deferred(msgs, queues, NOW, limit=2) == 1
    assert sorted(job["job_id"] for _, job, _ in queues.sent) == ["j-0", "j-1", "j-2"]
    assert all(job["planned_at"] == NOW.isoformat() for _, job, _ in queues.sent)
