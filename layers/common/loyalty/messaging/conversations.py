"""What happens when a provider pushes something: receipts move a message forward,
keywords change consent or get an answer, follow/unfollow and "stop marketing" change
consent. Every step is idempotent, so a provider's retry (or ours after a failure)
changes nothing twice and loses nothing."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Iterator

from ..channels.keywords import classify_keyword, is_agreement
from ..channels.pushes import ChannelEvent, InboundMessage, StatusUpdate
from ..domain import stable_id
from ..records import Consent
from .dispatch import CONTACT, MARKETING_SCOPE, channels_for, consent_scope, member_zone
from .outbox import OutboxRecord
from .templates import format_date, render

if TYPE_CHECKING:
    from ..rules import Rules

CHANNEL_OF = {"whatsapp": "whatsapp", "wechat": "wechat", "twilio": "sms", "aliyun": "sms"}
STATUS_OF = {"sent": "sent", "delivered": "delivered", "read": "read", "failed": "failed",
             "undelivered": "undelivered"}
# Twilio answers STOP/START/HELP itself on long codes: we mirror consent, not the reply.
PROVIDER_CONFIRMS = {"twilio"}

log = logging.getLogger(__name__)

FRAGMENTS = {
    "expiring": {"zh-CN": "其中{points}积分将于{date}到期。", "zh-HK": "其中{points}積分將於{date}到期。",
                 "en": "{points} expire on {date}. "},
    "redeemable": {"zh-CN": "可兑换：{item}。", "zh-HK": "可兌換：{item}。", "en": "You can redeem: {item}."},
}


@dataclass
class Outcome:
    """What a push led to; `reply` is text to answer in the HTTP response (WeChat's
    passive reply), when the channel allows it."""

    handled: str
    reply: str | None = None


@contextmanager
def stored_push(item: InboundMessage | ChannelEvent, msgs, now: datetime) -> Iterator[None]:
    """Around applying a push stored with `msgs.store_inbound`: once applied, it is marked
    processed (and expires sooner); when applying raises, why is noted on it (phone
    numbers masked, by the store) and the error goes on, so the webhook answers 5xx and
    the provider's retry applies it again. Neither note turns an applied push into a
    failure, nor hides one."""
    try:
        yield
    except Exception as exc:
        try:
            msgs.inbound_failed(item.provider, item.dedup_key, now, f"{type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001 - the original failure is the one to report
            log.warning("stored push: could not note the failure", extra={"provider": item.provider})
        raise
    try:
        msgs.inbound_processed(item.provider, item.dedup_key, now)
    except Exception as exc:  # noqa: BLE001 - applied: the push only keeps its longer expiry
        log.warning("stored push: could not mark it processed",
                    extra={"provider": item.provider, "error": type(exc).__name__})


def _when(at: int | None, now: datetime) -> datetime:
    return datetime.fromtimestamp(at, timezone.utc) if at else now


def apply_status(update: StatusUpdate, msgs, now: datetime, our_ref: str | None = None, *,
                 ledger=None, queues=None, rules: "Rules | None" = None) -> Outcome:
    """Move the message's status forward; unknown ids and statuses are acknowledged.

    A receipt only counts for the channel the message is on: after a fallback, a late
    receipt of the first channel changes nothing. A failure the provider reports after
    accepting the send (WhatsApp reports 131026 and 131047 this way) is acted on as at
    send time, when `queues` and `rules` are given: see after_failed_receipt."""
    message_id = our_ref or update.our_ref or msgs.message_id_for(update.provider, update.provider_message_id)
    status = STATUS_OF.get(update.status)
    if message_id is None or status is None:
        return Outcome(f"ignored:{'unknown_message' if message_id is None else update.raw_status}")
    detail = " ".join(x for x in (update.error_code, update.error_title) if x)
    at = _when(update.at, now)
    moved = msgs.record_status(message_id, status, at, detail, channel=CHANNEL_OF[update.provider],
                               provider_message_id=update.provider_message_id)
    if status in ("failed", "undelivered") and update.error_code and queues is not None and rules is not None:
        acted = after_failed_receipt(update, message_id, msgs, ledger, queues, rules, at, detail)
        if acted:
            return Outcome(acted)
    return Outcome(f"status:{status}" if moved else "status:not_forward")


# Receipt reasons that are not send-time error codes of the provider.
RECEIPT_OUTCOMES = {("wechat", "user_block"): "opted_out", ("wechat", "system_failed"): "transient"}
RECEIPT_RESENDS = 2          # sends again on the same channel after late transient failures


def receipt_outcome(provider: str, code: str) -> tuple[str, float | None]:
    """What a failure code in a receipt means, by the provider's send-time table: the
    outcome and the provider's wait hint (seconds) for a transient one."""
    known = RECEIPT_OUTCOMES.get((provider, code))
    if known:
        return known, None
    if provider == "whatsapp":
        from ..channels.whatsapp import classify_whatsapp_error as classify
    elif provider == "twilio":
        from ..channels.twilio import classify_twilio_error as classify
    elif provider == "aliyun":
        from ..channels.aliyun import classify_aliyun_error as classify
    else:
        from ..channels.wechat import classify_wechat_error as classify
    found = classify(400, code)
    return found.outcome, found.retry_after_s


