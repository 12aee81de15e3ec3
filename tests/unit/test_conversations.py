"""What provider pushes do, over the messaging store's fake: receipts move a message
forward (and act on failures reported late), keywords change consent or get an answer,
and stored pushes that were not applied are applied by the sweep."""
from datetime import timedelta

import pytest

from loyalty.channels.inbound import ChannelEvent, InboundMessage, StatusUpdate
from loyalty.errors import Transient
from loyalty.messaging.conversations import apply_message, apply_status, stored_push
from loyalty.messaging.outbox import OutboxRecord
from loyalty.messaging.pushes import INBOUND_RETRY_AFTER, UNKNOWN_RECEIPT_TRIES, reapply_pushes
from tests.unit.messaging_fakes import (NOW, PHONE, RULES, Provider, Queues, ledger, member, msgs,  # noqa: F401
                                        record, send)


def receipt(status, pid, code=None, provider="whatsapp", our_ref=None, at=NOW + timedelta(minutes=1)):
    return StatusUpdate(provider=provider, provider_message_id=pid, status=status, at=int(at.timestamp()),
                        our_ref=our_ref, recipient=None, error_code=code, error_title="", raw_status=status)


def sent(msgs, message=None, **kw) -> str:
    """A message the provider accepted; answers its provider id."""
    message = message or record(**kw)
    msgs.create_message(message)
    assert send(msgs, Provider(), Queues(), channel=message.channel, message_id=message.message_id) == \
        f"sent:{message.channel}"
    return msgs.message(message.message_id).provider_message_id


def apply(update, msgs, ledger, queues):
    return apply_status(update, msgs, NOW + timedelta(minutes=2), ledger=ledger, queues=queues, rules=RULES).handled


# --- receipts -----------------------------------------------------------------------------

def test_receipts_move_the_status_forward_only(msgs, ledger):
    pid = sent(msgs)
    assert apply(receipt("read", pid), msgs, ledger, Queues()) == "status:read"
    assert apply(receipt("delivered", pid), msgs, ledger, Queues()) == "status:not_forward"
    assert apply(receipt("delivered", "wamid.unknown"), msgs, ledger, Queues()) == "ignored:unknown_message"
    assert [h[0] for h in msgs.message("m-1").history] == ["queued", "sent", "read"]


def test_undeliverable_in_a_receipt_falls_back_to_the_next_channel_once(msgs, ledger):
    pid = sent(msgs)
    queues = Queues()
    assert apply(receipt("failed", pid, "131026"), msgs, ledger, queues) == "fallback:sms"
    assert queues.sent == [("sms", {"message_id": "m-1", "channel": "sms"}, 0)]
    assert apply(receipt("failed", pid, "131026"), msgs, ledger, queues) == "rerouted:sms"    # Meta retried
    assert apply(receipt("delivered", pid), msgs, ledger, queues) == "status:not_forward"
    provider = Provider()
    assert send(msgs, provider, queues, channel="sms") == "sent:sms"
    assert send(msgs, provider, queues, channel="sms") == "not_claimed:sent"
    assert provider.calls == 1


def test_undeliverable_with_no_channel_left_is_a_failure(msgs, ledger):
    pid = sent(msgs, fallbacks=())
    queues = Queues()
    assert apply(receipt("failed", pid, "131026"), msgs, ledger, queues) == "status:failed"
    assert queues.sent == [] and msgs.message("m-1").status == "failed"


def test_131047_in_a_receipt_sends_the_approved_template_instead(msgs, ledger):
    reply = OutboxRecord(message_id="m-r", member_id="ana", kind="reply", template="balance_reply",
                         category="utility", channel="whatsapp", to=PHONE, locale="en",
                         variables={"balance": 1520, "expiring": "", "redeemable": ""},
                         payloads={"whatsapp": {"type": "text", "body": "Your points: 1,520"}}, fallbacks=(),
                         status="queued", created_at=NOW, history=(("queued", NOW.isoformat(), ""),))
    pid = sent(msgs, reply)
    queues = Queues()
    assert apply(receipt("failed", pid, "131047"), msgs, ledger, queues) == "resend:whatsapp"
    assert apply(receipt("sent", pid), msgs, ledger, queues) == "status:not_forward"
    provider = Provider()
    assert send(msgs, provider, queues, message_id="m-r") == "sent:whatsapp"
    assert [p["type"] for p in provider.payloads] == ["template"]


