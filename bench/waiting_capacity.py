"""Benchmark (issue #7, 3): many tickets waiting at checkpoints at once, then a bulk resume.

    .venv/bin/python bench/waiting_capacity.py --tickets 1000 --workdir /tmp/waiting-bench

The stack is `hitl serve` on a free port (the one-machine setup of README and docs/scale-out.md:
a Prefect server child process, and the runner that executes every flow run as a child process,
at most --limit at once; that runner is "the worker" here). Before it starts, the script trains
the demo models into a fresh HITL_HOME (as `hitl serve --demo` does) and adds a policy version
giving the triage checkpoint no autonomy, so every ticket waits there, and a deadline of a day, so
the checkpoint-timeouts sweeper leaves them waiting however long the run takes. Then:

  1. `hitl demo generate --count N` and `hitl ingest FILE --json`: the batch path decides all N
     tickets and starts one ticket-lifecycle run per ticket; the clock runs from the ingestion's
     start until all N runs are Suspended (each run start is a Python process start).
  2. While they all wait (--hold seconds): the processes of the stack (serve, the Prefect server,
     any flow-run process, anything else below serve) and their resident memory.
  3. A bulk resume: the product has no bulk command, so the script does in one process, for each
     run, what `hitl resume RUN --decision approve --reviewer bench` does (the waiting view from the
     database, the answer with the AI's values, the same check, then Prefect's resume_flow_run with
     that run input, insisting on ACCEPT), from --resume-threads threads. The clock runs from the
     first resume until every run is at its next checkpoint or finished.

Resident memory (from /proc) is sampled every --sample-every seconds for the whole run; VmHWM (the
kernel's own peak) of serve and of the server is read at the end of each phase. Progress is printed
every 15 s. Results: <workdir>/results-<N>-<app-db>-<prefect-db>.json. Every process (and the
PostgreSQL databases it created) is removed on exit, error or Ctrl-C.

The application database is SQLite under HITL_HOME (the default), or with --app-db postgres a
fresh PostgreSQL database. Before 3f9dfe7 every flow process held SQLite's write lock while it
loaded the models, so flow starts queued on it and runs failed with "database is locked" on a
loaded 2-core machine; models now load outside any transaction. --sqlite-busy-timeout still sets
HITL_SQLITE_BUSY_TIMEOUT_S for the whole stack. The Prefect server's database is SQLite (hitl
serve's default) or, with --prefect-db postgres, a fresh PostgreSQL database: in an attempt on a
loaded machine (load 12-17), the server on SQLite answered 503 (SQLITE_BUSY) while 8 flow
processes ran and the ingestion created 1,000 runs, and the ingestion failed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PAGE = os.sysconf("SC_PAGE_SIZE")
MB = 1024 * 1024
LIFECYCLE_FLOW = {"flows": {"name": {"any_": ["ticket-lifecycle"]}}}
STATE_BUCKETS = {
    "scheduled": ["SCHEDULED"],
    "pending": ["PENDING"],
    "running": ["RUNNING", "CANCELLING"],
    "suspended": ["PAUSED"],
    "completed": ["COMPLETED"],
    "failed": ["FAILED", "CRASHED", "CANCELLED"],
}
MOVING = ("scheduled", "pending", "running")
PROGRESS_EVERY = 15.0
POLL_EVERY = 5.0  # seconds between state counts (six small API calls)
TRIAGE_TIMEOUT_MIN = 1440


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


# --- processes, from /proc -------------------------------------------------------------------


@dataclass
class Proc:
    pid: int
    ppid: int
    start: int  # clock ticks after boot: (pid, start) names one process, even if the pid is reused
    rss: int  # bytes


def _read(path: str, binary: bool = False) -> Any:
    with open(path, "rb" if binary else "r") as handle:
        return handle.read()


def _proc_table() -> dict[int, Proc]:
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = _read(f"/proc/{entry}/stat")
            resident = int(_read(f"/proc/{entry}/statm").split()[1]) * PAGE
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        fields = stat[stat.rindex(")") + 2 :].split()  # fields[0] is field 3 of proc(5)
        if fields[0] == "Z":
            continue
        table[int(entry)] = Proc(int(entry), int(fields[1]), int(fields[19]), resident)
    return table


def _tree(table: dict[int, Proc], root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, todo = [], [root] if root in table else []
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def _cmdline(pid: int) -> list[str]:
    try:
        return [a.decode(errors="replace") for a in _read(f"/proc/{pid}/cmdline", True).split(b"\0") if a]
    except OSError:
        return []


def _flow_run_id(pid: int) -> str | None:
    try:
        environ = _read(f"/proc/{pid}/environ", True)
    except OSError:
        return None
    for item in environ.split(b"\0"):
        if item.startswith(b"PREFECT__FLOW_RUN_ID="):
            return item.split(b"=", 1)[1].decode()
    return None


def _hwm(pid: int) -> int | None:
    """The kernel's peak resident set of a live process (VmHWM), in bytes."""
    try:
        for line in _read(f"/proc/{pid}/status").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


