"""The composition root: builds the adapters the handlers hand to the services, once per
container, on first use."""
from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from .settings import settings

if TYPE_CHECKING:
    from .rules import Rules


@cache
def ledger_store():
    from .adapters.dynamo import DynamoLedgerStore
    s = settings()
    return DynamoLedgerStore(s.table_name, s.expiry_shards)


@cache
def messaging_store():
    from .adapters.messaging_dynamo import DynamoMessagingStore
    return DynamoMessagingStore(settings().table_name)


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
    from .adapters import config
    return config.secret(name, settings().secrets_id)


_senders: dict = {}


def channel_sender(channel: str):
    """`send(record, channel, payload) -> SendResult` for a channel, its clients built once
    per container from the environment and the secrets. A provider that is not
    configured fails its sends as configuration errors (recorded, never retried)."""
    if channel not in _senders:
        _senders[channel] = _build_sender(channel)
    return _senders[channel]


def _build_sender(channel: str):
    import os

    from .channels.providers import ProviderError

    def unconfigured(message: str):
        def send(record, _channel, payload):
            raise ProviderError("config", "not_configured", message, provider=channel)
        return send

    def share(config):
        from .channels.providers import rate_share
        return rate_share(config, settings().sender_max_concurrency)

    try:
        if channel == "whatsapp":
            from .channels.whatsapp import WhatsAppClient, WhatsAppConfig
            client = WhatsAppClient(share(WhatsAppConfig.from_env(os.environ, secret)))
            return lambda record, _c, payload: client.send(record.to, payload, record.message_id)
        if channel == "wechat":
            from .channels.wechat import DynamoTokenStore, WeChatClient, WeChatConfig
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
            except Exception:  # noqa: BLE001 - one SMS provider missing must not stop the other
                continue
        sender = SmsSender(rules().messaging.sms, clients)
        return lambda record, _c, payload: sender.send(record.to, payload, record.message_id, locale=record.locale,
                                                       marketing=record.category == "marketing")
    except Exception as exc:  # noqa: BLE001 - Misconfigured: fail the sends, visibly
        return unconfigured(str(exc))


def reset() -> None:
    """Forget every cached adapter, setting and secret (tests and tools that point the
    process at another endpoint; a Lambda container never needs it)."""
    from .adapters import config
    settings.cache_clear()
    ledger_store.cache_clear()
    messaging_store.cache_clear()
    queues.cache_clear()
    _senders.clear()
    _built_cache.clear()
    config.clear_cache()
