"""Request bodies, parsed once at the edge into typed values (strict: "100" is not 100)."""
from __future__ import annotations

from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator, model_validator

from ..domain import parse_time
from ..errors import Invalid

from .plain import CHANNELS, MEMBER_ID, _member_id, canonical_hash, check_member_id, parse_json  # noqa: F401


def validate(model: type[BaseModel], document: object) -> BaseModel:
    """Parse `document` into `model`, or raise Invalid listing every problem."""
    if not isinstance(document, dict):
        raise Invalid([{"field": "", "problem": "the body must be a JSON object"}])
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(p) for p in error["loc"])
            message = error["msg"].removeprefix("Value error, ")
            if not field and message.startswith("@"):  # a cross-field check naming its field
                field, _, message = message[1:].partition(" ")
            problems.append({"field": field, "problem": message})
        raise Invalid(problems) from exc


def _time(value: str) -> str:
    try:
        parse_time(value)
    except ValueError as exc:
        raise ValueError(f"not an ISO 8601 time with an offset: {exc}") from exc
    return value


class OrderBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    order_id: StrictStr = Field(min_length=1, max_length=128)
    member_id: StrictStr = Field(pattern=MEMBER_ID)
    amount_minor: StrictInt = Field(ge=0, le=10**15)
    currency: StrictStr = Field(pattern=r"^[A-Z]{3}$")
    refund_amount_minor: StrictInt | None = Field(None, gt=0, le=10**15)


class OrderEventBody(BaseModel):
    model_config = ConfigDict(extra="allow")
    event_id: StrictStr = Field(min_length=1, max_length=128)
    type: Literal["order.paid", "order.refunded", "order.cancelled"]
    occurred_at: StrictStr
    order: OrderBody

    _occurred = field_validator("occurred_at")(lambda cls, v: _time(v))

    @model_validator(mode="after")
    def _refund_amount(self) -> "OrderEventBody":
        if self.type == "order.refunded":
            if self.order.refund_amount_minor is None:
                raise ValueError("@order.refund_amount_minor is required for order.refunded")
            if self.order.refund_amount_minor > self.order.amount_minor:
                raise ValueError("@order.refund_amount_minor must not be above order.amount_minor")
        return self


class ProfileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: StrictStr | None = Field(None, max_length=128)
    phone: StrictStr | None = Field(None, pattern=r"^\+[1-9][0-9]{6,14}$")
    wechat_openid: StrictStr | None = Field(None, pattern=r"^[A-Za-z0-9_-]{6,64}$")
    locale: Literal["zh-CN", "zh-HK", "en"] | None = None
    time_zone: StrictStr | None = None
    preferred_channels: list[Literal["whatsapp", "wechat", "sms"]] = Field(default_factory=list, max_length=3)
    birthday: StrictStr | None = Field(None, pattern=r"^(\d{4}-)?\d{2}-\d{2}$")
    referrer: StrictStr | None = Field(None, pattern=MEMBER_ID)

    @field_validator("time_zone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value

    @field_validator("birthday")
    @classmethod
    def _birthday(cls, value: str | None) -> str | None:
        if value is not None:
            from datetime import date
            text = value if len(value) == 10 else f"2000-{value}"  # a leap year accepts 02-29
            try:
                date.fromisoformat(text)
            except ValueError as exc:
                raise ValueError("not a calendar date (YYYY-MM-DD or MM-DD)") from exc
        return value

    @field_validator("preferred_channels")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("channels must not repeat")
        return value


class ConsentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["opted_in", "opted_out"]
    source: StrictStr = Field(min_length=1, max_length=64)
    at: StrictStr
    proof: StrictStr | None = Field(None, max_length=1024)

    _at = field_validator("at")(lambda cls, v: _time(v))


class RedemptionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    item_id: StrictStr = Field(min_length=1, max_length=64)
    idempotency_key: StrictStr = Field(min_length=1, max_length=128)


class CancelBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: StrictStr = Field("cancelled", max_length=256)


class AdjustmentBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    points: StrictInt = Field(ge=-10**9, le=10**9)
    reason: StrictStr = Field(min_length=1, max_length=256)
    operator_id: StrictStr | None = Field(None, max_length=64)  # ignored: the operator is the token's subject
    idempotency_key: StrictStr = Field(min_length=1, max_length=128)
    expires_at: StrictStr | None = None

    _exp = field_validator("expires_at")(lambda cls, v: v if v is None else _time(v))

    @field_validator("points")
    @classmethod
    def _not_zero(cls, value: int) -> int:
        if value == 0:
            raise ValueError("must not be 0")
        return value


class DisputeBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entry_id: StrictStr = Field(min_length=1, max_length=64)
    reason: StrictStr = Field(min_length=1, max_length=1000)
    idempotency_key: StrictStr = Field(min_length=1, max_length=128)


class ResolutionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: Literal["upheld", "rejected"]
    points: StrictInt = Field(0, ge=-10**9, le=10**9)
    operator_id: StrictStr | None = Field(None, max_length=64)  # ignored: the operator is the token's subject
    note: StrictStr = Field(min_length=1, max_length=1000)


class CampaignBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    campaign_id: StrictStr = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    template: StrictStr = Field(min_length=1, max_length=64)
    member_ids: list[StrictStr] = Field(min_length=1, max_length=500)
    variables: dict[str, StrictStr | StrictInt] = Field(default_factory=dict)
    at: StrictStr | None = None

    _at = field_validator("at")(lambda cls, v: v if v is None else _time(v))

    @field_validator("member_ids")
    @classmethod
    def _ids(cls, value: list[str]) -> list[str]:
        bad = [m for m in value if not _member_id.match(m)]
        if bad:
            raise ValueError(f"not member ids: {', '.join(bad[:5])}")
        return list(dict.fromkeys(value))


class ActivityBody(BaseModel):
    """An activity a member did (E1): its type is checked against the rules by the service."""
    model_config = ConfigDict(extra="forbid")
    activity_id: StrictStr = Field(pattern=r"^[A-Za-z0-9_.:-]{1,128}$")
    type: StrictStr = Field(pattern=r"^[a-z0-9_]{1,32}$")
    occurred_at: StrictStr
    ip: StrictStr | None = Field(None, min_length=1, max_length=64)
    device_id: StrictStr | None = Field(None, min_length=1, max_length=256)

    _occurred = field_validator("occurred_at")(lambda cls, v: _time(v))


class CheckinBody(BaseModel):
    """A daily check-in (E4): when the member checked in."""
    model_config = ConfigDict(extra="forbid")
    at: StrictStr

    _at = field_validator("at")(lambda cls, v: _time(v))


class ReviewDecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    decision: Literal["approve", "reject"]
    note: StrictStr = Field("", max_length=1000)


class InvitationsBody(BaseModel):
    """Members to invite to a check-in challenge (E5)."""
    model_config = ConfigDict(extra="forbid")
    member_ids: list[Annotated[StrictStr, Field(pattern=MEMBER_ID)]] = Field(min_length=1, max_length=500)


class EnrolmentBody(BaseModel):
    """A member's agreement to join a check-in challenge (E5), with its proof."""
    model_config = ConfigDict(extra="forbid")
    member_id: StrictStr = Field(pattern=MEMBER_ID)
    agreed_at: StrictStr
    source: StrictStr = Field("api", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    proof: StrictStr | None = Field(None, min_length=1, max_length=512)

    _agreed = field_validator("agreed_at")(lambda cls, v: _time(v))