@dataclass
class Sample:
    t: float  # seconds since the script started
    phase: str
    serve_rss: int = 0
    server_rss: int = 0
    server_procs: int = 0
    flow_procs: int = 0
    flow_rss: int = 0
    other_procs: int = 0
    other_rss: int = 0
    tree_procs: int = 0
    tree_rss: int = 0
    python_procs: int = 0
    flow_run_ids: list[str] = field(default_factory=list)
    processes: list[dict[str, Any]] = field(default_factory=list)


def snapshot(root: int, t: float, phase: str, detail: bool = False) -> tuple[Sample, dict[int, int]]:
    """Every process below `root` (root included), by kind: serve itself, the Prefect server and
    its children, flow-run processes (PREFECT__FLOW_RUN_ID in their environment), other."""
    table = _proc_table()
    tree = _tree(table, root)
    server_pids: set[int] = set()
    for pid in tree:
        args = _cmdline(pid)
        if "server" in args and "start" in args and any(a.endswith("prefect") for a in args):
            server_pids.update(_tree(table, pid))
    sample = Sample(t=round(t, 1), phase=phase, tree_procs=len(tree))
    for pid in tree:
        proc, args = table[pid], _cmdline(pid)
        sample.tree_rss += proc.rss
        if args and "python" in Path(args[0]).name:
            sample.python_procs += 1
        run_id = None
        if pid == root:
            kind, sample.serve_rss = "serve", proc.rss
        elif pid in server_pids:
            kind = "server"
            sample.server_procs += 1
            sample.server_rss += proc.rss
        elif run_id := _flow_run_id(pid):
            kind = "flow-run"
            sample.flow_procs += 1
            sample.flow_rss += proc.rss
            sample.flow_run_ids.append(run_id)
        else:
            kind = "other"
            sample.other_procs += 1
            sample.other_rss += proc.rss
        if detail:
            sample.processes.append(
                {
                    "pid": pid,
                    "kind": kind,
                    "rss_mb": round(proc.rss / MB, 1),
                    "flow_run_id": run_id,
                    "cmdline": " ".join(args)[:160],
                }
            )
    return sample, {pid: table[pid].start for pid in tree}


class Sampler(threading.Thread):
    """Samples the stack every `every` seconds; remembers every process it ever saw, for cleanup."""

    def __init__(self, root: int, every: float, t0: float) -> None:
        super().__init__(daemon=True)
        self.root, self.every, self.t0 = root, every, t0
        self.phase = "start"
        self.samples: list[Sample] = []
        self.seen: dict[int, int] = {}
        self.lock = threading.Lock()
        self.halt = threading.Event()

    def take(self, detail: bool = False) -> Sample:
        sample, members = snapshot(self.root, time.monotonic() - self.t0, self.phase, detail)
        with self.lock:
            self.seen.update(members)
            if not detail:
                sample.flow_run_ids = []  # keep results.json small; counts are enough
                self.samples.append(sample)
        return sample

    def latest(self) -> Sample | None:
        with self.lock:
            return self.samples[-1] if self.samples else None

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                self.take()
            except Exception as exc:  # a sampling hiccup must not end the run
                print(f"sampler: {type(exc).__name__}: {exc}", flush=True)
            self.halt.wait(self.every)


