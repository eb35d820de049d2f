"""Fault test (issue #7): the worker machine dies in the middle of a remediation, and comes back.

The setup is docs/scale-out.md's on one machine: a Prefect server of its own (scheduler on, so
checkpoint-timeouts runs every minute as in production), the deployments on a process work pool
(`hitl deploy --work-pool`), one `hitl worker`, the application database on PostgreSQL, and a real
RMM stand-in on 127.0.0.1. Two tickets are taken through an autonomous webhook runbook:

* ticket A's action is in flight: its execution row is committed "running" and the RMM holds
  its HTTP request open;
* ticket B's run is in the middle of remediation too, but its execution row is not committed yet
  (its INSERT waits on a row this test holds uncommitted under the same idempotency key).

Then the worker and every flow process it started get SIGKILL at once (SIGSTOP first, so nothing
runs in between): the machine is gone, Prefect still shows both runs Running. The worker is
restarted and nobody touches anything: the sweeper notices the missing heartbeats, marks both runs
Crashed and recovers the tickets. A's action is never sent again: its result is unknown and the
ticket waits in the escalation queue; B gets a fresh run that executes its action once and
finishes. The RMM received exactly one request per ticket, and `hitl audit verify` passes.
PostgreSQL only (the worker setup needs it): skipped without HITL_TEST_DATABASE_URL, a failure
under CI=true.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select, text

from hitl.demo import generate_tickets
from hitl.ml import service
from hitl.ml.dataset import LabelledSet, label_of, ticket_text
from hitl.ml.pipelines import PipelineSpec
from hitl.ml.training import train
from hitl.models import TicketRecord
from hitl.remediation.idempotency import idempotency_key
from hitl.settings import get_settings
from hitl.store import db as db_module
from hitl.store.db import Database
from hitl.store.orm import ActionExecution, AuditEvent, Decision, OutboxMessage, Ticket, utcnow
from policies.runbooks import load_runbook_catalog, validate_parameters

from .lifecycle_stack import set_policy
from .support import ROOT, free_port
from .test_lifecycle_engine import ingest
from .test_scale_out import clean_env, flow_run_processes, stop_process, tail, wait_for

pytestmark = pytest.mark.postgres

POOL = "hitl-kill-test"
WORKER = "kill-test"
HEARTBEAT_S = 30  # Prefect's minimum: the sweeper declares a run dead after 3 missed beats (90 s)
RUNBOOK_ID = "restart-rmm-agent"
RUNBOOK = f"""\
id: {RUNBOOK_ID}
title: Restart the RMM agent of one device
description: Restarts the RMM agent service of one managed device through the RMM's API.
risk: low
blast_radius: 1
match:
  keywords: [rmm agent, offline, not reporting]
parameters:
  - name: host
    type: hostname
    required: true
    extract:
      - '\\b((?:LT|WS)-\\d{{4}})\\b'
executor: webhook
steps:
  - name: restart the agent
    method: POST
    path: /rmm/devices/{{host}}/agent/restart
    json:
      host: '{{host}}'
dry_run:
  - Restart the RMM agent on {{host}}.
