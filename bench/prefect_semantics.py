"""Measure the Prefect 3 suspend/resume semantics the ticket-lifecycle flow relies on.

Every figure in ``docs/prefect-semantics.md`` comes from this script. It talks to the Prefect server
at ``PREFECT_API_URL`` and starts only its own subprocesses (a ``flow.serve`` runner, and for the
``worker`` experiment a process work pool + ``prefect worker start``), which it stops before exiting;
the deployments and the work pool it creates are deleted at the end. Flow runs are left on the server
for inspection (their names start with the deployment ``psem-*``).

How to run it against a throw-away local server (2 cores are enough; ~8 minutes for ``all``)::

    export PREFECT_HOME=/tmp/psem/home PREFECT_SERVER_ANALYTICS_ENABLED=false
    .venv/bin/prefect server start --host 127.0.0.1 --port 4471 &      # remember its PID
    export PREFECT_API_URL=http://127.0.0.1:4471/api
    .venv/bin/python bench/prefect_semantics.py all --workdir /tmp/psem/run
    .venv/bin/python bench/prefect_semantics.py keys resume              # or a few experiments
    kill <server PID>

Experiments (``--list`` prints them): suspend (state while waiting, processes, timeout expiry),
caching (which tasks re-run after resume), storage (results seen by another runner), shutdown (runner
stopped right after a suspend; deployment deleted under a waiting run), keys (re-suspend
with a new key and a new description), resume (invalid/extra/missing input, double and concurrent
resume, empty resume, pydantic validators), listing (queue of waiting runs), latency (resume -> next
stage), events (emit_event and read back), schema (the RunInput JSON schema), worker (the same
suspend/resume with a process work pool and ``prefect worker start``).

The flow under test records what it executes (pid, time, task executions, inputs received) as JSON
lines in ``<workdir>/traces/<decision_id>.jsonl``; the experiments read these files and the API.
Results are printed and written to ``<workdir>/results-<experiment>.json``.

To see what happens at a suspend timeout when the server's pause-expiration service is off, start a
second server with ``PREFECT_SERVER_SERVICES_PAUSE_EXPIRATIONS_ENABLED=false`` and run ``suspend``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger, suspend_flow_run, task
from prefect.cache_policies import INPUTS, NO_CACHE
from prefect.input import RunInput
from pydantic import model_validator

FLOW_NAME = "lifecycle-probe"
SERVE_DEPLOYMENT = "psem-serve"
WORKER_DEPLOYMENT = "psem-worker"
WORK_POOL = "psem-process-pool"
HERE = Path(__file__).resolve()
N_CONCURRENT_PUBLIC, N_CONCURRENT_RAW = 3, 3  # trials of two simultaneous resumes

# --------------------------------------------------------------------------------------------------
# The flow under test (importable without side effects: the runner and the worker re-import this file)
# --------------------------------------------------------------------------------------------------


def _rec(trace: str, event: str, **fields: Any) -> None:
    """Append one JSON line to the trace file (O_APPEND: safe across processes for short lines)."""
    line = json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), **fields}, default=str)
    with open(trace, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


class Triage(RunInput):
    """The checkpoint form. ``reviewer`` is never prefilled, so an empty Resume is rejected."""

    decision: Literal["approve", "override", "escalate"]
    value: str
    reason_code: Literal["none", "wrong_category", "wrong_priority", "other"] = "none"
    comment: str | None = None
    reviewer: str


class TriageStrict(Triage):
    """Same form with the cross-field rule as a pydantic validator (to see where it bites)."""

    @model_validator(mode="after")
    def _override_needs_reason(self) -> TriageStrict:
        if self.decision == "override" and self.reason_code == "none":
            raise ValueError("reason_code is required when decision is override")
        return self


def input_problem(inp: Triage, ai_value: str) -> str | None:
    """The cross-field rules the JSON schema cannot express (checked in the flow, not by the UI)."""
    if inp.decision == "approve" and inp.value != ai_value:
        return (
            f"decision=approve but value was changed from {ai_value!r} to {inp.value!r}: "
            "choose override and give a reason_code, or keep the proposed value"
        )
    if inp.decision == "override" and inp.reason_code == "none":
        return "reason_code is required when decision is override"
    return None


def checkpoint_key(decision_id: str, attempt: int) -> str:
    return f"triage-{decision_id}" if attempt == 0 else f"triage-{decision_id}-r{attempt}"


def _describe(decision_id: str, ai_value: str, problem: str | None) -> str:
    head = f"**Problem with the previous answer:** {problem}\n\n" if problem else ""
    return f"{head}### Decision {decision_id}\nThe model proposes **{ai_value}**."


@task(persist_result=True)
def t_default(trace: str, x: str) -> str:
    _rec(trace, "task_exec", task="t_default")
    return f"default:{x}"


@task(persist_result=True, cache_policy=INPUTS)
def t_inputs(trace: str, x: str) -> str:
    _rec(trace, "task_exec", task="t_inputs")
    return f"inputs:{x}"


@task(persist_result=True, cache_policy=NO_CACHE)
def t_nocache(trace: str, x: str) -> str:
    _rec(trace, "task_exec", task="t_nocache")
    return f"nocache:{x}"


@task(persist_result=True)
def t_after(trace: str, x: str) -> str:
    _rec(trace, "task_exec", task="t_after")
    return f"after:{x}"


def _hook(flow_obj: Any, flow_run: Any, state: Any) -> None:
    trace = (flow_run.parameters or {}).get("trace")
    if trace:
        _rec(trace, "hook", state_type=state.type.value, state_name=state.name, message=state.message)


@flow(name=FLOW_NAME, on_failure=[_hook], on_crashed=[_hook], on_completion=[_hook])
def lifecycle_probe(
    trace: str,
    decision_id: str,
    ai_value: str = "network",
    timeout: int | None = None,
    prefill_reviewer: bool = False,
    strict_model: bool = False,
    emit: bool = False,
) -> str:
    from prefect.context import FlowRunContext
    from prefect.events import emit_event

    ctx = FlowRunContext.get()
    run_count = ctx.flow_run.run_count if ctx and ctx.flow_run else None
    _rec(trace, "flow_start", run_count=run_count)
    get_run_logger().info("stage 1 for %s", decision_id)
    before = [t_default(trace, decision_id), t_inputs(trace, decision_id), t_nocache(trace, decision_id)]
    _rec(trace, "stage1_done", results=before)

    form_cls = TriageStrict if strict_model else Triage
    prefill: dict[str, Any] = {"decision": "approve", "value": ai_value}
    if prefill_reviewer:
        prefill["reviewer"] = "nobody"
    attempt, problem = 0, None
    while True:
        key = checkpoint_key(decision_id, attempt)
        if emit:
            # one event with a random id, one with an id derived from the checkpoint key
            for kind, event_id in (("random", None), ("keyed", uuid.uuid5(uuid.NAMESPACE_URL, key))):
                ev = emit_event(
                    event="hitl.checkpoint.suspending",
                    resource={"prefect.resource.id": f"hitl.decision.{decision_id}"},
                    payload={"key": key, "kind": kind},
                    id=event_id,
                )
                _rec(trace, "emitted", kind=kind, key=key, id=ev.id if ev else None)
        form = form_cls.with_initial_data(description=_describe(decision_id, ai_value, problem), **prefill)
        t0 = time.time()
        try:
            inp = suspend_flow_run(wait_for_input=form, key=key, timeout=timeout)
        except BaseException as exc:  # Pause is a BaseException (PrefectSignal); re-raised as is
            _rec(trace, "suspend_raised", key=key, exc_type=type(exc).__name__, exc=str(exc)[:300])
            raise
        _rec(trace, "input", key=key, value=inp.model_dump(), seconds=round(time.time() - t0, 4))
        if attempt == 0:
            t1 = time.time()
            again = suspend_flow_run(wait_for_input=form, key=key, timeout=timeout)
            _rec(
                trace,
                "same_key_again",
                key=key,
                equal=again.model_dump() == inp.model_dump(),
                seconds=round(time.time() - t1, 4),
            )
        problem = input_problem(inp, ai_value)
        if problem is None:
            break
        _rec(trace, "invalid_input", key=key, problem=problem)
        attempt += 1
    _rec(trace, "after_checkpoint", key=key)
    out = t_after(trace, decision_id)
    _rec(trace, "flow_end", result=out)
    return out


# --------------------------------------------------------------------------------------------------
# Helpers for the driver
# --------------------------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{datetime.now().strftime('%H:%M:%S')}] {msg}", flush=True)


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def read_trace(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def descendants(pid: int) -> list[dict[str, Any]]:
    """All processes below ``pid`` (from /proc; no psutil)."""
    children: dict[int, list[int]] = {}
    cmd: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            cmd[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode()[:160]
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], list(children.get(pid, []))
    while todo:
        p = todo.pop()
        out.append({"pid": p, "cmd": cmd.get(p, "")})
        todo.extend(children.get(p, []))
    return out


def flow_procs(pid: int) -> list[dict[str, Any]]:
    """Descendants of a runner/worker that are flow-run processes (not multiprocessing's tracker)."""
    return [p for p in descendants(pid) if "resource_tracker" not in p["cmd"]]


def wait_no_flow_procs(pid: int, timeout: float = 120) -> float:
    """Seconds until no flow-run process remains below ``pid``."""
    t0 = time.time()
    while flow_procs(pid) and time.time() - t0 < timeout:
        time.sleep(0.1)
    return round(time.time() - t0, 2)


def state_of(fr: Any) -> dict[str, Any]:
    st = fr.state
    if st is None:
        return {"type": None}
    d = st.state_details
    return {
        "type": st.type.value,
        "name": st.name,
        "message": st.message,
        "pause_key": d.pause_key,
        "pause_timeout": d.pause_timeout.isoformat() if d.pause_timeout else None,
        "pause_reschedule": d.pause_reschedule,
        "run_input_keyset": d.run_input_keyset,
    }


def read_runs(ids: list[uuid.UUID]) -> dict[uuid.UUID, Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with client() as c:
        runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)), limit=200)
    return {r.id: r for r in runs}


