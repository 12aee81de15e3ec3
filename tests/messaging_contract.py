"""What every MessagingStore (and WeChat TokenStore) must do. Run against the in-memory
fake (tests/unit/test_messaging_memory.py) and against DynamoDB in the emulator
(tests/integration/test_messaging_dynamodb.py): the fake is only trusted because both
pass the same tests. Each module that imports these provides the fixtures `msgs` (the
store), `ledger` (the LedgerStore whose member data `msgs` reads) and `token_store`."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from loyalty.errors import ConcurrentUpdate
from loyalty.messaging.dispatch import CapCounters
from loyalty.messaging.outbox import ClaimRefused, OutboxRecord
from loyalty.messaging.pushes import INBOUND_RETRY_AFTER
from loyalty.records import Consent, Profile
from loyalty.rules import build_rules
from loyalty.services.orders import OrderEvent, handle_order_event

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=timezone.utc)
RULES = build_rules()
LATER = NOW + timedelta(seconds=121)     # after a claim's 120 s lease


def record(message_id="m-1", channel="whatsapp", fallbacks=("sms",), status="queued", member="ana",
           created_at=NOW, **changes) -> OutboxRecord:
    base = OutboxRecord(message_id=message_id, member_id=member, kind="notice", template="points_credited",
                        category="transactional", channel=channel, to="+85290000001", locale="zh-HK",
                        variables={"points": 5, "name": "陈"},
                        payloads={"whatsapp": {"type": "text", "body": "積分 5"}, "sms": {"text": "積分 5"}},
                        fallbacks=fallbacks, status=status, created_at=created_at,
                        history=((status, created_at.isoformat(), ""),),
                        extra={"job_id": "job-1", "to": {"whatsapp": "+85290000001", "sms": "+85290000001"}})
    return replace(base, **changes)


def claimed(msgs, message_id="m-1", channel="whatsapp", now=NOW) -> OutboxRecord:
    got = msgs.claim(message_id, channel, now)
    assert isinstance(got, OutboxRecord), got
    return got


# --- outbox records ---------------------------------------------------------------------

def test_a_record_reads_back_as_written(msgs):
    written = record(not_before=NOW + timedelta(hours=8), status="deferred")
    assert msgs.create_message(written)
    assert msgs.message("m-1") == written
    assert msgs.message("m-unknown") is None


def test_a_record_is_written_once_and_a_second_write_is_a_duplicate(msgs):
    assert msgs.create_message(record())
    assert not msgs.create_message(record(template="other"))
    assert msgs.message("m-1").template == "points_credited"


def test_marketing_counters_move_with_the_record_and_only_from_what_was_read(msgs):
    first = CapCounters("2026-11-23", 1, "2026-11", 1)
    assert msgs.create_message(record("m-1"), (CapCounters(), first))
    assert msgs.member_snapshot("ana").caps == first
    # a second dispatcher read the counters before the first wrote them: nothing written
    with pytest.raises(ConcurrentUpdate):
        msgs.create_message(record("m-2"), (CapCounters(), first))
    assert msgs.message("m-2") is None
    with pytest.raises(ConcurrentUpdate):
        msgs.create_message(record("m-2"), (CapCounters("2026-11-23", 0, "2026-11", 0), first))
    second = CapCounters("2026-11-23", 2, "2026-11", 2)
    assert msgs.create_message(record("m-2"), (first, second))
    assert msgs.member_snapshot("ana").caps == second


def test_a_duplicate_is_a_duplicate_whatever_the_counters(msgs):
    assert msgs.create_message(record())
    assert not msgs.create_message(record(), (CapCounters(), CapCounters("2026-11-23", 1, "2026-11", 1)))
    assert msgs.member_snapshot("ana").caps == CapCounters()


def test_a_deferred_record_is_queued_once(msgs):
    msgs.create_message(record(status="deferred", not_before=NOW + timedelta(hours=1)))
    queued = record(history=(("deferred", NOW.isoformat(), ""), ("queued", NOW.isoformat(), "")))
    assert msgs.requeue_deferred(queued)
    assert msgs.message("m-1") == queued
    assert not msgs.requeue_deferred(queued)
    assert not msgs.requeue_deferred(record("m-unknown"))


def test_a_deferred_record_is_queued_with_its_counters(msgs):
    msgs.create_message(record(status="deferred"))
    counted = CapCounters("2026-11-23", 1, "2026-11", 1)
    with pytest.raises(ConcurrentUpdate):
        msgs.requeue_deferred(record(), (CapCounters("2026-11-22", 1, "2026-11", 1), counted))
    assert msgs.message("m-1").status == "deferred"
    assert msgs.requeue_deferred(record(), (CapCounters(), counted))
    assert msgs.member_snapshot("ana").caps == counted


def test_the_members_records_newest_first(msgs):
    for i in range(4):
        msgs.create_message(record(f"m-{i}", created_at=NOW + timedelta(minutes=i)))
    msgs.create_message(record("m-bo", member="bo"))
    assert [r.message_id for r in msgs.member_messages("ana")] == ["m-3", "m-2", "m-1", "m-0"]
    assert [r.message_id for r in msgs.member_messages("ana", limit=2)] == ["m-3", "m-2"]
    assert [r.message_id for r in msgs.member_messages("bo")] == ["m-bo"]
    assert msgs.member_messages("nobody") == []


# --- claims -------------------------------------------------------------------------------

def test_a_claim_takes_a_queued_message_and_holds_it_for_its_lease(msgs):
    msgs.create_message(record())
    held = claimed(msgs)
    assert (held.status, held.attempts, held.lease_until) == ("sending", 1, NOW + timedelta(seconds=120))
    assert msgs.claim("m-1", "whatsapp", NOW + timedelta(seconds=1)) == \
        ClaimRefused("sending", "whatsapp", NOW + timedelta(seconds=120))
    taken_over = claimed(msgs, now=LATER)                 # the first sender died
    assert taken_over.attempts == 2 and taken_over.lease_until == LATER + timedelta(seconds=120)


def test_a_claim_says_what_the_record_showed(msgs):
    msgs.create_message(record())
    assert msgs.claim("m-1", "sms", NOW) == ClaimRefused("queued", "whatsapp", None)
    assert msgs.claim("m-unknown", "whatsapp", NOW) == ClaimRefused("missing", None, None)
    msgs.create_message(record("m-2", status="suppressed"))
    assert msgs.claim("m-2", "whatsapp", NOW).status == "suppressed"


def test_a_released_claim_goes_back_to_queued_with_the_attempt_in_the_history(msgs):
    msgs.create_message(record())
    claimed(msgs)
    assert msgs.release_claim("m-1", NOW, "whatsapp:http_503")
    assert [h[:1] + h[2:] for h in msgs.message("m-1").history] == [("queued", ""), ("retrying", "whatsapp:http_503")]
    assert not msgs.release_claim("m-1", NOW, "again")            # not being sent any more
    claimed(msgs)
    assert msgs.release_claim("m-1", NOW, "limiter", quiet=True)
    assert len(msgs.message("m-1").history) == 2
    claimed(msgs)
    assert msgs.release_claim("m-1", NOW, "whatsapp:http_503", last=True)
    dead = msgs.message("m-1")
    assert dead.status == "dead_lettered" and dead.history[-1][0] == "dead_lettered"
    assert claimed(msgs).attempts == 4                            # a redrive sends it


# --- marking sent -----------------------------------------------------------------------

def test_marked_sent_under_its_claim_with_the_alias_for_receipts(msgs):
    msgs.create_message(record())
    held = claimed(msgs)
    assert msgs.mark_sent("m-1", "whatsapp", "wamid.1", NOW, channel="whatsapp", lease_until=held.lease_until)
    sent = msgs.message("m-1")
    assert (sent.status, sent.provider, sent.provider_message_id) == ("sent", "whatsapp", "wamid.1")
    assert sent.history[-1] == ("sent", NOW.isoformat(), "whatsapp")
    assert msgs.message_id_for("whatsapp", "wamid.1") == "m-1"
    assert msgs.message_id_for("whatsapp", "wamid.other") is None


def test_a_receipt_that_came_first_keeps_its_status_and_the_send_is_still_found(msgs):
    msgs.create_message(record())
    held = claimed(msgs)
    assert msgs.record_status("m-1", "delivered", NOW, channel="whatsapp", provider_message_id="wamid.1")
    assert not msgs.mark_sent("m-1", "whatsapp", "wamid.1", NOW, channel="whatsapp", lease_until=held.lease_until)
    after = msgs.message("m-1")
    assert (after.status, after.provider, after.provider_message_id) == ("delivered", "whatsapp", "wamid.1")
    assert after.history[-1][0] == "sent"
    assert msgs.message_id_for("whatsapp", "wamid.1") == "m-1"
    assert msgs.record_status("m-1", "read", NOW, channel="whatsapp", provider_message_id="wamid.1")


def test_a_send_whose_claim_was_lost_never_overwrites_the_record(msgs):
    msgs.create_message(record())
    first = claimed(msgs)
    second = claimed(msgs, now=LATER)                              # took over the lapsed lease
    assert not msgs.mark_sent("m-1", "whatsapp", "wamid.A", NOW, channel="whatsapp", lease_until=first.lease_until)
    assert msgs.message("m-1").status == "sending"
    assert msgs.message_id_for("whatsapp", "wamid.A") == "m-1"
    assert msgs.mark_sent("m-1", "whatsapp", "wamid.B", LATER, channel="whatsapp", lease_until=second.lease_until)
    assert msgs.message("m-1").status == "sent"


def test_a_send_overtaken_by_a_fallback_leaves_the_fallback_queued(msgs):
    msgs.create_message(record())
    held = claimed(msgs)
    assert msgs.record_status("m-1", "failed", NOW, "131026", channel="whatsapp", provider_message_id="wamid.1")
    assert msgs.switch_channel("m-1", "sms", "+85290000001", NOW, "131026", after_receipt=True,
                               superseded="wamid.1")
    assert not msgs.mark_sent("m-1", "whatsapp", "wamid.1", NOW, channel="whatsapp", lease_until=held.lease_until)
    waiting = msgs.message("m-1")
    assert (waiting.status, waiting.channel) == ("queued", "sms")
    assert claimed(msgs, channel="sms").channel == "sms"


def test_marking_an_unknown_message_sent_changes_nothing(msgs):
    assert not msgs.mark_sent("m-unknown", "whatsapp", "wamid.1", NOW, channel="whatsapp", lease_until=NOW)
    assert msgs.message("m-unknown") is None


# --- statuses, fallbacks ----------------------------------------------------------------

def test_statuses_only_move_forward(msgs):
    msgs.create_message(record(status="sent", provider="whatsapp", provider_message_id="wamid.1"))
    assert msgs.record_status("m-1", "read", NOW, channel="whatsapp")
    assert not msgs.record_status("m-1", "delivered", NOW, channel="whatsapp")
    assert not msgs.record_status("m-unknown", "delivered", NOW)
    assert [h[0] for h in msgs.message("m-1").history] == ["sent", "read"]


def test_a_receipt_counts_only_for_the_channel_the_message_is_on(msgs):
    msgs.create_message(record(status="sent"))
    assert not msgs.record_status("m-1", "delivered", NOW, channel="sms")
    assert msgs.record_status("m-1", "delivered", NOW, "", channel="whatsapp")


def test_a_receipt_teaches_a_timed_out_send_its_provider_id(msgs):
    msgs.create_message(record())
    assert msgs.record_status("m-1", "sent", NOW, channel="whatsapp", provider_message_id="wamid.T")
    assert msgs.message("m-1").provider_message_id == "wamid.T"
    assert msgs.record_status("m-1", "delivered", NOW, channel="whatsapp", provider_message_id="wamid.U")
    assert msgs.message("m-1").provider_message_id == "wamid.T"


def test_a_fallback_from_a_failed_send(msgs):
    msgs.create_message(record())
    claimed(msgs)
    assert msgs.switch_channel("m-1", "sms", "+85290000009", NOW, "whatsapp:131026", fallbacks=())
    moved = msgs.message("m-1")
    assert (moved.status, moved.channel, moved.to, moved.fallbacks, moved.attempts) == \
        ("queued", "sms", "+85290000009", (), 0)
    assert moved.history[-1] == ("fallback", NOW.isoformat(), "whatsapp:131026")
    assert not msgs.switch_channel("m-1", "wechat", "o1", NOW, "again")     # not being sent


def test_a_resend_after_a_failure_receipt_ignores_that_sends_late_receipts(msgs):
    msgs.create_message(record(status="sent", provider_message_id="wamid.1"))
    assert not msgs.switch_channel("m-1", "whatsapp", "+85290000001", NOW, "x", after_receipt=True)
    msgs.record_status("m-1", "failed", NOW, "131047", channel="whatsapp", provider_message_id="wamid.1")
    template = {"whatsapp": {"type": "template", "name": "points_update"}}
    assert msgs.switch_channel("m-1", "whatsapp", "+85290000001", NOW, "131047", after_receipt=True,
                               payloads=template, step="resend", superseded="wamid.1")
    again = msgs.message("m-1")
    assert again.payloads == template and again.history[-1][0] == "resend"
    assert not msgs.record_status("m-1", "delivered", NOW, channel="whatsapp", provider_message_id="wamid.1")
    assert msgs.record_status("m-1", "sent", NOW, channel="whatsapp", provider_message_id="wamid.2")


# --- the member snapshot ------------------------------------------------------------------

def test_the_snapshot_has_the_profile_the_consent_in_force_the_lots_and_the_caps(msgs, ledger):
    profile = Profile("ana", name="Ana", phone="+85290000001", wechat_openid="oAna", locale="en",
                      time_zone="Asia/Hong_Kong", preferred_channels=("wechat", "whatsapp"))
    ledger.put_profile(profile)
    ledger.add_consent(Consent("ana", "whatsapp", "opted_in", "checkout", NOW - timedelta(days=2), proof="f1"))
    ledger.add_consent(Consent("ana", "whatsapp", "opted_out", "keyword:STOP", NOW - timedelta(days=1), proof="w1"))
    ledger.add_consent(Consent("ana", "wechat", "opted_in", "follow", NOW, proof="e1"))
    ledger.add_consent(Consent("ana", "wechat", "opted_out", "unfollow", NOW, proof="e2"))   # same instant: out wins
    ledger.add_consent(Consent("ana", "whatsapp_marketing", "opted_out", "stop_marketing", NOW, proof="p1"))
    for i, amount in enumerate((10000, 25000)):
        handle_order_event(ledger, RULES, OrderEvent(f"e-{i}", "order.paid", NOW - timedelta(days=30 + i), f"o-{i}",
                                                     "ana", amount, "CNY", None, f"h-{i}"), NOW)
    lots = ledger.load_account("ana").lots
    assert len(lots) == 2
    caps = CapCounters("2026-11-23", 1, "2026-11", 3)
    msgs.create_message(record(), (CapCounters(), caps))

    snapshot = msgs.member_snapshot("ana")
    assert snapshot.profile == profile
    assert {c: (v.status, v.source) for c, v in snapshot.consents.items()} == {
        "whatsapp": ("opted_out", "keyword:STOP"), "wechat": ("opted_out", "unfollow"),
        "whatsapp_marketing": ("opted_out", "stop_marketing")}
    assert snapshot.lots == tuple(lots)
    assert snapshot.caps == caps


def test_a_member_never_seen_has_an_empty_snapshot(msgs):
    snapshot = msgs.member_snapshot("nobody")
    assert (snapshot.profile, snapshot.consents, snapshot.lots, snapshot.caps) == (None, {}, (), CapCounters())


# --- deferred jobs ------------------------------------------------------------------------

def job(job_id: str) -> dict:
    return {"job_id": job_id, "kind": "campaign", "member_id": "ana", "template": "spring_sale", "variables": {}}


def test_a_deferred_job_is_due_at_its_time_however_long_it_waited(msgs):
    opens = NOW + timedelta(hours=8)
    msgs.defer(job("j-1"), opens)
    msgs.defer(job("j-2"), opens + timedelta(minutes=20))
    assert msgs.due_deferred(opens - timedelta(seconds=1)) == []
    assert [d.job_id for d in msgs.due_deferred(opens)] == ["j-1"]
    late = msgs.due_deferred(opens + timedelta(days=3))             # three days of missed releases
    assert sorted(d.job_id for d in late) == ["j-1", "j-2"]
    assert {d.job_id: d.job for d in late}["j-1"] == job("j-1")
    assert {d.job_id: d.not_before for d in late}["j-2"] == opens + timedelta(minutes=20)


def test_a_released_job_is_removed_and_the_same_job_deferred_twice_is_kept_once(msgs):
    msgs.defer(job("j-1"), NOW)
    msgs.defer(job("j-1"), NOW)
    [due] = msgs.due_deferred(NOW)
    msgs.remove_deferred(due)
    assert msgs.due_deferred(NOW + timedelta(days=1)) == []


def test_due_jobs_come_at_most_limit_at_a_time(msgs):
    for i in range(7):
        msgs.defer(job(f"j-{i}"), NOW - timedelta(minutes=i))
    first = msgs.due_deferred(NOW, limit=5)
    assert len(first) == 5
    for deferred in first:
        msgs.remove_deferred(deferred)
    assert len(msgs.due_deferred(NOW, limit=5)) == 2


# --- stored pushes ------------------------------------------------------------------------

STOP = {"provider": "twilio", "provider_message_id": "SM1", "sender": "+85290000001", "text": "STOP",
        "at": None, "kind": "text", "dedup_key": "SM1", "payload": None}


def test_a_stored_push_is_kept_once_and_due_again_if_never_processed(msgs):
    assert msgs.store_inbound("twilio", "SM1", STOP, NOW)
    assert not msgs.store_inbound("twilio", "SM1", STOP, NOW + timedelta(seconds=5))   # the provider's retry
    assert msgs.due_inbound(NOW + INBOUND_RETRY_AFTER - timedelta(seconds=1)) == []
    [due] = msgs.due_inbound(NOW + INBOUND_RETRY_AFTER)
    assert (due.provider, due.dedup_key, due.kind, due.body, due.at, due.attempts) == \
        ("twilio", "SM1", "message", STOP, NOW, 0)
    assert msgs.due_inbound(NOW + timedelta(days=20)) == [due]                          # however late


def test_a_processed_push_is_never_due(msgs):
    msgs.store_inbound("twilio", "SM1", STOP, NOW)
    assert msgs.inbound_processed("twilio", "SM1", NOW + timedelta(seconds=1))
    assert msgs.due_inbound(NOW + timedelta(days=1)) == []
    assert not msgs.inbound_processed("twilio", "SM-unknown", NOW)
    assert not msgs.inbound_failed("twilio", "SM-unknown", NOW, "boom")


def test_a_failed_push_notes_why_masked_and_waits_longer_each_time(msgs):
    msgs.store_inbound("twilio", "SM1", STOP, NOW)
    failed_at = NOW + timedelta(seconds=2)
    assert msgs.inbound_failed("twilio", "SM1", failed_at, "RuntimeError: no route to +85290000001")
    assert msgs.due_inbound(failed_at + INBOUND_RETRY_AFTER - timedelta(seconds=1)) == []
    [due] = msgs.due_inbound(failed_at + INBOUND_RETRY_AFTER)
    assert due.attempts == 1 and "+85290000001" not in due.error and due.error.startswith("RuntimeError: no route")
    again = failed_at + INBOUND_RETRY_AFTER
    msgs.inbound_failed("twilio", "SM1", again, "RuntimeError: still")
    assert msgs.due_inbound(again + 2 * INBOUND_RETRY_AFTER - timedelta(seconds=1)) == []
    assert [p.attempts for p in msgs.due_inbound(again + 2 * INBOUND_RETRY_AFTER)] == [2]
    msgs.inbound_processed("twilio", "SM1", again + timedelta(hours=1))
    assert msgs.due_inbound(again + timedelta(days=1)) == []


def test_a_push_failing_after_it_was_processed_is_not_due_again(msgs):
    msgs.store_inbound("twilio", "SM1", STOP, NOW)
    msgs.inbound_processed("twilio", "SM1", NOW)
    msgs.inbound_failed("twilio", "SM1", NOW, "the bookkeeping after it failed")
    assert msgs.due_inbound(NOW + timedelta(days=1)) == []


def test_pushes_of_every_kind_keep_their_kind(msgs):
    event = {"provider": "wechat", "sender": "oAna", "event": "unfollow", "raw": "unsubscribe", "at": 1,
             "dedup_key": "oAna#1", "choices": [["T1", "accept"]]}
    receipt = {"provider": "wechat", "provider_message_id": "200163836", "status": "delivered", "at": 1,
               "our_ref": None, "recipient": "oAna", "error_code": None, "error_title": None, "raw_status": "success"}
    msgs.store_inbound("wechat", "oAna#1", event, NOW)
    msgs.store_inbound("wechat", "status#200163836#success", receipt, NOW + timedelta(seconds=1), kind="status")
    due = msgs.due_inbound(NOW + timedelta(hours=1))
    assert [(p.kind, p.body) for p in due] == [("event", event), ("status", receipt)]


def test_due_pushes_come_at_most_limit_at_a_time(msgs):
    for i in range(5):
        msgs.store_inbound("twilio", f"SM{i}", {**STOP, "dedup_key": f"SM{i}"}, NOW + timedelta(seconds=i))
    later = NOW + timedelta(hours=1)
    first = msgs.due_inbound(later, limit=3)
    assert len(first) == 3
    for push in first:
        msgs.inbound_processed(push.provider, push.dedup_key, later)
    rest = msgs.due_inbound(later, limit=3)
    assert sorted(p.dedup_key for p in first + rest) == [f"SM{i}" for i in range(5)]


# --- the WeChat token ---------------------------------------------------------------------

def test_a_token_is_written_only_over_the_token_it_replaces(token_store):
    assert token_store.get("wx1") is None
    assert token_store.put_if_newer("wx1", "a", 1000.0, None)
    assert not token_store.put_if_newer("wx1", "b", 2000.0, None)          # someone stored one already
    assert not token_store.put_if_newer("wx1", "b", 2000.0, "not-a")       # not the one we saw
    assert not token_store.put_if_newer("wx1", "b", 900.0, "a")            # older than what is stored
    assert not token_store.put_if_newer("wx2", "b", 900.0, "a")            # nothing stored to replace
    assert token_store.put_if_newer("wx1", "b", 2000.0, "a")
    assert token_store.get("wx1") == ("b", 2000.0)
    assert token_store.get("wx2") is None


# --- one challenge message a member-local day (create_message / requeue_deferred `daily`) ---

def test_the_day_key_lets_one_challenge_message_a_member_a_day(msgs):
    from loyalty.messaging.ports import DailyMessageTaken
    assert msgs.create_message(record("m-1", category="challenge"), daily="2027-03-01")
    with pytest.raises(DailyMessageTaken):
        msgs.create_message(record("m-2", category="challenge"), daily="2027-03-01")
    assert msgs.message("m-2") is None                                   # nothing written
    assert msgs.create_message(record("m-1", category="challenge"), daily="2027-03-01") is False   # a duplicate
    assert msgs.create_message(record("m-3", category="challenge"), daily="2027-03-02")           # the next day
    assert msgs.create_message(record("m-4", member="bo", category="challenge"), daily="2027-03-01")  # another member
    assert msgs.create_message(record("m-5"))                            # other messages take no day key


def test_a_deferred_challenge_message_takes_the_day_key_when_it_is_queued(msgs):
    from loyalty.messaging.ports import DailyMessageTaken
    assert msgs.create_message(record("m-1", status="deferred", category="challenge"))
    assert msgs.create_message(record("m-2", category="challenge"), daily="2027-03-01")
    with pytest.raises(DailyMessageTaken):
        msgs.requeue_deferred(record("m-1", category="challenge"), daily="2027-03-01")
    assert msgs.message("m-1").status == "deferred"
    assert msgs.requeue_deferred(record("m-1", category="challenge"), daily="2027-03-02")
    assert msgs.message("m-1").status == "queued"
