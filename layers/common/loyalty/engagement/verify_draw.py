"""Recompute a draw from its published record: `make verify-draw RECORD=draw.json
[ENTRANTS=entrants.txt]` or `python -m loyalty.engagement.verify_draw RECORD [ENTRANTS]`.

RECORD is the draw's JSON as the API answers it (`POST .../draws/{draw_id}/run` or the
challenge's `draws`; for a lucky-draw catalog item `POST /catalog/{item_id}/draw`):
commitment, seed, entrants_hash, entrants (a count) and winners; other fields are
ignored. The entrant ids come from ENTRANTS (one per line: the `entrant_ids` of
`GET .../draws/{draw_id}/entrants` or `GET /catalog/{item_id}/draw/entrants`) or, when
it is left out, from the record's own `entrant_ids` list (so the entrants answer itself,
merged into the record, also works). Exit status 0 when the record holds, 1 when not, 2 when
the files cannot be read. Only the standard library is needed, so an auditor can run it
with `loyalty/engagement/draws.py` alone."""
from __future__ import annotations

import json
import sys

from .draws import ALGORITHM, verify


def main(argv: list[str]) -> int:
    if not argv or len(argv) > 2 or argv[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        return 2
    try:
        with open(argv[0], encoding="utf-8") as f:
            record = json.load(f)
        if len(argv) == 2:
            with open(argv[1], encoding="utf-8") as f:
                entrants = [line.strip() for line in f if line.strip()]
        else:
            entrants = record.get("entrant_ids")
            if entrants is None:
                print("no entrant list: give ENTRANTS, or an `entrant_ids` list in the record", file=sys.stderr)
                return 2
    except (OSError, ValueError) as exc:
        print(f"cannot read the draw: {exc}", file=sys.stderr)
        return 2
    problems = verify(record, entrants)
    for problem in problems:
        print(f"FAIL {problem}")
    if not problems:
        print(f"OK {record.get('draw_id', 'the draw')}: {len(entrants)} entrants, winners "
              f"{', '.join(record['winners']) or '(none)'} recomputed by {ALGORITHM}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