def wait_until(ids: list[uuid.UUID], pred, what: str, timeout: float = 180, poll: float = 0.5) -> dict:
    deadline = time.time() + timeout
    while True:
        runs = read_runs(ids)
        if len(runs) == len(ids) and all(pred(r) for r in runs.values()):
            return runs
        if time.time() > deadline:
            states = {str(k): state_of(v)["name"] for k, v in runs.items()}
            raise TimeoutError(f"timed out waiting for {what}: {states}")
        time.sleep(poll)


def is_suspended(fr: Any) -> bool:
    return fr.state is not None and fr.state.type.value == "PAUSED" and fr.state.name == "Suspended"


def is_final(fr: Any) -> bool:
    return fr.state is not None and fr.state.is_final()


def wait_trace(path: Path, event: str, count: int = 1, timeout: float = 120) -> list[dict[str, Any]]:
    deadline = time.time() + timeout
    while True:
        hits = [r for r in read_trace(path) if r["event"] == event]
        if len(hits) >= count:
            return hits
        if time.time() > deadline:
            raise TimeoutError(f"no {count}x {event!r} in {path}")
        time.sleep(0.05)


def valid_input(ai_value: str = "network", reviewer: str = "alice") -> dict[str, Any]:
    return {"decision": "approve", "value": ai_value, "reviewer": reviewer}


