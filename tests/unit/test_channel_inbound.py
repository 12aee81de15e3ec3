"""Provider pushes parsed into StatusUpdate / InboundMessage / ChannelEvent, from the
sample payloads in tests/events/providers, and the keyword table."""
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from wechatpy import parse_message

from loyalty.channels.inbound import (
    EVENTS, STATUSES, ChannelEvent, InboundMessage, StatusUpdate, classify_keyword, normalise_keyword,
    parse_aliyun_report, parse_aliyun_up, parse_twilio_inbound, parse_twilio_status, parse_wechat, parse_whatsapp,
)
from loyalty.errors import Invalid

SAMPLES = Path(__file__).resolve().parents[1] / "events" / "providers"


def beijing(*args) -> int:
    return int(datetime(*args, tzinfo=timezone(timedelta(hours=8))).timestamp())


def sample(name: str):
    path = SAMPLES / name
    return path.read_bytes() if path.suffix == ".xml" else json.loads(path.read_text(encoding="utf-8"))


# --- WhatsApp ---------------------------------------------------------------------------

def test_whatsapp_statuses_out_of_order_with_and_without_pricing():
    updates = parse_whatsapp(sample("whatsapp_statuses.json"))
    assert [(u.status, u.at) for u in updates] == [("read", 1803520090), ("delivered", 1803520005),
                                                   ("sent", 1803520000)]
    assert updates[0] == StatusUpdate(
        provider="whatsapp", provider_message_id="wamid.HBgLODYxMzgwMDAwMDAwFQIAERgSQUFBQUFBQUFBQUFBQUFBAA==",
        status="read", at=1803520090, our_ref="msg-2b7c1d0e9f8a7b6c5d4e", recipient="8613800000000",
        error_code=None, error_title=None, raw_status="read")
    assert {u.our_ref for u in updates} == {"msg-2b7c1d0e9f8a7b6c5d4e"}


def test_whatsapp_failed_statuses_carry_the_first_error():
    updates = {u.provider_message_id: u for u in parse_whatsapp(sample("whatsapp_statuses_failed.json"))}
    assert {k: (u.status, u.error_code) for k, u in updates.items()} == {
        "wamid.FAILED131047": ("failed", "131047"),
        "wamid.FAILED131026": ("failed", "131026"),
        "wamid.FAILED131050": ("failed", "131050"),
        "wamid.FAILEDNOERRORS": ("failed", None),
    }
    assert updates["wamid.FAILED131047"].error_title == "Re-engagement message"
    assert updates["wamid.FAILED131047"].our_ref == "msg-window"
    assert updates["wamid.FAILED131026"].our_ref is None
    # no title: the message stands in
    assert updates["wamid.FAILED131050"].error_title.startswith("Unable to deliver the message")


def test_whatsapp_odd_statuses_are_kept_and_flagged_never_crash():
    updates = parse_whatsapp(sample("whatsapp_statuses_odd.json"))
    assert [(u.provider_message_id, u.status, u.raw_status, u.at, u.recipient) for u in updates] == [
        ("wamid.PLAYED", "unknown", "played", 1803520200, "8613800000001"),
        ("wamid.MINIMAL", "delivered", "delivered", None, None),
        ("wamid.NOSTATUS", "unknown", "", None, "8613800000002"),
    ]  # the status without an id, the non-object, the template update and empty changes are left out
    assert updates[2].error_code is None


def test_whatsapp_inbound_messages():
    messages = parse_whatsapp(sample("whatsapp_inbound.json"))
    assert all(isinstance(m, InboundMessage) for m in messages)
    text, button, interactive, image, sticker, unsupported = messages
    assert text == InboundMessage(
        provider="whatsapp", provider_message_id="wamid.HBgLODUyOTEyMzQ1NjcVAgASGBQzQTdCMEM0RjA5MkE3RjJGQjFBMQA=",
        sender="85291234567", text="ＳＴＯＰ", at=1803520300, kind="text",
        dedup_key="whatsapp#msg#wamid.HBgLODUyOTEyMzQ1NjcVAgASGBQzQTdCMEM0RjA5MkE3RjJGQjFBMQA=")
    assert classify_keyword(text.text) == "opt_out"
    assert (button.kind, button.text, button.payload) == ("button", "Stop promotions", "stop_promotions")
    assert (interactive.kind, interactive.text, interactive.payload) == ("interactive", "我的积分", "balance")
    assert classify_keyword(interactive.text) == "balance"
    assert (image.kind, image.text) == ("image", "receipt")
    assert (sticker.kind, sticker.text, unsupported.kind, unsupported.text) == ("sticker", "", "unsupported", "")
    assert len({m.dedup_key for m in messages}) == len(messages)