def _kill_leftovers(seen: dict[int, int]) -> list[int]:
    """SIGKILL every process of the stack that outlived the shutdown (same pid and start time)."""
    table = _proc_table()
    killed = []
    for pid, start in seen.items():
        if pid in table and table[pid].start == start:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
    return killed


# --- the Prefect API -------------------------------------------------------------------------


def states(api: str) -> dict[str, int]:
    """How many ticket-lifecycle runs are in each state bucket."""
    counts = {}
    for bucket, types in STATE_BUCKETS.items():
        body = {**LIFECYCLE_FLOW, "flow_runs": {"state": {"type": {"any_": types}}}}
        response = httpx.post(f"{api}/flow_runs/count", json=body, timeout=60)
        response.raise_for_status()
        counts[bucket] = int(response.json())
    return counts


def suspended_run_ids(api: str) -> list[str]:
    ids: list[str] = []
    while True:
        body = {
            **LIFECYCLE_FLOW,
            "flow_runs": {"state": {"type": {"any_": ["PAUSED"]}}},
            "sort": "ID_DESC",
            "limit": 200,
            "offset": len(ids),
        }
        response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=60)
        response.raise_for_status()
        page = [run["id"] for run in response.json()]
        ids.extend(page)
        if len(page) < 200:
            return ids


def failures(api: str, limit: int = 5) -> list[dict[str, Any]]:
    """A few failed/crashed/cancelled ticket-lifecycle runs with their state message."""
    body = {
        **LIFECYCLE_FLOW,
        "flow_runs": {"state": {"type": {"any_": STATE_BUCKETS["failed"]}}},
        "sort": "END_TIME_DESC",
        "limit": limit,
    }
    response = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=60)
    response.raise_for_status()
    return [
        {
            "id": run["id"],
            "state": run["state_name"],
            "message": ((run.get("state") or {}).get("message") or "")[:300],
        }
        for run in response.json()
    ]


def flow_name(api: str, run_id: str) -> str | None:
    try:
        run = httpx.get(f"{api}/flow_runs/{run_id}", timeout=10).json()
        return str(httpx.get(f"{api}/flows/{run['flow_id']}", timeout=10).json()["name"])
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def deployment_ready(api: str) -> bool:
    try:
        response = httpx.get(f"{api}/deployments/name/ticket-lifecycle/ticket-lifecycle", timeout=5)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and response.json().get("status") == "READY"


# --- the application side (in this process, against the same database) ------------------------


def create_pg_database(admin_url: str, name: str) -> str:
    """A fresh PostgreSQL database for the application; returns its URL."""
    from sqlalchemy import create_engine, make_url, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def prepare() -> list[str]:
    """Demo models (as `hitl serve --demo` trains them) and a policy version in which triage has no
    autonomy, so every ticket waits for a human there."""
    from hitl.lifecycle.demo_models import ensure_demo_models
    from hitl.settings import get_settings
    from hitl.store.db import get_database
    from hitl.store.policies import create_version, current_policy

    settings = get_settings()
    db = get_database(settings)
    db.ensure_schema()
    lines = ensure_demo_models(settings)
    with db.session() as session:
        _, policy = current_policy(session)
        changed = policy.model_copy(deep=True)
        triage = changed.checkpoints["triage"]
        # no autonomy: every ticket waits; a day's deadline: the checkpoint-timeouts sweeper (every
        # minute) must not time out a waiting ticket during a long run (the shipped deadline is 4 h)
        triage.autonomy, triage.timeout_minutes, triage.classes = False, TRIAGE_TIMEOUT_MIN, {}
        version = create_version(session, changed, "bench", "waiting capacity: every ticket waits at triage")
        lines.append(
            f"policy version {version.version}: triage without autonomy, deadline {TRIAGE_TIMEOUT_MIN} min"
        )
    return lines