def try_resume(run_id: uuid.UUID, run_input: dict[str, Any] | None) -> dict[str, Any]:
    """resume_flow_run, returning what happened instead of raising."""
    from prefect.flow_runs import resume_flow_run

    t0 = time.time()
    try:
        resume_flow_run(run_id, run_input=run_input)
        out: dict[str, Any] = {"ok": True}
    except Exception as exc:
        out = {"ok": False, "exc_type": type(exc).__name__, "message": str(exc)[:400]}
    out["seconds"] = round(time.time() - t0, 3)
    out["state_after"] = state_of(read_runs([run_id])[run_id])["name"]
    return out


def read_input_value(run_id: uuid.UUID, key: str) -> Any:
    with client() as c:
        try:
            raw = c.read_flow_run_input(run_id, key)
        except Exception as exc:  # ObjectNotFound when absent
            return f"<{type(exc).__name__}>"
    return json.loads(raw)


class Served:
    """A ``flow.serve`` runner in a subprocess of this script (stopped on exit)."""

    def __init__(self, ctx: Ctx, deployment: str, extra_env: dict[str, str] | None = None, tag: str = ""):
        self.ctx, self.deployment = ctx, deployment
        env = {**os.environ, "PREFECT_RUNNER_POLL_FREQUENCY": str(ctx.poll), **(extra_env or {})}
        self.log_path = ctx.workdir / f"runner-{deployment}{tag}.log"
        # Never delete the deployment here: runs keep its id, and a run whose deployment was deleted
        # is never picked up again (measured: a resumed run stayed Scheduled/"Resuming" for good).
        previous = self._updated()
        t0 = time.time()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "serve", "--deployment", deployment],
            env=env,
            stdout=self.log_path.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        while True:
            if (now := self._updated()) is not None and now != previous:
                break
            if self.proc.poll() is not None or time.time() - t0 > 120:
                raise RuntimeError(f"runner did not start, see {self.log_path}")
            time.sleep(0.5)
        self.startup_seconds = round(time.time() - t0, 2)
        log(f"runner {deployment}{tag} pid={self.proc.pid} ready in {self.startup_seconds}s")

    def _updated(self) -> Any:
        with client() as c:
            try:
                return c.read_deployment_by_name(f"{FLOW_NAME}/{self.deployment}").updated
            except Exception:  # ObjectNotFound: not registered yet
                return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the runner and its children only
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        log(f"runner {self.deployment} stopped")


class Ctx:
    def __init__(self, workdir: Path, poll: float, timeout_s: int):
        self.workdir, self.poll, self.timeout_s = workdir, poll, timeout_s
        (workdir / "traces").mkdir(parents=True, exist_ok=True)
        self.runner: Served | None = None
        self.no_runner_wait = 25  # > the server's late-runs threshold (15 s by default)
        self.cleanups: list = []

    def served(self) -> Served:
        if self.runner is None:
            self.runner = Served(self, SERVE_DEPLOYMENT)
            self.cleanups.append(self.runner.stop)
        return self.runner

    def trace(self, decision_id: str) -> Path:
        return self.workdir / "traces" / f"{decision_id}.jsonl"

    def start(self, deployment: str, n: int, prefix: str, **params: Any) -> list[tuple[uuid.UUID, str]]:
        from prefect.deployments import run_deployment

        out = []
        for i in range(n):
            did = f"{prefix}-{i}-{uuid.uuid4().hex[:6]}"
            fr = run_deployment(
                f"{FLOW_NAME}/{deployment}",
                parameters={"trace": str(self.trace(did)), "decision_id": did, **params},
                timeout=0,
            )
            out.append((fr.id, did))
        return out

    def close(self) -> None:
        for fn in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                fn()
        with client() as c:
            for dep in (SERVE_DEPLOYMENT, "psem-storage", WORKER_DEPLOYMENT):
                with contextlib.suppress(Exception):
                    c.delete_deployment(c.read_deployment_by_name(f"{FLOW_NAME}/{dep}").id)
            with contextlib.suppress(Exception):
                c.delete_work_pool(WORK_POOL)


def task_counts(trace: Path) -> dict[str, int]:
    return dict(Counter(r["task"] for r in read_trace(trace) if r["event"] == "task_exec"))


def task_run_states(run_id: uuid.UUID) -> list[str]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.client.schemas.sorting import TaskRunSort

    with client() as c:
        trs = c.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run_id])),
            sort=TaskRunSort.EXPECTED_START_TIME_ASC,
        )
    return [f"{tr.name}: {tr.state.type.value}/{tr.state.name}" for tr in trs]


# --------------------------------------------------------------------------------------------------
# Experiments
# --------------------------------------------------------------------------------------------------


