"""What the provider sandbox knows: accounts, its clock, the outbox, faults, stats and
what the providers remember about members (WhatsApp's 24 h window, WeChat followers,
Twilio opt-outs). Shared by the four fakes and the control routes; thread-safe.
"""

from __future__ import annotations

import copy
import itertools
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta, timezone
from typing import Any

from ..schedules import SimulatedClock, iso_utc

PROVIDERS = ("whatsapp", "wechat", "twilio", "aliyun")
CHANNEL_OF = {"whatsapp": "whatsapp", "wechat": "wechat", "twilio": "sms", "aliyun": "sms"}

# Where each fake listens on the local stack's port: the template's *ApiBase parameters.
BASE_PATHS = {
    "whatsapp": "/_sandbox/whatsapp",
    "wechat": "/_sandbox/wechat",
    "twilio": "/_sandbox/twilio",
    "aliyun": "/_sandbox/aliyun",
}
_API_BASE_PARAMETERS = {
    "WhatsAppApiBase": "whatsapp",
    "WeChatApiBase": "wechat",
    "TwilioApiBase": "twilio",
    "AliyunApiBase": "aliyun",
}

# The accounts the sandbox plays, as template parameters (the secrets that go with
# them are in resources.LOCAL_SECRETS). Twilio's +15005550006 is its own test "From".
LOCAL_IDS = {
    "WhatsAppPhoneNumberId": "100000000000001",
    "WeChatAppId": "wxlocal0000000001",
    "TwilioAccountSid": "AC00000000000000000000000000000000",
    "TwilioSender": "+15005550006",
    "AliyunAccessKeyId": "LTAIlocal",
    "AliyunSignName": "会员中心",
}

# Ids that appear in webhooks but that no request of ours names.
WHATSAPP_BUSINESS_ACCOUNT_ID = "200000000000001"
WHATSAPP_DISPLAY_PHONE_NUMBER = "15550001234"
WECHAT_ORIGINAL_ID = "gh_local00000001"  # the account's 原始ID, ToUserName of every push


def sandbox_parameters(base_url: str) -> dict[str, str]:
    """The template parameters that point the application at the sandbox served on
    `base_url` (e.g. http://127.0.0.1:3000), with the local accounts' ids."""
    base = base_url.rstrip("/")
    parameters = {name: base + BASE_PATHS[provider] for name, provider in _API_BASE_PARAMETERS.items()}
    return {**parameters, "PublicBaseUrl": base, **LOCAL_IDS}


