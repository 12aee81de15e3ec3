"""The programme's rules as one validated configuration document.

Defaults ship in `config/default_rules.json`; a merchant's overrides (JSON, merged over
the defaults section by section) come from the SSM parameter named by RULES_PARAMETER.
"""
from __future__ import annotations

import json
from datetime import date
from functools import cache
from importlib import resources
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .engagement.config import MemberDayRules, MilestoneRules, PendingRules, ReferralRules
from .engagement.checkin_rules import CheckinRules
from .errors import Invalid
from .messaging.templates import MessageTemplate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Bonus(_Strict):
    min_units: int = Field(ge=0, description="order amount, in currency units, from which the bonus applies")
    points: int = Field(ge=0)


class EarnRules(_Strict):
    points: int = Field(1, ge=0, description="points earned ...")
    per_units: int = Field(1, ge=1, description="... per this many currency units")
    bonuses: tuple[Bonus, ...] = ()
    currencies: dict[str, int] = Field(description="accepted currencies and their minor-unit exponent")

    @field_validator("currencies")
    @classmethod
    def _currency_codes(cls, value: dict[str, int]) -> dict[str, int]:
        for code, exponent in value.items():
            if len(code) != 3 or not code.isalpha() or not code.isupper():
                raise ValueError(f"{code!r} is not an ISO 4217 code")
            if not 0 <= exponent <= 4:
                raise ValueError(f"{code}: exponent must be 0..4")
        return value

    def points_for(self, amount_minor: int, currency: str) -> int:
        """floor(amount x rate) plus the highest threshold bonus reached, in integers only."""
        scale = 10 ** self.currencies[currency]
        base = amount_minor * self.points // (self.per_units * scale)
        bonus = max((b.points for b in self.bonuses if amount_minor >= b.min_units * scale), default=0)
        return base + bonus


class ExpiryRules(_Strict):
    months: int = Field(12, ge=1, le=120)
    catch_up_days: int = Field(7, ge=0, le=400, description="earlier days the nightly run also sweeps")


class RefundRules(_Strict):
    negative_balance: Literal["allow", "clamp"] = "allow"


class RedemptionDays(_Strict):
    """Redemption-day discounts (E10): on these programme-local days, discountable items
    cost `percent_off` less (rounded in the member's favour)."""

    days_of_month: tuple[int, ...] = ()
    weekdays: tuple[int, ...] = Field((), description="ISO weekdays: 1 = Monday ... 7 = Sunday")
    percent_off: int = Field(20, ge=0, le=100)

    @field_validator("days_of_month")
    @classmethod
    def _days(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= d <= 31 for d in value):
            raise ValueError("days of the month are 1..31")
        return value

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 1 <= d <= 7 for d in value):
            raise ValueError("ISO weekdays are 1 (Monday) .. 7 (Sunday)")
        return value


class RedemptionRules(_Strict):
    points_per_currency_unit: int = Field(100, ge=1)
    discount_days: RedemptionDays = RedemptionDays()


class LuckyDraw(_Strict):
    """A lucky-draw catalog item (E10): each redemption is one entry in this draw; entries
    close when `on` ends (programme calendar), then the draw can run."""

    draw_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    on: date
    winners: int = Field(ge=1, le=1000)


class CatalogItem(_Strict):
    item_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    name: str
    points: int = Field(gt=0)
    kind: Literal["coupon", "gift", "perk"] = "coupon"
    fulfilment: Literal["instant", "pending"] = "instant"
    stock: int | None = Field(None, ge=0)
    active: bool = True
    min_tier: str | None = Field(None, description="hidden from members below this tier (E7 perk)")
    per_member_limit: int | None = Field(None, ge=1, description="redemptions per member, cancelled ones given back")
    per_member_limit_period: Literal["lifetime", "month"] = Field(
        "lifetime", description="the limit counts over the member's lifetime or per calendar month (programme time)")
    discountable: bool = Field(True, description="cheaper on redemption days")
    lucky_draw: LuckyDraw | None = Field(None, description="each redemption is an entry in this draw (E10)")


