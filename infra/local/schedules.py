"""The template's schedules, run on demand at a chosen time.

Locally nothing fires on its own: `POST /_local/schedules/{Function}` with
`{"time": "2026-11-23T16:05:00Z"}` runs the function as EventBridge would at that
time, waits for the queues it fed to drain, and answers what happened. That time
becomes the local stack's "now" (SimulatedClock), which lets a demo or a test jump
a year ahead without waiting for midnight.

The event is the schedule's Input with EventBridge Scheduler's context attributes
(<aws.scheduler.scheduled-time> and friends) filled in; without Input it is the
"Scheduled Event" envelope EventBridge sends.

Scheduler invokes Lambda asynchronously, and so does this: a run that raises is tried
again as Lambda would (EventInvokeConfig's MaximumRetryAttempts, default 2; at once here,
not a minute or two later), then Lambda's invocation record goes to the function's
OnFailure queue (if the template gives one), and the error is answered.

Time passes as in AWS: when a run moves the clock forward, every enabled schedule of the
template that would have fired meanwhile fires first (cron.py reads the expressions), so
a reminder deferred to the 12:00 window goes out once a later run takes the clock past
12:00, as the 15-minute release schedule would have sent it. What would have fired in
(previous time, new time] runs oldest first, each at its own time (the clock follows),
with the queues drained after each run that fed one; the requested function's own
occurrence at the new time is the requested run. When more than `catch_up_limit`
occurrences are due (LOCAL_SCHEDULE_CATCH_UP, 100 by default: a day of the 15-minute
schedule and the daily ones; a year is 35,000), they collapse: each schedule fires once,
at its latest occurrence, and the requested function's own missed ones are left to the
requested run. A collapsed run is lossy where the function looks back only a little
(the release schedule looks back two hours): the summary says "collapsed". Moving the
clock back runs nothing. The answer's "caught_up" says what ran:

    {"from": "<clock before>", "mode": "each" | "collapsed" | "none", "due": n, "ran": n,
     "failed": n, "schedules": [{"function", "event", "expression", "due", "ran",
     "failed", "runs": [{"time", "result" | "error"}]}]}
"""

from __future__ import annotations

import json
import logging
import os
import threading
import uuid
from datetime import datetime, timezone
from typing import Any, Callable
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .cron import ExpressionError, parse_expression
from .emulator import emulator_client
from .http import Request, Response
from .runtime import FunctionRuntime
from .template import FunctionSpec, ScheduleEvent, TemplateModel

log = logging.getLogger(__name__)

DEFAULT_CATCH_UP_LIMIT = 100


def catch_up_limit_from_env(environ: dict | None = None) -> int:
    """LOCAL_SCHEDULE_CATCH_UP: up to how many missed occurrences run one by one."""
    text = (environ if environ is not None else os.environ).get("LOCAL_SCHEDULE_CATCH_UP")
    if not text:
        return DEFAULT_CATCH_UP_LIMIT
    value = int(text)
    if value < 0:
        raise ValueError(f"LOCAL_SCHEDULE_CATCH_UP must be >= 0, got {text!r}")
    return value


class ScheduleError(Exception):
    """A schedule request that cannot run: `status` says how to answer it."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class SimulatedClock:
    """The local stack's "now": the time of the last schedule run, else real time.

    Code that releases work on time (deferred messages) subscribes to be told when
    the clock moves.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._time: datetime | None = start
        self._listeners: list[Callable[[datetime], None]] = []

    def now(self) -> datetime:
        """The simulated time if a schedule has run, else the real UTC time."""
        with self._lock:
            return self._time or datetime.now(timezone.utc)

    @property
    def simulated(self) -> datetime | None:
        """The simulated time, None until a schedule has run."""
        with self._lock:
            return self._time

    def set(self, when: datetime) -> None:
        """Move the clock (forwards or back) and tell the subscribers."""
        with self._lock:
            self._time = when
            listeners = list(self._listeners)
        for listener in listeners:
            listener(when)

    def subscribe(self, listener: Callable[[datetime], None]) -> None:
        """Call `listener(new_time)` every time the clock is set."""
        with self._lock:
            self._listeners.append(listener)


def parse_time(text: Any, default_timezone: str = "UTC") -> datetime:
    """An ISO 8601 time as an aware UTC datetime. A time without an offset is read in
    `default_timezone` (the schedule's ScheduleExpressionTimezone), as Scheduler
    reads the schedule itself. ScheduleError(400) if it is not a time."""
    if not isinstance(text, str) or not text.strip():
        raise ScheduleError(400, 'the body must be {"time": "<ISO 8601>"}, '
                                 'e.g. {"time": "2026-11-23T16:05:00Z"}')
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ScheduleError(400, f"time {text!r} is not ISO 8601, e.g. 2026-11-23T16:05:00Z") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_zone(default_timezone))
    return when.astimezone(timezone.utc)