def after_failed_receipt(update: StatusUpdate, message_id: str, msgs, ledger, queues, rules: "Rules",
                         at: datetime, detail: str) -> str | None:
    """A failure the provider reported after accepting the send, acted on as at send
    time: undeliverable -> the next consented channel, once; window_closed -> the
    approved template on the same channel; opted_out -> record the opt-out, suppress;
    transient -> the same send again after the provider's wait (twice at most). Only for
    the send this receipt is about (the record's channel and provider id). Safe to
    repeat: a provider's retry of the receipt routes the message again at most, and the
    sender's claim sends it once."""
    outcome, wait_s = receipt_outcome(update.provider, update.error_code or "")
    if outcome not in ("undeliverable", "window_closed", "opted_out", "transient"):
        return None
    record = msgs.message(message_id)
    if record is None:
        return None
    if record.status == "queued" and record.channel and record.attempts == 0 and \
            any(h[0] in ("fallback", "resend") and update.provider_message_id in h[2] for h in record.history):
        # Acted on already (the provider retried the receipt); the queue message may be lost.
        queues.send(record.channel, {"message_id": message_id, "channel": record.channel})
        return f"rerouted:{record.channel}"
    channel = CHANNEL_OF[update.provider]
    if record.channel != channel or record.provider_message_id != update.provider_message_id:
        return None
    note = f"{update.provider}:{update.provider_message_id} {detail}"
    if outcome == "opted_out":
        if ledger is not None:
            ledger.add_consent(Consent(record.member_id, consent_scope(update.provider, update.error_code, channel),
                                       "opted_out",
                                       f"provider:{update.provider}:{update.error_code}", at, proof=message_id))
        msgs.record_status(message_id, "suppressed", at, detail)
        return "suppressed"
    delay = 0
    if outcome in ("window_closed", "transient"):
        payloads = record.payloads
        if outcome == "window_closed":
            if record.payloads.get(channel, {}).get("type") != "text":
                return None
            template = rules.template(record.template)
            payloads = {**record.payloads, channel: render(template, channel, record.locale, record.variables,
                                                           message_id=message_id)}
        elif sum(1 for h in record.history if h[0] == "resend") >= RECEIPT_RESENDS:
            return None
        else:
            delay = int(min(max(wait_s or 60, 1), 900))
        target = channel
        moved = msgs.switch_channel(message_id, channel, record.to, at, note, fallbacks=record.fallbacks,
                                    after_receipt=True, payloads=payloads, step="resend",
                                    superseded=update.provider_message_id)
    else:
        contact = record.extra.get("to", {}).get(record.fallbacks[0]) if record.fallbacks else None
        if not contact:
            return None
        target = record.fallbacks[0]
        moved = msgs.switch_channel(message_id, target, contact, at, note, fallbacks=record.fallbacks[1:],
                                    after_receipt=True, superseded=update.provider_message_id)
    if not moved:
        return None
    queues.send(target, {"message_id": message_id, "channel": target}, delay_s=delay)
    return f"{'resend' if target == channel else 'fallback'}:{target}"


def _member_for(ledger, message: InboundMessage | ChannelEvent) -> str | None:
    if message.provider == "wechat":
        return ledger.member_for_contact("OPENID", message.sender)
    phone = message.sender if message.sender.startswith("+") else "+" + message.sender
    return ledger.member_for_contact("PHONE", phone)