def exp_suspend(ctx: Ctx) -> dict[str, Any]:
    """1. State while waiting, processes per waiting run, timeout expiry, late resume."""
    runner = ctx.served()
    n_wait = 3
    before = descendants(runner.proc.pid)
    started = ctx.start(SERVE_DEPLOYMENT, n_wait, "susp")
    timed = ctx.start(SERVE_DEPLOYMENT, 1, "tmo", timeout=ctx.timeout_s)
    ids = [r for r, _ in started + timed]
    runs = wait_until(ids, is_suspended, "suspension")
    at_suspended = flow_procs(runner.proc.pid)
    gone_after = wait_no_flow_procs(runner.proc.pid)
    time.sleep(2)
    during = descendants(runner.proc.pid)
    res: dict[str, Any] = {
        "state_while_waiting": state_of(runs[ids[0]]),
        "runner_descendants_idle": len(before),
        "flow_processes_when_all_4_reported_suspended": len(at_suspended),
        "seconds_until_no_flow_process": gone_after,
        "runner_descendants_with_4_waiting_runs": len(during),
        "descendant_cmds": [p["cmd"] for p in during],
        "trace_first_run": [
            {k: v for k, v in r.items() if k in ("event", "key", "exc_type", "task")}
            for r in read_trace(ctx.trace(started[0][1]))
        ],
    }
    # timeout expiry
    tid, tdid = timed[0]
    fr = runs[tid]
    expiry = fr.state.state_details.pause_timeout
    res["timeout_seconds"] = ctx.timeout_s
    res["pause_timeout"] = expiry.isoformat()
    observations = []
    end = expiry + timedelta(seconds=35)
    last = None
    while datetime.now(UTC) < end:
        st = state_of(read_runs([tid])[tid])
        cur = (st["type"], st["name"], st["message"])
        if cur != last:
            rel = (datetime.now(UTC) - expiry).total_seconds()
            observations.append(
                {"seconds_after_expiry": round(rel, 1), "type": cur[0], "name": cur[1], "message": cur[2]}
            )
            last = cur
        time.sleep(1)
    res["timeout_state_changes"] = observations
    with client() as c:
        hist = c.read_flow_run_states(tid)
    res["timeout_state_history"] = [
        f"{s.timestamp.isoformat()} {s.type.value}/{s.name}: {s.message or ''}" for s in hist
    ]
    tr = read_trace(ctx.trace(tdid))
    res["timeout_trace_events"] = [r["event"] for r in tr]
    i_susp = max(i for i, r in enumerate(tr) if r["event"] == "suspend_raised")
    res["flow_code_ran_after_suspension"] = [r["event"] for r in tr[i_susp + 1 :]]  # hooks would show here
    res["late_resume"] = try_resume(tid, valid_input())
    time.sleep(max(3.0, 3 * ctx.poll))
    res["timeout_trace_events_after_late_resume"] = [r["event"] for r in read_trace(ctx.trace(tdid))]
    res["timeout_final_state"] = state_of(read_runs([tid])[tid])["name"]
    # clean up the waiting runs
    for rid, _ in started:
        try_resume(rid, valid_input())
    wait_until([r for r, _ in started], is_final, "completion")
    res["resumed_runs_final"] = [state_of(v)["name"] for v in read_runs([r for r, _ in started]).values()]
    return res


def exp_caching(ctx: Ctx) -> dict[str, Any]:
    """2. Which tasks re-execute on the re-run after resume (default / INPUTS / NO_CACHE)."""
    ctx.served()
    [(rid, did)] = ctx.start(SERVE_DEPLOYMENT, 1, "cache")
    wait_until([rid], is_suspended, "suspension")
    before = task_counts(ctx.trace(did))
    try_resume(rid, valid_input())
    runs = wait_until([rid], is_final, "completion")
    from prefect.settings import PREFECT_HOME, PREFECT_LOCAL_STORAGE_PATH

    storage = Path(os.environ.get("PREFECT_LOCAL_STORAGE_PATH") or PREFECT_LOCAL_STORAGE_PATH.value())
    tr = read_trace(ctx.trace(did))
    after_first = task_counts(ctx.trace(did))
    # a second, separate flow run with the very same parameters (same ticket processed again)
    from prefect.deployments import run_deployment

    fr2 = run_deployment(
        f"{FLOW_NAME}/{SERVE_DEPLOYMENT}",
        parameters={"trace": str(ctx.trace(did)), "decision_id": did},
        timeout=0,
    )
    wait_until([fr2.id], is_suspended, "suspension of the second run")
    second_run = {k: v - after_first.get(k, 0) for k, v in task_counts(ctx.trace(did)).items()}
    try_resume(fr2.id, valid_input())
    wait_until([fr2.id], is_final, "completion of the second run")
    return {
        "second_flow_run_same_params_task_execs_before_checkpoint": second_run,
        "final_state": state_of(runs[rid])["name"],
        "flow_starts": [r["pid"] for r in tr if r["event"] == "flow_start"],
        "task_execs_before_resume": before,
        "task_execs_total": task_counts(ctx.trace(did)),
        "task_run_states_api": task_run_states(rid),
        "stage1_results_each_run": [r["results"] for r in tr if r["event"] == "stage1_done"],
        "prefect_home": str(PREFECT_HOME.value()),
        "local_storage_path": str(storage),
        "storage_files": len(list(storage.glob("*"))) if storage.exists() else 0,
    }


