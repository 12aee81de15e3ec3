"""The provider sandbox: fake WhatsApp Cloud API, WeChat Official Account API, Twilio
Messaging and Aliyun Dysmsapi, served by the local stack on its own port, with the
providers' real request and response shapes (CHANNELS.md). Our senders, written
against the real services, work against it with only a base URL changed:

    WhatsAppApiBase = http://127.0.0.1:<port>/_sandbox/whatsapp   ({base}/{version}/{phone_number_id}/messages)
    WeChatApiBase   = http://127.0.0.1:<port>/_sandbox/wechat     ({base}/cgi-bin/token, .../message/...)
    TwilioApiBase   = http://127.0.0.1:<port>/_sandbox/twilio     ({base}/2010-04-01/Accounts/{sid}/Messages.json)
    AliyunApiBase   = http://127.0.0.1:<port>/_sandbox/aliyun     (POST {base}/, RPC, signed)

Each fake checks credentials as the provider does, validates the request, answers in
the provider's shape, records what it accepted (GET /_local/outbox), posts signed
receipts back to our webhooks from background threads, posts inbound messages on
request (POST /_local/inbound), and fails on request (POST /_local/faults). What a
member writes reaches the providers' memory (WhatsApp's 24-hour window, WeChat's 48-hour
one and follow state, Twilio's STOP) also when a signed push is posted to our webhooks
directly, by a test or a developer: the sandbox observes the local stack's routed
requests (Router.observe) and checks each push's signature as our webhook would. See
control.py for the control routes.

    with LocalStack() as stack:          # the sandbox is on by default
        stack.sandbox.outbox()

Modules: core (state), base (the send pipeline shared by the fakes), whatsapp, wechat,
twilio, aliyun (the fakes), errors (each provider's error shape), signing, delivery
(posting webhooks), control (the /_local routes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..resources import local_secret_values
from .aliyun import AliyunFake
from .base import ProviderFake, Sandbox
from .control import ControlRoutes
from .core import BASE_PATHS, LOCAL_IDS, Accounts, SandboxClock, SandboxConfig, sandbox_parameters
from .delivery import WebhookPoster
from .twilio import TwilioFake
from .wechat import WeChatFake
from .whatsapp import WhatsAppFake

if TYPE_CHECKING:
    from ..stack import LocalStack

__all__ = ["BASE_PATHS", "LOCAL_IDS", "ProviderSandbox", "sandbox_parameters"]


class ProviderSandbox:
    """The sandbox as a LocalStack extension. Settings are SandboxConfig's fields
    (e.g. `ProviderSandbox(timeout_hold=0.5, receipt_delay=0.05)`); they can also be
    changed while serving with POST /_local/sandbox/config."""

    def __init__(self, **settings):
        self.config = SandboxConfig()
        self.config.update(settings)
        self.sandbox: Sandbox | None = None
        self.fakes: dict[str, ProviderFake] = {}
        self._api_url: str | None = None

    def parameter_overrides(self, api_url: str) -> dict[str, str]:
        """The template parameters that point the application at this sandbox, for a
        stack about to serve on `api_url` (the stack applies those its template declares
        and the caller did not override)."""
        self._api_url = api_url.rstrip("/")
        return sandbox_parameters(self._api_url)

    def start(self, stack: LocalStack) -> None:
        """Read the accounts from the template's parameters and the local secrets, add
        the fakes' and the control routes, start the receipt workers."""
        api_url = self._api_url or f"http://127.0.0.1:{stack.port}"
        accounts = Accounts.resolve(stack.model.parameters, local_secret_values(), api_url)
        sandbox = Sandbox(accounts, self.config, SandboxClock(stack.clock),
                          WebhookPoster(accounts.public_base_url, api_url))
        self.fakes = {fake.provider: fake for fake in (WhatsAppFake(sandbox), WeChatFake(sandbox),
                                                       TwilioFake(sandbox), AliyunFake(sandbox))}
        routes = [route for fake in self.fakes.values() for route in fake.routes()]
        routes += ControlRoutes(sandbox, self.fakes).routes()
        for method, path, handler, description in routes:
            stack.router.add(method, path, handler, description)
        stack.router.observe(self._observe)
        self.sandbox = sandbox
        sandbox.start()

    def _observe(self, request, route) -> None:
        """Every routed request: a signed push of members' messages to our webhooks,
        however it got there, is what the provider would have seen first."""
        if request.method != "POST" or not request.path.startswith("/webhooks/"):
            return
        for fake in self.fakes.values():
            seen = fake.observe_webhook(request)
            if seen:
                self.sandbox.stats.add("member_messages_seen", fake.provider, seen)

    def stop(self) -> None:
        """Release held requests, stop posting receipts."""
        if self.sandbox is not None:
            self.sandbox.stop()

    # -- for tests in the same process
    @property
    def accounts(self) -> Accounts:
        """The ids and secrets in use."""
        return self.sandbox.accounts

    def outbox(self, **filters: str) -> list[dict]:
        """What GET /_local/outbox answers."""
        return self.sandbox.outbox.list(**filters)
