"""`make run` is `hitl serve --demo`: the live system on the embedded default. What the operator
must see at the Prefect address: every deployment with its schedule, and tickets waiting for input.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from .lifecycle_stack import wait_for
from .support import ROOT, free_port


def test_serve_demo_shows_schedules_and_waiting_tickets(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HITL_"))}
    env.update(HITL_HOME=str(tmp_path / "var"), PREFECT_HOME=str(tmp_path / "prefect"),
               PREFECT_SERVER_ANALYTICS_ENABLED="false")  # fmt: skip
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    log = tmp_path / "serve.log"
    started = time.monotonic()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "hitl.cli", "serve", "--demo", "--port", str(port)],
            cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def post(path: str, body: dict[str, object]) -> list[dict[str, object]] | None:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            response = httpx.post(f"{api}{path}", json=body, timeout=10)
        except httpx.HTTPError:
            return None
        return response.json() if response.status_code == 200 else None

    try:
        deployments = wait_for(
            lambda: ((found := post("/deployments/filter", {})) and len(found) >= 5 and found) or None,
            timeout=240,
            what="the deployments of hitl serve --demo",
        )
        schedules = {
            d["name"]: [s["schedule"] for s in d.get("schedules", [])]  # type: ignore[union-attr, index]
            for d in deployments
        }
        assert schedules["nightly-ingestion"][0]["cron"] == "0 2 * * *"
        assert schedules["threshold-review"][0]["cron"] == "0 6 1-7 * 1"
        assert schedules["threshold-review"][0]["day_or"] is False
        assert schedules["checkpoint-timeouts"][0]["interval"] == 60
        assert schedules["ticket-lifecycle"] == [] and schedules["train-model"] == []
        waiting = wait_for(
            lambda: (
                post("/flow_runs/filter", {"flow_runs": {"state": {"name": {"any_": ["Suspended"]}}}}) or None
            ),
            timeout=300,
            what="a ticket run waiting for input",
        )
        first_waiting = time.monotonic() - started
        assert waiting and all(r["flow_id"] for r in waiting)
        print(f"hitl serve --demo: first run suspended at a checkpoint {first_waiting:.0f} s after start")
        assert "Prefect UI:" in log.read_text()
    finally:
        stopping = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        stopped_in = time.monotonic() - stopping
    output = log.read_text()
    assert process.returncode == 0, output[-3000:]
    # A service manager's stop must not run into its kill deadline (docker: 10 s, systemd: 90 s).
    # Logs still queued for the API when the server stopped once kept it alive 75 s, retrying.
    print(f"hitl serve stopped {stopped_in:.1f} s after SIGTERM")
    assert "Error logging to API" not in output, output[-3000:]
    assert stopped_in < 30, output[-3000:]
    # The runner's "N scheduled runs skipped (at capacity)" came once a second while the 60 demo
    # runs started (48 lines in the first minute of `make run`); at most once a minute now.
    ran_minutes = (stopping - started) / 60
    capacity_lines = output.count("(at capacity)")
    print(f"'at capacity' lines: {capacity_lines} in {ran_minutes:.1f} min")
    assert capacity_lines <= 1 + int(ran_minutes), output[-3000:]