def apply_event(event: ChannelEvent, ledger, now: datetime, rules: "Rules | None" = None) -> Outcome:
    """WeChat follow/unfollow and subscription choices, WhatsApp's marketing preference."""
    member = _member_for(ledger, event)
    channel = CHANNEL_OF[event.provider]
    if member is None:
        return Outcome("ignored:unknown_member")
    status = {"unfollow": "opted_out", "follow": "opted_in", "stop_marketing": "opted_out",
              "resume_marketing": "opted_in"}.get(event.event)
    if event.event == "subscribe_msg" and event.choices:
        status = "opted_in" if any(choice == "accept" for _, choice in event.choices) else "opted_out"
    if status is None:
        return Outcome(f"ignored:{event.raw}")
    if event.event in ("stop_marketing", "resume_marketing"):
        channel = MARKETING_SCOPE[channel]   # marketing only: utility reminders still go
    ledger.add_consent(Consent(member, channel, status, f"{event.provider}:{event.event}", _when(event.at, now),
                               proof=event.dedup_key))
    if rules is not None and status == "opted_in":   # a follow is an opt-in: the first one earns its milestone
        from ..services.member_rewards import reward_opt_in
        reward_opt_in(ledger, rules, member, now)
    return Outcome(f"consent:{status}")


def apply_message(message: InboundMessage, ledger, msgs, queues, rules: "Rules", now: datetime, *,
                  passive: bool = True, clock: datetime | None = None) -> Outcome:
    """Keywords: opt-out (confirmed once), opt-in, balance, help, check-in. `passive`: a WeChat
    answer may go in the webhook's response (not when a stored push is applied later);
    `clock`: the service's clock a check-in is measured against (default `now`)."""
    member = _member_for(ledger, message)
    if member is None:
        return Outcome("ignored:unknown_member")
    channel = CHANNEL_OF[message.provider]
    keyword = classify_keyword(message.text)
    snapshot = msgs.member_snapshot(member)
    current = snapshot.consents.get(channel)
    at = _when(message.at, clock or now)   # a message without its own time (Twilio) came at the request's
    if keyword == "opt_in" and is_agreement(message.text) and hasattr(ledger, "open_invitations"):
        joined = _enrol_by_reply(message, ledger, member, channel, rules, at, clock or now)
        if joined is not None:   # the answer to an invitation (E5): enrolled, confirmed on this channel
            return _reply("challenge_enrolled", _enrolled_variables(joined, snapshot), member, message, snapshot,
                          msgs, queues, rules, now, passive)
    if keyword in ("opt_out", "opt_in"):
        status = "opted_out" if keyword == "opt_out" else "opted_in"
        changed = _changes_consent(ledger, member, channel, current, status, at, message)
        ledger.add_consent(Consent(member, channel, status, f"keyword:{message.text.strip()[:32]}", at,
                                   proof=message.dedup_key))
        if status == "opted_in":
            from ..services.member_rewards import reward_opt_in
            reward_opt_in(ledger, rules, member, now)
        template = "opt_out_confirmed" if keyword == "opt_out" else "opt_in_confirmed"
        if not changed or message.provider in PROVIDER_CONFIRMS:
            return Outcome(f"consent:{status}")
        return _reply(template, {}, member, message, snapshot, msgs, queues, rules, now, passive)
    if keyword == "balance":
        return _reply("balance_reply", _balance_variables(snapshot, rules, now), member, message, snapshot, msgs,
                      queues, rules, now, passive, answer=True)
    if keyword == "help":
        return _reply("help_reply", {}, member, message, snapshot, msgs, queues, rules, now, passive, answer=True)
    if keyword == "checkin":
        return _check_in(member, message, snapshot, ledger, msgs, queues, rules, now, at, passive, clock or now)
    return Outcome("ignored:no_keyword")


