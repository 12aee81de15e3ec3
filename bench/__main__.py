"""`make bench`: the figures of DESIGN.md this code touches, as a table with targets.

Everything runs against the local AWS emulator over HTTP through the real handlers;
calls are counted with botocore event hooks; time appears only as a ratio measured in
one run. The functions' and libraries' logs go to .bench/functions.log (bench/logs.py),
so that stdout shows the figures only.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.logs import logs_to_file, say

ROOT = Path(__file__).resolve().parents[1]
ROWS: list[tuple[str, str, str, bool]] = []


def row(operation: str, measured: str, target: str, ok: bool) -> None:
    ROWS.append((operation, measured, target, ok))
    say(f"  {'PASS' if ok else 'FAIL'}  {operation}: {measured} (target {target})")


def main() -> int:
    with logs_to_file() as log_path:
        say(f"function and library logs: {log_path.relative_to(ROOT)}")
        run()
    print_table()
    return 0 if ROWS and all(ok for *_, ok in ROWS) else 1


def run() -> None:
    from infra.local.testing import start_emulator
    from bench.counting import CallCounter

    counter = CallCounter().install()
    say("starting the emulator and the template's resources ...")
    profiles, nightly = {}, {}
    with start_emulator() as aws:
        from bench import units
        table = aws.client("dynamodb").describe_table(TableName=aws.environ["TABLE_NAME"])["Table"]
        meter = units.install(table, aws.model.region)
        from bench import ledger
        ledger.credits(counter, row, meter=meter, profiles=profiles)
        ledger.activity_credits(counter, row, meter=meter, profiles=profiles)
        from bench import checkins
        checkins.checkins(aws, counter, row, meter=meter)
        ledger.referred_first_orders(aws, counter, row)
        ledger.nightly_expiry(aws, counter, row, members=int(os.environ.get("BENCH_MEMBERS", "20000")),
                              due=int(os.environ.get("BENCH_DUE", "300")), meter=meter, nightly=nightly)
        from bench import tiers
        tiers.nightly_tier_review(aws, counter, row, members=int(os.environ.get("BENCH_MEMBERS", "20000")),
                                  due=int(os.environ.get("BENCH_DUE", "300")))
        from bench import challenges
        challenges.leaderboard_pages(aws, counter, row)
        challenges.quarter_end_rewards(aws, counter, row, participants=int(os.environ.get("BENCH_PARTICIPANTS", "1000")))
        challenges.weekday_fanout(aws, counter, row, participants=int(os.environ.get("BENCH_PARTICIPANTS", "1000")))
        from bench import messaging
        messaging.planning(aws, counter, row, members=int(os.environ.get("BENCH_MEMBERS", "20000")),
                           due=int(os.environ.get("BENCH_DUE", "300")))
        model = aws.model
    from bench import messaging
    messaging.run(counter, row, meter=meter, profiles=profiles)
    import_time_ratio(row)
    reference_month(model, profiles, nightly, meter)


def reference_month(model, profiles: dict, nightly: dict, meter) -> None:
    """The AWS cost line of DESIGN.md's reference month (bench/cost.py)."""
    from bench import cost
    if "activity credit" not in profiles:   # until activities exist: an order credit's writes stand in
        profiles["activity credit"] = cost.Profile(profiles["paid order"].units, api_requests=1, invocations=1,
                                                   measured=False)
    order = profiles["paid order"].units
    per_order = sum(order.bytes_written.get(kind, 0) for kind in order.bytes_written if kind != "PROFILE")
    member_bytes = order.bytes_written.get("PROFILE", 0) / max(order.items_written.get("PROFILE", 1), 1)
    storage = (cost.MONTH["members"] * member_bytes
               + (cost.MONTH["paid_orders"] + cost.MONTH["activities"]) * per_order) * 1.1   # ~10%: indexes, overhead
    total, lines = cost.month_cost(profiles, nightly, cost.schedules_per_month(model),
                                   cost.event_source_mappings(model), storage)
    say()
    say("AWS cost of the reference month (us-east-1 list prices; provider message fees apart):")
    for name, dollars, how in lines:
        say(f"  ${dollars:>10,.2f}  {name}: {how}")
    say(f"  ${total:>10,.2f}  total, ${total / cost.MONTH['members'] * 1000:.2f} per 1,000 members")
    say("  assumed, not measured: " + ", ".join(f"{k} {v}" for k, v in cost.ASSUMED.items()))
    row("cost of the reference month", f"${total:,.0f}", "printed from counted calls, sizes and list prices",
        total > 0 and all(p.units.wru > 0 for p in profiles.values()))


def import_time_ratio(row) -> None:
    """Handler import time / `import boto3`, each in a fresh interpreter, medians of 7."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'layers' / 'common'}:{ROOT}", "PYTHONDONTWRITEBYTECODE": "1"}

    def timed(code: str) -> float:
        script = f"import time\nt = time.perf_counter()\n{code}\nprint(time.perf_counter() - t)"
        return float(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                                    check=True).stdout)

    boto3_code = "import boto3"
    for name in sorted(p.name for p in (ROOT / "functions").iterdir() if (p / "app.py").exists()):
        handler_code = ("import importlib.util\n"
                        f"spec = importlib.util.spec_from_file_location('app', {str(ROOT / 'functions' / name / 'app.py')!r})\n"
                        "spec.loader.exec_module(importlib.util.module_from_spec(spec))")
        pairs = [(timed(handler_code), timed(boto3_code)) for _ in range(5)]
        ratio = statistics.median(h for h, _ in pairs) / statistics.median(b for _, b in pairs)
        row(f"handler import time ÷ import boto3 ({name})", f"{ratio:.2f}", "≤ 1.50", ratio <= 1.5)


def print_table() -> None:
    """The figures as a Markdown table, every column padded to its widest cell."""
    header = ("operation", "measured", "target", "result")
    lines = [(operation, measured, target, "pass" if ok else "FAIL") for operation, measured, target, ok in ROWS]
    widths = [max(len(cells[i]) for cells in [header, *lines]) for i in range(4)]
    say()
    say("| " + " | ".join(cell.ljust(w) for cell, w in zip(header, widths)) + " |")
    say("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in lines:
        say("| " + " | ".join(cell.ljust(w) for cell, w in zip(cells, widths)) + " |")


if __name__ == "__main__":
    sys.exit(main())
