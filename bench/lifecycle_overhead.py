"""Benchmark (issue #7, 5): ticket-lifecycle runs per second that need no human (every decision
AUTO), with the Prefect server on SQLite and on PostgreSQL.

    .venv/bin/python bench/lifecycle_overhead.py --tickets 200 --deployment-tickets 100 \\
        --workdir /tmp/hitl-lifecycle-bench

For each backend a `prefect server` is started on a free port: `sqlite` is Prefect's default
(PREFECT_API_DATABASE_CONNECTION_URL unset: a SQLite file under the server's PREFECT_HOME in the
work dir); `postgres` is PREFECT_API_DATABASE_CONNECTION_URL=postgresql+asyncpg://... on a fresh
database created for the run and dropped afterwards. Each backend gets its own application
database of the kind `--app-db` names (SQLite file, or a fresh PostgreSQL database), prepared
identically: migrated, the demo models trained as `hitl serve --demo` trains them (category and
priority, 1,500 generated tickets), a policy version under which every checkpoint routes AUTO
(threshold 0, audit rate 0, no class/client overrides, any value autonomous), a runbook catalog
holding one runbook that matches no ticket (so remediation proposes `none`: AUTO, nothing
executed), and the same generated tickets ingested (no lifecycle yet). Then, per mode:

  batch       `engine.advance` over the tickets in one process (what the ingestion's
              lifecycle-batch task does): no Prefect run per ticket; the yardstick;
  inprocess   the `ticket_lifecycle` flow function called for one ticket after another in one
              Python process: each call is a real flow run with its task runs on that server
              (orchestration + engine overhead; no process start). `--warmup` tickets first,
              untimed; then `--profile-runs` more under cProfile (also untimed);
  deployment  `ticket-lifecycle` deployment runs created through the API by
              `hitl.lifecycle.runs.start_lifecycle_runs` (as the ingestion does) and executed by a
              runner serving that deployment (`prefect.serve`, as `hitl serve` does, with
              PREFECT_RUNNER_POLL_FREQUENCY=1 and `--limit` flow processes at once, one process per
              run); rate = runs / (creation of the first -> end of the last).

Each measurement runs in a child process started for it (imports outside the clock). Modes are
measured in turn on both backends; `--rounds` splits every mode's tickets into rounds whose
backend order alternates (A B, B A, ...), so machine load falls on both alike. Before and after
each measurement: os.getloadavg() and the CPU seconds spent by the measuring process, the Prefect
server's process group, the runner's process group (flow processes included once reaped) and,
for PostgreSQL, the backends connected to the benchmark's databases. Every measurement asserts
that each ticket reached lifecycle_stage "done" with every decision AUTO, and each flow run is
Completed. The idle CPU rate of each server (and, per deployment measurement, of the runner and
server with the runner polling) is sampled beforehand, so CPU per ticket is also given above idle.
Per-run durations: in-process, the flow call; deployment, Pending (the runner took the run) ->
Completed, i.e. process start + flow body, with the state-history segments beside it. Results:
printed, and <workdir>/run-<time>/results.json; logs of every process beside it.

A smoke run (a few minutes on a loaded machine; most of it is starting the two servers):

    .venv/bin/python bench/lifecycle_overhead.py --tickets 2 --deployment-tickets 2 --rounds 1 \
        --warmup 1 --profile-runs 1 --idle-sample 3 --workdir /tmp/lifecycle-smoke
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = Path(__file__).resolve()
DEPLOYMENT = "ticket-lifecycle/ticket-lifecycle"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
INERT_RUNBOOK = """\
# The benchmark's whole runbook catalog: no ticket matches it, so remediation proposes `none`
# (routed AUTO, nothing executed) and no ticket waits for missing parameters or four-eyes.
id: bench-matches-nothing
title: Matches no ticket (benchmark)
risk: low
blast_radius: 1
match:
  categories: [bench-no-such-category]
  keywords: [bench-no-such-keyword-7f3a91]
executor: subprocess
steps:
  - name: nothing
    argv: ['{python}', '-c', 'pass']
dry_run:
  - Nothing.
"""


# ---------------------------------------------------------------- small helpers
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def _loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _pct(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    array = np.array(values)
    return {
        "p50": round(float(np.percentile(array, 50)), 3),
        "p95": round(float(np.percentile(array, 95)), 3),
        "max": round(float(array.max()), 3),
    }


def _median(values: list[float]) -> float | None:
    return round(float(np.median(values)), 3) if values else None


def _clean_env() -> dict[str, str]:
    """This process's environment without Prefect or HITL settings."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HITL_"))}