def exp_storage(ctx: Ctx) -> dict[str, Any]:
    """2b. Does a second runner process see persisted results (same path / another path)?"""
    out: dict[str, Any] = {}
    for label, path_b in (("same-storage-path", "storage-a"), ("other-storage-path", "storage-b")):
        env_a = {"PREFECT_LOCAL_STORAGE_PATH": str(ctx.workdir / "storage-a")}
        env_b = {"PREFECT_LOCAL_STORAGE_PATH": str(ctx.workdir / path_b)}
        r1 = Served(ctx, "psem-storage", env_a, tag="-1")
        try:
            [(rid, did)] = ctx.start("psem-storage", 1, f"stor-{label}")
            wait_until([rid], is_suspended, "suspension")
            # SIGTERM while the suspended run's process is still exiting cancels the run: wait for it
            wait_no_flow_procs(r1.proc.pid)
        finally:
            r1.stop()
        # resume while no runner is up: the run waits in Scheduled/Resuming (then Late) for a runner
        resumed = try_resume(rid, valid_input())
        time.sleep(ctx.no_runner_wait)
        while_down = state_of(read_runs([rid])[rid])
        r2 = Served(ctx, "psem-storage", env_b, tag="-2")
        try:
            runs = wait_until([rid], is_final, "completion")
        finally:
            r2.stop()
        tr = read_trace(ctx.trace(did))
        out[label] = {
            "runner1_storage": env_a["PREFECT_LOCAL_STORAGE_PATH"],
            "runner2_storage": env_b["PREFECT_LOCAL_STORAGE_PATH"],
            "resume_with_no_runner": resumed,
            f"state_{ctx.no_runner_wait}s_after_resume_with_no_runner": [
                while_down["type"],
                while_down["name"],
            ],
            "flow_start_pids": [r["pid"] for r in tr if r["event"] == "flow_start"],
            "task_execs_total": task_counts(ctx.trace(did)),
            "final_state": state_of(runs[rid])["name"],
            "files_in_storage_a": sorted(p.name for p in (ctx.workdir / "storage-a").glob("*"))[:12],
        }
    return out


def exp_keys(ctx: Ctx) -> dict[str, Any]:
    """3. Same key returns the stored input; a new key suspends again with a new description."""
    ctx.served()
    [(rid, did)] = ctx.start(SERVE_DEPLOYMENT, 1, "keys")
    runs = wait_until([rid], is_suspended, "first suspension")
    s1 = state_of(runs[rid])
    desc1 = read_input_value(rid, s1["run_input_keyset"]["description"])
    bad = {"decision": "approve", "value": "hardware", "reviewer": "bob"}  # changed value, not override
    r_bad = try_resume(rid, bad)
    wait_trace(ctx.trace(did), "suspend_raised", count=2)
    runs = wait_until([rid], is_suspended, "second suspension")
    s2 = state_of(runs[rid])
    desc2 = read_input_value(rid, s2["run_input_keyset"]["description"])
    old_desc_still_there = read_input_value(rid, s1["run_input_keyset"]["description"])
    old_response = read_input_value(rid, s1["run_input_keyset"]["response"])
    good = {"decision": "override", "value": "hardware", "reason_code": "wrong_category", "reviewer": "bob"}
    r_good = try_resume(rid, good)
    runs = wait_until([rid], is_final, "completion")
    tr = read_trace(ctx.trace(did))
    # a key outside [a-z0-9-]: the state becomes Suspended, then saving the form fails in the flow
    [(rb, db)] = ctx.start(SERVE_DEPLOYMENT, 1, "Bad_Key")
    wait_trace(ctx.trace(db), "suspend_raised")
    wait_no_flow_procs(ctx.served().proc.pid)
    time.sleep(1)
    bad_key = {
        "decision_id": db,
        "state": state_of(read_runs([rb])[rb]),
        "flow_saw": [
            {k: v for k, v in r.items() if k in ("exc_type", "exc")}
            for r in read_trace(ctx.trace(db))
            if r["event"] == "suspend_raised"
        ],
        "resume": try_resume(rb, valid_input()),
    }
    from prefect.states import Cancelled

    with client() as c:  # it can never be resumed: clean up
        c.set_flow_run_state(rb, Cancelled(message="prefect_semantics: unresumable (bad key)"), force=True)
    return {
        "invalid_key": bad_key,
        "first_state": s1,
        "first_description": desc1,
        "resume_inconsistent": r_bad,
        "second_state": s2,
        "second_description": desc2,
        "first_keyset_description_after_resuspend": old_desc_still_there,
        "first_keyset_response_after_resuspend": old_response,
        "resume_consistent": r_good,
        "final_state": state_of(runs[rid])["name"],
        "trace": [
            {k: v for k, v in r.items() if k in ("event", "key", "seconds", "equal", "problem", "task")}
            | ({"value": r["value"]["decision"] + "/" + r["value"]["value"]} if r["event"] == "input" else {})
            for r in tr
        ],
    }


