"""`python -m infra.local serve` starts, says where it listens and stops cleanly on
SIGTERM: what `make run` and the e2e fixture rely on."""

from __future__ import annotations

from pathlib import Path

import requests

from infra.local.testing import spawn_local_stack

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "local_stack" / "template.yaml"


def test_serve_runs_until_sigterm_and_prints_a_banner():
    running = spawn_local_stack(template=FIXTURE)
    try:
        health = requests.get(f"{running.api_url}/_local/health", timeout=10).json()
        assert health["api_url"] == running.api_url
        # the API answers from the subprocess, over the emulator
        status = requests.post(f"{running.api_url}/transfers/from-subprocess", timeout=10).status_code
        assert status == 200
    finally:
        exit_status = running.stop()

    output = running.output()
    assert exit_status == 0, output
    assert f"API           {running.api_url}" in output
    assert "POST   /transfers/{transfer_id}" in output
    assert "Serving; Ctrl-C to stop." in output
    assert "Stopping the local stack." in output