def _stop_group(process: subprocess.Popen[bytes], timeout: float = 20, sig: int = signal.SIGTERM) -> None:
    """`sig` to the process group this script started, SIGKILL after `timeout`."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    except ProcessLookupError:
        pass


# ---------------------------------------------------------------- CPU accounting
def _proc_stat(pid: int) -> tuple[int, float, float] | None:
    """(process group, own CPU s, reaped children's CPU s) of a live process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw.rsplit(")", 1)[1].split()
    own = (int(rest[11]) + int(rest[12])) / CLK_TCK
    children = (int(rest[13]) + int(rest[14])) / CLK_TCK
    return int(rest[2]), own, children


def _group_cpu(pgid: int | None) -> float | None:
    """CPU seconds of every live process of a group, plus the children they reaped."""
    if pgid is None:
        return None
    total = 0.0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _proc_stat(int(entry.name))
            if stat is not None and stat[0] == pgid:
                total += stat[1] + stat[2]
    return total


class PgBackends:
    """CPU seconds of the PostgreSQL backends serving these databases over a time window, sampled
    every second (a backend that exits between samples loses at most its last second)."""

    def __init__(self, admin_url: str | None, databases: list[str]) -> None:
        self.admin_url, self.databases = admin_url, databases
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def _sample(self, conn: Any, initial: bool) -> None:
        from sqlalchemy import text

        pids = conn.execute(
            text("select pid from pg_stat_activity where datname = any(:names)"), {"names": self.databases}
        ).scalars()
        for pid in pids:
            stat = _proc_stat(pid)
            if stat is not None:
                self.first.setdefault(pid, stat[1] if initial else 0.0)
                self.last[pid] = stat[1]

    def start(self) -> None:
        if not self.admin_url or not self.databases:
            return
        from sqlalchemy import create_engine

        self.engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        self.conn = self.engine.connect()
        self._sample(self.conn, initial=True)

        def loop() -> None:
            while not self.stopping.wait(1.0):
                self._sample(self.conn, initial=False)

        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def stop(self) -> float | None:
        if self.thread is None:
            return None
        self.stopping.set()
        self.thread.join()
        self._sample(self.conn, initial=False)
        self.conn.close()
        self.engine.dispose()
        return sum(self.last[pid] - self.first[pid] for pid in self.last)


def _flow_run_processes(run_ids: set[str]) -> list[int]:
    """Live processes executing one of these flow runs (the runner sets PREFECT__FLOW_RUN_ID)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(b"PREFECT__FLOW_RUN_ID=") and item.split(b"=", 1)[1].decode() in run_ids:
                found.append(int(entry.name))
    return found


class CpuMeter:
    """CPU seconds over the measurement: this process, the Prefect server's process group, the
    runner's (its flow processes count once reaped) and the PostgreSQL backends of the
    benchmark's databases; plus the load average at both ends."""

    def __init__(self, job: dict[str, Any]) -> None:
        self.job = job
        self.pg = PgBackends(job.get("pg_admin_url"), job.get("pg_databases") or [])

    def _groups(self) -> dict[str, float | None]:
        return {
            "measuring_process": time.process_time(),
            "prefect_server": _group_cpu(self.job.get("server_pgid")),
            "runner": _group_cpu(self.job.get("runner_pgid")),
        }

    def start(self) -> None:
        self.started = time.monotonic()
        self.load_before = _loadavg()
        self.pg.start()
        self.before = self._groups()

    def stop(self) -> dict[str, Any]:
        after = self._groups()
        cpu = {
            key: round(after[key] - value, 2)  # type: ignore[operator]
            for key, value in self.before.items()
            if value is not None and after.get(key) is not None
        }
        pg = self.pg.stop()
        if pg is not None:
            cpu["postgres_backends"] = round(pg, 2)
        window = round(time.monotonic() - self.started, 2)
        return {
            "load_before": self.load_before,
            "load_after": _loadavg(),
            "cpu_s": cpu,
            "cpu_window_s": window,
        }


# ---------------------------------------------------------------- child roles (one process each)
def _settings_and_db() -> tuple[Any, Any]:
    from hitl.settings import get_settings
    from hitl.store.db import get_database

    settings = get_settings()
    return settings, get_database(settings)


def role_prepare(job: dict[str, Any]) -> dict[str, Any]:
    """Migrate, train the demo models, set the all-AUTO policy, ingest the tickets."""
    from hitl.demo import generate_tickets
    from hitl.ingestion import pipeline as ingestion
    from hitl.ingestion.files import RawRecord
    from hitl.lifecycle.demo_models import ensure_demo_models
    from hitl.store.policies import create_version, current_policy
    from policies.clients import load_client_catalog
    from policies.mappings import load_mapping

    settings, db = _settings_and_db()
    started = time.perf_counter()
    db.ensure_schema()
    lines = ensure_demo_models(settings)
    trained = time.perf_counter() - started
    with db.session() as session:
        _, policy = current_policy(session)
        changed = policy.model_copy(deep=True)
        for checkpoint in changed.checkpoints.values():
            checkpoint.threshold, checkpoint.audit_rate, checkpoint.autonomy = 0.0, 0.0, True
            checkpoint.autonomous_values, checkpoint.classes, checkpoint.clients = None, {}, {}
        create_version(session, changed, "bench", "lifecycle overhead: every decision AUTO")
    records = generate_tickets(count=job["count"], seed=job["seed"])
    run_id = ingestion.open_run(db, "bench", "canonical", "bench", None)
    ctx = ingestion.IngestionContext(
        db=db,
        mapping=load_mapping("canonical"),
        source="bench",
        run_id=run_id,
        default_client=settings.default_client,
        catalog=load_client_catalog(settings.client_catalog),
        batch_size=settings.batch_size,
    )
    raws = [
        RawRecord(i, None, "", data=r.model_dump(mode="json", exclude={"labels"}))
        for i, r in enumerate(records, 1)
    ]
    outcome = ingestion.ingest_records(ctx, raws, "bench")
    ids = sorted(outcome.new_ids)
    if len(ids) != job["count"]:
        raise SystemExit(f"ingested {len(ids)} tickets, expected {job['count']}")
    return {"ticket_ids": ids, "models": lines, "train_s": round(trained, 1)}


def _verify_tickets(ticket_ids: list[int]) -> None:
    """Every ticket finished its lifecycle, every decision of it was AUTO; raise otherwise."""
    from sqlalchemy import select

    from hitl.store.orm import Decision, Ticket
    from policies.checkpoint_policy import CHECKPOINTS

    _, db = _settings_and_db()
    with db.session() as session:
        stages = dict(
            session.execute(select(Ticket.id, Ticket.lifecycle_stage).where(Ticket.id.in_(ticket_ids))).all()
        )
        decisions = session.execute(
            select(Decision.ticket_id, Decision.checkpoint, Decision.route, Decision.status).where(
                Decision.ticket_id.in_(ticket_ids)
            )
        ).all()
    not_done = {t: stages.get(t) for t in ticket_ids if stages.get(t) != "done"}
    if not_done:
        raise SystemExit(f"{len(not_done)} ticket(s) did not reach lifecycle_stage 'done': {not_done}")
    not_auto = [tuple(d) for d in decisions if d.route != "AUTO" or d.status not in ("auto", "applied")]
    if not_auto:
        raise SystemExit(f"{len(not_auto)} decision(s) were not AUTO: {not_auto[:10]}")
    seen: dict[int, set[str]] = {t: set() for t in ticket_ids}
    for d in decisions:
        seen[d.ticket_id].add(d.checkpoint)
    missing = {t: sorted(set(CHECKPOINTS) - c) for t, c in seen.items() if set(CHECKPOINTS) - c}
    if missing:
        raise SystemExit(f"{len(missing)} ticket(s) lack decisions at some checkpoint: {missing}")


def _flow_runs(api: str, run_ids: list[str]) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = []
    for start in range(0, len(run_ids), 200):
        chunk = run_ids[start : start + 200]
        body = {"flow_runs": {"id": {"any_": chunk}}, "limit": 200}
        response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=30)
        response.raise_for_status()
        runs += response.json()
    return runs


