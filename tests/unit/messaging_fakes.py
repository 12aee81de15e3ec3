"""What the unit tests of the dispatcher, the senders and the conversations share: the
messaging store's fake over the ledger's, a queue and a provider that record what they
are given."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from loyalty.adapters.memory import MemoryLedgerStore
from loyalty.adapters.messaging_memory import MemoryMessagingStore
from loyalty.channels.providers import SendResult
from loyalty.messaging.outbox import OutboxRecord
from loyalty.messaging.sending import send_message
from loyalty.records import Consent, Profile
from loyalty.rules import build_rules

NOW = datetime(2026, 11, 23, 4, 0, tzinfo=timezone.utc)     # 12:00 in Hong Kong: a send window
RULES = build_rules()
PHONE = "+85290000001"


class Queues:
    """Records what would go to SQS; can fail the next sends like an SQS outage."""

    def __init__(self):
        self.sent: list[tuple[str, dict, int]] = []
        self.fail_next = 0

    def send(self, name, body, delay_s=0):
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("sqs unreachable")
        self.sent.append((name, body, delay_s))

    def send_batch(self, name, bodies):
        for body in bodies:
            self.send(name, body)
        return len(bodies)

    def change_visibility(self, receipt_handle, seconds, name):
        pass


class Provider:
    """Accepts every send (or raises the errors given, in order) and counts the calls."""

    def __init__(self, *errors, before_answer=None):
        self.errors = list(errors)
        self.calls = 0
        self.payloads: list[dict] = []
        self.before_answer = before_answer      # called with the provider id just before answering

    def __call__(self, record, channel, payload):
        self.calls += 1
        self.payloads.append(payload)
        if self.errors:
            raise self.errors.pop(0)
        result = SendResult(provider=channel, provider_message_id=f"p-{uuid.uuid4().hex[:12]}", raw_status="accepted")
        if self.before_answer:
            self.before_answer(result.provider_message_id)
        return result


@pytest.fixture
def ledger():
    return MemoryLedgerStore()


@pytest.fixture
def msgs(ledger):
    return MemoryMessagingStore(ledger)


def member(ledger, member_id="ana", channels=("whatsapp",), **profile):
    ledger.put_profile(Profile(member_id, name="Ana", phone=PHONE, wechat_openid="oAna", locale="en",
                               time_zone="Asia/Hong_Kong", preferred_channels=tuple(channels), **profile))
    for channel in channels:
        ledger.add_consent(Consent(member_id, channel, "opted_in", "checkout_checkbox", NOW - timedelta(days=1),
                                   proof="form-1"))
    return member_id


def record(message_id="m-1", channel="whatsapp", fallbacks=("sms",), **changes) -> OutboxRecord:
    from dataclasses import replace
    base = OutboxRecord(message_id=message_id, member_id="ana", kind="notice", template="points_credited",
                        category="transactional", channel=channel, to=PHONE, locale="en", variables={"points": 5},
                        payloads={"whatsapp": {"type": "text", "body": "hi"}, "sms": {"text": "hi"}},
                        fallbacks=fallbacks, status="queued", created_at=NOW,
                        history=(("queued", NOW.isoformat(), ""),), extra={"to": {"whatsapp": PHONE, "sms": PHONE}})
    return replace(base, **changes)


def send(msgs, provider, queues, channel="whatsapp", now=NOW, message_id="m-1", last_delivery=False, ledger=None):
    return send_message(message_id, channel, msgs=msgs, ledger=ledger, queues=queues, send=provider, rules=RULES,
                        now=now, last_delivery=last_delivery)