def exp_resume(ctx: Ctx) -> dict[str, Any]:
    """4. resume_flow_run with bad input, twice, concurrently, empty, and with a pydantic validator."""
    ctx.served()
    plain = ctx.start(SERVE_DEPLOYMENT, 2 + N_CONCURRENT_PUBLIC + N_CONCURRENT_RAW, "res")
    prefilled = ctx.start(SERVE_DEPLOYMENT, 1, "res-prefilled", prefill_reviewer=True)
    strict = ctx.start(SERVE_DEPLOYMENT, 1, "res-strict", strict_model=True)
    ids = [r for r, _ in plain + prefilled + strict]
    wait_until(ids, is_suspended, "suspension")
    (r1, d1), (r2, d2) = plain[0], plain[1]
    res: dict[str, Any] = {}
    res["b_value_outside_literal"] = try_resume(r1, {**valid_input(), "decision": "maybe"})
    res["c_missing_required_field"] = try_resume(r1, {"decision": "approve", "value": "network"})
    res["c2_no_input_at_all"] = try_resume(r1, None)
    res["d_extra_field"] = try_resume(r1, {**valid_input(), "bogus": 1})
    if not res["d_extra_field"]["ok"]:
        try_resume(r1, valid_input())  # do not leave it waiting
    wait_until([r1], is_final, "completion")
    res["input_seen_by_flow_after_rejected_attempts"] = [
        r["value"] for r in read_trace(ctx.trace(d1)) if r["event"] == "input"
    ]
    res["a_valid"] = try_resume(r2, valid_input())
    res["second_resume_right_after"] = try_resume(r2, valid_input(reviewer="carol"))
    wait_until([r2], is_final, "completion")
    res["third_resume_after_completion"] = try_resume(r2, valid_input(reviewer="dave"))
    res["a_input_seen_by_flow"] = [
        r["value"]["reviewer"] for r in read_trace(ctx.trace(d2)) if r["event"] == "input"
    ]
    # concurrent resumes: two threads released by a barrier, different reviewers
    trials = []
    # first trials: the public resume_flow_run (what a CLI would call); last trials: the raw client
    # call, to see the server's answer (ACCEPT / REJECT / ABORT) to the losing request.
    for i, (rid, did) in enumerate(plain[2:]):
        barrier = threading.Barrier(2)
        outcome: dict[str, Any] = {}
        raw = i >= N_CONCURRENT_PUBLIC

        def go(who: str, rid=rid, barrier=barrier, outcome=outcome, raw=raw) -> None:
            if raw:
                with client() as c:
                    barrier.wait()
                    r = c.resume_flow_run(rid, run_input=valid_input(reviewer=who))
                outcome[who] = {"ok": r.status.value, "message": getattr(r.details, "reason", None)}
            else:
                barrier.wait()
                outcome[who] = try_resume(rid, valid_input(reviewer=who))

        threads = [threading.Thread(target=go, args=(w,)) for w in ("t1", "t2")]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wait_until([rid], is_final, "completion")
        with client() as c:
            hist = c.read_flow_run_states(rid)
        trials.append(
            {
                "call": "client.resume_flow_run (raw)" if raw else "prefect.flow_runs.resume_flow_run",
                "outcomes": {
                    w: {k: o[k] for k in ("ok", "exc_type", "message") if k in o} for w, o in outcome.items()
                },
                "reviewers_seen_by_flow": [
                    r["value"]["reviewer"] for r in read_trace(ctx.trace(did)) if r["event"] == "input"
                ],
                "resuming_states": sum(1 for s in hist if s.name == "Resuming"),
            }
        )
    res["concurrent_two_threads"] = trials
    # empty resume when every field is prefilled
    (rp, dp) = prefilled[0]
    res["empty_resume_all_prefilled"] = try_resume(rp, None)
    wait_until([rp], is_final, "completion")
    res["empty_resume_input_seen_by_flow"] = [
        r["value"] for r in read_trace(ctx.trace(dp)) if r["event"] == "input"
    ]
    # pydantic model_validator on the RunInput: the server checks only the JSON schema
    (rs, ds) = strict[0]
    res["strict_resume_inconsistent"] = try_resume(
        rs, {"decision": "override", "value": "x", "reviewer": "eve"}
    )
    runs = wait_until([rs], is_final, "completion")
    res["strict_final_state"] = state_of(runs[rs])
    res["strict_trace"] = [
        {k: v for k, v in r.items() if k in ("event", "exc_type", "exc", "state_name", "message")}
        for r in read_trace(ctx.trace(ds))
    ]
    return res


