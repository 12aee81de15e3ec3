"""The member day (E9): orders paid on the configured day of the month earn more."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from .milestones import Bonus, _ordinal

if TYPE_CHECKING:
    from .config import MemberDayRules

MEMBER_DAY = "member_day"


def member_day_bonus(rules: "MemberDayRules", program_timezone: str, paid_at: datetime, points: int) -> Bonus | None:
    """The extra points (multiplier - 1 times the order's) of an order paid on the member
    day, in the programme's time zone: the merchant announces one calendar day to every
    member, and an order callback does not read the member's profile. A day the month
    does not have (the 31st in April) is no member day that month."""
    if rules.day_of_month is None or rules.multiplier <= 1 or points <= 0:
        return None
    if paid_at.astimezone(ZoneInfo(program_timezone)).day != rules.day_of_month:
        return None
    return Bonus(MEMBER_DAY, points * (rules.multiplier - 1),
                 f"{MEMBER_DAY}: x{rules.multiplier} points on the {_ordinal(rules.day_of_month)}")