CHECKIN_FRAGMENTS = {   # the check-in reply's summary (loyalty.engagement.daily_checkins), per locale
    "progress": {"zh-CN": "Day {day}/{days} ✅ ", "zh-HK": "Day {day}/{days} ✅ ", "en": "Day {day}/{days} ✅ "},
    "in_challenge": {"zh-CN": "+{points} 积分 · 连续 {streak} 天", "zh-HK": "+{points} 積分 · 連續 {streak} 天",
                     "en": "+{points} points · {streak}-day streak"},
    "credited": {"zh-CN": "连续签到第 {streak} 天 +{points} 积分", "zh-HK": "連續簽到第 {streak} 天 +{points} 積分",
                 "en": "Day {streak} of your streak +{points} points"},
    "already": {"zh-CN": "今天已签到 · 连续 {streak} 天", "zh-HK": "今天已簽到 · 連續 {streak} 天",
                "en": "Already checked in today · {streak}-day streak"},
    "capped": {"zh-CN": "（今日积分已达上限）", "zh-HK": "（今日積分已達上限）", "en": " (today's points limit reached)"},
}


def checkin_summary(answer: dict, progress: tuple[int, int] | None, locale: str) -> str:
    """"Day 23/90 ✅ +15 积分 · 连续 5 天" in a challenge, "连续签到第 5 天 +15 积分" outside one,
    "今天已签到 · 连续 5 天" when the day was checked in already."""
    locale = locale if locale in ("zh-CN", "zh-HK", "en") else "zh-CN"
    values = {"points": f"{answer['points']:,}", "streak": answer["streak"]}
    text = CHECKIN_FRAGMENTS["progress"][locale].format(day=progress[0], days=progress[1]) if progress else ""
    if answer["already_checked_in"]:
        kind = "already"
    else:
        kind = "in_challenge" if progress else "credited"
    text += CHECKIN_FRAGMENTS[kind][locale].format(**values)
    if answer.get("capped"):
        text += CHECKIN_FRAGMENTS["capped"][locale]
    return text


def _check_in(member: str, message: InboundMessage, snapshot, ledger, msgs, queues, rules: "Rules", now: datetime,
              at: datetime, passive: bool, clock: datetime) -> Outcome:
    """签到 / 打卡 / CHECKIN: the check-in of POST /members/{id}/checkins at the message's
    time, measured against the service's `clock` (the request's time, see
    web.provider_edge.request_time), answered with the streak and balance (a service
    message: no offer in it)."""
    from ..engagement.daily_checkins import CheckinOutcome, check_in
    from ..errors import Conflict, Invalid
    from . import notices
    told: list[dict] = []
    try:
        outcome = check_in(ledger, rules, member, at, clock, told)
    except Invalid:   # a push applied more than 48 h after it was sent: too late to count, or to answer
        return Outcome("ignored:checkin_too_late")
    except Conflict:  # a delayed message for a day before the latest check-in: the streak stands
        account = ledger.load_account(member, with_lots=False)
        state = account.engagement.checkin
        outcome = CheckinOutcome({"date": state.last, "streak": state.streak, "points": 0,
                                  "balance": account.balance, "already_checked_in": True}, state.challenges)
    notices.tier_changes(queues, told, rules, now, log)
    profile = snapshot.profile
    locale = profile.locale if profile and profile.locale else "zh-CN"
    answer = outcome.answer
    variables = {"summary": checkin_summary(answer, outcome.progress(), locale), "balance": answer["balance"],
                 "points": answer["points"], "streak": answer["streak"], "date": answer["date"]}
    return _reply("checkin_reply", variables, member, message, snapshot, msgs, queues, rules, now, passive,
                  answer=True)


def _enrol_by_reply(message: InboundMessage, ledger, member: str, channel: str, rules: "Rules", at: datetime,
                    now: datetime):
    """同意 / AGREE with an open invitation: the first challenge enrolled in now, or None
    (no open invitation, or enrolled already: the reply is the channel's opt-in)."""
    from ..engagement.enrolment import enrol_by_reply
    joined = enrol_by_reply(ledger, member, channel, message.provider_message_id, message.text, at, now,
                            rules.program_timezone)
    return joined[0] if joined else None


def _enrolled_variables(record, snapshot) -> dict:
    profile = snapshot.profile
    locale = profile.locale if profile and profile.locale in ("zh-CN", "zh-HK", "en") else "zh-CN"
    return {"challenge": record.spec.name, "starts_on": format_date(record.spec.starts_on, locale),
            "days": record.spec.days}