@dataclass(frozen=True)
class Accounts:
    """The ids and secrets the fakes check requests against and sign webhooks with."""

    public_base_url: str
    whatsapp_phone_number_id: str
    whatsapp_access_token: str = field(repr=False)
    whatsapp_app_secret: str = field(repr=False)
    wechat_app_id: str
    wechat_app_secret: str = field(repr=False)
    wechat_token: str = field(repr=False)
    twilio_account_sid: str
    twilio_auth_token: str = field(repr=False)
    twilio_sender: str
    aliyun_access_key_id: str
    aliyun_access_key_secret: str = field(repr=False)
    aliyun_sign_name: str
    aliyun_callback_token: str = field(repr=False)

    @classmethod
    def resolve(cls, parameters: Mapping[str, str], secrets: Mapping[str, str], api_url: str) -> Accounts:
        """From the template's resolved parameters (a template without them, or an empty
        value, gets the local ids) and the local secrets."""
        def parameter(name: str) -> str:
            return parameters.get(name) or LOCAL_IDS.get(name, "")

        return cls(
            public_base_url=(parameters.get("PublicBaseUrl") or api_url).rstrip("/"),
            whatsapp_phone_number_id=parameter("WhatsAppPhoneNumberId"),
            whatsapp_access_token=secrets.get("WHATSAPP_ACCESS_TOKEN", ""),
            whatsapp_app_secret=secrets.get("WHATSAPP_APP_SECRET", ""),
            wechat_app_id=parameter("WeChatAppId"),
            wechat_app_secret=secrets.get("WECHAT_APP_SECRET", ""),
            wechat_token=secrets.get("WECHAT_TOKEN", ""),
            twilio_account_sid=parameter("TwilioAccountSid"),
            twilio_auth_token=secrets.get("TWILIO_AUTH_TOKEN", ""),
            twilio_sender=parameter("TwilioSender"),
            aliyun_access_key_id=parameter("AliyunAccessKeyId"),
            aliyun_access_key_secret=secrets.get("ALIYUN_ACCESS_KEY_SECRET", ""),
            aliyun_sign_name=parameters.get("AliyunSignName", LOCAL_IDS["AliyunSignName"]),
            aliyun_callback_token=secrets.get("ALIYUN_CALLBACK_TOKEN", ""),
        )

    def public(self) -> dict[str, str]:
        """The ids, without the secrets."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.repr}


class BadRequest(ValueError):
    """A control request that cannot be done: answered 400 (or `status`) with the message."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class SandboxConfig:
    """What POST /_local/sandbox/config changes while serving."""

    auto_receipts: bool = True
    receipt_delay: float = 0.5        # s after a send before its first receipt (our sender stores the id first)
    receipt_interval: float = 0.2     # s between the receipts of one message (sent, then delivered)
    receipt_retries: int = 3          # further attempts after a 404, 429, 5xx or no answer
    receipt_backoff: float = 0.5      # s before the first retry, doubling
    webhook_timeout: float = 10.0     # s the sandbox waits for our webhook
    timeout_hold: float = 12.0        # s a "timeout" fault holds the request (our clients give up at 8 s)
    wechat_token_overlap: float = 300.0   # s of the local clock an old token still works after a new one
    wechat_token_daily_limit: int = 2000  # token fetches per appid and day, then 45009
    # Known templates, when set: {"whatsapp": {name: {"languages": [...], "body_parameters": n}},
    # "wechat": {template_id: [data keys]}, "aliyun": {TemplateCode: [TemplateParam keys]}}.
    # A provider left out accepts any template name.
    templates: dict = field(default_factory=dict)

    _NUMBERS = ("receipt_delay", "receipt_interval", "receipt_backoff", "webhook_timeout", "timeout_hold",
                "wechat_token_overlap")
    _COUNTS = ("receipt_retries", "wechat_token_daily_limit")

    def update(self, changes: Any) -> None:
        """Apply a partial config; BadRequest (and nothing changed) if any value is wrong."""
        if not isinstance(changes, dict):
            raise BadRequest("the body must be a JSON object of settings, e.g. {\"auto_receipts\": false}")
        known = {f.name for f in fields(self)}
        problems = [f"unknown setting {name!r}" for name in changes if name not in known]
        for name, value in changes.items():
            if name == "auto_receipts" and not isinstance(value, bool):
                problems.append("auto_receipts must be true or false")
            elif name in self._NUMBERS and (isinstance(value, bool) or not isinstance(value, (int, float))
                                            or value < 0):
                problems.append(f"{name} must be a number of seconds >= 0")
            elif name in self._COUNTS and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                problems.append(f"{name} must be an integer >= 0")
            elif name == "templates" and not _templates_ok(value):
                problems.append('templates must look like {"whatsapp": {"<name>": {"languages": ["zh_CN"], '
                                '"body_parameters": 2}}, "wechat": {"<template_id>": ["thing1", ...]}, '
                                '"aliyun": {"<TemplateCode>": ["name", ...]}}')
        if problems:
            raise BadRequest("; ".join(problems))
        for name, value in changes.items():
            setattr(self, name, copy.deepcopy(value))

    def public(self) -> dict:
        """The settings as JSON."""
        return asdict(self)


def _templates_ok(value: Any) -> bool:
    def names(items: Any) -> bool:
        return isinstance(items, list) and all(isinstance(item, str) for item in items)

    def whatsapp(spec: Any) -> bool:
        return (isinstance(spec, dict) and set(spec) <= {"languages", "body_parameters"}
                and names(spec.get("languages", []))
                and (spec.get("body_parameters") is None or (isinstance(spec["body_parameters"], int)
                                                             and not isinstance(spec["body_parameters"], bool))))

    if not isinstance(value, dict) or not set(value) <= {"whatsapp", "wechat", "aliyun"}:
        return False
    return all(isinstance(known, dict) and all(
        whatsapp(spec) if provider == "whatsapp" else names(spec) for spec in known.values())
        for provider, known in value.items())


class SandboxClock:
    """The sandbox's "now": the local stack's SimulatedClock, running on from the moment
    it was last set (a schedule run at 16:05 makes a receipt a second later 16:05:01),
    or the real time until a schedule has run."""

    def __init__(self, clock: SimulatedClock):
        self._clock = clock
        self._lock = threading.Lock()
        simulated = clock.simulated
        self._anchor = (simulated, time.monotonic()) if simulated is not None else None
        clock.subscribe(self._moved)

    def _moved(self, when: datetime) -> None:
        with self._lock:
            self._anchor = (when, time.monotonic())

    def now(self) -> datetime:
        """The current local time (aware, UTC)."""
        with self._lock:
            anchor = self._anchor
        if anchor is None:
            return datetime.now(timezone.utc)
        when, at = anchor
        return when + timedelta(seconds=time.monotonic() - at)