def _states(api: str, run_id: str) -> list[tuple[str, str, float]]:
    """(type, name, POSIX time) of every state of a flow run, oldest first."""
    states = httpx.get(f"{api}/flow_run_states/", params={"flow_run_id": run_id}, timeout=30).json()
    out = [(s["type"], s["name"], datetime.fromisoformat(s["timestamp"]).timestamp()) for s in states]
    return sorted(out, key=lambda s: s[2])


def _verify_runs(api: str, run_ids: list[str]) -> list[dict[str, Any]]:
    """Every run is Completed; raise otherwise."""
    runs = _flow_runs(api, run_ids)
    if len(runs) != len(run_ids):
        raise SystemExit(f"the server knows {len(runs)} of {len(run_ids)} flow runs")
    bad = {r["id"]: f"{r['state_type']}/{r['state_name']}" for r in runs if r["state_type"] != "COMPLETED"}
    if bad:
        raise SystemExit(f"{len(bad)} flow run(s) not Completed: {bad}")
    return runs


def _histories(api: str, run_ids: list[str]) -> dict[str, dict[str, float]]:
    """Per run: the first time it entered each state type, and when it was created."""
    out = {}
    for run_id in run_ids:
        states = _states(api, run_id)
        times = {"CREATED": states[0][2]}
        for kind, _, stamp in states:
            times.setdefault(kind, stamp)
        out[run_id] = times
    return out