def _balance_variables(snapshot, rules: "Rules", now: datetime) -> dict:
    profile = snapshot.profile
    locale = profile.locale if profile and profile.locale in ("zh-CN", "zh-HK", "en") else "zh-CN"
    live = sorted((lot for lot in snapshot.lots if lot.spendable(now)), key=lambda lot: lot.expires_at)
    balance = sum(lot.remaining for lot in live)
    expiring = ""
    if live:
        from zoneinfo import ZoneInfo
        zone = member_zone(profile, rules)   # the day the member reads is their own
        first_day = live[0].expires_at.astimezone(ZoneInfo(zone)).date()
        soon = sum(lot.remaining for lot in live if lot.expires_at.astimezone(ZoneInfo(zone)).date() == first_day)
        expiring = FRAGMENTS["expiring"][locale].format(points=f"{soon:,}",
                                                        date=format_date(live[0].expires_at, locale, zone))
    # an item hidden below a tier (E10) is never named here: the snapshot does not carry the tier
    affordable = [item for item in rules.catalog if item.active and item.min_tier is None and item.points <= balance]
    redeemable = FRAGMENTS["redeemable"][locale].format(item=max(affordable, key=lambda i: i.points).name) \
        if affordable else ""
    return {"balance": balance, "expiring": expiring, "redeemable": redeemable}


def _changes_consent(ledger, member: str, channel: str, current, status: str, at: datetime,
                     message: InboundMessage) -> bool:
    """Whether this keyword changes the member's decision. A decision older than the one in
    force (a push applied late) changes nothing. The provider's retry of a push whose first
    try recorded the decision and then failed (a 503 before the reply was made) is judged
    against the decision before that push, so its confirmation is still made."""
    if current is not None and current.proof == message.dedup_key and current.status == status:
        before = next((c for c in ledger.consent_history(member, channel) if c.proof != message.dedup_key), None)
        return before is None or before.status != status
    return current is None or (current.status != status and current.at <= at)


def _reply_id(message: InboundMessage, template_name: str) -> str:
    return "m-" + stable_id("reply", message.dedup_key, template_name, length=24)


def _reply(template_name: str, variables: dict, member: str, message: InboundMessage, snapshot, msgs, queues,
           rules: "Rules", now: datetime, passive: bool = True, *, answer: bool = False) -> Outcome:
    """Answer inside the service window the member just opened: free-form text. WeChat
    answers in the HTTP response itself; the others go through the channel's sender.
    An `answer` to a question (balance, help) may go on the member's other consented
    channels when this one cannot carry it (undeliverable, its template refused); a
    consent confirmation stays on the channel it confirms."""
    channel = CHANNEL_OF[message.provider]
    template = rules.template(template_name)
    profile = snapshot.profile
    locale = profile.locale if profile and profile.locale else "zh-CN"
    message_id = _reply_id(message, template_name)
    payload = render(template, channel, locale, variables, message_id=message_id, free_form=True)
    to = message.sender if channel == "wechat" else (message.sender if message.sender.startswith("+")
                                                     else "+" + message.sender)
    payloads, contacts = {channel: payload}, {channel: to}
    if answer and channel != "wechat":
        for other in channels_for(snapshot, rules, template.category):
            contact = getattr(snapshot.profile, CONTACT[other], None)
            if other != channel and getattr(template, other) is not None and contact:
                # no service window there: the approved template (SMS: its text)
                payloads[other] = render(template, other, locale, variables, message_id=message_id)
                contacts[other] = contact
    record = OutboxRecord(message_id=message_id, member_id=member, kind="reply", template=template_name,
                          category=template.category, channel=channel, to=to, locale=locale, variables=variables,
                          payloads=payloads, fallbacks=tuple(c for c in payloads if c != channel), status="queued",
                          created_at=now,
                          history=(("queued", now.isoformat(), f"in reply to {message.provider_message_id}"),),
                          extra={"provider": message.provider, **({"to": contacts} if len(contacts) > 1 else {})})
    if channel == "wechat" and passive:
        sent = replace(record, status="sent", provider="wechat",
                       provider_message_id=f"passive:{message.provider_message_id}",
                       history=record.history + (("sent", now.isoformat(), "passive reply"),))
        msgs.create_message(sent)
        return Outcome(f"reply:{template_name}", reply=payload["content"])
    if msgs.create_message(record):
        queues.send(channel, {"message_id": message_id, "channel": channel, "provider": message.provider})
    else:   # the provider's retry of a push we failed to finish: the reply may never have been routed
        from .dispatcher import route_again_if_waiting
        route_again_if_waiting(msgs, queues, message_id)
    return Outcome(f"reply:{template_name}")