def exp_listing(ctx: Ctx) -> dict[str, Any]:
    """5. The queue of waiting runs: filter by state, then read each keyset (schema + description)."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.client.schemas.sorting import FlowRunSort

    ctx.served()
    started = ctx.start(SERVE_DEPLOYMENT, 2, "list")
    ids = [r for r, _ in started]
    wait_until(ids, is_suspended, "suspension")
    t0 = time.time()
    with client() as c:
        waiting = c.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.PAUSED]),
                    name=FlowRunFilterStateName(any_=["Suspended"]),
                )
            ),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[SERVE_DEPLOYMENT])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=200,
        )
        queue = []
        for fr in waiting:
            ks = fr.state.state_details.run_input_keyset or {}
            schema = json.loads(c.read_flow_run_input(fr.id, ks["schema"])) if ks else None
            desc = json.loads(c.read_flow_run_input(fr.id, ks["description"])) if ks else None
            queue.append(
                {
                    "flow_run": fr.name,
                    "decision_id": fr.parameters.get("decision_id"),
                    "pause_key": fr.state.state_details.pause_key,
                    "pause_timeout": str(fr.state.state_details.pause_timeout),
                    "keyset": ks,
                    "schema_required": schema.get("required") if schema else None,
                    "description": desc,
                }
            )
    elapsed = round(time.time() - t0, 3)
    ours = [q for q in queue if q["decision_id"] in {d for _, d in started}]
    for rid, _ in started:
        try_resume(rid, valid_input())
    wait_until(ids, is_final, "completion")
    return {"seconds_to_list_and_read": elapsed, "n_waiting_listed": len(queue), "ours": ours}


def exp_latency(ctx: Ctx, n: int = 10) -> dict[str, Any]:
    """6. Resume -> first line after the checkpoint, and where the time goes (state timestamps)."""
    runner = ctx.served()
    return _latency(ctx, SERVE_DEPLOYMENT, n, "lat", runner_pid=runner.proc.pid)


def _latency(ctx: Ctx, deployment: str, n: int, prefix: str, runner_pid: int | None = None) -> dict[str, Any]:
    started = ctx.start(deployment, n, prefix)
    ids = [r for r, _ in started]
    t_start = time.time()
    wait_until(ids, is_suspended, "suspension", timeout=600)
    all_suspended = round(time.time() - t_start, 1)
    procs = len(flow_procs(runner_pid)) if runner_pid else None
    procs_gone = wait_no_flow_procs(runner_pid) if runner_pid else None
    rows = []
    for rid, did in started:
        t0 = time.time()
        try_resume(rid, valid_input())
        after = wait_trace(ctx.trace(did), "after_checkpoint")[0]["t"]
        wait_until([rid], is_final, "completion")
        with client() as c:
            hist = c.read_flow_run_states(rid)
        ts = {}
        for s in hist:
            if s.name == "Resuming":
                ts["resuming"] = s.timestamp.timestamp()
            elif "resuming" in ts and s.type.value == "PENDING" and "pending" not in ts:
                ts["pending"] = s.timestamp.timestamp()
            elif "pending" in ts and s.type.value == "RUNNING" and "running" not in ts:
                ts["running"] = s.timestamp.timestamp()
        starts = [r["t"] for r in read_trace(ctx.trace(did)) if r["event"] == "flow_start"]
        rows.append(
            {
                "resume_to_next_stage": after - t0,
                "resume_call_to_scheduled": ts["resuming"] - t0,
                "scheduled_to_pending(poll)": ts["pending"] - ts["resuming"],
                "pending_to_running(process start)": ts["running"] - ts["pending"],
                "running_to_flow_body": starts[-1] - ts["running"],
                "flow_body_to_next_stage(replay)": after - starts[-1],
            }
        )
    keys = list(rows[0])
    return {
        "n": n,
        "seconds_until_all_suspended": all_suspended,
        "flow_processes_when_all_reported_suspended": procs,
        "seconds_until_no_flow_process": procs_gone,
        "p50": {k: round(statistics.median(r[k] for r in rows), 3) for k in keys},
        "max": {k: round(max(r[k] for r in rows), 3) for k in keys},
        "min": {k: round(min(r[k] for r in rows), 3) for k in keys},
    }


def exp_events(ctx: Ctx) -> dict[str, Any]:
    """7. emit_event inside the flow, read back with the events filter; re-emission on re-runs."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter, EventResourceFilter

    ctx.served()
    [(rid, did)] = ctx.start(SERVE_DEPLOYMENT, 1, "ev", emit=True)
    wait_until([rid], is_suspended, "suspension")
    emitted = wait_trace(ctx.trace(did), "emitted", count=2)

    def flt() -> EventFilter:  # build it per query: `occurred.until` defaults to "now" at construction
        return EventFilter(
            occurred=EventOccurredFilter(since=datetime.now(UTC) - timedelta(hours=1)),
            event=EventNameFilter(name=["hitl.checkpoint.suspending"]),
            resource=EventResourceFilter(id=[f"hitl.decision.{did}"]),
        )

    t_emit = max(e["t"] for e in emitted)
    visible_after = None
    while time.time() - t_emit < 60:
        with client() as c:
            page = c.read_events(filter=flt(), limit=50)
        if len(page.events) >= 2:
            visible_after = round(time.time() - t_emit, 2)
            break
        time.sleep(0.25)
    first = [
        {
            "event": e.event,
            "id": str(e.id),
            "resource": e.resource.id,
            "payload": e.payload,
            "related_roles": sorted({r.role for r in e.related}),
        }
        for e in page.events
    ]
    # inconsistent, then consistent: the flow re-runs twice more and re-emits before each suspend call
    try_resume(rid, {"decision": "approve", "value": "hardware", "reviewer": "bob"})
    wait_trace(ctx.trace(did), "suspend_raised", count=2)
    wait_until([rid], is_suspended, "second suspension")
    try_resume(rid, {"decision": "override", "value": "hardware", "reason_code": "other", "reviewer": "bob"})
    wait_until([rid], is_final, "completion")
    time.sleep(5)
    with client() as c:
        page = c.read_events(filter=flt(), limit=50)
    tr = read_trace(ctx.trace(did))
    stored = Counter(e.payload.get("kind") for e in page.events)
    return {
        "seconds_until_visible": visible_after,
        "events_after_first_suspend": first,
        "emit_calls": dict(Counter(r["kind"] for r in tr if r["event"] == "emitted")),
        "stored_events_by_kind": dict(stored),
        "distinct_ids_keyed": len({str(e.id) for e in page.events if e.payload.get("kind") == "keyed"}),
    }


def exp_schema(ctx: Ctx) -> dict[str, Any]:
    """8. The JSON schema the UI renders: Literal, str | None, defaults, with_initial_data prefill."""
    from prefect._internal.pydantic.v2_schema import create_v2_schema

    form = Triage.with_initial_data(description="x", decision="approve", value="network")
    local_plain = create_v2_schema(Triage.__name__, model_base=Triage)
    local_prefilled = create_v2_schema(form.__name__, model_base=form)
    ctx.served()
    [(rid, _)] = ctx.start(SERVE_DEPLOYMENT, 1, "schema")
    runs = wait_until([rid], is_suspended, "suspension")
    ks = runs[rid].state.state_details.run_input_keyset
    server_schema = read_input_value(rid, ks["schema"])
    try_resume(rid, valid_input())
    wait_until([rid], is_final, "completion")
    return {
        "schema_without_prefill": local_plain,
        "schema_with_initial_data": local_prefilled,
        "server_copy_equals_local": server_schema == local_prefilled,
    }


