"""A served lifecycle stack for integration tests: the deployments served by a real runner process
against the session's Prefect server, over one application database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from .support import ROOT


@contextmanager
def served_deployments(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`python -m deployments.serve` with the given environment, stopped (with its runs) afterwards."""
    log = log_path.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "deployments.serve"],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 120, every: float = 0.5, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")


def flow_run(api: str, run_id: str) -> dict[str, Any]:
    return httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()


def state_of(api: str, run_id: str) -> tuple[str, str]:
    run = flow_run(api, run_id)
    return run["state_type"], run["state_name"]


def processes_of(run_id: str) -> list[int]:
    """PIDs whose environment names this flow run: a waiting run must have none."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if f"PREFECT__FLOW_RUN_ID={run_id}".encode() in environ:
            pids.append(int(entry.name))
    return pids


def set_policy(db: Any, **checkpoints: dict[str, Any]) -> None:
    """A new policy version with these checkpoint settings (and no per-class overrides), so a
    scenario decides which route its ticket takes."""
    from hitl.store.policies import create_version, current_policy

    with db.session() as session:
        _, policy = current_policy(session)
        changed = policy.model_copy(deep=True)
        for name, values in checkpoints.items():
            for key, value in values.items():
                setattr(changed.checkpoints[name], key, value)
            changed.checkpoints[name].classes = {}
        create_version(session, changed, "test", "scenario")
