"""The composition root: builds the adapters the handlers hand to the services, once per
container, on first use."""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Callable, TypeVar

from .settings import settings

if TYPE_CHECKING:
    from .ports import (AccountStore, ChallengeStore, ConsentStore, DisputeStore, LedgerStore, ProfileStore,
                        ReviewStore)
    from .rules import Rules

T = TypeVar("T")


@cache
def ledger_store() -> LedgerStore:
    """The ledger side of the table (accounts, profiles, consents, disputes): one adapter
    per port, over one table and one connection."""
    from .adapters.ledger import DynamoLedgerStore
    s = settings()
    return DynamoLedgerStore(s.table_name, s.expiry_shards)


def account_store() -> AccountStore:
    return ledger_store()


def profile_store() -> ProfileStore:
    return ledger_store()


def consent_store() -> ConsentStore:
    return ledger_store()


def dispute_store() -> DisputeStore:
    return ledger_store()


def review_store() -> ReviewStore:
    return ledger_store()


def challenge_store() -> ChallengeStore:
    """The check-in challenges (E5): on the ledger's table and connection (enrolment and
    the participants' credits are written in the accounts' transactions)."""
    return ledger_store()


@cache
def results_store():
    """What the results of challenges and lucky draws keep (draws, final rankings, seeds)."""
    from .adapters.ledger.base import LedgerTable
    from .adapters.ledger.results import DynamoResultsStore
    return DynamoResultsStore(LedgerTable(settings().table_name))


def challenge_reader():
    """The challenges and their participants as the results read them (loyalty.ports.ChallengeReader)."""
    return challenge_store()


@cache
def messaging_store():
    from .adapters.messaging.store import DynamoMessagingStore
    return DynamoMessagingStore(settings().table_name)


def challenge_finish():
    """The calendar's final day (engagement.challenge_calendar.Finish): rank the challenge
    and pay its rewards once (engagement.challenge_results.finish_challenge), then the
    standings its recorded snapshot fixed."""
    def finish(record, now):
        from .engagement.challenge_calendar import Standing
        from .engagement.challenge_results import final_standings, finish_challenge
        finish_challenge(challenge_reader(), results_store(), account_store(), rules(), record.challenge_id, now)
        return {member: Standing(*standing)
                for member, standing in final_standings(results_store(), record.challenge_id).items()}
    return finish


def challenge_leaderboard():
    """The calendar's 1st of the month (engagement.challenge_calendar.Leaderboard): the
    month's board from the leaderboard index (engagement.standings), read once."""
    def board(challenge_id, month):
        from .engagement.standings import month_board
        return month_board(challenge_store(), challenge_id, month)
    return board


@cache
def queues():
    from .adapters.queues import SqsQueues
    return SqsQueues()


def rules() -> Rules:
    """The rules in force: defaults merged with the merchant's overrides (cached)."""
    from .adapters import config  # boto3 loads on first use, not at handler import
    overrides = config.rule_overrides(settings().rules_parameter)
    return _built(repr(sorted(overrides.items())), overrides)


_built_cache: dict[str, Rules] = {}


def _built(key: str, overrides: dict) -> Rules:
    from .errors import Invalid, Misconfigured
    from .rules import build_rules  # pydantic models built on first use
    if key not in _built_cache:
        try:
            rules = build_rules(overrides)
        except Invalid as exc:  # the merchant's document, not the caller's request, is wrong
            raise Misconfigured(f"the programme rules are invalid: {exc}") from exc
        _built_cache.clear()
        _built_cache[key] = rules
    return _built_cache[key]


def secret(name: str) -> str | None:
    """A secret by name; None only when it is not configured. A secret that cannot be
    read raises Transient (503 for the API; the queue or the provider retries)."""
    from .adapters import config
    return config.secret(name, settings().secrets_id)


def with_fresh_secrets(check: Callable[[], T]) -> T:
    """Run `check`, a signature check that reads its secrets through `secret`. When it
    fails with Unauthorized and the cached secrets are more than a minute old, they may
    have been rotated since they were read: read them again and check once more. However
    many bad signatures arrive, that is at most one more read a minute."""
    from .adapters import config
    from .errors import Unauthorized
    try:
        return check()
    except Unauthorized:
        if not config.refresh_secrets(settings().secrets_id):
            raise
    return check()


_senders: dict[str, tuple[tuple[tuple[str, str | None], ...], Callable]] = {}


def channel_sender(channel: str):
    """`send(record, channel, payload) -> SendResult` for a channel, its clients built from
    the environment and the secrets, and built again when one of those secrets changes (a
    rotation reaches a warm sender within the secrets' cache time). A provider that is not
    configured fails its sends as configuration errors (recorded, never retried); secrets
    that cannot be read now raise Transient, so the message goes back to its queue."""
    from .errors import Transient
    held = _senders.get(channel)
    if held is not None and all(secret(name) == value for name, value in held[0]):
        return held[1]
    used: dict[str, str | None] = {}

    def read(name: str) -> str | None:
        used[name] = secret(name)
        return used[name]

    try:
        send = _build_sender(channel, read)
    except Transient:
        raise               # nothing is known yet: build again on the next message
    except Exception as exc:  # noqa: BLE001 - Misconfigured: fail the sends, visibly
        return _unconfigured(channel, str(exc))
    _senders[channel] = (tuple(used.items()), send)
    return send


def _unconfigured(channel: str, message: str):
    from .channels.providers import ProviderError

    def send(record, _channel, payload):
        raise ProviderError("config", "not_configured", message, provider=channel)
    return send


def _build_sender(channel: str, secret: Callable[[str], str | None]):
    import os

    from .errors import Transient

    def share(config):
        from .channels.providers import rate_share
        return rate_share(config, settings().sender_max_concurrency)

    if channel == "whatsapp":
        from .channels.whatsapp import WhatsAppClient, WhatsAppConfig
        client = WhatsAppClient(share(WhatsAppConfig.from_env(os.environ, secret)))
        return lambda record, _c, payload: client.send(record.to, payload, record.message_id)
    if channel == "wechat":
        from .adapters.messaging.tokens import DynamoTokenStore
        from .channels.wechat import WeChatClient, WeChatConfig
        # Refresh 180 s before expiry: one fetch per 7,020 s of a 7,200 s token.
        client = WeChatClient(share(WeChatConfig.from_env(os.environ, secret)),
                              DynamoTokenStore(settings().table_name), refresh_margin_s=180)
        return lambda record, _c, payload: client.send(record.to, payload, record.message_id)
    from .channels.aliyun import AliyunClient, AliyunConfig
    from .channels.providers import SmsSender
    from .channels.twilio import TwilioClient, TwilioConfig
    clients = {}
    for name, client_type, config_type in (("twilio", TwilioClient, TwilioConfig),
                                           ("aliyun", AliyunClient, AliyunConfig)):
        try:
            clients[name] = client_type(share(config_type.from_env(os.environ, secret)))
        except Transient:
            raise
        except Exception:  # noqa: BLE001 - one SMS provider missing must not stop the other
            continue
    sender = SmsSender(rules().messaging.sms, clients)
    return lambda record, _c, payload: sender.send(record.to, payload, record.message_id, locale=record.locale,
                                                   marketing=record.category == "marketing")


def reset() -> None:
    """Forget every cached adapter, setting and secret (tests and tools that point the
    process at another endpoint; a Lambda container never needs it)."""
    from .adapters import config
    settings.cache_clear()
    ledger_store.cache_clear()
    messaging_store.cache_clear()
    results_store.cache_clear()
    queues.cache_clear()
    _senders.clear()
    _built_cache.clear()
    config.clear_cache()