def _segments(histories: dict[str, dict[str, float]]) -> dict[str, float | None]:
    """Medians of the state-history segments (seconds)."""

    def span(a: str, b: str) -> float | None:
        return _median([t[b] - t[a] for t in histories.values() if a in t and b in t])

    return {
        "created_to_pending_s": span("CREATED", "PENDING"),
        "pending_to_running_s": span("PENDING", "RUNNING"),
        "running_to_completed_s": span("RUNNING", "COMPLETED"),
        "created_to_completed_s": span("CREATED", "COMPLETED"),
    }


def role_batch(job: dict[str, Any]) -> dict[str, Any]:
    from hitl.lifecycle import engine
    from hitl.lifecycle.bootstrap import build_resources

    settings, _ = _settings_and_db()
    ids = job["ticket_ids"]
    started = time.perf_counter()
    res = build_resources(settings)
    res.load_models()  # since 3f9dfe7 models load at first use: keep that off the clock, as before
    resources_s = time.perf_counter() - started
    meter = CpuMeter(job)
    meter.start()
    started = time.perf_counter()
    states: dict[int, Any] = {}
    for start in range(0, len(ids), 500):  # the lifecycle-batch task's chunk
        states.update(engine.advance(res, ids[start : start + 500]))
    wall = time.perf_counter() - started
    measured = meter.stop()
    not_done = {t: s.status for t, s in states.items() if s.status is not engine.StageStatus.DONE}
    if not_done or len(states) != len(ids):
        raise SystemExit(f"batch path: {len(not_done)} ticket(s) not done: {not_done}")
    _verify_tickets(ids)
    return {
        "n": len(ids),
        "wall_s": round(wall, 3),
        "per_s": round(len(ids) / wall, 2),
        "resources_s": round(resources_s, 2),
        **measured,
    }


def _profile_summary(profile: cProfile.Profile, runs: int, wall: float) -> dict[str, Any]:
    """Cumulative seconds per run (and calls per run) in named places, from cProfile (which
    slows Python code down: compare the parts with each other, not with unprofiled runs)."""
    stats = pstats.Stats(profile)
    wanted = {
        "flow body (flow_engine call_flow_fn)": ("prefect/flow_engine.py", "call_flow_fn"),
        "task bodies (task_engine call_task_fn)": ("prefect/task_engine.py", "call_task_fn"),
        "build_resources (models loaded, verified)": ("hitl/lifecycle/bootstrap.py", "build_resources"),
        "engine.propose_stage": ("hitl/lifecycle/engine.py", "propose_stage"),
        "engine.settle": ("hitl/lifecycle/engine.py", "settle"),
        "engine.finish": ("hitl/lifecycle/engine.py", "finish"),
        "sync HTTP calls to the API (httpx Client.send, main thread)": ("httpx/_client.py", "send"),
        "result persistence (persist_result_record)": ("prefect/results.py", "persist_result_record"),
    }
    out: dict[str, Any] = {"runs": runs, "wall_s_per_run": round(wall / runs, 3)}
    raw = stats.stats  # type: ignore[attr-defined]
    for label, (suffix, name) in wanted.items():
        calls, cumulative = 0, 0.0
        for (filename, _, function), (_, primitive, _, ct, _) in raw.items():
            if function == name and filename.endswith(suffix):
                calls += primitive
                cumulative += ct
        out[label] = {"s_per_run": round(cumulative / runs, 3), "calls_per_run": round(calls / runs, 1)}
    return out


