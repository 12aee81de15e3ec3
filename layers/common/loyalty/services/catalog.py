"""The redemption catalog as members see it (E10): the programme's items, and each
member's own view of them: items hidden below their tier left out, today's price
(redemption-day discounts) and the per-member limits left.

The per-member counts live in the member's engagement state (`TierState.redeemed`), so
a redemption takes its count in the same transaction as its debit, under the account's
version check: two concurrent redemptions cannot both take the last one."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from ..engagement.state import Engagement
from ..engagement.tiers import tier_name

if TYPE_CHECKING:
    from ..ports import AccountStore
    from ..rules import CatalogItem, Rules


def catalog_view(rules: "Rules") -> dict:
    """The active items and the cash value of points (for checkout quotes)."""
    return {"items": [item.model_dump() for item in rules.catalog if item.active],
            "points_per_currency_unit": rules.redemption.points_per_currency_unit}


def is_redemption_day(rules: "Rules", now: datetime) -> bool:
    """A configured redemption day, on the programme's calendar."""
    days = rules.redemption.discount_days
    local = now.astimezone(ZoneInfo(rules.program_timezone)).date()
    return local.day in days.days_of_month or local.isoweekday() in days.weekdays


def price(item: "CatalogItem", rules: "Rules", now: datetime) -> int:
    """What the item costs at `now`: its points, less the redemption day's discount
    (rounded in the member's favour, never below 1 point)."""
    if not item.discountable or not is_redemption_day(rules, now):
        return item.points
    return max(1, item.points * (100 - rules.redemption.discount_days.percent_off) // 100)


def visible(item: "CatalogItem", engagement: Engagement, rules: "Rules") -> bool:
    """Whether the member's tier may see (and redeem) the item."""
    return item.min_tier is None or rules.tiers.rank(engagement.tier.name) >= rules.tiers.rank(item.min_tier)


def limit_key(item: "CatalogItem", rules: "Rules", at: datetime) -> str:
    """What the member's count of `item` is kept under: the item (a lifetime limit), or
    the item and the programme-local calendar month of `at` (a monthly limit)."""
    if item.per_member_limit_period == "month":
        return f"{item.item_id}#{at.astimezone(ZoneInfo(rules.program_timezone)):%Y-%m}"
    return item.item_id


def redeemed(engagement: Engagement, key: str) -> int:
    return dict(engagement.tier.redeemed).get(key, 0)


def limit_left(item: "CatalogItem", engagement: Engagement, rules: "Rules", now: datetime) -> int | None:
    if item.per_member_limit is None:
        return None
    return max(0, item.per_member_limit - redeemed(engagement, limit_key(item, rules, now)))


def counted(engagement: Engagement, key: str, delta: int) -> Engagement:
    """The engagement state with the member's count under `key` moved by `delta` (a
    month's count replaces the item's earlier months: the state keeps only what limits)."""
    item_id = key.split("#", 1)[0]
    counts = {k: v for k, v in engagement.tier.redeemed if "#" not in key or not k.startswith(f"{item_id}#")
              or k >= key}
    counts[key] = max(0, counts.get(key, 0) + delta)
    kept = tuple(sorted((k, v) for k, v in counts.items() if v > 0))
    return replace(engagement, tier=replace(engagement.tier, redeemed=kept))


def member_catalog(store: "AccountStore", rules: "Rules", member_id: str, now: datetime) -> dict:
    """What `member_id` may see, at today's price, with their limits left (one read)."""
    engagement = store.load_account(member_id, with_lots=False).engagement
    day = is_redemption_day(rules, now)
    items = []
    for item in rules.catalog:
        if not item.active or not visible(item, engagement, rules):
            continue
        items.append({**item.model_dump(), "points": price(item, rules, now), "list_points": item.points,
                      "limit_left": limit_left(item, engagement, rules, now)})
    return {"member_id": member_id, "tier": tier_name(engagement, rules), "redemption_day": day,
            "percent_off": rules.redemption.discount_days.percent_off if day else 0, "items": items,
            "points_per_currency_unit": rules.redemption.points_per_currency_unit}


def admit(item: "CatalogItem", engagement: Engagement, rules: "Rules", member_id: str,
          now: datetime) -> tuple[int, Engagement | None]:
    """Whether `member_id` may redeem `item` now: its price and the engagement state to
    write with the debit (None: nothing to count). NotFound when the item is hidden from
    the member's tier; Conflict when the member's limit is reached."""
    from ..errors import Conflict, NotFound
    if not visible(item, engagement, rules):
        raise NotFound(f"no item {item.item_id} in member {member_id}'s catalog")
    left = limit_left(item, engagement, rules, now)
    if left == 0:
        per = " this month" if item.per_member_limit_period == "month" else ""
        raise Conflict(f"member {member_id} has redeemed {item.item_id} {item.per_member_limit} times{per}, its limit")
    return price(item, rules, now), (counted(engagement, limit_key(item, rules, now), 1) if left is not None else None)


def given_back(engagement: Engagement, item_id: str, rules: "Rules | None" = None,
               redeemed_at: datetime | None = None) -> Engagement | None:
    """On a cancellation: the member's count of the item (of the month it was redeemed
    in, for a monthly limit), less one (None: none kept, or that month is over)."""
    item = rules.item(item_id) if rules is not None else None
    key = limit_key(item, rules, redeemed_at) if item is not None and redeemed_at is not None else item_id
    return counted(engagement, key, -1) if redeemed(engagement, key) else None