def exp_worker(ctx: Ctx, n: int = 5) -> dict[str, Any]:
    """1/2/6 again with a process work pool + ``prefect worker start`` + ``from_source().deploy()``."""
    from prefect.client.schemas.actions import WorkPoolCreate

    with client() as c:
        with contextlib.suppress(Exception):
            c.delete_work_pool(WORK_POOL)
        c.create_work_pool(WorkPoolCreate(name=WORK_POOL, type="process"))
    dep_id = lifecycle_probe.from_source(
        source=str(HERE.parent), entrypoint=f"{HERE.name}:lifecycle_probe"
    ).deploy(
        name=WORKER_DEPLOYMENT,
        work_pool_name=WORK_POOL,
        build=False,
        push=False,
        print_next_steps=False,
        ignore_warnings=True,
    )
    env = {
        **os.environ,
        "PREFECT_WORKER_QUERY_SECONDS": str(ctx.poll),
        "PREFECT_WORKER_PREFETCH_SECONDS": "10",
    }
    log_path = ctx.workdir / "worker.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", WORK_POOL, "--type", "process"],
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop() -> None:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)

    ctx.cleanups.append(stop)
    try:
        time.sleep(3)
        lat = _latency(ctx, WORKER_DEPLOYMENT, n, "wrk", runner_pid=proc.pid)
        traces = sorted((ctx.workdir / "traces").glob("wrk-*.jsonl"))[-n:]
        execs = [task_counts(p) for p in traces]
        return {
            "deployment_id": str(dep_id),
            "latency": lat,
            "task_execs_per_run": execs,
            "worker_log_tail": log_path.read_text().splitlines()[-5:],
        }
    finally:
        stop()


def exp_shutdown(ctx: Ctx) -> dict[str, Any]:
    """1b. Stopping a runner right after a suspend; deleting the deployment of a waiting run."""
    from prefect.states import Cancelled

    out: dict[str, Any] = {}
    # (a) SIGTERM to the runner as soon as the API says Suspended (its process is still exiting)
    r1 = Served(ctx, "psem-storage", tag="-shutdown")
    [(ra, _da)] = ctx.start("psem-storage", 1, "stop-early")
    wait_until([ra], is_suspended, "suspension", poll=0.05)
    out["flow_processes_at_suspended"] = len(flow_procs(r1.proc.pid))
    r1.stop()
    out["sigterm_right_after_suspend"] = {"state_after_runner_stop": state_of(read_runs([ra])[ra])["name"]}
    # (b) a waiting run whose deployment is deleted and re-created (new id) by the next runner
    r2 = Served(ctx, "psem-storage", tag="-orphan")
    [(rb, db)] = ctx.start("psem-storage", 1, "orphan")
    wait_until([rb], is_suspended, "suspension")
    wait_no_flow_procs(r2.proc.pid)
    r2.stop()
    with client() as c:
        c.delete_deployment(c.read_deployment_by_name(f"{FLOW_NAME}/psem-storage").id)
    after_delete = state_of(read_runs([rb])[rb])["name"]
    resumed = try_resume(rb, valid_input())
    r3 = Served(ctx, "psem-storage", tag="-orphan2")
    time.sleep(20)
    fr = read_runs([rb])[rb]
    out["deployment_deleted_while_waiting"] = {
        "state_after_delete": after_delete,
        "deployment_id_after_delete": str(fr.deployment_id),
        "resume": resumed,
        "state_20s_after_new_runner_started": state_of(fr)["name"],
        "flow_starts": len([r for r in read_trace(ctx.trace(db)) if r["event"] == "flow_start"]),
    }
    r3.stop()
    with client() as c:  # clean up the orphan
        c.set_flow_run_state(
            rb, Cancelled(message="prefect_semantics: orphaned by deployment delete"), force=True
        )
    return out


EXPERIMENTS = {
    "schema": exp_schema,
    "suspend": exp_suspend,
    "caching": exp_caching,
    "keys": exp_keys,
    "resume": exp_resume,
    "listing": exp_listing,
    "events": exp_events,
    "latency": exp_latency,
    "storage": exp_storage,
    "shutdown": exp_shutdown,
    "worker": exp_worker,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("experiments", nargs="*", default=["all"], help="experiment names, or 'all'")
    ap.add_argument("--list", action="store_true", help="list the experiments and exit")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/prefect-semantics"))
    ap.add_argument("--poll", type=float, default=1.0, help="PREFECT_RUNNER_POLL_FREQUENCY for the runner")
    ap.add_argument("--timeout", type=int, default=20, help="suspend timeout (s) in the 'suspend' experiment")
    ap.add_argument("--deployment", default=SERVE_DEPLOYMENT, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.experiments == ["serve"]:  # internal: the runner subprocess
        lifecycle_probe.serve(name=args.deployment, print_starting_message=False)
        return 0
    if args.list:
        for name, fn in EXPERIMENTS.items():
            print(f"{name:9s} {fn.__doc__.splitlines()[0]}")
        return 0
    if not os.environ.get("PREFECT_API_URL"):
        sys.exit("PREFECT_API_URL is not set: start a server (see the module docstring) and export it.")
    names = list(EXPERIMENTS) if args.experiments == ["all"] else args.experiments
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        sys.exit(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")

    import prefect

    ctx = Ctx(args.workdir, args.poll, args.timeout)
    try:
        for name in names:
            log(f"=== {name}")
            t0 = time.time()
            result = {"prefect": prefect.__version__, "experiment": name, **EXPERIMENTS[name](ctx)}
            result["wall_seconds"] = round(time.time() - t0, 1)
            text = json.dumps(result, indent=2, default=str)
            (args.workdir / f"results-{name}.json").write_text(text)
            print(text, flush=True)
    finally:
        ctx.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
