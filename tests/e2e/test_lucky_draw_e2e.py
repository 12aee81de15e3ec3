"""A lucky-draw catalog item end to end (E10), on its own local stack whose catalog has
one (50 points an entry): its commitment shown before the draw, entries redeemed through
the redemption API, the run, and the verifier recomputing the answer's winners."""
import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from infra.local.testing import spawn_local_stack
from loyalty.engagement import draws
from loyalty.rules import default_document
from tests.e2e.conftest import Api, paid, token
from tests.orders_only import ORDERS_ONLY

ROOT = Path(__file__).resolve().parents[2]
# The draw's day was yesterday in the programme's time zone: it has ended, so it can run
# (entries stay open until the run closes the draw).
YESTERDAY = (datetime.now(ZoneInfo("Asia/Shanghai")) - timedelta(days=1)).date().isoformat()
LUCKY = {"item_id": "lucky-draw", "name": "Lucky draw entry", "points": 50, "kind": "perk", "discountable": False,
         "lucky_draw": {"draw_id": "lucky-e2e", "on": YESTERDAY, "winners": 2}}


@pytest.fixture(scope="module")
def lucky_api():
    rules = json.dumps({**ORDERS_ONLY, "catalog": default_document()["catalog"] + [LUCKY]})
    with spawn_local_stack(env={"POWERTOOLS_LOG_LEVEL": "WARNING", "LOCAL_RULES": rules}, timeout=120) as running:
        yield Api(running.api_url, token(running.api_url, subject="e2e-lucky", expires_in=86400))


def test_lucky_draw_entries_are_redeemed_drawn_and_verified(lucky_api, tmp_path):
    api = lucky_api
    ana, bo = f"ana-{uuid.uuid4().hex[:6]}", f"bo-{uuid.uuid4().hex[:6]}"
    for member in (ana, bo):
        assert api.order(paid(member, f"o-{member}", 20000)).status_code == 200   # 220 points
    shown = next(i for i in api.get("/catalog").json()["items"] if i["item_id"] == "lucky-draw")
    commitment = shown["lucky_draw"]["commitment"]
    assert shown["points"] == 50 and shown["lucky_draw"]["status"] == "open"
    assert api.get("/catalog", params={"member_id": ana}).json()["items"][-1]["lucky_draw"]["commitment"] == commitment

    entries = []
    for member, key in ((ana, "e1"), (ana, "e2"), (bo, "e1")):
        answer = api.post(f"/members/{member}/redemptions", {"item_id": "lucky-draw", "idempotency_key": key})
        assert answer.status_code == 201, answer.text
        entries.append(answer.json()["redemption_id"])
    assert api.post(f"/members/{ana}/redemptions", {"item_id": "lucky-draw", "idempotency_key": "e1"}).status_code == 200
    assert api.balance(ana) == 120 and api.balance(bo) == 170
    refused = api.post(f"/members/{ana}/redemptions/{entries[0]}/cancel", {"reason": "no"})
    assert refused.status_code == 409 and api.balance(ana) == 120

    assert api.get("/catalog/lucky-draw/draw/entrants").status_code == 409   # not run yet
    run = api.post("/catalog/lucky-draw/draw")
    assert run.status_code == 200, run.text
    record = run.json()
    assert record["commitment"] == commitment == draws.commitment(record["seed"])
    assert record["entrants"] == 3 and len(record["winners"]) == 2 and set(record["winners"]) <= set(entries)
    assert {e["member_id"] for e in record["winning_entries"]} <= {ana, bo}
    assert api.post("/catalog/lucky-draw/draw").json() == record
    late = api.post(f"/members/{bo}/redemptions", {"item_id": "lucky-draw", "idempotency_key": "late"})
    assert late.status_code == 409 and api.balance(bo) == 170

    listed = api.get("/catalog/lucky-draw/draw/entrants").json()
    assert listed == {"draw_id": "lucky-e2e", "entrant_ids": sorted(entries)}
    (tmp_path / "draw.json").write_text(json.dumps(record))
    (tmp_path / "entrants.txt").write_text("\n".join(listed["entrant_ids"]))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "common")}
    verified = subprocess.run([sys.executable, "-m", "loyalty.engagement.verify_draw", str(tmp_path / "draw.json"),
                               str(tmp_path / "entrants.txt")], capture_output=True, text=True, env=env, timeout=60)
    assert verified.returncode == 0 and verified.stdout.startswith("OK lucky-e2e: 3 entrants"), verified.stdout
    assert api.post("/catalog/coupon-10/draw").status_code == 404