def resume_one(run_id: str) -> str | None:
    """What `hitl resume RUN --decision approve --reviewer bench` does; an error message or None."""
    from hitl.checkpoints import check_review
    from hitl.cli.lifecycle import _resume
    from hitl.errors import HitlError
    from hitl.lifecycle.queue import waiting_view
    from hitl.settings import get_settings
    from hitl.store.db import get_database

    settings = get_settings()
    try:
        with get_database(settings).session() as session:
            view = waiting_view(session, settings, run_id)
        answer: dict[str, Any] = {s.field: s.ai_value for s in view.suggestions}
        answer.update(decision="approve", reviewer="bench", reason_code="none", comment="")
        verdict = check_review(view, answer)
        if isinstance(verdict, list):
            return "; ".join(verdict)
        _resume(run_id, answer)
    except HitlError as exc:
        return str(exc)
    return None


def database_summary() -> dict[str, Any]:
    from sqlalchemy import func, select

    from hitl.store.db import get_database
    from hitl.store.orm import Decision, Review

    with get_database().session() as session:
        decisions = session.execute(
            select(Decision.checkpoint, Decision.status, func.count(func.distinct(Decision.ticket_id)))
            .group_by(Decision.checkpoint, Decision.status)
            .order_by(Decision.checkpoint, Decision.status)
        ).all()
        reviews = session.execute(
            select(Decision.checkpoint, func.count(Review.id))
            .join(Decision, Review.decision_id == Decision.id)
            .group_by(Decision.checkpoint)
        ).all()
    return {
        "tickets_by_checkpoint_and_decision_status": {f"{c}/{s}": n for c, s, n in decisions},
        "reviews_by_checkpoint": dict(reviews),
    }


# --- the run -----------------------------------------------------------------------------------


def _mb(value: float | None) -> float | None:
    return None if value is None else round(value / MB, 1)


def _stats(samples: list[Sample], name: str) -> dict[str, float | None]:
    values = [getattr(s, name) for s in samples]
    if not values:
        return {"median": None, "max": None}
    scale = MB if name.endswith("_rss") else 1
    return {
        "median": round(statistics.median(values) / scale, 1),
        "max": round(max(values) / scale, 1),
    }