class Outbox:
    """The messages the fakes accepted, oldest first (GET /_local/outbox)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[dict] = []
        self._sequence = itertools.count(1)

    def add(self, record: dict) -> dict:
        """Store a record; it gets a sequence number `seq`."""
        with self._lock:
            record["seq"] = next(self._sequence)
            self._records.append(record)
            return record

    def list(self, *, to: str | None = None, channel: str | None = None,
             provider: str | None = None) -> list[dict]:
        """Copies of the records, oldest first, filtered."""
        wanted_to = to.lstrip("+") if to else None
        with self._lock:
            return [copy.deepcopy(r) for r in self._records
                    if (wanted_to is None or r["to"] == wanted_to)
                    and (channel is None or r["channel"] == channel)
                    and (provider is None or r["provider"] == provider)]

    def find(self, provider: str, provider_message_id: str | int) -> list[dict]:
        """The records (live, not copies) a provider's message id names: Aliyun gives one
        BizId to every number of a send. WeChat's msgid matches as a number or a text."""
        wanted = str(provider_message_id)
        with self._lock:
            return [r for r in self._records
                    if r["provider"] == provider and r["provider_message_id"] is not None
                    and str(r["provider_message_id"]) == wanted]

    def __len__(self) -> int:
        with self._lock:
            return len(self._records)

    def set_status(self, record: dict, status: str) -> None:
        """What the provider told us last about a message (the receipt it posted)."""
        with self._lock:
            record["status"] = status
            record["statuses"].append(status)

    def clear(self) -> int:
        """Forget everything; how many records there were."""
        with self._lock:
            count = len(self._records)
            self._records.clear()
            return count


@dataclass
class Fault:
    """The next `remaining` sends to `provider` (and to `to`, if given) fail so; with
    `share`, each matching send fails so with that probability, until the fault is
    dropped (DELETE /_local/faults)."""

    id: int
    provider: str
    kind: str                       # status | error_code | timeout
    count: int | None
    remaining: int | None
    to: str | None = None
    status: int | None = None       # HTTP status (kind status; optional for error_code)
    error_code: int | str | None = None
    hold: float | None = None       # timeout: seconds, None = the configured timeout_hold
    then: str = "error"             # timeout: "error" (a 504 after the hold) or "accept"
    created_at: str = ""
    share: float | None = None      # probabilistic: the chance that a matching send fails
    seed: int | None = None
    hits: int = 0                   # sends it failed (probabilistic faults)
    draws: random.Random | None = field(default=None, repr=False, compare=False)

    def public(self) -> dict:
        """The fault as JSON (only the fields its kind uses)."""
        data = {"id": self.id, "provider": self.provider, "kind": self.kind, "count": self.count,
                "remaining": self.remaining, "to": self.to, "created_at": self.created_at}
        if self.share is not None:
            data.update(share=self.share, seed=self.seed, hits=self.hits)
        if self.kind == "status":
            data["status"] = self.status
        elif self.kind == "error_code":
            data["error_code"] = self.error_code
            if self.status is not None:
                data["status"] = self.status
        else:
            data.update(timeout=True, hold=self.hold, then=self.then)
        return data