def _zone(name: str) -> timezone | ZoneInfo:
    if name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except ZoneInfoNotFoundError:
        raise ScheduleError(400, f"unknown time zone {name!r}") from None


def iso_utc(when: datetime) -> str:
    """2026-11-23T16:05:00Z: the form Scheduler substitutes."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule_arn(model: TemplateModel, event: ScheduleEvent) -> str:
    """The ARN of the Scheduler schedule or EventBridge rule behind `event`."""
    if event.kind == "ScheduleV2":
        return f"arn:aws:scheduler:{model.region}:{model.account_id}:schedule/default/{event.schedule_name}"
    return f"arn:aws:events:{model.region}:{model.account_id}:rule/{event.schedule_name}"


def scheduled_event(model: TemplateModel, event: ScheduleEvent, when: datetime,
                    attempt: int = 1) -> Any:
    """The payload the function receives for `event` firing at `when`."""
    arn = schedule_arn(model, event)
    if event.input is not None:
        text = event.input
        for name, value in {
            "<aws.scheduler.scheduled-time>": iso_utc(when),
            "<aws.scheduler.execution-id>": str(uuid.uuid4()),
            "<aws.scheduler.schedule-arn>": arn,
            "<aws.scheduler.attempt-number>": str(attempt),
        }.items():
            text = text.replace(name, value)
        return json.loads(text)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.scheduler" if event.kind == "ScheduleV2" else "aws.events",
        "account": model.account_id,
        "time": iso_utc(when),
        "region": model.region,
        "resources": [arn],
        "detail": {},
    }


class ScheduleRunner:
    """Runs a function's schedule at a given time, then drains the queues.

    `queue_sends`, if given, counts the SQS sends the emulator has seen: a catch-up run
    that sent nothing needs no drain (most of them: a 15-minute schedule finding nothing)."""

    def __init__(self, model: TemplateModel, runtime: FunctionRuntime,
                 drain: Callable[[], dict], clock: SimulatedClock,
                 catch_up_limit: int | None = None, queue_sends: Callable[[], int] | None = None):
        self.model = model
        self.runtime = runtime
        self.drain = drain
        self.clock = clock
        self.catch_up_limit = catch_up_limit if catch_up_limit is not None else catch_up_limit_from_env()
        self.queue_sends = queue_sends
        self._lock = threading.Lock()  # one run at a time: each reads and moves the clock

    def run(self, function_name: str, time_text: Any, event_name: str | None = None) -> dict:
        """Run `function_name`'s schedule at `time_text`, after what would have fired
        since the clock's previous time; the handler's exceptions propagate. Answers
        {"function", "event", "time", "result", "queues", "dead_letter", "drained",
        "caught_up"}."""
        function = self.model.find_function(function_name)
        if function is None:
            raise ScheduleError(404, f"no function {function_name!r}; scheduled functions: "
                                     f"{', '.join(self.scheduled_functions()) or 'none'}")
        event = self._pick_event(function, event_name)
        when = parse_time(time_text, event.timezone)
        with self._lock:
            caught_up = self.catch_up(self.clock.now(), when, requested=(function.logical_id, event.name))
            self.clock.set(when)
            payload = scheduled_event(self.model, event, when)
            log.info("schedule %s.%s at %s", function.logical_id, event.name, iso_utc(when))
            result = self._invoke_async(function, payload)
            counts = self.drain()
        return {"function": function.logical_id, "event": event.name, "time": iso_utc(when),
                "result": result, **counts, "caught_up": caught_up}

    # -- time passing
    def catch_up(self, after: datetime, until: datetime, requested: tuple[str, str] | None = None) -> dict:
        """Fire what the template's schedules would have fired in (after, until], oldest
        first, leaving the `requested` (function, event) occurrence at `until` to the
        caller; collapsed to one run per schedule past `catch_up_limit`. The summary."""
        summary: dict[str, Any] = {"from": iso_utc(after), "mode": "none", "due": 0, "ran": 0, "failed": 0,
                                   "schedules": []}
        if until <= after:
            return summary
        plans = []
        for function in self.model.functions.values():
            for event in function.events_of(ScheduleEvent):
                if not event.enabled:
                    continue
                entry = {"function": function.logical_id, "event": event.name, "expression": event.expression}
                try:
                    expression = parse_expression(event.expression, event.timezone)
                except ExpressionError as exc:
                    log.warning("%s.%s: %s; it does not catch up when the clock moves", function.logical_id,
                                event.name, exc)
                    summary["schedules"].append({**entry, "skipped": str(exc)})
                    continue
                own = requested == (function.logical_id, event.name)
                due = expression.count(after, until, self.catch_up_limit + 1)
                if own and expression.latest(after, until) == until:
                    due -= 1  # the requested run is that occurrence
                if due > 0:
                    plans.append((function, event, expression, own,
                                  {**entry, "due": due, "ran": 0, "failed": 0, "runs": []}))
        total = sum(entry["due"] for *_, entry in plans)
        if total == 0:
            return summary
        collapsed = total > self.catch_up_limit
        runs = []
        for order, (function, event, expression, own, entry) in enumerate(plans):
            if collapsed:
                if own:
                    continue  # the requested run stands for its own missed occurrences
                times = [expression.latest(after, until)]
            else:
                times = [t for t in expression.between(after, until) if not (own and t == until)]
            runs += [(when, order, function, event, entry) for when in times]
        runs.sort(key=lambda run: (run[0], run[1]))
        for when, _, function, event, entry in runs:
            self._fire(function, event, when, entry)
        summary.update(mode="collapsed" if collapsed else "each", due=total,
                       ran=sum(entry["ran"] for *_, entry in plans),
                       failed=sum(entry["failed"] for *_, entry in plans),
                       schedules=summary["schedules"] + [entry for *_, entry in plans])
        if collapsed:
            log.info("the clock jumped %s -> %s: %d occurrences due, each schedule fired once", iso_utc(after),
                     iso_utc(until), total)
        return summary

    def _fire(self, function: FunctionSpec, event: ScheduleEvent, when: datetime, entry: dict) -> None:
        """One missed occurrence, as Scheduler fires it: asynchronously (retries, then the
        OnFailure queue); its work drained before the next one."""
        self.clock.set(when)
        sends = self.queue_sends() if self.queue_sends is not None else None
        entry["ran"] += 1
        log.info("schedule %s.%s at %s (catching up)", function.logical_id, event.name, iso_utc(when))
        try:
            result = self._invoke_async(function, scheduled_event(self.model, event, when))
            entry["runs"].append({"time": iso_utc(when), "result": result})
        except Exception as exc:
            entry["failed"] += 1
            entry["runs"].append({"time": iso_utc(when), "error": f"{type(exc).__name__}: {exc}"})
        if sends is None or self.queue_sends() != sends:
            self.drain()

    def _invoke_async(self, function: FunctionSpec, payload: Any) -> Any:
        """Lambda's asynchronous invocation: retries, then the OnFailure destination."""
        attempts = 1 + max(0, function.async_retries)
        for attempt in range(1, attempts + 1):
            try:
                return self.runtime.invoke(function.logical_id, payload)
            except Exception as exc:
                if attempt < attempts:
                    log.warning("%s raised (%s); Lambda retries it (%d of %d)", function.logical_id,
                                type(exc).__name__, attempt, attempts - 1)
                    continue
                if function.on_failure_arn:
                    self._send_invocation_record(function, payload, exc, attempts)
                raise

    def _send_invocation_record(self, function: FunctionSpec, payload: Any, exc: Exception,
                                attempts: int) -> None:
        queue = self.model.queue_by_arn(function.on_failure_arn)
        record = {
            "version": "1.0",
            "timestamp": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "requestContext": {"requestId": str(uuid.uuid4()), "functionArn": f"{function.arn}:$LATEST",
                               "condition": "RetriesExhausted", "approximateInvokeCount": attempts},
            "requestPayload": payload,
            "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
            "responsePayload": {"errorMessage": str(exc), "errorType": type(exc).__name__},
        }
        sqs = emulator_client("sqs", self.runtime.endpoint_url, self.model.region)
        sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(record))
        log.warning("%s failed %d time(s); its invocation record went to %s", function.logical_id,
                    attempts, queue.logical_id)

    def scheduled_functions(self) -> list[str]:
        """Logical ids of the functions that have a Schedule/ScheduleV2 event."""
        return [f.logical_id for f in self.model.functions.values() if f.events_of(ScheduleEvent)]

    @staticmethod
    def _pick_event(function: FunctionSpec, event_name: str | None) -> ScheduleEvent:
        events = function.events_of(ScheduleEvent)
        if not events:
            raise ScheduleError(404, f"{function.logical_id} has no Schedule or ScheduleV2 event")
        if event_name is not None:
            for event in events:
                if event.name.lower() == event_name.lower():
                    return event
            raise ScheduleError(404, f"{function.logical_id} has no schedule named {event_name!r}")
        if len(events) > 1:
            raise ScheduleError(400, f"{function.logical_id} has several schedules; say which "
                                     f"with \"event\": one of {[e.name for e in events]}")
        return events[0]

    def handle(self, request: Request, params: dict[str, str]) -> Response:
        """POST /_local/schedules/{function}, body {"time": ..., "event"?: ...}."""
        try:
            body = request.json() or {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return Response.json(400, {"message": 'the body must be a JSON object: {"time": "<ISO 8601>"}'})
        try:
            return Response.json(200, self.run(params["function"], body.get("time"), body.get("event")))
        except ScheduleError as exc:
            return Response.json(exc.status, {"message": str(exc)})
        except Exception as exc:
            log.exception("scheduled run of %s failed", params["function"])
            return Response.json(500, {"message": "the function raised",
                                       "error": f"{type(exc).__name__}: {exc}"})