def test_an_opt_out_in_a_receipt_is_recorded_and_suppresses(msgs, ledger):
    pid = sent(msgs, channel="sms")
    queues = Queues()
    assert apply(receipt("undelivered", pid, "21610", provider="twilio", our_ref="m-1"), msgs, ledger, queues) \
        == "suppressed"
    assert msgs.message("m-1").status == "suppressed" and queues.sent == []
    assert ledger.consent_history("ana", "sms")[0].source == "provider:twilio:21610"


def test_131050_in_a_receipt_is_an_opt_out_of_whatsapp_marketing_only(msgs, ledger):
    pid = sent(msgs)
    assert apply(receipt("failed", pid, "131050"), msgs, ledger, Queues()) == "suppressed"
    assert ledger.consent_history("ana", "whatsapp") == []
    assert ledger.consent_history("ana", "whatsapp_marketing")[0].status == "opted_out"


def test_a_late_transient_failure_sends_again_after_the_wait_twice_at_most(msgs, ledger):
    pid = sent(msgs, fallbacks=())
    queues = Queues()
    assert apply(receipt("failed", pid, "131049"), msgs, ledger, queues) == "resend:whatsapp"
    assert queues.sent == [("whatsapp", {"message_id": "m-1", "channel": "whatsapp"}, 900)]
    for _ in range(2):
        send(msgs, Provider(), queues)
        outcome = apply(receipt("failed", msgs.message("m-1").provider_message_id, "131049"), msgs, ledger, queues)
    assert outcome == "status:failed"
    assert [h[0] for h in msgs.message("m-1").history].count("resend") == 2


def test_a_failure_of_an_older_send_or_an_unknown_code_changes_only_the_status(msgs, ledger):
    pid = sent(msgs)
    queues = Queues()
    assert apply(receipt("failed", "wamid.other", "131026", our_ref="m-1"), msgs, ledger, queues) == "status:failed"
    assert apply(receipt("failed", pid, "999999"), msgs, ledger, queues) == "status:not_forward"
    assert queues.sent == [] and msgs.message("m-1").channel == "whatsapp"


# --- keywords -----------------------------------------------------------------------------

def inbound(text, dedup="wamid.IN1", provider="whatsapp", sender=PHONE.lstrip("+"), at=NOW):
    return InboundMessage(provider=provider, provider_message_id=dedup, sender=sender, text=text,
                          at=int(at.timestamp()) if at else None, kind="text", dedup_key=dedup)


def test_stop_opts_out_once_and_confirms_once(msgs, ledger):
    member(ledger)
    queues = Queues()
    assert apply_message(inbound("STOP"), ledger, msgs, queues, RULES, NOW).handled == "reply:opt_out_confirmed"
    assert ledger.consent_history("ana", "whatsapp")[0].status == "opted_out"
    assert apply_message(inbound("STOP", "wamid.IN2"), ledger, msgs, queues, RULES, NOW).handled == \
        "consent:opted_out"
    assert [name for name, _, _ in queues.sent] == ["whatsapp"]