class Tier(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_-]{1,32}$")
    threshold: int = Field(ge=0, description="points earned in the window from which the tier applies")
    multiplier_percent: int = Field(100, ge=100, le=1000, description="order points x this / 100 (perk)")
    early_reminder: bool = Field(False, description="gets the reminders' early stage whatever the amount")


class TierRules(_Strict):
    """Tiers (E7) from the points earned in the rolling window (programme-local days)."""

    window_days: int = Field(90, ge=1, le=366)
    warning_days: int = Field(7, ge=0, le=60, description="a warning this many days before a downgrade")
    catch_up_days: int = Field(7, ge=0, le=60, description="earlier review days the nightly run also reads")
    levels: tuple[Tier, ...]
    up_template: str = "tier_up"
    warning_template: str = "tier_warning"
    down_template: str = "tier_down"

    @field_validator("levels")
    @classmethod
    def _levels(cls, value: tuple[Tier, ...]) -> tuple[Tier, ...]:
        if not value or value[0].threshold != 0:
            raise ValueError("the first tier is the base tier, from 0 points")
        if any(b.threshold <= a.threshold for a, b in zip(value, value[1:])):
            raise ValueError("tiers in order of strictly increasing threshold")
        if len({t.name for t in value}) != len(value):
            raise ValueError("tier names must be unique")
        return value

    def level(self, name: str | None) -> Tier:
        """The tier of that name; the base tier for none (or one no longer configured)."""
        return next((t for t in self.levels if t.name == name), self.levels[0])

    def rank(self, name: str | None) -> int:
        return self.levels.index(self.level(name))

    def for_points(self, points: int) -> Tier:
        return [t for t in self.levels if t.threshold <= points][-1]


class Window(_Strict):
    start: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")
    end: str = Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")

    def minutes(self) -> tuple[int, int]:
        """(start, end) in minutes since midnight; an end of 23:59 is midnight, as the
        send-time search reads it (messaging.windows)."""
        start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (self.start, self.end))
        return start, 1440 if self.end == "23:59" else end


class SendWindow(Window):
    """A time of day scheduled messages may go out in, in the member's zone: it ends
    after it starts, the same day (quiet hours may wrap midnight; a send window may not,
    the send-time search would never open it: 22:00-02:00 is 22:00-23:59 and 00:00-02:00)."""

    @model_validator(mode="after")
    def _opens(self) -> "SendWindow":
        start, end = self.minutes()
        if start >= end:
            raise PydanticCustomError(
                "send_window", "a send window ends after it starts, the same day ({start}-{end} never opens)",
                {"start": self.start, "end": self.end})
        return self