class Timers:
    """Wall seconds inside the product's own work, accumulated while flows run: the resources
    (models loaded and verified, catalogs: once per flow run) and the engine's stage functions."""

    def __init__(self) -> None:
        import tasks.lifecycle as task_module
        from hitl.lifecycle import engine

        self.total: dict[str, float] = {}
        task_module.build_resources = self._wrap("resources", task_module.build_resources)
        for name in ("propose_stage", "settle", "finish"):
            setattr(engine, name, self._wrap(f"engine.{name}", getattr(engine, name)))

    def _wrap(self, label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.total[label] = self.total.get(label, 0.0) + time.perf_counter() - started

        return timed

    def reset(self) -> None:
        self.total.clear()


def role_inprocess(job: dict[str, Any]) -> dict[str, Any]:
    from flows.ticket_lifecycle import ticket_lifecycle

    api = job["api"]
    timers = Timers()

    def one(ticket_id: int) -> tuple[str, float]:
        started = time.perf_counter()
        state = ticket_lifecycle(ticket_id=ticket_id, return_state=True)
        elapsed = time.perf_counter() - started
        if not state.is_completed():
            raise SystemExit(f"ticket {ticket_id}: flow run ended {state.type.value}: {state.message}")
        return str(state.state_details.flow_run_id), elapsed

    warm = [one(t) for t in job["warmup_ids"]]
    ids = job["ticket_ids"]
    timers.reset()
    meter = CpuMeter(job)
    meter.start()
    started = time.perf_counter()
    timed = [one(t) for t in ids]
    wall = time.perf_counter() - started
    measured = meter.stop()
    inside = {k: round(v / len(ids), 3) for k, v in sorted(timers.total.items())}
    inside["rest: Prefect (run creation, states, task orchestration, results, logs)"] = round(
        wall / len(ids) - sum(timers.total.values()) / len(ids), 3
    )
    profile_ids = job.get("profile_ids") or []
    profile_out, profiled = None, []
    if profile_ids:
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        profiled = [one(t) for t in profile_ids]
        profile.disable()
        profile_out = _profile_summary(profile, len(profile_ids), time.perf_counter() - started)
        profile.dump_stats(job["profile_path"])
    _verify_tickets([*job["warmup_ids"], *ids, *profile_ids])
    _verify_runs(api, [r for r, _ in warm + timed + profiled])
    durations = [d for _, d in timed]
    return {
        "n": len(ids),
        "wall_s": round(wall, 3),
        "per_s": round(len(ids) / wall, 3),
        "run_s": _pct(durations),
        "warmup_s": [round(d, 2) for _, d in warm],
        "inside_s_per_run": inside,
        "segments": _segments(_histories(api, [r for r, _ in timed])),
        **measured,
        "durations_s": [round(d, 3) for d in durations],
        "profile": profile_out,
    }


def role_deployment(job: dict[str, Any]) -> dict[str, Any]:
    import prefect.deployments  # noqa: F401  (imported lazily by start_lifecycle_runs: not on the clock)

    from hitl.lifecycle.runs import start_lifecycle_runs

    api, ids = job["api"], job["ticket_ids"]
    meter = CpuMeter(job)
    meter.start()
    t0 = time.time()
    started = start_lifecycle_runs(ids)
    created_s = time.time() - t0
    run_ids = [started[t] for t in ids]
    timeout = max(600.0, 20.0 * len(ids))

    def all_final() -> list[dict[str, Any]] | None:
        runs = _flow_runs(api, run_ids)
        failed = [r for r in runs if r["state_type"] in FINAL - {"COMPLETED"}]
        if failed:
            raise SystemExit(f"{len(failed)} run(s) failed, e.g. {failed[0]['id']}: {failed[0]['state']}")
        return runs if len(runs) == len(run_ids) and all(r["state_type"] in FINAL for r in runs) else None

    runs = _wait(all_final, timeout, "every deployment run to finish", every=2.0)
    observed = time.time()
    # flow processes run in sessions of their own; their CPU reaches the runner's once reaped
    _wait(lambda: not _flow_run_processes(set(run_ids)), 60, "the flow processes to exit")
    measured = meter.stop()
    _verify_runs(api, run_ids)
    _verify_tickets(ids)
    last_end = max(datetime.fromisoformat(r["end_time"]).timestamp() for r in runs)
    wall = last_end - t0
    histories = _histories(api, run_ids)
    # a run's own process, Pending (the runner took it) -> Completed: process start + flow body
    durations = [t["COMPLETED"] - t["PENDING"] for t in histories.values()]
    return {
        "n": len(ids),
        "wall_s": round(wall, 3),
        "per_s": round(len(ids) / wall, 3),
        "create_s": round(created_s, 2),
        "observed_end_lag_s": round(observed - last_end, 2),
        "run_s": _pct(durations),
        "segments": _segments(histories),
        **measured,
        "durations_s": [round(d, 3) for d in durations],
    }


def role_runner(job: dict[str, Any]) -> None:
    """Serve the ticket-lifecycle deployment as `hitl serve` does (its other deployments carry
    schedules, which would start runs of their own during the measurement)."""
    from prefect import serve

    from deployments.definitions import lifecycle_deployment

    serve(lifecycle_deployment(), pause_on_shutdown=False, limit=job["limit"])


ROLES: dict[str, Callable[[dict[str, Any]], Any]] = {
    "prepare": role_prepare,
    "batch": role_batch,
    "inprocess": role_inprocess,
    "deployment": role_deployment,
    "runner": role_runner,
}


def child_main(role: str, job_path: Path) -> None:
    job = json.loads(job_path.read_text())
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result = ROLES[role](job)
    if result is not None:
        Path(job["out"]).write_text(json.dumps(result, indent=2))


# ---------------------------------------------------------------- the parent: servers, databases, rounds
class Backend:
    def __init__(self, name: str, base: Path) -> None:
        self.name = name
        self.dir = base / name
        self.dir.mkdir(parents=True)
        self.api = ""
        self.server: subprocess.Popen[bytes] | None = None
        self.prefect_db: str | None = None  # PostgreSQL database name of the Prefect server
        self.app_url = ""
        self.app_db: str | None = None  # PostgreSQL database name of the application
        self.ticket_ids: list[int] = []

    def env(self) -> dict[str, str]:
        return {
            **_clean_env(),
            "HITL_HOME": str(self.dir / "var"),
            "HITL_DATABASE_URL": self.app_url,
            "HITL_RUNBOOKS_DIR": str(self.dir.parent / "runbooks"),
            "PREFECT_API_URL": self.api,
            "PREFECT_HOME": str(self.dir / "client-prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",  # as hitl serve sets it
            "PYTHONPATH": str(ROOT),
        }


@contextmanager
def pg_database(admin_url: str, prefix: str) -> Iterator[str]:
    """A fresh PostgreSQL database; dropped (connections forced) afterwards, also on error."""
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _url_for(admin_url: str, database: str, driver: str) -> str:
    from sqlalchemy import make_url

    url = make_url(admin_url).set(drivername=driver, database=database, query={})
    return url.render_as_string(hide_password=False)


@contextmanager
def prefect_server(backend: Backend, database_url: str | None) -> Iterator[None]:
    home = backend.dir / "server-prefect-home"
    home.mkdir()
    port = _free_port()
    env = {
        **_clean_env(),
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    log = backend.dir / "server.log"
    prefect = str(Path(sys.executable).with_name("prefect"))
    with log.open("wb") as output:
        process = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    backend.server, backend.api = process, f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        if process.poll() is not None:
            raise SystemExit(f"the {backend.name} Prefect server exited:\n{_tail(log)}")
        try:
            return httpx.get(f"{backend.api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _wait(healthy, 240, f"the {backend.name} Prefect server (log {log})")
        yield
    finally:
        _stop_group(process)


def run_child(
    role: str, backend: Backend, job: dict[str, Any], tag: str, timeout: float = 3600
) -> dict[str, Any]:
    job_path = backend.dir / f"{tag}.job.json"
    out = backend.dir / f"{tag}.out.json"
    log = backend.dir / f"{tag}.log"
    job_path.write_text(json.dumps({**job, "out": str(out)}))
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--role", role, "--job", str(job_path)],
            cwd=ROOT,
            env=backend.env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        code = process.wait(timeout=timeout)
    except BaseException:
        _stop_group(process)
        raise
    if code != 0:
        raise SystemExit(f"{backend.name} {tag} failed (exit {code}); log {log}:\n{_tail(log)}")
    return dict(json.loads(out.read_text()))


@contextmanager
def runner(backend: Backend, limit: int, tag: str) -> Iterator[subprocess.Popen[bytes]]:
    """`prefect.serve` of the lifecycle deployment, polling every second; stopped afterwards."""
    job_path = backend.dir / f"{tag}.job.json"
    job_path.write_text(json.dumps({"limit": limit}))
    log = backend.dir / f"{tag}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), "--role", "runner", "--job", str(job_path)],
            cwd=ROOT,
            env=backend.env(),
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def serving() -> bool:
            if process.poll() is not None:
                raise SystemExit(f"the {backend.name} runner exited:\n{_tail(log)}")
            return "being served" in log.read_text(errors="replace")

        _wait(serving, 300, f"the {backend.name} runner (log {log})")
        yield process
        time.sleep(3)  # let the last flow processes exit before the runner stops (docs/scale-out.md)
    finally:
        _stop_group(process, sig=signal.SIGINT)  # Ctrl-C; SIGTERM left it shutting down for > 30 s
        for pid in _orphans(backend.api):  # after an error: flow processes (own sessions) still running
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _orphans(api: str) -> list[int]:
    """Flow-run processes this script's runner started against this server that are still alive."""
    found = []
    marker = f"PREFECT_API_URL={api}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker in environ and any(item.startswith(b"PREFECT__FLOW_RUN_ID=") for item in environ):
            found.append(int(entry.name))
    return found


def measure(
    mode: str, backend: Backend, ids: dict[str, list[int]], args: argparse.Namespace, tag: str
) -> dict[str, Any]:
    assert backend.server is not None
    job: dict[str, Any] = {
        "api": backend.api,
        "ticket_ids": ids["timed"],
        "warmup_ids": ids.get("warmup", []),
        "profile_ids": ids.get("profile", []),
        "profile_path": str(backend.dir / f"{tag}.prof"),
        "server_pgid": backend.server.pid,
        "pg_admin_url": args.pg_admin_url if (backend.prefect_db or backend.app_db) else None,
        "pg_databases": [d for d in (backend.prefect_db, backend.app_db) if d],
    }
    if mode != "deployment":
        return run_child(mode, backend, job, tag)
    with runner(backend, args.limit, f"{tag}-runner") as process:
        time.sleep(5)  # the runner goes on starting for a moment after its banner
        idle = idle_rates({"runner": process.pid, "prefect_server": backend.server.pid}, args.idle_sample)
        result = run_child(mode, backend, {**job, "runner_pgid": process.pid}, tag)
    result["idle_cpu_s_per_s"] = idle
    return result


def idle_rates(groups: dict[str, int], seconds: float) -> dict[str, float]:
    """CPU seconds per second of these process groups while nothing is asked of them."""
    before = {name: _group_cpu(pgid) or 0.0 for name, pgid in groups.items()}
    time.sleep(seconds)
    return {
        name: round(((_group_cpu(pgid) or 0.0) - before[name]) / seconds, 4) for name, pgid in groups.items()
    }


def _line(mode: str, backend: str, r: dict[str, Any], round_no: int) -> str:
    text = (
        f"{mode:10s} {backend:8s} round {round_no}  n={r['n']:4d}  wall {r['wall_s']:8.2f} s  "
        f"{r['per_s']:7.3f}/s"
    )
    if r.get("run_s"):
        text += f"  run p50 {r['run_s']['p50']:.2f} s p95 {r['run_s']['p95']:.2f} s"
    text += f"  load {r['load_before']} -> {r['load_after']}"
    text += f"\n    cpu s {r['cpu_s']} over {r['cpu_window_s']} s; above idle {r['cpu_s_above_idle']}"
    for key in ("segments", "inside_s_per_run"):
        if r.get(key):
            text += f"\n    {key}: {r[key]}"
    return text


def summarise(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    table = []
    keys = sorted({(r["mode"], r["backend"]) for r in results}, key=lambda k: (k[0], k[1]))
    for mode, backend in keys:
        rows = [r for r in results if r["mode"] == mode and r["backend"] == backend]
        n = sum(r["n"] for r in rows)
        wall = sum(r["wall_s"] for r in rows)
        durations = [d for r in rows for d in r.get("durations_s", [])]
        cpu: dict[str, float] = {}
        for r in rows:
            for key, value in r["cpu_s_above_idle"].items():
                cpu[key] = round(cpu.get(key, 0.0) + value, 2)
        table.append(
            {
                "mode": mode,
                "backend": backend,
                "n": n,
                "wall_s": round(wall, 2),
                "per_s": round(n / wall, 3),
                "run_s": _pct(durations) if durations else None,
                "cpu_s_per_ticket_above_idle": {k: round(v / n, 3) for k, v in cpu.items()},
                "loads": [(r["load_before"], r["load_after"]) for r in rows],
                "rounds_per_s": [r["per_s"] for r in rows],
            }
        )
    return table


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=200, help="tickets per backend, batch and in-process")
    parser.add_argument("--deployment-tickets", type=int, default=100, help="deployment runs per backend")
    parser.add_argument("--backends", default="sqlite,postgres", help="Prefect server databases")
    parser.add_argument("--modes", default="batch,inprocess,deployment")
    parser.add_argument("--app-db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--rounds", type=int, default=2, help="each mode's tickets in this many rounds")
    parser.add_argument("--warmup", type=int, default=2, help="untimed in-process runs per round first")
    parser.add_argument("--profile-runs", type=int, default=5, help="in-process runs under cProfile")
    parser.add_argument("--limit", type=int, default=8, help="runner: flow processes at once")
    parser.add_argument("--idle-sample", type=float, default=10, help="s of idle CPU sampling")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hitl-lifecycle-bench"))
    parser.add_argument("--keep", action="store_true", help="keep the work files (logs are kept anyway)")
    parser.add_argument("--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--job", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        child_main(args.role, args.job)
        return
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if set(backends) - {"sqlite", "postgres"} or set(modes) - {"batch", "inprocess", "deployment"}:
        parser.error("backends: sqlite, postgres; modes: batch, inprocess, deployment")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop servers, drop databases

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    base = args.workdir / f"run-{stamp}"
    (base / "runbooks").mkdir(parents=True)
    (base / "runbooks" / "bench-matches-nothing.yaml").write_text(INERT_RUNBOOK)

    # Ticket ids (the same on every backend: identical app databases) per mode and round.
    plan: dict[tuple[str, int], dict[str, list[int]]] = {}
    counter = iter(range(10**9))

    def take(k: int) -> list[int]:
        return [next(counter) for _ in range(k)]

    for mode in modes:
        total = args.deployment_tickets if mode == "deployment" else args.tickets
        for round_no in range(args.rounds):
            share = total // args.rounds + (1 if round_no < total % args.rounds else 0)
            ids = {"timed": take(share)}
            if mode == "inprocess":
                ids["warmup"] = take(args.warmup)
                ids["profile"] = take(args.profile_runs if round_no == 0 else 0)
            plan[(mode, round_no)] = ids
    needed = next(counter)

    print(f"work dir {base}; {needed} tickets per backend; load {_loadavg()}", flush=True)
    results: list[dict[str, Any]] = []
    meta: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "args": {k: str(v) for k, v in vars(args).items() if k not in ("role", "job")},
        "cpus": os.cpu_count(),
        "load_start": _loadavg(),
    }
    try:
        with ExitStack() as stack:
            objects: dict[str, Backend] = {}
            for name in backends:
                backend = objects[name] = Backend(name, base)
                prefect_url = None
                if name == "postgres":
                    backend.prefect_db = stack.enter_context(
                        pg_database(args.pg_admin_url, "hitl_bench_prefect")
                    )
                    prefect_url = _url_for(args.pg_admin_url, backend.prefect_db, "postgresql+asyncpg")
                if args.app_db == "postgres":
                    backend.app_db = stack.enter_context(pg_database(args.pg_admin_url, "hitl_bench_app"))
                    backend.app_url = _url_for(args.pg_admin_url, backend.app_db, "postgresql+psycopg")
                else:
                    backend.app_url = f"sqlite:///{backend.dir / 'hitl.db'}"
                started = time.monotonic()
                stack.enter_context(prefect_server(backend, prefect_url))
                meta[f"{name}_server_start_s"] = round(time.monotonic() - started, 1)
                prepared = run_child("prepare", backend, {"count": needed, "seed": args.seed}, "prepare")
                backend.ticket_ids = prepared["ticket_ids"]
                print(
                    f"{name}: server {backend.api} up in {meta[f'{name}_server_start_s']} s; "
                    f"app db {args.app_db}; {prepared['models']} ({prepared['train_s']} s)",
                    flush=True,
                )
            servers = {name: b.server.pid for name, b in objects.items() if b.server is not None}
            meta["idle_server_cpu_s_per_s"] = idle_rates(servers, 2 * args.idle_sample)
            print(f"idle Prefect servers, CPU s/s: {meta['idle_server_cpu_s_per_s']}", flush=True)
            reference = next(iter(objects.values())).ticket_ids
            assert all(b.ticket_ids == reference for b in objects.values()), "app databases differ"

            for mode in modes:
                for round_no in range(args.rounds):
                    order = backends if round_no % 2 == 0 else list(reversed(backends))
                    for name in order:
                        backend = objects[name]
                        ids = {
                            k: [backend.ticket_ids[i] for i in v] for k, v in plan[(mode, round_no)].items()
                        }
                        if not ids["timed"]:
                            continue
                        result = measure(mode, backend, ids, args, f"{mode}-r{round_no}")
                        result.update(mode=mode, backend=name, round=round_no)
                        idle = {
                            "prefect_server": meta["idle_server_cpu_s_per_s"][name],
                            **result.get("idle_cpu_s_per_s", {}),
                        }
                        result["cpu_s_above_idle"] = {
                            key: round(value - idle.get(key, 0.0) * result["cpu_window_s"], 2)
                            for key, value in result["cpu_s"].items()
                        }
                        if mode == "deployment":
                            result["runner_limit"] = args.limit
                        results.append(result)
                        print(_line(mode, name, result, round_no), flush=True)
            meta["completed"] = True
    finally:
        meta["load_end"] = _loadavg()
        summary = summarise(results) if results else []
        (base / "results.json").write_text(
            json.dumps({"meta": meta, "summary": summary, "measurements": results}, indent=2)
        )
        if results:
            print("\nmode       backend     n   wall s    per s   run p50  run p95  CPU s/ticket above idle")
            for row in summary:
                run = row["run_s"] or {}
                print(
                    f"{row['mode']:10s} {row['backend']:8s} {row['n']:4d} {row['wall_s']:8.1f} "
                    f"{row['per_s']:8.3f} {run.get('p50') or 0:8.2f} {run.get('p95') or 0:8.2f}  "
                    f"{row['cpu_s_per_ticket_above_idle']}"
                )
            for r in results:
                if r.get("profile"):
                    print(f"profile {r['backend']}: {json.dumps(r['profile'])}")
        print(f"results: {base / 'results.json'}")
        if not args.keep and meta.get("completed"):  # after a failure everything stays, to look into
            for backend_dir in base.iterdir():
                for sub in ("var", "client-prefect-home", "server-prefect-home", "hitl.db", "hitl.db-wal"):
                    path = backend_dir / sub
                    with contextlib.suppress(OSError):
                        shutil.rmtree(path) if path.is_dir() else path.unlink()


if __name__ == "__main__":
    main()
