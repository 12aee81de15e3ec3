"""No template parameter is ever empty: WhatsApp refuses one with 132000 (WeChat 47003),
so a member whose points buy nothing got no answer to 我的积分 whenever the reply went as
the approved template. Each parameter is checked as the provider sandbox checks it
(infra/local/sandbox), which refuses what Meta refuses."""
from datetime import timedelta
from string import Formatter

import pytest

from infra.local.sandbox.whatsapp import TemplateShapeError, _check_parameter
from loyalty.channels.whatsapp import whatsapp_body
from loyalty.domain import Lot, parse_time
from loyalty.errors import Invalid
from loyalty.messaging.conversations import _balance_variables
from loyalty.messaging.dispatch import MemberSnapshot
from loyalty.messaging.templates import LOCALES, render
from loyalty.records import Profile
from loyalty.rules import build_rules

RULES = build_rules()
NOW = parse_time("2026-11-23T10:00:00+08:00")


def member(points: int, locale: str = "en") -> MemberSnapshot:
    profile = Profile(member_id="ana", name="Ana", phone="+85290000001", locale=locale,
                      time_zone="Asia/Shanghai")
    expires = NOW + timedelta(days=300)
    lots = (Lot("l1", NOW - timedelta(days=65), expires, points, points, "order:1"),) if points else ()
    return MemberSnapshot(profile=profile, consents={}, lots=lots)


def sandbox_accepts(body: dict) -> None:
    """The sandbox's (Meta's) check of every parameter of a Cloud API template body."""
    for index, component in enumerate(body["template"]["components"]):
        for number, parameter in enumerate(component["parameters"]):
            _check_parameter(parameter, f"template.components[{index}].parameters[{number}]")


@pytest.mark.parametrize("locale, redeemable", [("en", "Nothing to redeem yet."), ("zh-CN", "暂无可兑换的礼品。"),
                                                ("zh-HK", "暫無可兌換的禮品。")])
def test_the_balance_reply_of_a_member_whose_points_buy_nothing_goes_as_a_template(locale, redeemable):
    variables = _balance_variables(member(10, locale), RULES, NOW)
    assert variables["redeemable"] == ""              # the fact, as recorded: nothing is redeemable
    payload = render(RULES.template("balance_reply"), "whatsapp", locale, variables, message_id="m-1")
    assert payload["body_params"][0] == "10" and payload["body_params"][2] == redeemable
    sandbox_accepts(whatsapp_body("+85290000001", payload, "m-1"))


def test_a_member_with_no_points_at_all_gets_placeholders_for_what_expires_and_what_is_redeemable():
    payload = render(RULES.template("balance_reply"), "whatsapp", "en", _balance_variables(member(0), RULES, NOW),
                     message_id="m-1")
    assert payload["body_params"] == ["0", "Nothing expires soon. ", "Nothing to redeem yet."]
    sandbox_accepts(whatsapp_body("+85290000001", payload, "m-1"))


def test_free_form_text_leaves_an_empty_fragment_out_rather_than_a_placeholder():
    variables = _balance_variables(member(10), RULES, NOW)
    text = render(RULES.template("balance_reply"), "whatsapp", "en", variables, message_id="m-1", free_form=True)
    assert text["body"] == "Your points: 10. 10 expire on 19 Sep 2027. "
    sms = render(RULES.template("balance_reply"), "sms", "en", variables, message_id="m-1")
    assert sms["text"] == "Your points: 10. 10 expire on 19 Sep 2027. "
    assert sms["params"]["redeemable"] == "Nothing to redeem yet."   # Aliyun's template parameter


@pytest.mark.parametrize("name", sorted(RULES.templates))
@pytest.mark.parametrize("locale", LOCALES)
def test_no_template_of_the_rules_renders_an_empty_parameter_whatever_is_empty(name, locale):
    template = RULES.template(name)
    names = {*(template.whatsapp.body if template.whatsapp else ()),
             *((template.whatsapp.button,) if template.whatsapp and template.whatsapp.button else ()),
             *(template.wechat.fields.values() if template.wechat else ()),
             *(template.sms.aliyun_params if template.sms else ()),
             *(field for text in (template.sms.text.values() if template.sms else ())
               for _, field, _, _ in Formatter().parse(text) if field)}
    empty = {key: "" for key in names}
    if template.whatsapp:
        payload = render(template, "whatsapp", locale, empty, message_id="m-1")
        assert all(p.strip() for p in payload["body_params"] + (payload["button_params"] or []))
        sandbox_accepts(whatsapp_body("+85290000001", payload, "m-1"))
    if template.wechat:
        assert all(v.strip() for v in render(template, "wechat", locale, empty, message_id="m-1")["data"].values())
    if template.sms and template.sms.aliyun_template_code:
        assert all(v.strip() for v in render(template, "sms", locale, empty, message_id="m-1")["params"].values())


def test_the_sandbox_refuses_an_empty_parameter_as_meta_does():
    with pytest.raises(TemplateShapeError) as refused:
        _check_parameter({"type": "text", "text": ""}, "p")
    assert refused.value.code == 132000


@pytest.mark.parametrize("placeholders, problem", [
    ({"redeemable": {"en": "Nothing yet."}}, "texts for exactly"),
    ({"redeemable": {"zh-CN": "暂无", "zh-HK": "暫無", "en": "  "}}, "placeholder says something"),
])
def test_placeholders_say_something_in_every_locale(placeholders, problem):
    document = dict(build_rules().model_dump(mode="json")["templates"])
    document["balance_reply"] = {**document["balance_reply"], "placeholders": placeholders}
    with pytest.raises(Invalid) as refused:
        build_rules({"templates": document})
    assert any(p["field"] == "templates.balance_reply" and problem in p["problem"] for p in refused.value.problems)
