"""Replying 同意 / AGREE to a challenge invitation enrols the member (E5), on every channel;
without an open invitation the word is the channel's opt-in, as before."""
from datetime import timedelta

import pytest

from loyalty.engagement.challenge_setup import invite, put_challenge
from loyalty.engagement.challenges import ChallengeSpec
from loyalty.errors import Transient
from loyalty.messaging.conversations import apply_message
from tests.unit.messaging_fakes import NOW, PHONE, RULES, Queues, ledger, member, msgs  # noqa: F401
from tests.unit.test_conversations import inbound

ZONE = RULES.program_timezone


def challenge(ledger, days=90):
    put_challenge(ledger, "c1", ChallengeSpec(name="Winter 90", starts_on=(NOW + timedelta(days=1)).date(), days=days),
                  NOW, ZONE)


@pytest.mark.parametrize("word, provider, sender", [("同意", "whatsapp", PHONE.lstrip("+")),
                                                    ("AGREE", "twilio", PHONE), ("yes!", "aliyun", PHONE),
                                                    ("同意", "wechat", "oAna")])
def test_agreeing_to_an_open_invitation_enrols_the_member_with_the_message_as_proof(msgs, ledger, word, provider,
                                                                                     sender):
    member(ledger, channels=("whatsapp", "sms", "wechat"))
    challenge(ledger)
    invite(ledger, Queues(), "c1", ["ana"], "op", NOW, ZONE)
    queues = Queues()
    outcome = apply_message(inbound(word, provider=provider, sender=sender), ledger, msgs, queues, RULES,
                            NOW + timedelta(minutes=5))
    assert outcome.handled == "reply:challenge_enrolled"
    participant = ledger.get_participant("c1", "ana")
    channel = {"twilio": "sms", "aliyun": "sms"}.get(provider, provider)
    assert participant.source == f"keyword:{channel}" and participant.proof == f"wamid.IN1 {word}"
    (consent,) = ledger.consent_history("ana", "challenge:c1")
    assert (consent.status, consent.proof) == ("opted_in", f"wamid.IN1 {word}")
    if provider == "wechat":
        assert "Winter 90" in outcome.reply
    else:
        (reply,) = [r for r in msgs.member_messages("ana", 10) if r.template == "challenge_enrolled"]
        assert reply.variables["challenge"] == "Winter 90" and reply.channel == channel


def test_agreeing_again_or_without_an_invitation_is_the_channels_opt_in(msgs, ledger):
    member(ledger)
    challenge(ledger)
    assert apply_message(inbound("同意"), ledger, msgs, Queues(), RULES, NOW).handled.startswith("consent:")
    assert ledger.get_participant("c1", "ana") is None
    invite(ledger, Queues(), "c1", ["ana"], "op", NOW, ZONE)
    assert apply_message(inbound("同意", dedup="wamid.IN2"), ledger, msgs, Queues(), RULES,
                         NOW).handled == "reply:challenge_enrolled"
    assert apply_message(inbound("同意", dedup="wamid.IN3"), ledger, msgs, Queues(), RULES,
                         NOW).handled.startswith("consent:")
    assert ledger.get_participant("c1", "ana").proof == "wamid.IN2 同意"


def test_the_retry_of_an_agreement_whose_confirmation_failed_confirms_it(msgs, ledger, monkeypatch):
    # The first try enrolled her, then the store failed before the confirmation was made
    # (our webhook answered 503): the provider's retry confirms the enrolment, once.
    member(ledger)
    challenge(ledger)
    invite(ledger, Queues(), "c1", ["ana"], "op", NOW, ZONE)
    create = msgs.create_message

    def failing(*args, **kw):
        raise Transient("the store is busy")

    monkeypatch.setattr(msgs, "create_message", failing)
    with pytest.raises(Transient):
        apply_message(inbound("同意", dedup="wamid.IN2"), ledger, msgs, Queues(), RULES, NOW)
    monkeypatch.setattr(msgs, "create_message", create)
    assert ledger.get_participant("c1", "ana").proof == "wamid.IN2 同意"
    queues = Queues()
    for _ in range(2):
        assert apply_message(inbound("同意", dedup="wamid.IN2"), ledger, msgs, queues, RULES,
                             NOW).handled == "reply:challenge_enrolled"
    assert len([r for r in msgs.member_messages("ana", 10) if r.template == "challenge_enrolled"]) == 1
    assert len({body["message_id"] for _, body, _ in queues.sent}) == 1


def test_an_invitation_to_a_challenge_that_ended_enrols_nobody(msgs, ledger):
    member(ledger)
    challenge(ledger, days=2)
    invite(ledger, Queues(), "c1", ["ana"], "op", NOW, ZONE)
    later = NOW + timedelta(days=5)
    assert apply_message(inbound("AGREE", at=later), ledger, msgs, Queues(), RULES, later).handled.startswith("consent:")
    assert ledger.get_participant("c1", "ana") is None


def test_start_is_not_an_agreement(msgs, ledger):
    member(ledger)
    challenge(ledger)
    invite(ledger, Queues(), "c1", ["ana"], "op", NOW, ZONE)
    assert apply_message(inbound("START"), ledger, msgs, Queues(), RULES, NOW).handled.startswith("consent:")
    assert ledger.get_participant("c1", "ana") is None


@pytest.mark.parametrize("name", ["challenge_invitation", "challenge_enrolled"])
@pytest.mark.parametrize("channel", ["whatsapp", "wechat", "sms"])
@pytest.mark.parametrize("locale", ["zh-CN", "zh-HK", "en"])
def test_the_challenge_templates_render_on_every_channel_and_locale(name, channel, locale):
    from loyalty.messaging.templates import render
    template = RULES.template(name)
    variables = {"challenge": "Winter 90", "starts_on": "2026-12-02", "days": 90, "link": "https://x/m"}
    assert render(template, channel, locale, variables, message_id="m-1")


def test_the_invitation_carries_the_data_use_notice_and_is_marketing():
    template = RULES.template("challenge_invitation")
    assert template.category == "marketing"
    assert "我们会记录您的打卡数据用于积分统计和个性化内容推荐。您可以随时要求查看或删除您的数据。回复'同意'即可开始~" in \
        template.text["zh-CN"]
    assert RULES.template("challenge_enrolled").category == "transactional"


@pytest.mark.parametrize("provider, sender, stamped", [("whatsapp", PHONE.lstrip("+"), True), ("twilio", PHONE, False)])
def test_an_agreement_is_measured_against_the_requests_clock_and_a_twilio_one_came_at_it(msgs, ledger, provider,
                                                                                         sender, stamped):
    # the local stack's simulated day (the request's time) is months from the handler's clock
    member(ledger, channels=("whatsapp", "sms"))
    challenge(ledger)
    invite(ledger, Queues(), "c1", ["ana"], "op", NOW, ZONE)
    clock = NOW + timedelta(minutes=5)
    outcome = apply_message(inbound("AGREE", provider=provider, sender=sender, at=clock if stamped else None), ledger,
                            msgs, Queues(), RULES, NOW + timedelta(days=120), clock=clock)
    assert outcome.handled == "reply:challenge_enrolled"
    assert ledger.get_participant("c1", "ana") is not None
