"""The AWS cost of DESIGN.md's reference month, from what the bench measured.

Each operation of the month has a profile measured by the bench through the real
handlers (DynamoDB request units from bench/units.py, SQS requests counted) and the
requests its trigger makes by construction (API Gateway requests, Lambda invocations,
as the template wires them). The month multiplies them by its volumes and prices them
at us-east-1 list prices. What is assumed rather than measured is named in ASSUMED and
printed with the line: Lambda durations (the bench measures calls, not time) and the
log volume per invocation. Provider message fees (WhatsApp, SMS) are apart.
"""
from __future__ import annotations

from dataclasses import dataclass

from bench.units import Units
from infra.local.template.model import ScheduleEvent, SqsEvent

# us-east-1 list prices as published in 2026 (on-demand DynamoDB after the November 2024
# cut; Lambda x86; HTTP API first 300 M requests; SQS standard; Scheduler past its 14 M
# free invocations; CloudWatch Logs standard ingestion and storage).
PRICES = {
    "dynamodb_wru": 0.625 / 1e6,
    "dynamodb_rru": 0.125 / 1e6,
    "dynamodb_gb_month": 0.25,
    "lambda_request": 0.20 / 1e6,
    "lambda_gb_second": 0.0000166667,
    "http_api_request": 1.00 / 1e6,
    "sqs_request": 0.40 / 1e6,
    "scheduler_invocation": 1.00 / 1e6,
    "logs_gb_ingested": 0.50,
}

# The reference month (DESIGN.md "Figures to reach").
MONTH = {
    "members": 1_000_000,
    "paid_orders": 2_000_000,
    "refunds": 200_000,
    "activities": 3_000_000,       # check-ins and activities
    "reminders": 250_000,
    "notices": 2_000_000,
    "nights": 30,
}

ASSUMED = {
    "request_handler_ms": 120,     # billed duration of one API or queue invocation
    "nightly_ms_per_item": 4,      # a nightly job's billed time per item it processes
    "memory_mb": 512,              # the template's Globals MemorySize
    "log_kb_per_invocation": 1.5,  # Powertools' JSON lines of one invocation
    "sqs_pollers": 5,              # Lambda's pollers per SQS event source mapping, 20 s long polls
}


@dataclass
class Profile:
    """One operation: what it costs in units and requests (per operation)."""

    units: Units
    api_requests: float = 0       # HTTP API requests
    invocations: float = 0        # Lambda invocations
    sqs_requests: float = 0       # besides those counted in `units` (the pollers' receive and delete)
    measured: bool = True         # False: a stand-in, named as such in the output


def month_cost(profiles: dict[str, Profile], nightly: dict[str, Profile], schedules_per_month: int,
               queues: int, storage_bytes: float) -> tuple[float, list[tuple[str, float, str]]]:
    """The month's cost and its lines (what, dollars, how)."""
    volumes = {"paid order": MONTH["paid_orders"], "refund": MONTH["refunds"],
               "activity credit": MONTH["activities"], "notice with its receipt": MONTH["notices"],
               "reminder with its receipt": MONTH["reminders"]}
    lines, total = [], 0.0
    gb_second = ASSUMED["memory_mb"] / 1024 * PRICES["lambda_gb_second"]
    for name, profile in profiles.items():
        n = volumes[name]
        u = profile.units
        dynamo = n * (u.wru * PRICES["dynamodb_wru"] + u.rru * PRICES["dynamodb_rru"])
        lam = n * profile.invocations * (PRICES["lambda_request"] + ASSUMED["request_handler_ms"] / 1000 * gb_second)
        api = n * profile.api_requests * PRICES["http_api_request"]
        sqs = n * (u.sqs_requests + profile.sqs_requests) * PRICES["sqs_request"]
        logs = n * profile.invocations * ASSUMED["log_kb_per_invocation"] / 1024 ** 2 * PRICES["logs_gb_ingested"]
        cost = dynamo + lam + api + sqs + logs
        total += cost
        how = (f"{n:,} × ({u.wru:.1f} WRU + {u.rru:.1f} RRU, {profile.invocations:g} invocation(s), "
               f"{profile.api_requests:g} API request(s), {u.sqs_requests + profile.sqs_requests:.1f} SQS requests)")
        lines.append((name + ("" if profile.measured else " (stand-in, not measured)"), cost, how))
    for name, (per_night, profile) in nightly.items():
        n = MONTH["nights"] * per_night
        u = profile.units
        dynamo = n * (u.wru * PRICES["dynamodb_wru"] + u.rru * PRICES["dynamodb_rru"])
        lam = n * ASSUMED["nightly_ms_per_item"] / 1000 * gb_second
        cost = dynamo + lam
        total += cost
        lines.append((name, cost, f"{MONTH['nights']} nights × {per_night:,} items × ({u.wru:.2f} WRU + "
                                  f"{u.rru:.2f} RRU)"))
    scheduled = schedules_per_month * (PRICES["scheduler_invocation"] + PRICES["lambda_request"])
    total += scheduled
    lines.append(("schedules", scheduled, f"{schedules_per_month:,} invocations a month (the template's schedules)"))
    polls = queues * ASSUMED["sqs_pollers"] * (30 * 24 * 3600 / 20) * PRICES["sqs_request"]
    total += polls
    lines.append(("idle SQS polling", polls, f"{queues} event source mappings × {ASSUMED['sqs_pollers']} pollers, "
                                              "one long poll per 20 s"))
    storage = storage_bytes / 1024 ** 3 * PRICES["dynamodb_gb_month"]
    total += storage
    lines.append(("DynamoDB storage", storage, f"{storage_bytes / 1024 ** 3:.1f} GB at the month's end (items as "
                                                "the bench wrote them, indexes included)"))
    return total, lines


def schedules_per_month(model) -> int:
    """Invocations a month of the template's schedules (infra/local's model of it): cron()
    ones once a day (each of ours runs daily), rate() ones as often as they say."""
    count = 0
    for function in model.functions.values():
        for event in function.events_of(ScheduleEvent):
            if event.expression.startswith("rate("):
                amount, unit = event.expression[5:-1].split()
                minutes = int(amount) * {"minute": 1, "minutes": 1, "hour": 60, "hours": 60, "day": 1440,
                                         "days": 1440}[unit]
                count += 30 * 1440 // minutes
            else:
                count += 30
    return count


def event_source_mappings(model) -> int:
    return sum(len(function.events_of(SqsEvent)) for function in model.functions.values())