class Bench:
    def __init__(self, args: argparse.Namespace, api: str) -> None:
        self.args, self.api = args, api
        self.t0 = time.monotonic()
        self.serve: subprocess.Popen[bytes] | None = None
        self.ingest: subprocess.Popen[bytes] | None = None
        self.sampler: Sampler | None = None
        self.results: dict[str, Any] = {}
        self.last_progress = 0.0

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def check_alive(self) -> None:
        assert self.serve is not None
        if self.serve.poll() is not None:
            raise SystemExit(f"hitl serve exited with {self.serve.returncode}; see {self.serve_log}")

    def progress(self, what: str, counts: dict[str, int], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_progress < PROGRESS_EVERY:
            return
        self.last_progress = now
        assert self.sampler is not None
        sample = self.sampler.latest()
        memory = (
            f"serve {_mb(sample.serve_rss)} MB, server {_mb(sample.server_rss)} MB, "
            f"{sample.flow_procs} flow procs ({_mb(sample.flow_rss)} MB)"
            if sample
            else ""
        )
        load = "/".join(f"{x:.1f}" for x in os.getloadavg())
        shown = " ".join(f"{k} {v}" for k, v in counts.items() if v)
        print(f"[{self.elapsed():6.0f} s] {what}: {shown} | {memory} | load {load}", flush=True)

    def start_stack(self, env_serve: dict[str, str]) -> None:
        args = self.args
        self.serve_log = args.workdir / f"serve-{args.port}.log"
        self.serve = subprocess.Popen(
            [sys.executable, "-m", "hitl.cli", "serve", "--port", str(args.port)],
            cwd=ROOT,
            env=env_serve,
            stdout=self.serve_log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.sampler = Sampler(self.serve.pid, args.sample_every, self.t0)
        self.sampler.start()
        started = time.monotonic()
        self.sampler.phase = "starting"

        def ready() -> bool:
            self.check_alive()
            return deployment_ready(self.api)

        _wait(ready, 300, "hitl serve: the ticket-lifecycle deployment served (READY)", 1)
        self.results["stack_start_s"] = round(time.monotonic() - started, 1)
        print(f"hitl serve up in {self.results['stack_start_s']} s (pid {self.serve.pid})", flush=True)

    def phase_suspend(self) -> None:
        args = self.args
        tickets = args.workdir / f"tickets-{args.tickets}-seed{args.seed}.csv"
        command = [sys.executable, "-m", "hitl.cli", "demo", "generate", "--count", str(args.tickets)]
        subprocess.run(
            [*command, "--seed", str(args.seed), "--out", str(tickets)],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        assert self.sampler is not None
        self.sampler.phase = "ingest-to-suspended"
        ingest_log = args.workdir / f"ingest-{args.port}.log"
        started = time.monotonic()
        self.ingest = subprocess.Popen(
            [sys.executable, "-m", "hitl.cli", "ingest", str(tickets), "--json"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=ingest_log.open("wb"),
            start_new_session=True,
        )
        print(f"ingesting {args.tickets} tickets ({tickets.name}) ...", flush=True)
        ingest_out: list[bytes] = []
        reader = threading.Thread(target=lambda: ingest_out.append(self.ingest.stdout.read()), daemon=True)
        reader.start()
        ingest_s = None
        timeout = args.phase_timeout
        while True:
            self.check_alive()
            if ingest_s is None and self.ingest.poll() is not None:
                ingest_s = time.monotonic() - started
                reader.join(10)
                if self.ingest.returncode != 0:
                    raise SystemExit(f"hitl ingest failed ({self.ingest.returncode}); see {ingest_log}")
                report = json.loads(ingest_out[0])
                self.results["ingest"] = {"seconds": round(ingest_s, 1), **report}
                print(f"hitl ingest returned after {ingest_s:.1f} s: {json.dumps(report)}", flush=True)
            counts = states(self.api)
            self.progress("to suspended", counts)
            if ingest_s is not None and not any(counts[k] for k in MOVING):
                break
            if time.monotonic() - started > timeout:
                raise SystemExit(f"not all runs suspended within {timeout:.0f} s: {counts}")
            time.sleep(POLL_EVERY)
        total = time.monotonic() - started
        self.progress("to suspended", counts, force=True)
        self.results["suspend_phase"] = {
            "seconds": round(total, 1),
            "states": counts,
            "failed_runs": failures(self.api) if counts["failed"] else [],
        }
        for failed in self.results["suspend_phase"]["failed_runs"]:
            print(f"    {failed['state']} {failed['id']}: {failed['message']}", flush=True)
        if counts["suspended"] != args.tickets:
            print(f"WARNING: {counts['suspended']} of {args.tickets} runs suspended: {counts}", flush=True)
        print(f"all runs settled {total:.1f} s after the ingestion started: {counts}", flush=True)

    def phase_wait(self) -> list[str]:
        args = self.args
        assert self.sampler is not None and self.serve is not None
        run_ids = suspended_run_ids(self.api)
        waiting = set(run_ids)
        self.results["waiting_runs"] = len(run_ids)
        self.sampler.phase = "settling"
        started = time.monotonic()
        # a run's process exits ~2-3 s after it is reported Suspended (docs/prefect-semantics.md 1)
        _wait(
            lambda: not waiting.intersection(self.sampler.take(detail=True).flow_run_ids),
            180,
            "the suspended runs' processes to exit",
            1,
        )
        self.results["settle_s"] = round(time.monotonic() - started, 1)
        self.sampler.phase = "waiting"
        print(f"{len(run_ids)} runs waiting, none holds a process; holding {args.hold:.0f} s ...", flush=True)
        hold_until = time.monotonic() + args.hold
        worst: Sample | None = None
        lifecycle_procs = 0
        while time.monotonic() < hold_until:
            self.check_alive()
            sample = self.sampler.take(detail=True)
            lifecycle_procs = max(lifecycle_procs, len(waiting.intersection(sample.flow_run_ids)))
            if worst is None or sample.tree_rss > worst.tree_rss:
                worst = sample
            time.sleep(args.sample_every)
        final = self.sampler.take(detail=True)
        for proc in final.processes:
            if proc["flow_run_id"]:
                proc["flow"] = flow_name(self.api, proc["flow_run_id"])
        held = [s for s in self.sampler.samples if s.phase == "waiting"]
        self.results["while_waiting"] = {
            "samples": len(held),
            "seconds": args.hold,
            "waiting_runs_holding_a_process_max": lifecycle_procs,
            **{
                name: _stats(held, name)
                for name in (
                    "tree_procs",
                    "python_procs",
                    "flow_procs",
                    "server_procs",
                    "other_procs",
                    "serve_rss",
                    "server_rss",
                    "flow_rss",
                    "other_rss",
                    "tree_rss",
                )
            },
            "processes_at_end": final.processes,
            "processes_at_max_tree_rss": worst.processes if worst else [],
            "serve_vmhwm_mb": _mb(_hwm(self.serve.pid)),
            "server_vmhwm_mb": _mb(
                _hwm(next((p["pid"] for p in final.processes if p["kind"] == "server"), -1))
            ),
            "loadavg": os.getloadavg(),
        }
        w = self.results["while_waiting"]
        print(
            f"while waiting: {w['tree_procs']['max']} processes in the stack "
            f"(python {w['python_procs']['max']}, flow-run {w['flow_procs']['max']}, "
            f"of waiting tickets {lifecycle_procs}); serve RSS {w['serve_rss']['median']} MB "
            f"(max {w['serve_rss']['max']}), server {w['server_rss']['median']} MB, "
            f"whole tree {w['tree_rss']['median']} MB",
            flush=True,
        )
        for proc in final.processes:
            print(
                f"    {proc['pid']:>7} {proc['kind']:<8} {proc['rss_mb']:>7} MB  {proc['cmdline']}"
                + (f"  (flow {proc['flow']})" if proc.get("flow") else ""),
                flush=True,
            )
        return run_ids

    def phase_resume(self, run_ids: list[str]) -> None:
        args = self.args
        assert self.sampler is not None and self.serve is not None
        from hitl.prefect_env import configure_prefect
        from hitl.settings import get_settings

        configure_prefect(get_settings())
        self.sampler.phase = "resume"
        print(f"resuming {len(run_ids)} runs from {args.resume_threads} threads ...", flush=True)
        started = time.monotonic()
        errors: dict[str, str] = {}
        done = 0
        with ThreadPoolExecutor(max_workers=args.resume_threads) as pool:
            futures = {pool.submit(resume_one, run_id): run_id for run_id in run_ids}
            for future in as_completed(futures):
                done += 1
                try:
                    problem = future.result()
                except Exception as exc:  # an unexpected client error: count it, go on
                    problem = f"{type(exc).__name__}: {exc}"
                if problem:
                    errors[futures[future]] = problem
                if time.monotonic() - self.last_progress >= PROGRESS_EVERY:
                    self.check_alive()
                    self.progress(f"resumed {done}/{len(run_ids)}", states(self.api))
        resumed_s = time.monotonic() - started
        print(f"all resume calls returned after {resumed_s:.1f} s ({len(errors)} refused)", flush=True)
        for run_id, problem in list(errors.items())[:5]:
            print(f"    refused {run_id}: {problem}", flush=True)
        timeout = args.phase_timeout
        while True:
            self.check_alive()
            counts = states(self.api)
            self.progress("after resume", counts)
            if not any(counts[k] for k in MOVING):
                break
            if time.monotonic() - started > timeout:
                raise SystemExit(f"resumed runs did not settle within {timeout:.0f} s: {counts}")
            time.sleep(POLL_EVERY)
        total = time.monotonic() - started
        self.progress("after resume", counts, force=True)
        during = [s for s in self.sampler.samples if s.phase == "resume"]
        self.results["resume_phase"] = {
            "resumes": len(run_ids),
            "refused": len(errors),
            "refusals": dict(list(errors.items())[:20]),
            "resume_calls_s": round(resumed_s, 1),
            "seconds": round(total, 1),
            "states": counts,
            "failed_runs": failures(self.api) if counts["failed"] else [],
            **{name: _stats(during, name) for name in ("serve_rss", "server_rss", "flow_procs", "tree_rss")},
            "serve_vmhwm_mb": _mb(_hwm(self.serve.pid)),
            "loadavg": os.getloadavg(),
        }
        print(
            f"all resumed runs at their next checkpoint or finished {total:.1f} s after the first resume",
            flush=True,
        )

    def stop(self) -> None:
        """Stop serve (it stops its server), wait, then kill anything of the stack still alive."""
        if self.ingest is not None and self.ingest.poll() is None:
            os.killpg(self.ingest.pid, signal.SIGKILL)
        if self.serve is None:
            return
        if self.sampler is not None:
            with contextlib.suppress(Exception):
                self.sampler.take()  # remember the processes alive right now
            self.sampler.halt.set()
        if self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            try:
                self.serve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.serve.pid, signal.SIGKILL)
                self.serve.wait(timeout=10)
        if self.sampler is not None:
            time.sleep(1)
            killed = _kill_leftovers(self.sampler.seen)
            if killed:
                print(f"killed leftover processes of the stack: {killed}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=1000, help="tickets ingested; each waits at triage")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hitl-waiting-bench"))
    parser.add_argument("--port", type=int, default=None, help="Prefect server port (default: a free one)")
    parser.add_argument("--limit", type=int, default=8, help="HITL_RUNNER_LIMIT: flow processes at once")
    parser.add_argument("--seed", type=int, default=2026, help="seed of the generated tickets")
    parser.add_argument("--hold", type=float, default=60, help="seconds measured while all runs wait")
    parser.add_argument("--resume-threads", type=int, default=4, help="concurrent resume calls")
    parser.add_argument("--sample-every", type=float, default=2.0, help="seconds between memory samples")
    parser.add_argument(
        "--sqlite-busy-timeout",
        type=float,
        default=None,
        help="HITL_SQLITE_BUSY_TIMEOUT_S for the whole stack (default: the product's, 60 s)",
    )
    parser.add_argument(
        "--app-db",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="application database: SQLite under HITL_HOME (the default), or a fresh PostgreSQL "
        "database created through --pg-admin-url and dropped afterwards",
    )
    parser.add_argument(
        "--prefect-db",
        choices=("sqlite", "postgres"),
        default="sqlite",
        help="the Prefect server's database: SQLite in PREFECT_HOME (hitl serve's default), or a fresh "
        "PostgreSQL database (PREFECT_API_DATABASE_CONNECTION_URL), dropped afterwards",
    )
    parser.add_argument("--pg-admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--phase-timeout", type=float, default=8 * 3600, help="give up on a phase after this many seconds"
    )
    args = parser.parse_args()
    args.workdir = args.workdir.resolve()
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.port = args.port or _free_port()

    # This process is a client of the stack (it prepares the database and resumes the runs): the
    # same HITL_HOME and PREFECT_HOME, set before hitl or prefect is imported.
    for name in [k for k in os.environ if k.startswith(("PREFECT_", "HITL_"))]:
        del os.environ[name]
    os.environ.update(
        HITL_HOME=str(args.workdir / f"var-{args.port}"),
        PREFECT_HOME=str(args.workdir / f"prefect-{args.port}"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        HITL_RUNNER_LIMIT=str(args.limit),
    )
    if args.sqlite_busy_timeout is not None:
        os.environ["HITL_SQLITE_BUSY_TIMEOUT_S"] = str(args.sqlite_busy_timeout)
    app_pg = f"hitl_waiting_bench_{args.port}" if args.app_db == "postgres" else None
    prefect_pg = f"hitl_waiting_prefect_{args.port}" if args.prefect_db == "postgres" else None
    created: list[str] = []
    api = f"http://127.0.0.1:{args.port}/api"

    def interrupted(signum: int, frame: object) -> None:
        print(f"{signal.Signals(signum).name} received", flush=True)  # who stopped a long run, in its log
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)
    bench = Bench(args, api)
    bench.results.update(
        date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        command=" ".join([Path(sys.executable).name, *sys.argv]),
        tickets=args.tickets,
        runner_limit=args.limit,
        sqlite_busy_timeout_s=args.sqlite_busy_timeout,
        app_db=args.app_db,
        prefect_db=args.prefect_db,
        cpus=os.cpu_count(),
        loadavg_start=os.getloadavg(),
    )
    print(f"load average at start: {bench.results['loadavg_start']}", flush=True)
    try:
        if app_pg:
            os.environ["HITL_DATABASE_URL"] = create_pg_database(args.pg_admin_url, app_pg)
            created.append(app_pg)
        if prefect_pg:
            url = create_pg_database(args.pg_admin_url, prefect_pg)
            created.append(prefect_pg)
            os.environ["PREFECT_API_DATABASE_CONNECTION_URL"] = url.replace("+psycopg", "+asyncpg", 1)
        env_serve = dict(os.environ)  # no PREFECT_API_URL: `hitl serve` starts its own server
        os.environ["PREFECT_API_URL"] = api
        for line in prepare():
            print(line, flush=True)
        bench.start_stack(env_serve)
        bench.phase_suspend()
        run_ids = bench.phase_wait()
        bench.phase_resume(run_ids)
        assert bench.sampler is not None
        bench.sampler.phase = "end"
        time.sleep(5)  # let the last processes exit before the figures and the shutdown
        bench.results["database"] = database_summary()
        samples = bench.sampler.samples
        bench.results["whole_run"] = {
            "samples": len(samples),
            **{name: _stats(samples, name) for name in ("serve_rss", "server_rss", "tree_rss", "flow_procs")},
            "serve_vmhwm_mb": _mb(_hwm(bench.serve.pid)) if bench.serve else None,
        }
        bench.results["loadavg_end"] = os.getloadavg()
        bench.results["samples"] = [
            {k: v for k, v in asdict(s).items() if k not in ("flow_run_ids", "processes")} for s in samples
        ]
        path = args.workdir / f"results-{args.tickets}-{args.app_db}-{args.prefect_db}.json"
        path.write_text(json.dumps(bench.results, indent=2))
        shown = {k: v for k, v in bench.results.items() if k != "samples"}
        shown.get("while_waiting", {}).pop("processes_at_max_tree_rss", None)
        print(json.dumps(shown, indent=2))
        print(f"load average at end: {bench.results['loadavg_end']}; results in {path}", flush=True)
    except KeyboardInterrupt:
        print("interrupted: stopping the stack ...", flush=True)
        raise SystemExit(130) from None
    finally:
        if "loadavg_end" not in bench.results and bench.sampler is not None:  # keep what was measured
            bench.results["stopped_at_s"] = round(bench.elapsed(), 1)
            bench.results["samples"] = [
                {k: v for k, v in asdict(s).items() if k not in ("flow_run_ids", "processes")}
                for s in list(bench.sampler.samples)
            ]
            partial = args.workdir / f"results-{args.tickets}-{args.app_db}-{args.prefect_db}-partial.json"
            partial.write_text(json.dumps(bench.results, indent=2))
            print(f"partial results in {partial}", flush=True)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.stop()
        if app_pg in created:
            from hitl.store.db import get_database

            get_database().engine.dispose()
        for name in created:
            drop_pg_database(args.pg_admin_url, name)


if __name__ == "__main__":
    main()