def test_whatsapp_user_preferences():
    events = parse_whatsapp(sample("whatsapp_user_preferences.json"))
    assert all(isinstance(e, ChannelEvent) for e in events)
    assert [(e.sender, e.event, e.raw, e.at) for e in events] == [
        ("85291234567", "stop_marketing", "stop", 1803520400),
        ("85291234568", "resume_marketing", "resume", 1803520401),
        ("85291234569", "stop_marketing", "STOP_MARKETING_MESSAGES", 1803520402),
        ("85291234570", "unknown", "snooze", None),
    ]
    assert len({e.dedup_key for e in events}) == 4


def test_whatsapp_one_body_mixes_changes():
    body = sample("whatsapp_statuses.json")
    body["entry"].append(sample("whatsapp_inbound.json")["entry"][0])
    body["entry"][0]["changes"].append(sample("whatsapp_user_preferences.json")["entry"][0]["changes"][0])
    kinds = [type(p).__name__ for p in parse_whatsapp(body)]
    assert kinds == ["StatusUpdate"] * 3 + ["ChannelEvent"] * 4 + ["InboundMessage"] * 6


@pytest.mark.parametrize("body", [
    [], "x", None, {}, {"object": "whatsapp_business_account"}, {"entry": {}},
    {"object": "page", "entry": []},
])
def test_whatsapp_invalid_top_level(body):
    with pytest.raises(Invalid):
        parse_whatsapp(body)


def test_whatsapp_empty_entry_is_nothing():
    assert parse_whatsapp({"object": "whatsapp_business_account", "entry": []}) == []


# --- Twilio -----------------------------------------------------------------------------

def test_twilio_status_callbacks():
    forms = sample("twilio_status_callbacks.json")
    parsed = {name: parse_twilio_status(form) for name, form in forms.items()}
    assert parsed["delivered"] == StatusUpdate(
        provider="twilio", provider_message_id="SM0123456789abcdef0123456789abcdef", status="delivered", at=None,
        our_ref=None, recipient="+85291234567", error_code=None, error_title=None, raw_status="delivered")
    assert (parsed["undelivered"].status, parsed["undelivered"].error_code,
            parsed["undelivered"].error_title) == ("undelivered", "30007", "Message filtered")
    assert (parsed["failed_unsubscribed"].status, parsed["failed_unsubscribed"].error_code) == ("failed", "21610")
    assert (parsed["legacy"].provider_message_id, parsed["legacy"].status) == ("SM33333333333333333333333333333333",
                                                                               "sent")
    assert (parsed["queued_empty_error"].status, parsed["queued_empty_error"].error_code) == ("accepted", None)
    assert (parsed["new_status"].status, parsed["new_status"].raw_status) == ("unknown", "partially_delivered")


@pytest.mark.parametrize("raw, status", [
    ("queued", "accepted"), ("accepted", "accepted"), ("scheduled", "accepted"), ("sending", "accepted"),
    ("sent", "sent"), ("delivered", "delivered"), ("read", "read"), ("undelivered", "undelivered"),
    ("failed", "failed"), ("canceled", "failed"), ("receiving", "unknown"), ("", "unknown"),
])
def test_twilio_status_values(raw, status):
    assert parse_twilio_status({"MessageSid": "SM1", "MessageStatus": raw}).status == status


def test_twilio_status_from_a_multi_value_form():
    update = parse_twilio_status({"MessageSid": ["SM1"], "MessageStatus": ["delivered"], "ErrorCode": []})
    assert (update.provider_message_id, update.status, update.error_code) == ("SM1", "delivered", None)


@pytest.mark.parametrize("form", [{}, {"MessageStatus": "sent"}, {"MessageSid": ""}, ["MessageSid"]])
def test_twilio_status_without_a_sid_is_invalid(form):
    with pytest.raises(Invalid):
        parse_twilio_status(form)


