"""Tier and catalog configuration is validated data (E7, E10), and the pure tier
functions decide as the rules say."""
from datetime import date

import pytest

from loyalty.domain import parse_time
from loyalty.engagement import tiers
from loyalty.engagement.state import Engagement, TierState
from loyalty.errors import Invalid
from loyalty.rules import build_rules

RULES = build_rules()
AT = parse_time("2026-03-10T10:00:00+08:00")


def problems(overrides) -> list[str]:
    with pytest.raises(Invalid) as refused:
        build_rules(overrides)
    return [p["field"] + ": " + p["problem"] for p in refused.value.problems]


def test_the_defaults_are_member_silver_gold_vip_in_90_days():
    assert [(t.name, t.threshold, t.multiplier_percent) for t in RULES.tiers.levels] == [
        ("member", 0, 100), ("silver", 2000, 110), ("gold", 6000, 125), ("vip", 15000, 150)]
    assert (RULES.tiers.window_days, RULES.tiers.warning_days) == (90, 7)
    assert RULES.redemption.discount_days.percent_off == 20 and RULES.redemption.discount_days.days_of_month == ()


@pytest.mark.parametrize("levels, says", [
    ([{"name": "silver", "threshold": 10}], "the first tier is the base tier"),
    ([{"name": "member", "threshold": 0}, {"name": "gold", "threshold": 50}, {"name": "silver", "threshold": 50}],
     "strictly increasing"),
    ([{"name": "member", "threshold": 0}, {"name": "member", "threshold": 5}], "unique"),
    ([{"name": "member", "threshold": 0, "multiplier_percent": 90}], "greater than or equal to 100"),
])
def test_bad_tiers_are_refused_naming_the_field(levels, says):
    found = problems({"tiers": {"levels": levels}})
    assert any(p.startswith("tiers.levels") and says in p for p in found), found


def test_an_item_for_an_unknown_tier_or_a_bad_redemption_day_is_refused():
    assert any("min_tier 'platinum' is not a tier" in p for p in problems(
        {"catalog": [{"item_id": "x", "name": "X", "points": 5, "min_tier": "platinum"}]}))
    assert any(p.startswith("redemption.discount_days.days_of_month") for p in problems(
        {"redemption": {"discount_days": {"days_of_month": [32]}}}))
    assert any(p.startswith("catalog.0.per_member_limit") for p in problems(
        {"catalog": [{"item_id": "x", "name": "X", "points": 5, "per_member_limit": 0}]}))


def test_the_tier_notices_need_their_templates():
    from loyalty.rules import Rules, default_document
    document = dict(default_document())
    document["templates"] = {k: v for k, v in document["templates"].items() if k != "tier_warning"}
    with pytest.raises(ValueError, match="tier_warning"):
        Rules.model_validate(document)


def test_the_review_day_is_when_enough_of_the_window_has_left_it():
    state = TierState(name="gold", qualifying=(("2026-03-01", 4000), ("2026-03-20", 2500), ("2026-04-02", 100)))
    # gold needs 6000: the 1 March bucket leaving (on 30 May) leaves 2600
    assert tiers.review_day(state, date(2026, 4, 2), RULES) == date(2026, 5, 30)
    assert tiers.review_day(TierState(name=None), date(2026, 4, 2), RULES) is None     # base tier: never
    assert tiers.review_day(state, date(2026, 5, 30), RULES) == date(2026, 5, 30)      # already below


def test_a_review_without_a_warning_period_goes_straight_to_the_downgrade():
    rules = build_rules({"tiers": {"warning_days": 0}})
    engagement, _ = tiers.qualify(Engagement(), 2020, AT, rules)
    assert engagement.tier.check_on == engagement.tier.review_on == "2026-06-08"
    same, change, warn = tiers.review(engagement, date(2026, 6, 7), rules)
    assert (change, warn) == (None, False)
    down, change, warn = tiers.review(engagement, date(2026, 6, 8), rules)
    assert (change.old, change.new, change.direction, warn) == ("silver", "member", "down", False)
    assert down.tier.check_on is None


def test_a_downgrade_may_pass_several_tiers_and_an_upgrade_several_too():
    engagement, change = tiers.qualify(Engagement(), 16000, AT, RULES)
    assert (change.old, change.new) == ("member", "vip")
    down, change, _ = tiers.review(engagement, date(2026, 6, 8), RULES)
    assert (change.old, change.new) == ("vip", "member")


def test_the_multiplier_rounds_down_and_the_base_tier_earns_none():
    silver, _ = tiers.qualify(Engagement(), 2000, AT, RULES)
    assert tiers.order_bonus(silver, 125, RULES) == 12 and tiers.order_bonus(Engagement(), 125, RULES) == 0


@pytest.mark.parametrize("name, variables", [
    ("tier_up", {"name": "Ana", "tier": "silver", "qualifying_points": 2040}),
    ("tier_warning", {"name": "Ana", "tier": "silver", "points_needed": 2000, "review_date": "2026-06-08",
                      "link": "https://example.com/m/ana", "link_token": "ana"}),
    ("tier_down", {"name": "Ana", "tier": "member", "previous": "silver", "qualifying_points": 1200,
                   "link": "https://example.com/m/ana", "link_token": "ana"}),
])
def test_the_tier_templates_render_on_every_channel_and_locale(name, variables):
    from loyalty.messaging.templates import LOCALES, render
    template = RULES.template(name)
    assert template.category == ("transactional" if name == "tier_up" else "utility")
    for locale in LOCALES:
        whatsapp = render(template, "whatsapp", locale, variables, message_id="m1")
        assert whatsapp["name"] == name and all(p.strip() for p in whatsapp["body_params"])
        wechat = render(template, "wechat", locale, variables, message_id="m1")
        assert all(0 < len(v) <= 20 for v in wechat["data"].values())
        sms = render(template, "sms", locale, variables, message_id="m1")
        assert "silver" in sms["text"] and "{" not in sms["text"]