def test_wechats_retry_of_a_stop_gets_the_same_passive_confirmation_and_a_new_stop_none(msgs, ledger):
    # Our first answer took over WeChat's 5 s, so the member saw nothing: WeChat pushes the
    # same MsgId again, and that answer is the only one the member sees.
    member(ledger, channels=("wechat",))
    queues = Queues()
    first = apply_message(inbound("STOP", "wx9", provider="wechat", sender="oAna"), ledger, msgs, queues, RULES, NOW)
    retry = apply_message(inbound("STOP", "wx9", provider="wechat", sender="oAna"), ledger, msgs, queues, RULES, NOW)
    assert first.handled == "reply:opt_out_confirmed" and first.reply
    assert (retry.handled, retry.reply) == ("reply:opt_out_confirmed", first.reply)
    later = apply_message(inbound("STOP", "wx10", provider="wechat", sender="oAna"), ledger, msgs, queues, RULES, NOW)
    assert later.reply is None and queues.sent == []


@pytest.mark.parametrize("provider,sender", [("wechat", "oAna"), ("whatsapp", PHONE.lstrip("+"))])
def test_a_push_that_failed_after_its_opt_out_was_recorded_is_confirmed_on_the_retry(msgs, ledger, monkeypatch,
                                                                                      provider, sender):
    # The first try wrote the decision, then the store failed before the confirmation was
    # made (our webhook answered 503): the provider's retry must still confirm, once.
    member(ledger, channels=(provider,))
    queues = Queues()
    create = msgs.create_message

    def failing(*args, **kw):
        raise Transient("the store is busy")

    monkeypatch.setattr(msgs, "create_message", failing)
    with pytest.raises(Transient):
        apply_message(inbound("STOP", "in-9", provider=provider, sender=sender), ledger, msgs, queues, RULES, NOW)
    monkeypatch.setattr(msgs, "create_message", create)
    retry = apply_message(inbound("STOP", "in-9", provider=provider, sender=sender), ledger, msgs, queues, RULES, NOW)
    assert retry.handled == "reply:opt_out_confirmed"
    assert (retry.reply is not None) == (provider == "wechat")
    assert [name for name, _, _ in queues.sent] == ([] if provider == "wechat" else ["whatsapp"])
    again = apply_message(inbound("STOP", "in-9", provider=provider, sender=sender), ledger, msgs, queues, RULES, NOW)
    assert again.reply == retry.reply   # the same reply, routed again while it waits: the sender sends it once
    assert len({body["message_id"] for _, body, _ in queues.sent}) == (0 if provider == "wechat" else 1)


def test_the_retry_of_a_stop_sent_by_a_member_already_opted_out_confirms_nothing(msgs, ledger):
    member(ledger, channels=("wechat",))
    queues = Queues()
    apply_message(inbound("STOP", "wx1", provider="wechat", sender="oAna"), ledger, msgs, queues, RULES, NOW)
    later = NOW + timedelta(hours=1)
    twice = [apply_message(inbound("STOP", "wx2", provider="wechat", sender="oAna", at=later), ledger, msgs, queues,
                           RULES, later) for _ in range(2)]
    assert [(o.handled, o.reply) for o in twice] == [("consent:opted_out", None)] * 2


def test_a_balance_question_is_answered_once_however_often_the_push_comes(msgs, ledger):
    member(ledger)
    queues = Queues()
    for _ in range(2):
        assert apply_message(inbound("POINTS"), ledger, msgs, queues, RULES, NOW).handled == "reply:balance_reply"
    assert [name for name, _, _ in queues.sent] == ["whatsapp", "whatsapp"]     # routed again, not claimed yet
    [reply] = msgs.member_messages("ana")
    provider = Provider()
    for _, body, _ in queues.sent:
        send(msgs, provider, queues, message_id=body["message_id"])
    assert provider.calls == 1 and msgs.message(reply.message_id).status == "sent"


def test_a_reply_that_meets_a_conflict_raises_instead_of_vanishing(msgs, ledger):
    member(ledger)
    queues = Queues()
    msgs.faults["create_message"].append(Transient("TransactionConflict"))
    with pytest.raises(Transient):
        apply_message(inbound("POINTS"), ledger, msgs, queues, RULES, NOW)
    assert queues.sent == [] and msgs.member_messages("ana") == []