def test_twilio_inbound():
    forms = sample("twilio_inbound.json")
    stop = parse_twilio_inbound(forms["stop"])
    assert stop == InboundMessage(provider="twilio", provider_message_id="SM89abcdef0123456789abcdef01234567",
                                  sender="+85291234567", text="Stop", at=None, kind="text",
                                  dedup_key="twilio#msg#SM89abcdef0123456789abcdef01234567")
    assert classify_keyword(stop.text) == "opt_out"
    assert classify_keyword(parse_twilio_inbound(forms["points"]).text) == "balance"
    media = parse_twilio_inbound(forms["media"])
    assert (media.kind, media.text) == ("media", "")


@pytest.mark.parametrize("form", [{"From": "+85291234567", "Body": "x"}, {"MessageSid": "SM1", "Body": "x"}])
def test_twilio_inbound_without_sid_or_sender_is_invalid(form):
    with pytest.raises(Invalid):
        parse_twilio_inbound(form)


# --- WeChat -----------------------------------------------------------------------------

@pytest.mark.parametrize("name, status, code, title", [
    ("wechat_template_success.xml", "delivered", None, None),
    ("wechat_template_user_block.xml", "failed", "user_block", "user block"),
    ("wechat_template_system_failed.xml", "failed", "system_failed", "system failed"),
    ("wechat_template_unknown.xml", "unknown", None, None),
])
def test_wechat_template_delivery(name, status, code, title):
    update = parse_wechat(sample(name))
    assert isinstance(update, StatusUpdate)
    assert (update.provider, update.recipient, update.status, update.error_code, update.error_title) == (
        "wechat", "oAbc123_xyz", status, code, title)
    # what wechatpy reads from the same push
    reference = parse_message(sample(name))
    assert (reference.event, str(reference.id), reference.source, reference.status) == (
        "templatesendjobfinish", update.provider_message_id, update.recipient, update.raw_status)
    assert int(reference.create_time.timestamp()) == update.at


@pytest.mark.parametrize("raw, status, code", [
    ("failed:user block", "failed", "user_block"), ("failed: system failed", "failed", "system_failed"),
    ("FAILED:  user   block ", "failed", "user_block"), ("failed", "failed", None),
    ("failed:new reason", "failed", "new_reason"), ("success", "delivered", None), ("", "unknown", None),
])
def test_wechat_status_values(raw, status, code):
    xml = ("<xml><FromUserName>o1</FromUserName><CreateTime>1</CreateTime><MsgType>event</MsgType>"
           f"<Event>TEMPLATESENDJOBFINISH</Event><MsgID>9</MsgID><Status><![CDATA[{raw}]]></Status></xml>")
    update = parse_wechat(xml.encode())
    assert (update.status, update.error_code, update.raw_status) == (status, code, raw.strip())


def test_wechat_text_message_with_cdata():
    message = parse_wechat(sample("wechat_text.xml"))
    assert message == InboundMessage(provider="wechat", provider_message_id="24412345678901234", sender="oAbc123_xyz",
                                     text="我的積分 <&>", at=1803520100, kind="text",
                                     dedup_key="wechat#msg#24412345678901234")
    reference = parse_message(sample("wechat_text.xml"))
    assert (reference.type, reference.content, str(reference.id), reference.source) == (
        "text", message.text, message.provider_message_id, message.sender)


def test_wechat_non_text_message_is_kept_with_its_kind():
    message = parse_wechat(sample("wechat_image.xml"))
    assert (message.kind, message.text, message.dedup_key) == ("image", "", "wechat#msg#24412345678901235")


@pytest.mark.parametrize("name, event, raw", [
    ("wechat_subscribe.xml", "follow", "subscribe"),
    ("wechat_unsubscribe.xml", "unfollow", "unsubscribe"),
    ("wechat_menu_click.xml", "unknown", "CLICK"),
])
def test_wechat_events(name, event, raw):
    parsed = parse_wechat(sample(name))
    assert isinstance(parsed, ChannelEvent)
    assert (parsed.sender, parsed.event, parsed.raw) == ("oAbc123_xyz", event, raw)
    assert parsed.dedup_key == f"wechat#event#oAbc123_xyz#{parsed.at}#{raw.lower()}"
    assert parse_message(sample(name)).source == parsed.sender


def test_wechat_event_retries_share_a_dedup_key_and_different_events_do_not():
    first, retry = parse_wechat(sample("wechat_unsubscribe.xml")), parse_wechat(sample("wechat_unsubscribe.xml"))
    assert first.dedup_key == retry.dedup_key
    follow_same_second = sample("wechat_subscribe.xml").replace(b"1803520200", b"1803520201")
    assert parse_wechat(follow_same_second).dedup_key != first.dedup_key