class Faults:
    """Pending faults, consumed first-registered first."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(self, body: Any, now: datetime) -> Fault:
        """Register a fault from a POST /_local/faults body; BadRequest if malformed."""
        if not isinstance(body, dict):
            raise BadRequest('the body must be a JSON object, e.g. {"provider": "whatsapp", "status": 500, "count": 3}')
        problems = []
        provider = body.get("provider")
        if provider not in PROVIDERS:
            problems.append(f"provider must be one of {', '.join(PROVIDERS)}")
        # `is not None`: an error code 0 (WhatsApp's AuthException) is a code, not an absence.
        kinds = [k for k in ("status", "error_code", "timeout") if body.get(k) is not None and body.get(k) is not False]
        if body.get("timeout") not in (None, False, True):
            problems.append("timeout must be true")
        if not kinds:
            problems.append('say how the sends fail: "status": <HTTP status>, "error_code": <code> or "timeout": true')
        elif kinds == ["status", "error_code"]:
            kinds = ["error_code"]  # an error code answered with a chosen HTTP status
        elif len(kinds) > 1:
            problems.append("give one of status, error_code or timeout")
        status = body.get("status")
        if status is not None and (isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599):
            problems.append("status must be an HTTP error status, 400-599")
        code = body.get("error_code")
        if code is not None and (isinstance(code, bool) or not isinstance(code, (int, str)) or code == ""):
            problems.append("error_code must be the provider's code (a number, or a string for Aliyun)")
        share = body.get("share")
        if share is not None and (isinstance(share, bool) or not isinstance(share, (int, float))
                                  or not 0 < share <= 1):
            problems.append("share must be a probability, more than 0 and at most 1")
        if share is not None and "count" in body:
            problems.append("give count (the next sends) or share (a chance for every send), not both")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or share is None):
            problems.append("seed must be an integer, with share")
        count = body.get("count", 1) if share is None else None
        if share is None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            problems.append("count must be an integer >= 1")
        to = body.get("to")
        if to is not None and (not isinstance(to, str) or not to.strip()):
            problems.append("to must be a phone number or an OpenID")
        hold = body.get("hold")
        if hold is not None and (isinstance(hold, bool) or not isinstance(hold, (int, float)) or hold < 0):
            problems.append("hold must be a number of seconds >= 0")
        then = body.get("then", "error")
        if then not in ("error", "accept"):
            problems.append('then must be "error" (answer 504 after the hold) or "accept" (go on and send)')
        unknown = set(body) - {"provider", "status", "error_code", "timeout", "count", "to", "hold", "then",
                               "share", "seed"}
        if unknown:
            problems.append(f"unknown field(s): {', '.join(sorted(unknown))}")
        if problems:
            raise BadRequest("; ".join(problems))
        with self._lock:
            fault = Fault(id=next(self._ids), provider=provider, kind=kinds[0], count=count, remaining=count,
                          to=to.strip().lstrip("+") if to else None, status=status, error_code=code,
                          hold=hold, then=then, created_at=iso_utc(now), share=share, seed=seed,
                          draws=random.Random(seed) if share is not None else None)
            self._faults.append(fault)
            return fault

    def take(self, provider: str, recipients: list[str]) -> Fault | None:
        """Consume one use of the first fault that matches a send (a probabilistic one
        matches when its draw says so); None if none does."""
        with self._lock:
            for fault in self._faults:
                if fault.provider == provider and (fault.to is None or fault.to in recipients):
                    if fault.share is not None:
                        if fault.draws.random() >= fault.share:
                            continue
                        fault.hits += 1
                        return copy.copy(fault)
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return copy.copy(fault)
        return None

    def pending(self) -> list[dict]:
        """The faults not used up, as JSON."""
        with self._lock:
            return [fault.public() for fault in self._faults]

    def clear(self) -> int:
        """Drop every pending fault; how many there were."""
        with self._lock:
            count = len(self._faults)
            self._faults.clear()
            return count


class Stats:
    """Counters by section and key: stats.add("sends_accepted", "whatsapp")."""

    SECTIONS = ("sends_accepted", "sends_refused", "faults_injected", "wechat_token_fetches",
                "wechat_token_refusals", "inbound", "member_messages_seen")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, dict[str, int]] = {}
        self.reset()

    def add(self, section: str, key: str, amount: int = 1) -> None:
        """Count one (or `amount`) more."""
        with self._lock:
            bucket = self._counts.setdefault(section, {})
            bucket[key] = bucket.get(key, 0) + amount

    def snapshot(self) -> dict[str, dict[str, int]]:
        """A copy of every counter."""
        with self._lock:
            return copy.deepcopy(self._counts)

    def reset(self) -> None:
        """Every counter back to zero (the per-provider ones listed)."""
        with self._lock:
            self._counts = {section: {} for section in self.SECTIONS}
            for section in ("sends_accepted", "sends_refused", "faults_injected", "inbound", "member_messages_seen"):
                self._counts[section] = {provider: 0 for provider in PROVIDERS}


class Memory:
    """What the providers remember about members, from inbound traffic and sends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.whatsapp_last_inbound: dict[str, datetime] = {}   # wa_id -> last message from them
        self.wechat_last_interaction: dict[str, datetime] = {}  # openid -> last message/event
        self.wechat_unfollowed: set[str] = set()
        self.twilio_opted_out: set[str] = set()                # digits, after STOP
        self.wechat_client_msg_ids: dict[tuple[str, str], tuple[int, datetime]] = {}
        self.aliyun_nonces: dict[str, float] = {}               # SignatureNonce -> time.time() seen

    def clear(self) -> None:
        """Forget everything."""
        with self.lock:
            self.whatsapp_last_inbound.clear()
            self.wechat_last_interaction.clear()
            self.wechat_unfollowed.clear()
            self.twilio_opted_out.clear()
            self.wechat_client_msg_ids.clear()
            self.aliyun_nonces.clear()
