"""`make reconcile` / `python -m loyalty.tools.reconcile`: prove, for every member, that
balance = sum of ledger entries = sum of lot remainders - debt.

Reads the whole table (TABLE_NAME; AWS_ENDPOINT_URL for the local emulator): an operator
tool for off-peak hours, never part of a request. Exits 1 when any member disagrees.
"""
from __future__ import annotations

import sys

from .. import wiring
from ..services.queries import reconcile


def main(out=print) -> int:
    checked, bad = reconcile(wiring.account_store())
    for m in bad:
        out(f"MISMATCH {m.member_id}: balance {m.balance}, entries {m.entries_sum}, lots {m.lots_sum}, debt {m.debt}")
    out(f"reconcile: {checked} members checked, {len(bad)} mismatched")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