"""
LENIENT = {"threshold": 0.0, "audit_rate": 0.0, "autonomous_values": None}
HOST_A, HOST_B = "WS-0412", "WS-0413"  # A: the action in flight; B: its row not committed yet
LIFECYCLE = "ticket-lifecycle"
SWEEPER = "checkpoint-timeouts"


class HoldingRmm:
    """The RMM stand-in: a real HTTP server that records every request and answers 200; for `hold`
    paths it sends the answer one byte every 2 s until released, so the caller stays inside its
    HTTP request (the machine dies meanwhile) without hitting its read timeout."""

    def __init__(self, hold: set[str]) -> None:
        self.requests: list[dict[str, Any]] = []
        self.held = threading.Event()
        self.release = threading.Event()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                outer.requests.append(
                    {
                        "path": self.path,
                        "key": self.headers.get("Idempotency-Key"),
                        "body": json.loads(self.rfile.read(length) or b"{}"),
                    }
                )
                if self.path in hold:  # answer so slowly that the caller's read timeout never fires
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", "1000000")
                    self.end_headers()
                    outer.held.set()
                    with suppress(OSError):  # the caller dies meanwhile
                        while not outer.release.wait(2):
                            self.wfile.write(b" ")
                            self.wfile.flush()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self) -> list[str]:
        return [r["path"] for r in self.requests]

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()


def agent_path(host: str) -> str:
    return f"/rmm/devices/{host}/agent/restart"


@dataclass
class Machine:
    api: str
    http: httpx.Client
    db: Database
    pg_url: str
    rmm: HoldingRmm
    worker_env: dict[str, str]
    ops_env: dict[str, str]
    logs: Path
    worker: subprocess.Popen[bytes] | None = None
    generation: int = 0
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def worker_log(self) -> Path:
        return self.logs / f"worker-{self.generation}.log"

    def start_worker(self) -> None:
        self.generation += 1
        command = [
            sys.executable,
            "-m",
            "hitl.cli",
            "worker",
            "--pool",
            POOL,
            "--name",
            WORKER,
            "--limit",
            "4",
        ]
        with self.worker_log.open("wb") as log:
            self.worker = subprocess.Popen(
                command,
                cwd=ROOT,
                env=self.worker_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_worker(self) -> None:
        def started() -> bool:
            assert self.worker is not None and self.worker.poll() is None, tail(self.worker_log)
            return f"Worker '{WORKER}' started" in self.worker_log.read_text(errors="replace")

        wait_for(started, 120, f"the worker to start (log {self.worker_log})")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hitl.cli", *args],
            cwd=ROOT,
            env=self.ops_env,
            capture_output=True,
            text=True,
            timeout=180,
        )

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/flow_runs/{run_id}").json())

    def runs(self, deployment: str, **flow_runs: Any) -> list[dict[str, Any]]:
        body = {"deployments": {"name": {"any_": [deployment]}}, "flow_runs": flow_runs, "limit": 200}
        response = self.http.post("/flow_runs/filter", json=body)
        assert response.status_code == 200, response.text[:300]
        return list(response.json())

    def lifecycle_runs(self, ticket_id: int) -> list[dict[str, Any]]:
        runs = self.runs(LIFECYCLE, tags={"all_": [f"ticket-{ticket_id}"]})
        return sorted(runs, key=lambda r: r["created"])


# ---------------------------------------------------------------- fixture
@contextmanager
def prefect_server(tmp: Path) -> Iterator[str]:
    """`prefect server start` of this test, scheduler on (checkpoint-timeouts every minute)."""
    home = tmp / "server-home"
    home.mkdir()
    port = free_port()
    env = {
        **clean_env(),
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
    }
    log = tmp / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("prefect")),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{port}/api"

    def healthy() -> bool:
        assert process.poll() is None, f"the Prefect server exited:\n{tail(log)}"
        try:
            return httpx.get(f"{api}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 180, f"the Prefect server (log {log})")
        yield api
    finally:
        stop_process(process)


def _train_category(db: Database) -> None:
    records = generate_tickets(count=600, seed=11)
    data = LabelledSet(description="demo")
    for record in records:
        data.texts.append(ticket_text(record.subject, record.body))
        data.labels.append(label_of(record, "category") or "")
    result = train(data, "category", cv_folds=0, spec=PipelineSpec(char_ngram=None))
    with db.session() as session:
        service.register(
            session, get_settings().effective_models_dir, result, data, "category", make_active=True
        )


@pytest.fixture
def machine(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Machine]:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / f"{RUNBOOK_ID}.yaml").write_text(RUNBOOK)
    rmm = HoldingRmm(hold={agent_path(HOST_A)})
    hitl = {
        "HITL_DATABASE_URL": pg_url,
        "HITL_TRIAGE_HEADS": "category",
        "HITL_MODELS_DIR": str(tmp_path / "models"),
        "HITL_RUNBOOKS_DIR": str(runbooks),
        "HITL_RMM_WEBHOOK_URL": rmm.url,
        "HITL_WORK_POOL": POOL,
    }
    for key, value in {**hitl, "HITL_HOME": str(tmp_path / "test-var")}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    db = db_module.get_database(get_settings())
    with ExitStack() as stack:  # on exit, in reverse: the worker, the server, the RMM, the engine
        stack.callback(db_module._databases.clear)
        stack.callback(db.dispose)
        stack.callback(get_settings.cache_clear)
        stack.callback(rmm.close)
        started = time.monotonic()
        api = stack.enter_context(prefect_server(tmp_path))
        monkeypatch.setenv("PREFECT_API_URL", api)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api}))
        base = {**clean_env(), **hitl, "PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        worker_env = {
            **base,
            "HITL_HOME": str(tmp_path / "worker" / "var"),
            "PREFECT_HOME": str(tmp_path / "worker" / "prefect"),
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_S),
        }
        ops_env = {
            **base,
            "HITL_HOME": str(tmp_path / "ops" / "var"),
            "PREFECT_HOME": str(tmp_path / "ops" / "prefect"),
        }
        http = stack.enter_context(httpx.Client(base_url=api, timeout=30))
        box = Machine(api, http, db, pg_url, rmm, worker_env, ops_env, tmp_path)
        box.figures["server_start_s"] = round(time.monotonic() - started, 1)
        stack.callback(lambda: print("\nworker-kill figures: " + json.dumps(box.figures, sort_keys=True)))
        stack.callback(lambda: box.worker is not None and stop_process(box.worker))
        _train_category(db)
        set_policy(
            db,
            triage=LENIENT,
            escalation=LENIENT,
            reply=LENIENT,
            remediation={**LENIENT, "autonomous_values": [RUNBOOK_ID]},
        )
        yield box


# ---------------------------------------------------------------- helpers
def _descendants(root: int) -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        children = [child for child, parent in parents.items() if parent == pid and child not in found]
        found.update(children)
        frontier.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def kill_machine(worker: subprocess.Popen[bytes], run_ids: set[str]) -> list[int]:
    """The machine dies: the worker and every flow process (each in a session of its own) are
    stopped first, so none acts in between, then SIGKILLed."""
    stopped: set[int] = set()
    while True:
        pids = _descendants(worker.pid) | {p for ps in flow_run_processes(run_ids).values() for p in ps}
        new = pids - stopped
        if not new:
            break
        for pid in new:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        stopped |= new
    for pid in stopped:
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    worker.wait(timeout=30)
    wait_for(lambda: not any(_alive(p) for p in stopped), 30, "the killed processes to be gone")
    return sorted(stopped)


def _blocked_inserts(pg_url: str) -> int:
    """Backends of this schema waiting for a lock on an INSERT into action_executions."""
    engine = create_engine(pg_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND query ILIKE 'INSERT INTO action_executions%' AND datname = current_database()"
                    )
                ).scalar_one()
            )
    finally:
        engine.dispose()


def _sweeper_quiet(box: Machine) -> bool:
    """No checkpoint-timeouts run in flight, and none due within the worker's prefetch (10 s) and
    a margin: a sweeper killed mid-run would hold the deployment's concurrency slot until its
    300 s lease expires, a different fault (docs/lifecycle.md, limits) that would only slow this
    test down by 5 minutes."""
    busy = box.runs(SWEEPER, state={"type": {"any_": ["PENDING", "RUNNING"]}})
    scheduled = box.runs(SWEEPER, state={"type": {"any_": ["SCHEDULED"]}})
    now = datetime.now(UTC)

    def due(run: dict[str, Any]) -> datetime:  # "AwaitingConcurrencySlot" moves the state's time only
        at = (run.get("state") or {}).get("state_details", {}).get("scheduled_time")
        return datetime.fromisoformat(at or run["expected_start_time"])

    return not busy and all((due(r) - now).total_seconds() > 15 for r in scheduled)


def _events(box: Machine, ticket_id: int) -> list[tuple[str, dict[str, Any]]]:
    with box.db.session() as session:
        rows = session.execute(
            select(AuditEvent.kind, AuditEvent.body)
            .where(AuditEvent.ticket_id == ticket_id)
            .order_by(AuditEvent.seq)
        ).all()
    return [(kind, json.loads(body)["data"]) for kind, body in rows]


# ---------------------------------------------------------------- the test
def test_worker_killed_mid_remediation_runs_the_action_once_and_finishes_the_ticket(machine: Machine) -> None:
    from hitl.lifecycle.runs import start_lifecycle_runs

    box, figures = machine, machine.figures
    test_started = t0 = time.monotonic()
    box.start_worker()
    deployed = box.cli("deploy", "--work-pool", POOL)
    assert deployed.returncode == 0, deployed.stderr
    box.wait_worker()
    figures["deploy_and_worker_s"] = round(time.monotonic() - t0, 1)

    records = [
        TicketRecord(
            external_id=f"KILL-{host}",
            client="Harbor Point Dental Group",
            subject=f"RMM agent offline on {host}",
            body=f"The RMM agent on {host} is offline and not reporting since this morning.",
            priority="medium",
        )
        for host in (HOST_A, HOST_B)
    ]
    ticket_a, ticket_b = ingest(box.db, records)
    runbook = load_runbook_catalog(Path(box.worker_env["HITL_RUNBOOKS_DIR"]))[RUNBOOK_ID]
    key_b = idempotency_key(ticket_b, RUNBOOK_ID, validate_parameters(runbook, {"host": HOST_B}))

    # B's execution row cannot be committed while this transaction holds one under the same key
    holder = create_engine(box.pg_url)
    blocker = holder.connect()
    transaction = blocker.begin()
    try:
        blocker.execute(
            ActionExecution.__table__.insert().values(
                idempotency_key=key_b,
                ticket_id=ticket_b,
                runbook_id=RUNBOOK_ID,
                parameters={},
                executor="webhook",
                status="running",
                approved_by=[],
                started_at=utcnow(),
            )
        )
        t0 = time.monotonic()
        run_b = start_lifecycle_runs([ticket_b])[ticket_b]
        run_a = start_lifecycle_runs([ticket_a])[ticket_a]
        wait_for(box.rmm.held.is_set, 240, "ticket A's request at the RMM", every=0.2)
        wait_for(lambda: _blocked_inserts(box.pg_url) >= 1, 120, "ticket B's run to reach its action")
        figures["runs_to_mid_remediation_s"] = round(time.monotonic() - t0, 1)
        t0 = time.monotonic()
        wait_for(lambda: _sweeper_quiet(box), 180, "a moment without a sweeper run in flight", every=0.5)
        figures["wait_for_quiet_s"] = round(time.monotonic() - t0, 1)
        assert box.run(run_a)["state_type"] == "RUNNING" and box.run(run_b)["state_type"] == "RUNNING"
        assert box.worker is not None
        killed = kill_machine(box.worker, {run_a, run_b})
        killed_at = time.monotonic()
    finally:
        transaction.rollback()  # B's INSERT now completes for a client that is gone: rolled back
        blocker.close()
        holder.dispose()
        box.rmm.release.set()
    figures["killed_processes"] = len(killed)
    with box.db.session() as session:
        rows = {r.ticket_id: r for r in session.execute(select(ActionExecution)).scalars()}
        assert set(rows) == {ticket_a} and rows[ticket_a].status == "running", "A in flight, B not committed"
        assert rows[ticket_a].flow_run_id == run_a
    time.sleep(2)
    assert box.run(run_a)["state_type"] == "RUNNING" and box.run(run_b)["state_type"] == "RUNNING"

    box.start_worker()  # the machine is back; from here on nobody does anything by hand
    box.wait_worker()

    def recovered() -> bool:
        with box.db.session() as session:
            a = session.get_one(Ticket, ticket_a)
            b = session.get_one(Ticket, ticket_b)
            return a.status == "escalated" and b.lifecycle_stage == "done"

    wait_for(recovered, 360, f"both tickets recovered (worker log {box.worker_log})", every=2)
    figures["kill_to_recovered_s"] = round(time.monotonic() - killed_at, 1)

    # ---- the action of each ticket reached the RMM exactly once
    assert sorted(box.rmm.paths()) == sorted([agent_path(HOST_A), agent_path(HOST_B)]), box.rmm.requests

    # ---- Prefect: both dead runs Crashed for their missing heartbeats; only B got a new run
    for run_id in (run_a, run_b):
        run = box.run(run_id)
        assert run["state_type"] == "CRASHED" and "No heartbeat since" in run["state"]["message"], run[
            "state"
        ]
    assert [r["id"] for r in box.lifecycle_runs(ticket_a)] == [run_a]
    runs_b = box.lifecycle_runs(ticket_b)
    assert len(runs_b) == 2 and runs_b[0]["id"] == run_b, runs_b
    new_b = runs_b[1]["id"]
    wait_for(lambda: box.run(new_b)["state_type"] == "COMPLETED", 60, "B's new run to complete")
    assert not box.runs(SWEEPER, state={"type": {"any_": ["FAILED", "CRASHED"]}}), "a sweeper run failed"

    # ---- the database: A's result unknown and escalated, never re-run; B executed once, finished
    with box.db.session() as session:
        executions = list(session.execute(select(ActionExecution).order_by(ActionExecution.id)).scalars())
        assert [(e.ticket_id, e.status, e.flow_run_id) for e in executions] == [
            (ticket_a, "running", run_a),
            (ticket_b, "succeeded", new_b),
        ]
        a = session.get_one(Ticket, ticket_a)
        assert (a.assigned_queue, a.status, a.lifecycle_stage) == ("escalation", "escalated", "remediation")
        [remediation_a] = session.execute(
            select(Decision).where(Decision.ticket_id == ticket_a, Decision.checkpoint == "remediation")
        ).scalars()
        assert remediation_a.status != "applied" and remediation_a.details["execution_status"] == "unknown"
        assert not session.execute(
            select(Decision).where(Decision.ticket_id == ticket_a, Decision.checkpoint == "reply")
        ).first(), "the lifecycle of A went on past the unknown action"
        outbox = [m.ticket_id for m in session.execute(select(OutboxMessage)).scalars()]
        assert outbox == [ticket_b]
    kinds_a = [kind for kind, _ in _events(box, ticket_a)]
    assert kinds_a.count("action.result_unknown") == 1 and "action.executed" not in kinds_a
    [recovered_a] = [d for k, d in _events(box, ticket_a) if k == "lifecycle.recovered"]
    assert recovered_a["action"] == "result_unknown" and recovered_a["flow_run_id"] == run_a
    events_b = _events(box, ticket_b)
    assert [k for k, _ in events_b].count("action.executed") == 1
    [recovered_b] = [d for k, d in events_b if k == "lifecycle.recovered"]
    assert recovered_b["action"] == "restart" and recovered_b["new_flow_run_id"] == new_b

    verified = box.cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    timeline = json.loads(box.cli("audit", "show", str(ticket_a), "--json").stdout)
    assert any(e["kind"] == "action.result_unknown" for e in timeline)
    wait_for(lambda: not flow_run_processes({new_b}), 60, "B's new run's process to exit")
    figures["test_s"] = round(time.monotonic() - test_started, 1)