def test_wechat_subscription_message_choices():
    popup = parse_wechat(sample("wechat_subscribe_msg_popup.xml"))
    assert (popup.event, popup.raw) == ("subscribe_msg", "subscribe_msg_popup_event")
    assert popup.choices == (("VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", "accept"),
                             ("9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpdm8xnEM", "reject"))
    change = parse_wechat(sample("wechat_subscribe_msg_change.xml"))
    assert (change.event, change.choices) == ("subscribe_msg", (("VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc",
                                                                 "reject"),))


def test_wechat_subscription_message_sent_is_a_delivery_report():
    update = parse_wechat(sample("wechat_subscribe_msg_sent.xml"))
    assert update == StatusUpdate(provider="wechat", provider_message_id="1700827132819554304", status="delivered",
                                  at=1803520302, our_ref=None, recipient="oAbc123_xyz", error_code=None,
                                  error_title=None, raw_status="success")
    refused = sample("wechat_subscribe_msg_sent.xml").replace(b"<ErrorCode>0", b"<ErrorCode>43101").replace(
        b"[success]", b"[failed:user refuse]")
    assert (parse_wechat(refused).status, parse_wechat(refused).error_code) == ("failed", "43101")
    empty = b"<xml><FromUserName>o1</FromUserName><MsgType>event</MsgType><Event>subscribe_msg_sent_event</Event></xml>"
    assert (parse_wechat(empty).event, parse_wechat(empty).raw) == ("unknown", "subscribe_msg_sent_event")


def test_wechat_missing_optional_fields():
    message = parse_wechat(b"<xml><FromUserName>o1</FromUserName><MsgType>text</MsgType></xml>")
    assert (message.text, message.at, message.provider_message_id, message.dedup_key) == ("", None, "",
                                                                                         "wechat#msg#o1#")
    event = parse_wechat(b"<xml><FromUserName>o1</FromUserName><MsgType>event</MsgType></xml>")
    assert (event.event, event.raw) == ("unknown", "")


@pytest.mark.parametrize("name", ["wechat_billion_laughs.xml", "wechat_external_entity.xml"])
def test_wechat_entity_declarations_are_refused_quickly(name):
    started = time.perf_counter()
    with pytest.raises(Invalid, match="DOCTYPE"):
        parse_wechat(sample(name))
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("body", [
    b"<xml><FromUserName>o1</FromUserName>", b"not xml", b"<xml><a></b></xml>",
    b"<xml><FromUserName>o1</FromUserName></xml>",                        # no MsgType
    b"<xml><MsgType>text</MsgType></xml>",                                 # no sender
    b"<xml><Encrypt><![CDATA[abc]]></Encrypt></xml>",                      # encrypted mode is not supported
    b"<xml><FromUserName>o1</FromUserName><MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event></xml>",
])
def test_wechat_malformed_is_invalid(body):
    with pytest.raises(Invalid):
        parse_wechat(body)


def test_wechat_empty_body_is_nothing():
    assert parse_wechat(b"") is None
    assert parse_wechat(b"  \n") is None


# --- Aliyun -----------------------------------------------------------------------------

def test_aliyun_reports():
    updates = parse_aliyun_report(sample("aliyun_report.json"))
    assert updates[0] == StatusUpdate(
        provider="aliyun", provider_message_id="932702304080415357^0", status="delivered",
        at=beijing(2027, 2, 22, 12, 0, 5),
        our_ref="msg-2b7c1d0e9f8a7b6c5d4e", recipient="+8613800000000", error_code=None, error_title=None,
        raw_status="DELIVERED")
    assert [(u.status, u.error_code, u.our_ref) for u in updates[1:]] == [
        ("failed", "MK:0001", "msg-3c8d"),
        ("failed", "IC:0015", None),
        ("delivered", None, None),        # success as a string
        ("unknown", None, "msg-4d9e"),    # no success flag at all
    ]  # the receipt naming no message (no biz_id, no out_id) is left out
    assert updates[1].error_title == "用户停机"
    assert updates[2].at == beijing(2027, 2, 22, 12, 0, 0)  # no report_time: the send time
    assert (updates[3].at, updates[3].raw_status) == (None, "true")  # unparseable time
    assert updates[4].recipient == "+85291234567"


@pytest.mark.parametrize("body", [{}, "[]", None, [1], [{"biz_id": "1"}, "x"]])
def test_aliyun_invalid_top_level(body):
    with pytest.raises(Invalid):
        parse_aliyun_report(body)
    with pytest.raises(Invalid):
        parse_aliyun_up(body)