def test_wechat_answers_in_the_webhooks_response_and_later_through_the_sender(msgs, ledger):
    member(ledger, channels=("wechat",))
    queues = Queues()
    answer = apply_message(inbound("我的积分", "wx1", provider="wechat", sender="oAna"), ledger, msgs, queues, RULES, NOW)
    assert answer.reply and queues.sent == [] and msgs.member_messages("ana")[0].status == "sent"
    later = apply_message(inbound("我的积分", "wx2", provider="wechat", sender="oAna"), ledger, msgs, queues, RULES,
                          NOW, passive=False)
    assert later.reply is None and [name for name, _, _ in queues.sent] == ["wechat"]


# --- stored pushes, applied again -----------------------------------------------------------

def stored(msgs, item, at=NOW):
    msgs.store_inbound(item.provider, item.dedup_key, item.__dict__, at)


def test_a_push_whose_processing_failed_is_applied_by_the_sweep(msgs, ledger):
    member(ledger, channels=("sms",))
    stop = inbound("TD", "SM1", provider="twilio", sender=PHONE, at=None)     # Twilio: no retries, no timestamp
    stored(msgs, stop)
    with pytest.raises(ConnectionError):
        with stored_push(stop, msgs, NOW):
            raise ConnectionError("the ledger was unreachable")
    assert ledger.consent_history("ana", "sms")[0].status == "opted_in"
    queues = Queues()
    assert reapply_pushes(msgs, ledger, queues, RULES, NOW + INBOUND_RETRY_AFTER - timedelta(seconds=1))["due"] == 0
    counts = reapply_pushes(msgs, ledger, queues, RULES, NOW + INBOUND_RETRY_AFTER)
    assert counts == {"due": 1, "applied": 1, "failed": 0}
    [latest, _] = ledger.consent_history("ana", "sms")
    assert (latest.status, latest.at) == ("opted_out", NOW)          # as of when the member wrote
    assert reapply_pushes(msgs, ledger, queues, RULES, NOW + timedelta(hours=1))["due"] == 0


def test_a_push_stopped_midway_is_applied_by_the_sweep_too(msgs, ledger):
    member(ledger)
    stored(msgs, inbound("STOP"))                 # stored, then the function timed out
    assert reapply_pushes(msgs, ledger, Queues(), RULES, NOW + timedelta(minutes=6))["applied"] == 1
    assert ledger.consent_history("ana", "whatsapp")[0].status == "opted_out"


def test_a_late_stop_never_overrides_what_the_member_said_after_it(msgs, ledger):
    member(ledger, channels=("sms",))
    stop = inbound("TD", "SM1", provider="twilio", sender=PHONE, at=None)
    stored(msgs, stop, NOW)
    start = inbound("START", "SM2", provider="twilio", sender=PHONE, at=None)
    stored(msgs, start, NOW + timedelta(minutes=1))
    with stored_push(start, msgs, NOW + timedelta(minutes=1)):
        apply_message(start, ledger, msgs, Queues(), RULES, NOW + timedelta(minutes=1))
    reapply_pushes(msgs, ledger, Queues(), RULES, NOW + timedelta(minutes=10))
    assert ledger.consent_history("ana", "sms")[0].status == "opted_in"


def test_a_late_stop_is_not_confirmed_to_a_member_who_opted_in_since(msgs, ledger):
    member(ledger)
    stored(msgs, inbound("STOP", "wamid.OLD", at=NOW))            # not applied: the webhook failed
    queues = Queues()
    start = inbound("START", "wamid.NEW", at=NOW + timedelta(minutes=1))
    apply_message(start, ledger, msgs, queues, RULES, NOW + timedelta(minutes=1))
    assert reapply_pushes(msgs, ledger, queues, RULES, NOW + timedelta(minutes=10))["applied"] == 1
    assert ledger.consent_history("ana", "whatsapp")[0].status == "opted_in"
    assert queues.sent == []                                      # no "you are unsubscribed"


