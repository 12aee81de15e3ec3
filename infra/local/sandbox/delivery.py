"""Posting webhooks to our API as the providers do: receipts from background workers
(never inside the send request), with retries; inbound messages and requested receipts
at once.

A webhook is signed for the URL the provider is configured with (PublicBaseUrl +
path, or the StatusCallback given in the send), and delivered to the local stack's own
server: a PublicBaseUrl of https://loyalty.example.com is signed as such, yet nothing
leaves this machine.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from typing import Callable
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class WebhookCall:
    """One POST a provider makes to us."""

    provider: str
    kind: str                  # receipt | inbound
    url: str                   # as the provider calls (and signs) it
    body: bytes
    headers: list[tuple[str, str]]
    about: dict = field(default_factory=dict)   # provider_message_id, status, from... for the log


@dataclass
class Answer:
    """What our webhook answered: status None when it could not be reached."""

    status: int | None
    body: str
    error: str | None = None

    @property
    def retryable(self) -> bool:
        """What a provider retries: no answer, 404 (not deployed yet), 429 and 5xx."""
        return self.status is None or self.status in (404, 429) or self.status >= 500


class WebhookPoster:
    """Sends WebhookCalls to the local stack's server."""

    def __init__(self, public_base_url: str, local_base_url: str):
        self.public_base_url = public_base_url.rstrip("/")
        self.local_base_url = local_base_url.rstrip("/")

    def local_url(self, url: str) -> str:
        """Where a call to `url` is really sent: the local server, whatever the URL's host,
        except a loopback URL (a receiver a test runs itself)."""
        if url.startswith(self.public_base_url + "/") or url == self.public_base_url:
            return self.local_base_url + url[len(self.public_base_url):]
        parts = urlsplit(url)
        if parts.hostname in _LOOPBACK:
            return url
        return self.local_base_url + (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    def post(self, call: WebhookCall, timeout: float) -> Answer:
        """POST the call once; never raises."""
        request = urllib.request.Request(self.local_url(call.url), data=call.body, method="POST")
        for name, value in call.headers:
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return Answer(response.status, response.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            with exc:
                return Answer(exc.code, exc.read().decode("utf-8", "replace"))
        except (OSError, ValueError) as exc:  # refused, timed out, reset, bad URL
            return Answer(None, "", f"{type(exc).__name__}: {exc}")


class DeliveryLog:
    """Every webhook the sandbox posted (the last 2,000), with counts by outcome."""

    def __init__(self, limit: int = 2000):
        self._lock = threading.Lock()
        self._entries: deque[dict] = deque(maxlen=limit)
        self._ids = itertools.count(1)
        self._counts: dict[str, dict[str, int]] = {}

    def open(self, call: WebhookCall) -> dict:
        """A new entry, outcome "pending"."""
        entry = {"id": next(self._ids), "provider": call.provider, "kind": call.kind, "url": call.url,
                 **call.about, "attempts": 0, "http_status": None, "outcome": "pending",
                 "response": None, "error": None}
        with self._lock:
            self._entries.append(entry)
            self._bump(call.kind, "pending", +1)
        return entry

    def attempt(self, entry: dict, answer: Answer) -> None:
        """Note one attempt's answer."""
        with self._lock:
            entry["attempts"] += 1
            entry["http_status"] = answer.status
            entry["response"] = answer.body[:2000]
            entry["error"] = answer.error
            if entry["attempts"] > 1:
                self._bump(entry["kind"], "retries", +1)

    def close(self, entry: dict, outcome: str) -> None:
        """delivered (2xx), rejected (another 4xx) or undelivered (retries used up)."""
        with self._lock:
            entry["outcome"] = outcome
            self._bump(entry["kind"], "pending", -1)
            self._bump(entry["kind"], outcome, +1)

    def _bump(self, kind: str, key: str, amount: int) -> None:
        counts = self._counts.setdefault(kind, {"pending": 0, "delivered": 0, "rejected": 0,
                                                "undelivered": 0, "retries": 0})
        counts[key] = counts.get(key, 0) + amount

    def entries(self, kind: str | None = None) -> list[dict]:
        """Copies of the entries, oldest first."""
        with self._lock:
            return [dict(e) for e in self._entries if kind is None or e["kind"] == kind]

    def counts(self, kind: str) -> dict[str, int]:
        """{"pending", "delivered", "rejected", "undelivered", "retries"} for a kind."""
        with self._lock:
            return dict(self._counts.get(kind) or {"pending": 0, "delivered": 0, "rejected": 0,
                                                   "undelivered": 0, "retries": 0})

    def clear(self) -> None:
        """Forget the entries and counts; deliveries under way still count as pending."""
        with self._lock:
            pending = [e["kind"] for e in self._entries if e["outcome"] == "pending"]
            self._entries.clear()
            self._counts.clear()
            for kind in pending:
                self._bump(kind, "pending", +1)


def outcome_of(answer: Answer) -> str:
    """delivered for a 2xx, else rejected (a 4xx the provider does not retry) or undelivered."""
    if answer.status is not None and 200 <= answer.status < 300:
        return "delivered"
    return "undelivered" if answer.retryable else "rejected"


# A step builds its webhook when it is due (so its timestamp is the time it is sent),
# or returns None to skip; `done` is told the outcome (e.g. to update the outbox).
Step = Callable[[], "WebhookCall | None"]
Done = Callable[[WebhookCall, Answer, str], None]


@dataclass
class _Job:
    steps: list[Step]
    done: Done
    index: int = 0
    call: WebhookCall | None = None
    entry: dict | None = None
    attempt: int = 0


class ReceiptWorker:
    """Background threads that post each message's receipts in order, one step after the
    other (sent, then delivered), retrying a 404/429/5xx or no answer with backoff.
    Messages are independent: a webhook that keeps failing delays only its own chain."""

    def __init__(self, poster: WebhookPoster, deliveries: DeliveryLog, settings: Callable[[], object],
                 threads: int = 3):
        self._poster = poster
        self._log = deliveries
        self._settings = settings
        self._threads_wanted = threads
        self._threads: list[threading.Thread] = []
        self._heap: list[tuple[float, int, _Job]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopping = False

    def start(self) -> None:
        """Start the threads."""
        for number in range(self._threads_wanted):
            thread = threading.Thread(target=self._run, name=f"sandbox-receipts-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop; receipts not yet posted are dropped."""
        with self._wake:
            self._stopping = True
            self._heap.clear()
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def schedule(self, steps: list[Step], done: Done, delay: float) -> None:
        """Post `steps` one after the other, the first after `delay` seconds."""
        if steps:
            self._push(_Job(steps, done), delay)

    def clear(self) -> int:
        """Drop the webhooks waiting to be posted; how many there were."""
        with self._wake:
            count = len(self._heap)
            self._heap.clear()
            return count

    def pending(self) -> int:
        """Webhooks waiting to be posted (first attempts and retries)."""
        with self._wake:
            return len(self._heap)

    def _push(self, job: _Job, delay: float) -> None:
        with self._wake:
            if self._stopping:
                return
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._order), job))
            self._wake.notify()

    def _next_job(self) -> _Job | None:
        with self._wake:
            while not self._stopping:
                if self._heap:
                    due = self._heap[0][0] - time.monotonic()
                    if due <= 0:
                        return heapq.heappop(self._heap)[2]
                    self._wake.wait(due)
                else:
                    self._wake.wait()
            return None

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            try:
                self._step(job)
            except Exception:  # a bug in one receipt must not stop the others
                log.exception("provider sandbox: a receipt failed to post")

    def _step(self, job: _Job) -> None:
        settings = self._settings()
        if job.call is None:
            job.call = job.steps[job.index]()
            if job.call is None:
                return self._advance(job, settings)
            job.entry = self._log.open(job.call)
        answer = self._poster.post(job.call, settings.webhook_timeout)
        self._log.attempt(job.entry, answer)
        job.attempt += 1
        if answer.retryable and job.attempt <= settings.receipt_retries:
            return self._push(job, settings.receipt_backoff * 2 ** (job.attempt - 1))
        outcome = outcome_of(answer)
        self._log.close(job.entry, outcome)
        if outcome != "delivered":
            log.info("provider sandbox: %s receipt to %s %s after %d attempt(s) (%s)", job.call.provider,
                     urlsplit(job.call.url).path, outcome, job.attempt, answer.status or answer.error)
        job.done(job.call, answer, outcome)
        self._advance(job, settings)

    def _advance(self, job: _Job, settings) -> None:
        job.index += 1
        if job.index < len(job.steps):
            job.call, job.entry, job.attempt = None, None, 0
            self._push(job, settings.receipt_interval)