def test_aliyun_replies():
    replies = parse_aliyun_up(sample("aliyun_up.json"))
    assert replies[0] == InboundMessage(provider="aliyun", provider_message_id="1234567890", sender="+8613800000000",
                                        text="R", at=beijing(2027, 2, 22, 12, 3, 0), kind="text",
                                        dedup_key="aliyun#up#1234567890")
    assert [classify_keyword(r.text) for r in replies] == ["opt_out", "opt_out", "balance"]
    assert replies[1].dedup_key == "aliyun#up#1234567891"
    # no sequence_id: keyed on number, time and text, so a retry lands on the same key
    assert replies[2].provider_message_id == ""
    assert replies[2].dedup_key == parse_aliyun_up(sample("aliyun_up.json"))[2].dedup_key
    assert replies[2].dedup_key.startswith("aliyun#up#")
    assert len(replies) == 3  # the reply without a number is left out


def test_aliyun_empty_arrays():
    assert parse_aliyun_report([]) == [] and parse_aliyun_up([]) == []


# --- the normalised values stay in their sets -------------------------------------------

def test_statuses_and_events_stay_in_their_sets():
    whatsapp = ("whatsapp_statuses_odd.json", "whatsapp_statuses.json", "whatsapp_user_preferences.json")
    parsed = [*(item for name in whatsapp for item in parse_whatsapp(sample(name))),
              *parse_aliyun_report(sample("aliyun_report.json")),
              *(parse_wechat(p.read_bytes()) for p in SAMPLES.glob("wechat_*.xml")
                if "entity" not in p.name and "laughs" not in p.name)]
    assert len(parsed) > 20
    for item in parsed:
        if isinstance(item, StatusUpdate):
            assert item.status in STATUSES
        elif isinstance(item, ChannelEvent):
            assert item.event in EVENTS


# --- keywords ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, intent", [
    # opt-out
    ("STOP", "opt_out"), (" Stop ", "opt_out"), ("ｓｔｏｐ", "opt_out"), ("ＳＴＯＰ", "opt_out"), ("stop.", "opt_out"),
    ("STOP!!", "opt_out"), ("STOP ALL", "opt_out"), ("stop   all", "opt_out"), ("ＳＴＯＰ　ＡＬＬ", "opt_out"),
    ("UNSUBSCRIBE", "opt_out"), ("退订", "opt_out"), ("退订。", "opt_out"), ("退訂", "opt_out"), ("「退订」", "opt_out"),
    ("T", "opt_out"), ("t", "opt_out"), ("ｔ", "opt_out"), ("TD", "opt_out"), ("td", "opt_out"), ("Td", "opt_out"),
    ("ＴＤ", "opt_out"), ("R", "opt_out"), ("r。", "opt_out"), ("\tSTOP\n", "opt_out"),
    # opt-in
    ("同意", "opt_in"), ("YES", "opt_in"), ("yes!", "opt_in"), ("AGREE", "opt_in"), ("Start", "opt_in"),
    ("ＹＥＳ", "opt_in"),
    # balance
    ("我的积分", "balance"), ("我的積分", "balance"), ("POINTS", "balance"), ("points?", "balance"),
    ("BAL", "balance"), ("bal", "balance"), ("BALANCE", "balance"), ("积分", "balance"), ("我的积分？", "balance"),
    ("ＰＯＩＮＴＳ", "balance"),
    # help
    ("HELP", "help"), ("help?", "help"), ("帮助", "help"), ("幫助", "help"), ("客服", "help"), ("ＨＥＬＰ", "help"),
    # not keywords
    ("please stop sending me these", None), ("Don't stop", None), ("STOPPED", None), ("TDD", None),
    ("我要退订吗", None), ("what are my points", None), ("", None), ("   ", None), ("...", None),
    ("S T O P", None), ("T D", None), ("hello", None),
])
def test_classify_keyword(text, intent):
    assert classify_keyword(text) == intent


def test_normalise_keyword():
    assert normalise_keyword("  ＳＴＯＰ　ＡＬＬ ") == "stop all"
    assert normalise_keyword("Stop\t\n All") == "stop all"
    assert normalise_keyword("退訂。") == "退訂。"  # punctuation is classify_keyword's business
    assert normalise_keyword("STRASSE") == normalise_keyword("straße")  # casefold, not lower
