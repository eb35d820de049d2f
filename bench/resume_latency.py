"""Benchmark (issue #7, 2): from an operator's resume returning to the flow's next stage starting.

    .venv/bin/python bench/resume_latency.py --resumes 50 --workdir /tmp/resume-bench

Starts `hitl serve --demo` on a free port with its own HITL_HOME and PREFECT_HOME (the demo batch
leaves most tickets waiting at triage), waits until enough runs are Suspended, then resumes them
one at a time with `hitl resume RUN --decision approve --reviewer bench` (the operator's path) and
measures, from the moment the command returns:
  running    the run is Running again (a runner picked it up and its process started);
  next_task  the first task run created after the resume has started (the flow's code is past the
             checkpoint: the next stage is being proposed).
p50/p95 of both are printed and written to <workdir>/results.json. The runner polls every
PREFECT_RUNNER_POLL_FREQUENCY seconds (hitl serve sets 1 unless set); pass --poll to compare.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Any, timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout} s waiting for {what}")


def _suspended(api: str) -> list[dict[str, Any]]:
    body = {"flow_runs": {"state": {"name": {"any_": ["Suspended"]}}}, "sort": "START_TIME_ASC", "limit": 200}
    try:
        response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10)
    except httpx.HTTPError:  # the server is still starting
        return []
    return response.json() if response.status_code == 200 else []


def _parse(stamp: str | None) -> float | None:
    return datetime.fromisoformat(stamp).timestamp() if stamp else None


def measure_one(api: str, run_id: str, env: dict[str, str]) -> dict[str, float]:
    command = [
        sys.executable,
        "-m",
        "hitl.cli",
        "resume",
        run_id,
        "--decision",
        "approve",
        "--reviewer",
        "bench",
    ]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"hitl resume {run_id} failed: {done.stderr.strip()}")
    t0 = datetime.now(UTC).timestamp()
    running = next_task = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (running is None or next_task is None):
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        if running is None and run["state_type"] in ("RUNNING", "COMPLETED", "PAUSED"):
            running = time.time() - t0
        tasks = httpx.post(
            f"{api}/task_runs/filter",
            json={
                "task_runs": {
                    "flow_run_id": {"any_": [run_id]},
                    "start_time": {"after_": datetime.fromtimestamp(t0, UTC).isoformat()},
                }
            },
            timeout=10,
        ).json()
        starts = [s for s in (_parse(t.get("start_time")) for t in tasks) if s is not None and s >= t0]
        if next_task is None and starts:
            next_task = min(starts) - t0
        time.sleep(0.05)
    if running is None or next_task is None:
        raise SystemExit(f"run {run_id} did not move on within 120 s of its resume")
    return {"running": running, "next_task": next_task}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--resumes", type=int, default=50, help="at most 55: the demo batch is 60 tickets")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hitl-resume-bench"))
    parser.add_argument("--poll", type=float, default=None, help="PREFECT_RUNNER_POLL_FREQUENCY (s)")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HITL_"))}
    env.update(
        HITL_HOME=str(args.workdir / f"var-{port}"),
        PREFECT_HOME=str(args.workdir / f"prefect-{port}"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
    )
    if args.poll is not None:
        env["PREFECT_RUNNER_POLL_FREQUENCY"] = str(args.poll)
    log = (args.workdir / f"serve-{port}.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "hitl.cli", "serve", "--demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    client_env = {**env, "PREFECT_API_URL": api}
    try:
        runs = _wait(
            lambda: (r := _suspended(api)) and len(r) >= args.resumes and r, 900, "suspended runs", 2
        )
        samples = []
        for index, run in enumerate(runs[: args.resumes], start=1):
            sample = measure_one(api, run["id"], client_env)
            samples.append(sample)
            print(
                f"{index:3d} running {sample['running']:.2f} s  next stage {sample['next_task']:.2f} s",
                flush=True,
            )
        summary: dict[str, Any] = {
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "resumes": len(samples),
            "runner_poll_seconds": float(env.get("PREFECT_RUNNER_POLL_FREQUENCY", "1")),
        }
        for field in ("running", "next_task"):
            values = np.array([s[field] for s in samples])
            summary[field] = {
                "p50": round(float(np.percentile(values, 50)), 2),
                "p95": round(float(np.percentile(values, 95)), 2),
                "max": round(float(values.max()), 2),
            }
        summary["samples"] = samples
        print(json.dumps({k: v for k, v in summary.items() if k != "samples"}, indent=2))
        (args.workdir / "results.json").write_text(json.dumps(summary, indent=2))
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)


if __name__ == "__main__":
    main()