def test_a_push_that_keeps_failing_backs_off_and_never_holds_up_the_others(msgs, ledger, monkeypatch):
    from loyalty.messaging import conversations
    member(ledger)
    stored(msgs, ChannelEvent(provider="whatsapp", sender=PHONE.lstrip("+"), event="stop_marketing", raw="stop",
                              at=None, dedup_key="pref-1"))
    stored(msgs, inbound("STOP", "wamid.IN9"), NOW + timedelta(seconds=1))
    real = conversations.apply_event
    monkeypatch.setattr(conversations, "apply_event", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("bug")))
    first = reapply_pushes(msgs, ledger, Queues(), RULES, NOW + timedelta(minutes=5, seconds=1))
    assert first == {"due": 2, "applied": 1, "failed": 1}
    assert reapply_pushes(msgs, ledger, Queues(), RULES, NOW + timedelta(minutes=9))["due"] == 0     # backed off
    monkeypatch.setattr(conversations, "apply_event", real)
    assert reapply_pushes(msgs, ledger, Queues(), RULES, NOW + timedelta(minutes=11))["applied"] == 1
    assert ledger.consent_history("ana", "whatsapp_marketing")[0].status == "opted_out"


def test_a_receipt_that_overtook_the_record_of_its_send_is_applied_once_the_send_is_recorded(msgs, ledger):
    msgs.create_message(record(channel="wechat", fallbacks=()))
    msgs.claim("m-1", "wechat", NOW)
    early = receipt("delivered", "200163836", provider="wechat")
    assert apply_status(early, msgs, NOW).handled == "ignored:unknown_message"
    msgs.store_inbound("wechat", "status#200163836#delivered", early.__dict__, NOW, kind="status")
    claim = msgs.message("m-1")
    msgs.mark_sent("m-1", "wechat", "200163836", NOW, channel="wechat", lease_until=claim.lease_until)
    assert reapply_pushes(msgs, ledger, Queues(), RULES, NOW + timedelta(minutes=5))["applied"] == 1
    assert msgs.message("m-1").status == "delivered"


def test_a_receipt_for_a_message_never_known_is_let_go_after_a_few_tries(msgs, ledger):
    foreign = receipt("delivered", "999", provider="wechat")
    msgs.store_inbound("wechat", "status#999#delivered", foreign.__dict__, NOW, kind="status")
    at = NOW
    for _ in range(UNKNOWN_RECEIPT_TRIES):
        at += timedelta(hours=7)
        reapply_pushes(msgs, ledger, Queues(), RULES, at)
    assert msgs.due_inbound(at + timedelta(days=1)) == []


# --- the first opt-in milestone, from a channel -----------------------------------------------

def test_a_wechat_follow_or_an_opt_in_keyword_earns_the_first_opt_in_milestone_once(msgs, ledger):
    from loyalty.messaging.conversations import apply_event
    member(ledger, channels=())
    follow = ChannelEvent(provider="wechat", sender="oAna", event="follow", raw="subscribe", at=None, dedup_key="f-1")
    assert apply_event(follow, ledger, NOW, RULES).handled == "consent:opted_in"
    assert ledger.load_account("ana", with_lots=False).balance == 50
    [entry] = ledger.all_entries("ana")
    assert entry.meta == {"rule": "first_opt_in"}
    apply_event(ChannelEvent(provider="wechat", sender="oAna", event="unfollow", raw="unsubscribe", at=None,
                             dedup_key="f-2"), ledger, NOW + timedelta(minutes=1), RULES)
    apply_event(ChannelEvent(provider="wechat", sender="oAna", event="follow", raw="subscribe", at=None,
                             dedup_key="f-3"), ledger, NOW + timedelta(minutes=2), RULES)
    assert apply_message(inbound("YES", "wamid.OPTIN"), ledger, msgs, Queues(), RULES,
                         NOW + timedelta(minutes=3)).handled == "reply:opt_in_confirmed"
    assert ledger.load_account("ana", with_lots=False).balance == 50       # once per member