class ReminderRules(_Strict):
    stages_days: tuple[int, ...] = (7, 3, 0)
    early_stage_days: int | None = Field(30, ge=1, description="extra stage for high-value members")
    high_value_points: int = Field(2000, ge=0)
    min_points: int = Field(100, ge=0, description="below this, one reminder only")
    small_amount_stage_days: int = Field(3, ge=0)
    template: str = "points_expiring"

    @field_validator("stages_days")
    @classmethod
    def _stages(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(d < 0 for d in value) or len(set(value)) != len(value):
            raise ValueError("distinct, non-negative day counts")
        return tuple(sorted(value, reverse=True))


class CapRules(_Strict):
    marketing_per_day: int = Field(1, ge=0)
    marketing_per_month: int = Field(6, ge=0)


class SmsRules(_Strict):
    routes: dict[str, Literal["twilio", "aliyun"]] = {"+86": "aliyun"}
    default_provider: Literal["twilio", "aliyun"] = "twilio"
    max_segments: int = Field(3, ge=1, le=10)
    brand: str = "会员中心"
    opt_out_line: dict[str, str] = {"aliyun": "拒收请回复R", "zh-CN": "回T退订", "zh-HK": "回T退訂",
                                    "en": "Reply STOP to opt out"}

    def provider_for(self, phone: str) -> str:
        """The longest matching country prefix wins; every other number goes to the default."""
        matches = [prefix for prefix in self.routes if phone.startswith(prefix)]
        return self.routes[max(matches, key=len)] if matches else self.default_provider


def _quiet(minute: int, quiet: Window) -> bool:
    """messaging.windows.in_quiet_hours, on minutes since midnight."""
    start, end = (int(t[:2]) * 60 + int(t[3:]) for t in (quiet.start, quiet.end))
    return (start <= minute or minute < end) if start > end else (start <= minute < end)


class MessagingRules(_Strict):
    """Scheduled messages (reminders, campaigns) go out only inside `windows`, marketing
    never in `quiet_hours`: validation refuses a document under which a message could
    never go out, rather than let the dispatcher find out at night."""

    channels_order: tuple[Literal["whatsapp", "wechat", "sms"], ...] = ("whatsapp", "wechat", "sms")
    reminders: ReminderRules = ReminderRules()
    # quiet_hours before windows: the windows' check reads it
    quiet_hours: Window = Window(start="21:00", end="08:00")
    windows: tuple[SendWindow, ...] = Field(
        (SendWindow(start="12:00", end="13:30"), SendWindow(start="19:00", end="21:00")),
        validate_default=True)  # checked against quiet hours a document sets, even when it sets no windows
    caps: CapRules = CapRules()
    sms: SmsRules = SmsRules()
    link_base: str = "https://example.com/m/"
    challenge_template: str = "challenge_message"   # the check-in challenge's messages (category challenge)

    @field_validator("windows")
    @classmethod
    def _a_window_for_every_category(cls, windows: tuple[SendWindow, ...],
                                     info: ValidationInfo) -> tuple[SendWindow, ...]:
        if not windows:
            raise PydanticCustomError("send_windows", "at least one send window: reminders and campaigns go out "
                                      "only inside one, so with none they would never go out")
        quiet = info.data.get("quiet_hours")
        if quiet is None:   # invalid itself, and reported as such
            return windows
        if not any(not _quiet(minute, quiet) for window in windows for minute in range(*window.minutes())):
            raise PydanticCustomError(
                "send_windows", "every send window falls in the quiet hours ({start}-{end}): marketing never goes "
                "out in quiet hours, so no marketing message could ever be sent; give at least one window time "
                "outside them", {"start": quiet.start, "end": quiet.end})
        return windows


class ActivityType(_Strict):
    """A kind of member activity (E1) and what it earns; `needs_review` holds its points
    in the review queue until an operator decides."""

    points: int = Field(ge=0, le=100_000)
    needs_review: bool = False


class ActivityTask(_Strict):
    """A limited-time task (E6): an activity of `type` inside [starts_at, ends_at) earns
    `bonus` too, once per member. A type no entry of `types` names is valid only as a task:
    outside every window of its tasks, the activity is rejected."""

    task_id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    type: str = Field(pattern=r"^[a-z0-9_]{1,32}$")
    starts_at: str
    ends_at: str
    bonus: int = Field(ge=0, le=100_000)
    needs_review: bool = False

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _time(cls, value: str) -> str:
        from .domain import parse_time
        try:
            parse_time(value)
        except ValueError as exc:
            raise ValueError(f"not an ISO 8601 time with an offset: {exc}") from exc
        return value

    @model_validator(mode="after")
    def _window(self) -> "ActivityTask":
        from .domain import parse_time
        if parse_time(self.ends_at) <= parse_time(self.starts_at):
            raise ValueError(f"task {self.task_id}: ends_at must be after starts_at")
        return self

    def open_at(self, moment) -> bool:
        from .domain import parse_time
        return parse_time(self.starts_at) <= moment < parse_time(self.ends_at)


class RiskRules(_Strict):
    """Risk control of earnings outside orders (E8)."""

    daily_cap: int = Field(200, ge=0, description="non-order points per member-local day")
    per_hour: int = Field(10, ge=1, description="activities per member in any hour; more are rejected")
    burst_count: int = Field(5, ge=2, description="this many activities ...")
    burst_seconds: int = Field(60, ge=1, le=3600, description="... within this many seconds are held")
    members_per_source: int = Field(3, ge=2, description="members on one device or IP ...")
    source_window_hours: int = Field(24, ge=1, le=168, description="... within this many hours are held")
    max_clock_skew_hours: int = Field(48, ge=1, description="occurred_at further than this from now is refused")
    hash_salt: str = Field("loyalty-risk", min_length=1, description="keys the device / IP hashes (set per deployment)")


DEFAULT_ACTIVITY_TYPES = {"poll": ActivityType(points=5), "share": ActivityType(points=10),
                          "survey": ActivityType(points=15), "ugc": ActivityType(points=50, needs_review=True)}


class ActivityRules(_Strict):
    types: dict[str, ActivityType] = Field(default_factory=lambda: dict(DEFAULT_ACTIVITY_TYPES))
    tasks: tuple[ActivityTask, ...] = ()
    risk: RiskRules = RiskRules()

    @field_validator("types")
    @classmethod
    def _type_names(cls, value: dict[str, ActivityType]) -> dict[str, ActivityType]:
        import re
        for name in value:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", name):
                raise ValueError(f"activity type {name!r}: lower-case letters, digits and _ (1-32)")
        return value

    @model_validator(mode="after")
    def _unique_tasks(self) -> "ActivityRules":
        ids = [task.task_id for task in self.tasks]
        if len(ids) != len(set(ids)):
            raise ValueError("task ids must be unique")
        return self

    def known(self, type_: str) -> bool:
        return type_ in self.types or any(task.type == type_ for task in self.tasks)


class Rules(_Strict):
    program_timezone: str = "Asia/Shanghai"
    earn: EarnRules
    expiry: ExpiryRules = ExpiryRules()
    refunds: RefundRules = RefundRules()
    redemption: RedemptionRules = RedemptionRules()
    catalog: tuple[CatalogItem, ...] = ()
    tiers: TierRules = TierRules(levels=(Tier(name="member", threshold=0),))
    messaging: MessagingRules = MessagingRules()
    templates: dict[str, "MessageTemplate"] = {}
    activities: ActivityRules = ActivityRules()
    # engagement: milestones, referrals, member day, pending order points (loyalty.engagement.config)
    milestones: MilestoneRules = MilestoneRules()
    referrals: ReferralRules = ReferralRules()
    member_day: MemberDayRules = MemberDayRules()
    pending: PendingRules = PendingRules()
    checkins: CheckinRules = CheckinRules()   # daily check-in streaks (E4)

    @field_validator("program_timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}") from exc
        return value

    @model_validator(mode="after")
    def _unique_items(self) -> "Rules":
        ids = [item.item_id for item in self.catalog]
        if len(ids) != len(set(ids)):
            raise ValueError("catalog item ids must be unique")
        if len(self.tiers.levels) > 1 and self.templates:
            missing = [t for t in (self.tiers.up_template, self.tiers.warning_template, self.tiers.down_template)
                       if t not in self.templates]
            if missing:
                raise ValueError(f"tiers: no message template {', '.join(missing)} for the tier notices")
        draws = [item.lucky_draw.draw_id for item in self.catalog if item.lucky_draw is not None]
        if len(draws) != len(set(draws)):
            raise ValueError("lucky draw ids must be unique")
        names = {t.name for t in self.tiers.levels}
        for item in self.catalog:
            if item.min_tier is not None and item.min_tier not in names:
                raise ValueError(f"catalog item {item.item_id}: min_tier {item.min_tier!r} is not a tier")
        return self

    def template(self, name: str) -> "MessageTemplate":
        if name not in self.templates:
            raise LookupError(f"no message template {name!r} in the rules")
        return self.templates[name]

    def item(self, item_id: str) -> CatalogItem | None:
        return next((item for item in self.catalog if item.item_id == item_id and item.active), None)


@cache
def default_document() -> dict:
    return json.loads(resources.files("loyalty.config").joinpath("default_rules.json").read_text("utf-8"))


def build_rules(overrides: dict | None = None) -> Rules:
    """Defaults merged with `overrides` (one level deep: a section given replaces the
    default's keys it names), validated. Raises Invalid listing every problem."""
    document = dict(default_document())
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    try:
        return Rules.model_validate(document)
    except ValidationError as exc:
        raise Invalid([{"field": ".".join(map(str, e["loc"])), "problem": e["msg"]} for e in exc.errors()]) from exc
