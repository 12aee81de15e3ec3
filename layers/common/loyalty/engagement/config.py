"""The rules of milestones (E2), referrals (E3, E8's referral rings), the member day (E9)
and pending order points (L5), as validated configuration sections of `loyalty.rules.Rules`."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The profile fields a "profile completed" rule may require (loyalty.records.Profile).
PROFILE_FIELDS = ("name", "phone", "wechat_openid", "locale", "time_zone", "preferred_channels", "birthday")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OrderMilestone(_Strict):
    """Reached when the member's count of paid orders reaches `orders`; once per member."""

    rule_id: str = Field(pattern=r"^[a-z0-9_]{1,40}$")
    orders: int = Field(ge=1, le=10_000)
    points: int = Field(ge=0, le=1_000_000)
    badge: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,32}$")


class Gift(_Strict):
    """A voucher put in the member's redemptions (0 points, a code) every `every_orders` orders."""

    every_orders: int | None = Field(3, ge=1, le=1000, description="null: no gifts")
    item_id: str = Field("upgrade-gift", pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str = "Upgrade gift"


class MilestoneRules(_Strict):
    orders: tuple[OrderMilestone, ...] = (OrderMilestone(rule_id="first_order", orders=1, points=100),
                                          OrderMilestone(rule_id="tenth_order", orders=10, points=500, badge="VIP"))
    gift: Gift = Gift()
    first_opt_in: int = Field(50, ge=0, le=1_000_000, description="first opt-in on any channel (a WeChat follow too)")
    profile_completed: int = Field(30, ge=0, le=1_000_000)
    profile_fields: tuple[str, ...] = ("name", "phone", "locale", "birthday")

    @field_validator("profile_fields")
    @classmethod
    def _fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [f for f in value if f not in PROFILE_FIELDS]
        if unknown or not value:
            raise ValueError(f"profile fields are some of {', '.join(PROFILE_FIELDS)} (unknown: {unknown})")
        return value

    @model_validator(mode="after")
    def _unique(self) -> "MilestoneRules":
        ids = [m.rule_id for m in self.orders]
        reserved = {"first_opt_in", "profile_completed"}
        if len(ids) != len(set(ids)) or reserved & set(ids) or any(i.startswith("referral") for i in ids):
            raise ValueError("order milestone rule ids are unique and not first_opt_in, profile_completed, referral*")
        return self


class ReferralRules(_Strict):
    join_points: int = Field(50, ge=0, le=1_000_000, description="to the new member and to the referrer each")
    first_order_points: int = Field(200, ge=0, le=1_000_000, description="to the referrer, on the referee's first order")
    ring_depth: int = Field(3, ge=1, le=10, description="referrer chains this long that come back are rings")
    max_per_source_day: int = Field(5, ge=1, le=10_000,
                                    description="referrals of one referrer within 24 hours before the next is held")


class MemberDayRules(_Strict):
    """Orders paid on `day_of_month` (the programme's time zone) earn `multiplier` times
    their points: the extra as its own entry."""

    day_of_month: int | None = Field(18, ge=1, le=31, description="null: no member day")
    multiplier: int = Field(2, ge=1, le=10)


class PendingRules(_Strict):
    return_window_days: int = Field(0, ge=0, le=365, description="order points pending this long; 0: credited at once")
