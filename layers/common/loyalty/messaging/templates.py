"""Message templates as configuration: per message, a category and what each channel
needs (WhatsApp approved template, WeChat template or subscription message, SMS text or
Aliyun template), rendered for the member's locale into the payload a sender sends."""
from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

LOCALES = ("zh-CN", "zh-HK", "en")
# The last resort for an empty template parameter without a placeholder in the rules:
# the providers refuse empty parameters, and a dash reads the same in every locale.
EMPTY_PARAMETER = "—"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WhatsAppTemplate(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]{1,512}$")
    languages: dict[str, str] = {"zh-CN": "zh_CN", "zh-HK": "zh_HK", "en": "en"}
    body: tuple[str, ...] = ()                 # variable names, in the template's {{1}}, {{2}} order
    button: str | None = None                  # variable for the URL button's suffix
    # the category the template was approved under at Meta (None: not declared here)
    category: Literal["UTILITY", "MARKETING", "AUTHENTICATION"] | None = None


class WeChatTemplate(_Strict):
    kind: Literal["template", "subscription"]
    template_id: str = Field(min_length=1)
    fields: dict[str, str]                     # WeChat data key -> variable name
    url: str | None = None                     # template messages: where a tap goes
    page: str | None = None                    # subscription messages: mini-program page


class SmsTemplate(_Strict):
    text: dict[str, str]                       # locale -> text with {variables}
    aliyun_template_code: str | None = None
    aliyun_params: tuple[str, ...] = ()


class MessageTemplate(_Strict):
    """`marketing` needs marketing consent, counts against the caps and keeps quiet hours;
    `utility` (account facts: balance, expiry, with a link and no offer) and
    `transactional` (what the member just did) do not count against caps; `challenge`
    (what a member enrolled in a challenge asked for: its tasks, summaries, leaderboards,
    nudge) is outside the caps but one a member-local day, never in quiet hours, and on
    WhatsApp an approved UTILITY template (messaging.challenge_messages)."""

    category: Literal["utility", "marketing", "transactional", "challenge"]
    whatsapp: WhatsAppTemplate | None = None
    wechat: WeChatTemplate | None = None
    sms: SmsTemplate | None = None
    text: dict[str, str] | None = None         # free-form (replies inside a service window)
    # variable -> locale -> what a template parameter says when the variable is empty
    # (WhatsApp refuses an empty parameter, 132000; WeChat an empty field, 47003);
    # free-form and SMS texts leave an empty variable out instead.
    placeholders: dict[str, dict[str, str]] = {}

    @model_validator(mode="after")
    def _challenge_is_utility(self) -> "MessageTemplate":
        if self.category == "challenge" and self.whatsapp is not None and self.whatsapp.category != "UTILITY":
            raise ValueError("whatsapp.category: a challenge message is sent as a template approved as UTILITY "
                             "(a service message, never an ad): declare it")
        return self

    @model_validator(mode="after")
    def _locales(self) -> "MessageTemplate":
        for texts in (self.sms.text if self.sms else None, self.text, *self.placeholders.values()):
            if texts is not None and set(texts) != set(LOCALES):
                raise ValueError(f"texts for exactly {', '.join(LOCALES)}")
        for variable, texts in self.placeholders.items():
            if any(not text.strip() for text in texts.values()):
                raise ValueError(f"placeholders.{variable}: a placeholder says something (it stands in for an "
                                 "empty parameter, which the providers refuse)")
        return self

    def parameter(self, values: dict[str, str], name: str, locale: str) -> str:
        """A template parameter: the variable, or its placeholder when it is empty (a
        variable the message does not have at all is a KeyError, as in the texts)."""
        value = values[name]
        if value.strip():
            return value
        return self.placeholders.get(name, {}).get(locale) or EMPTY_PARAMETER


def format_date(day: str | date | datetime, locale: str, zone: str | None = None) -> str:
    """A date as the member reads it: "2027年2月28日", "28 Feb 2027". A calendar date
    (an ISO "YYYY-MM-DD" or a `date`) is shown as it is; an instant (an aware datetime)
    is shown on the calendar of `zone`, the member's (dispatch.member_zone)."""
    if isinstance(day, datetime):
        if zone is None or day.tzinfo is None:
            raise ValueError("an instant is shown in a time zone: give the member's")
        parsed = day.astimezone(ZoneInfo(zone)).date()
    else:
        parsed = day if isinstance(day, date) else date.fromisoformat(day)
    if locale.startswith("zh"):
        return f"{parsed.year}年{parsed.month}月{parsed.day}日"
    return parsed.strftime("%d %b %Y").lstrip("0")


MEMBER = {"zh-CN": "会员", "zh-HK": "會員", "en": "Member"}


def localised(variables: dict, locale: str) -> dict[str, str]:
    """Variables as the member reads them: grouped numbers, local dates, and a greeting
    word for a member without a name (providers refuse empty fields)."""
    out = {"name": MEMBER.get(locale, "Member")}
    for key, value in variables.items():
        if isinstance(value, int) and not isinstance(value, bool):
            out[key] = f"{value:,}"
        elif key.endswith("_date") and isinstance(value, str) and len(value) == 10:
            out[key] = format_date(value, locale)
        elif value not in (None, ""):
            out[key] = str(value)
        else:
            out.setdefault(key, "")
    return out


def render(template: MessageTemplate, channel: str, locale: str, variables: dict, *, message_id: str,
           free_form: bool = False) -> dict:
    """The payload a sender sends for `channel` (see loyalty.channels.providers)."""
    locale = locale if locale in LOCALES else "zh-CN"
    values = localised(variables, locale)
    # SMS has no service window: a reply is its SMS version (Aliyun sends approved templates only).
    if free_form and template.text is not None and not (channel == "sms" and template.sms is not None):
        body = template.text[locale].format(**values)
        if channel == "whatsapp":
            return {"type": "text", "body": body, "preview_url": True}
        if channel == "wechat":
            return {"type": "text", "content": body}
        return {"text": body}

    def param(name: str) -> str:   # an approved template's parameters are never empty
        return template.parameter(values, name, locale)

    if channel == "whatsapp":
        config = _need(template.whatsapp, channel)
        return {"type": "template", "name": config.name, "language": config.languages.get(locale, "en"),
                "body_params": [param(name) for name in config.body],
                "button_params": [param(config.button)] if config.button else None}
    if channel == "wechat":
        config = _need(template.wechat, channel)
        payload = {"type": config.kind, "template_id": config.template_id,
                   "data": {key: param(name)[:20] for key, name in config.fields.items()}}
        if config.kind == "template":
            payload.update(url=config.url, client_msg_id=message_id)
        else:
            payload["page"] = config.page
        return payload
    config = _need(template.sms, channel)
    payload = {"text": config.text[locale].format(**values)}
    if config.aliyun_template_code:
        payload.update(template_code=config.aliyun_template_code,
                       params={name: param(name) for name in config.aliyun_params})
    return payload


def _need(config, channel: str):
    if config is None:
        raise LookupError(f"the template has no {channel} version")
    return config
