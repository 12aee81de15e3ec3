"""The challenge calendar's configuration (E5): when its messages go out and what they
say, per locale and, for the task, per day. Part of the challenge's definition
(ChallengeSpec.calendar), so `PUT /challenges/{challenge_id}` validates it and a bad text
is a 400 naming the field.

The texts are service messages, never ads (seed 002: "打卡就是打卡，不要夹带私货"): known
placeholders only, no links, no prices, none of the promotion words below, and short."""
from __future__ import annotations

import re
import string

from pydantic import BaseModel, ConfigDict, Field, field_validator

LOCALES = ("zh-CN", "zh-HK", "en")

# What a text may say in braces. {name} is the member's (filled in at send time, from the
# profile); the others are the participant's standing when the day's message is planned.
PLACEHOLDERS = frozenset({
    "name", "day", "days", "points", "streak", "days_checked_in",   # every message
    "week_days", "week_points", "rank",                             # weekly summary (rank also final, leaderboard)
    "month", "top",                                                 # monthly leaderboard
    "reward",                                                       # final message
})
MAX_TEXT_CHARS = 300

# A service message carries no offer. The lint refuses these, case-insensitively: the words
# of a push to buy (zh-CN, zh-HK, en), prices, and links (a link turns a WhatsApp utility
# template into marketing; the member reaches the account through the keywords instead).
PROMOTION_WORDS = ("促销", "促銷", "折扣", "打折", "购买", "購買", "下单", "下單", "抢购", "搶購", "特价", "特價",
                   "秒杀", "秒殺", "限时优惠", "限時優惠", "sale", "% off", "buy now", "shop now", "order now",
                   "discount", "promo", "deal")
_LINK = re.compile(r"https?://|www\.|\b[a-z0-9-]+\.(com|cn|net|org|io|hk)\b", re.IGNORECASE)
_PRICE = re.compile(r"[¥$€£￥]\s*\d|\d+(\.\d+)?\s*(元|块|塊|rmb|cny|hkd|usd)\b|\d+(\.\d+)?\s*(元|块|塊)|\d\s*折|\d+\s*%",
                    re.IGNORECASE)


def lint_service_text(text: str) -> str | None:
    """Why `text` is not a service message (None when it is one)."""
    if not text.strip():
        return "is empty"
    if len(text) > MAX_TEXT_CHARS:
        return f"is longer than {MAX_TEXT_CHARS} characters"
    if "\n" in text or "\t" in text or "    " in text:
        # the text is a WhatsApp template parameter, which refuses these (error 132018)
        return "has a new line, a tab or 4 spaces in a row: it is sent as one WhatsApp template parameter"
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text) if name is not None]
    except ValueError as exc:
        return f"has a brace that opens no placeholder ({exc}); write {{{{ for a brace"
    unknown = sorted({name for name, _, _ in fields if name not in PLACEHOLDERS})
    if unknown:
        return (f"has unknown placeholders {', '.join('{' + n + '}' for n in unknown)} (known: "
                f"{', '.join('{' + n + '}' for n in sorted(PLACEHOLDERS))})")
    if any(spec or conv for _, spec, conv in fields):
        return "has a placeholder with a format or conversion: write {name} alone"
    if _LINK.search(text):
        return "has a link: a service message carries none (it would make a WhatsApp utility template marketing)"
    if _PRICE.search(text):
        return "names a price or a discount: a service message carries no offer"
    lowered = text.lower()
    words = [w for w in PROMOTION_WORDS if w in lowered]
    if words:
        return f"reads as an ad ({', '.join(words)}): a service message never pushes to buy"
    return None


def _check_texts(texts: dict[str, str], where: str) -> dict[str, str]:
    missing = [locale for locale in ("zh-CN", "en") if locale not in texts]
    if missing:
        raise ValueError(f"{where}: a text for {', '.join(missing)} is needed (zh-HK falls back on zh-CN)")
    unknown = [locale for locale in texts if locale not in LOCALES]
    if unknown:
        raise ValueError(f"{where}: unknown locale {', '.join(unknown)} (locales: {', '.join(LOCALES)})")
    for locale, text in texts.items():
        why = lint_service_text(text)
        if why:
            raise ValueError(f"{where}.{locale} {why}")
    return texts


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


