"""The sandbox at run time (state, clock, webhook delivery) and what every fake shares:
the send pipeline auth -> validation -> fault -> provider rules -> accept, the outbox
record, and the automatic receipts.
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any, Callable

from ..http import Request, Response
from ..schedules import iso_utc
from .core import CHANNEL_OF, Accounts, BadRequest, Faults, Memory, Outbox, SandboxClock, SandboxConfig, Stats
from .delivery import Answer, DeliveryLog, ReceiptWorker, Step, WebhookCall, WebhookPoster, outcome_of

Route = tuple[str, str, Callable[[Request, dict[str, str]], Response], str]


class Sandbox:
    """Everything the fakes and the control routes share."""

    def __init__(self, accounts: Accounts, config: SandboxConfig, clock: SandboxClock, poster: WebhookPoster):
        self.accounts = accounts
        self.config = config
        self.clock = clock
        self.poster = poster
        self.outbox = Outbox()
        self.faults = Faults()
        self.stats = Stats()
        self.memory = Memory()
        self.deliveries = DeliveryLog()
        self.inbound_log: deque[dict] = deque(maxlen=2000)
        self.receipts = ReceiptWorker(poster, self.deliveries, lambda: self.config)
        self.stopping = threading.Event()

    def start(self) -> None:
        """Start the receipt workers."""
        self.receipts.start()

    def stop(self) -> None:
        """Release held requests and stop the receipt workers."""
        self.stopping.set()
        self.receipts.stop()

    def now(self) -> datetime:
        """The local stack's time (see SandboxClock)."""
        return self.clock.now()

    def hold(self, seconds: float) -> bool:
        """Hold a request (a timeout fault); False if the sandbox stopped meanwhile."""
        return not self.stopping.wait(seconds)

    def post_now(self, call: WebhookCall) -> Answer:
        """Post one webhook at once (inbound, requested receipts), logged, not retried."""
        entry = self.deliveries.open(call)
        answer = self.poster.post(call, self.config.webhook_timeout)
        self.deliveries.attempt(entry, answer)
        self.deliveries.close(entry, outcome_of(answer))
        return answer

    def reset(self) -> None:
        """Forget messages, faults, counters, deliveries and what providers remember;
        drop the receipts not posted yet."""
        self.receipts.clear()
        self.outbox.clear()
        self.faults.clear()
        self.stats.reset()
        self.memory.clear()
        self.deliveries.clear()
        self.inbound_log.clear()


class ProviderFake:
    """What the four fakes have in common. A subclass sets `provider` and implements
    routes(), status_error(), code_error(), receipt(), auto_receipts() and inbound()."""

    provider = ""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox

    @property
    def accounts(self) -> Accounts:
        return self.sandbox.accounts

    @property
    def channel(self) -> str:
        return CHANNEL_OF[self.provider]

    # -- what a subclass provides
    def routes(self) -> list[Route]:
        raise NotImplementedError

    def status_error(self, status: int) -> Response:
        """The provider's answer to a bare HTTP failure."""
        raise NotImplementedError

    def code_error(self, code: int | str, status: int | None) -> Response:
        """The provider's answer carrying error `code`."""
        raise NotImplementedError

    def receipt(self, record: dict, status: str, error_code: int | str | None = None) -> WebhookCall | None:
        """The webhook that reports `status` for an outbox record; None if the provider
        sends none for it."""
        raise NotImplementedError

    def auto_receipts(self, record: dict) -> list[str]:
        """The statuses posted after an accepted send, in order."""
        raise NotImplementedError

    def inbound(self, body: dict) -> WebhookCall:
        """The webhook for a POST /_local/inbound body (and what the provider remembers
        of it); BadRequest if the body does not fit the channel."""
        raise NotImplementedError

    def observe_webhook(self, request: Request) -> int:
        """A request to one of our webhooks, seen before our handler: if it is this
        provider's push of what members wrote, signed as the provider signs, remember
        it as if the sandbox had posted it (the member wrote to the provider first);
        how many member messages it held. Default: not this provider's, 0."""
        return 0

    # -- the send pipeline
    def refuse(self, response: Response) -> Response:
        """Count a refused send and answer it."""
        self.sandbox.stats.add("sends_refused", self.provider)
        return response

    def apply_fault(self, recipients: Iterable[str]) -> Response | None:
        """After auth and validation: the answer of a pending fault that matches, or None
        to go on (no fault, or a timeout fault that sends after its hold)."""
        fault = self.sandbox.faults.take(self.provider, list(recipients))
        if fault is None:
            return None
        self.sandbox.stats.add("faults_injected", self.provider)
        if fault.kind == "timeout":
            hold = fault.hold if fault.hold is not None else self.sandbox.config.timeout_hold
            released = self.sandbox.hold(hold)
            if released and fault.then == "accept":
                return None
            return self.refuse(self.status_error(504 if released else 503))
        if fault.kind == "status":
            return self.refuse(self.status_error(fault.status))
        return self.refuse(self.code_error(fault.error_code, fault.status))

    def record(self, *, to: str, kind: str, provider_message_id: str | int | None, request: Request,
               parsed: Any, template: str | None = None, text: str | None = None,
               variables: Any = None, language: str | None = None, **extra: Any) -> dict:
        """An outbox record (not stored yet)."""
        return {
            "channel": self.channel,
            "provider": self.provider,
            "to": to,
            "kind": kind,
            "template": template,
            "text": text,
            "variables": variables,
            "language": language,
            "provider_message_id": provider_message_id,
            "at": iso_utc(self.sandbox.now()),
            "status": "accepted",
            "statuses": ["accepted"],
            **extra,
            "request": parsed,
            "raw_body": request.body.decode("utf-8", "replace"),
        }

    def accept(self, records: list[dict]) -> None:
        """Store accepted messages and schedule their receipts."""
        for record in records:
            self.sandbox.outbox.add(record)
            self.sandbox.stats.add("sends_accepted", self.provider)
            if self.sandbox.config.auto_receipts:
                steps = [self._receipt_step(record, status) for status in self.auto_receipts(record)]
                self.sandbox.receipts.schedule(steps, self._receipt_done(record), self.sandbox.config.receipt_delay)

    def _receipt_step(self, record: dict, status: str) -> Step:
        return lambda: self.receipt(record, status)

    def _receipt_done(self, record: dict):
        def done(call: WebhookCall, answer: Answer, outcome: str) -> None:
            self.sandbox.outbox.set_status(record, call.about.get("status", "?"))
        return done

    def post_receipt(self, record: dict, status: str, error_code: int | str | None) -> tuple[WebhookCall, Answer]:
        """Post one receipt now (POST /_local/receipts)."""
        call = self.receipt(record, status, error_code)
        if call is None:
            raise BadRequest(f"{self.provider} sends no receipt for a {record.get('kind')} message", 409)
        answer = self.sandbox.post_now(call)
        if record.get("seq") is not None:  # a stored message, not a made-up id
            self.sandbox.outbox.set_status(record, call.about.get("status", status))
        return call, answer


def unix_seconds(when: datetime) -> int:
    """Epoch seconds of an aware datetime."""
    return int(when.astimezone(timezone.utc).timestamp())


def nonce_digits(length: int = 10) -> str:
    """A random numeric nonce, as WeChat sends."""
    return "".join(secrets.choice("0123456789") for _ in range(length))
