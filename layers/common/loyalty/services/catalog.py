"""The redemption catalog as members see it."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..rules import Rules


def catalog_view(rules: "Rules") -> dict:
    """The active items and the cash value of points (for checkout quotes)."""
    return {"items": [item.model_dump() for item in rules.catalog if item.active],
            "points_per_currency_unit": rules.redemption.points_per_currency_unit}