TASK = {"zh-CN": "Day {day}/{days} 🌟 今天的小任务来啦!分享你最近一次使用我们产品的心情,回复「签到」完成打卡~ 记得查看你的积分余额哦!",
        "zh-HK": "Day {day}/{days} 🌟 今日嘅小任務嚟啦!分享你最近一次使用我哋產品嘅心情,回覆「簽到」完成打卡~ 記得查看你嘅積分餘額呀!",
        "en": "Day {day}/{days} 🌟 Today's task: tell us how you felt using our product last time, "
              "and reply CHECKIN to check in~"}
SUMMARY = {"zh-CN": "本周小结 📋 你本周打卡 {week_days} 天,打卡积分 +{week_points},连续打卡 {streak} 天,目前排名第 {rank}。",
           "zh-HK": "本週小結 📋 你本週打卡 {week_days} 日,打卡積分 +{week_points},連續打卡 {streak} 日,目前排名第 {rank}。",
           "en": "Your week 📋 {week_days} check-ins, +{week_points} check-in points, a {streak}-day streak, "
                 "rank {rank} so far."}
LEADERBOARD = {"zh-CN": "{month} 月度排行榜 🏆 {top}。你的排名:第 {rank},挑战积分 {points}。",
               "zh-HK": "{month} 月度排行榜 🏆 {top}。你的排名:第 {rank},挑戰積分 {points}。",
               "en": "{month} leaderboard 🏆 {top}. You are number {rank} with {points} challenge points."}
FINAL = {"zh-CN": "{days} 天挑战完成啦 🎉 你的挑战积分 {points},最终排名第 {rank},奖励 +{reward} 积分已到账。谢谢你的坚持!",
         "zh-HK": "{days} 日挑戰完成啦 🎉 你嘅挑戰積分 {points},最終排名第 {rank},獎勵 +{reward} 積分已到賬。多謝你嘅堅持!",
         "en": "The {days}-day challenge is complete 🎉 {points} challenge points, final rank {rank}, "
               "+{reward} reward points credited. Thank you for keeping at it!"}
NUDGE = {"zh-CN": "看到你最近比较忙,我们为你保留了积分,随时可以回来哦~",
         "zh-HK": "見你最近比較忙,我哋為你保留咗積分,隨時可以返嚟㗎~",
         "en": "We can see you have been busy: we kept your points for you — come back any time."}


class ChallengeCalendar(_Strict):
    """When the challenge's messages go out (member-local) and what they say: the task on
    weekdays, the weekly summary (carrying that day's task), the monthly leaderboard on
    the 1st, the final message the day after the end, and the caring nudge."""

    send_time: str = Field("10:00", pattern=r"^([01]\d|2[0-3]):[0-5]\d$",
                           description="member-local time of the day's message")
    summary_weekday: int = Field(4, ge=0, le=4, description="0 Monday ... 4 Friday: the weekly summary's day")
    task: dict[str, str] = TASK
    task_days: dict[int, dict[str, str]] = Field({}, description="day number -> locale -> that day's task")
    summary: dict[str, str] = SUMMARY
    leaderboard: dict[str, str] = LEADERBOARD
    final: dict[str, str] = FINAL
    nudge: dict[str, str] = NUDGE

    @field_validator("task", "summary", "leaderboard", "final", "nudge")
    @classmethod
    def _texts(cls, texts: dict[str, str], info) -> dict[str, str]:
        return _check_texts(texts, info.field_name)

    @field_validator("task_days")
    @classmethod
    def _days(cls, days: dict[int, dict[str, str]]) -> dict[int, dict[str, str]]:
        for day, texts in days.items():
            if day < 1:
                raise ValueError(f"task_days.{day}: days are numbered from 1")
            _check_texts(texts, f"task_days.{day}")
        return days

    def text(self, kind: str, locale: str, day: int | None = None) -> str:
        """The text of `kind` (task, summary, leaderboard, final, nudge) for `locale`:
        zh-HK falls back on zh-CN, any other locale on en; a day's own task first."""
        texts = self.task_days.get(day) if kind == "task" and day in self.task_days else getattr(self, kind)
        if locale in texts:
            return texts[locale]
        return texts["zh-CN"] if locale.startswith("zh") else texts["en"]
