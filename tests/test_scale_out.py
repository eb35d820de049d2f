"""Scale-out: two process workers against one Prefect server whose database is PostgreSQL, with
the application database on PostgreSQL too (docs/scale-out.md).

200 tickets go through a nightly-ingestion run executed by a worker; the batch path decides all of
them and the ones needing a human get a ticket-lifecycle run of their own on the pool, run by
either worker. Then: no ticket lost, none processed twice, one run per waiting ticket; with
worker B stopped, worker A resumes checkpoints (including runs B started), and the other way
round; every resumed checkpoint records exactly one review; the audit chain verifies.
PostgreSQL only: skipped without HITL_TEST_DATABASE_URL (a failure under CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, func, make_url, select, text

from hitl.demo import generate_tickets, write_batch
from hitl.ml import service
from hitl.ml.dataset import LabelledSet, label_of, ticket_text
from hitl.ml.pipelines import PipelineSpec
from hitl.ml.training import train
from hitl.settings import Settings, get_settings
from hitl.store import db as db_module
from hitl.store.db import Database
from hitl.store.orm import Decision, IngestionRun, Review, Ticket
from hitl.store.policies import create_version, current_policy

from .support import IN_CI, PG_URL, ROOT, free_port

pytestmark = pytest.mark.postgres

POOL = "hitl-scale-test"
TICKETS = 200
SEED = 2026
# Who waits for a human: a deterministic 7 % audit sample of triage (the draw hashes ticket id,
# checkpoint, head and policy version: 10 tickets) plus the firewall changes (two approvers, always
# human: 3 tickets); the batch path decides everything else. 13 lifecycle runs, each a process start
# (docs/scale-out.md explains the choice).
AUDIT_RATE = 0.07
EXPECTED_WAITING = (10, 30)
WORKER_LIMIT = 3  # flow processes per worker at once: 6 on 2 cores is already plenty
WORKERS = ("scale-a", "scale-b")
LIFECYCLE = "ticket-lifecycle/ticket-lifecycle"
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} unreadable)"


def clean_env() -> dict[str, str]:
    """The test process's environment without Prefect or HITL settings (the session's server)."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HITL_"))}


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> float:
    """SIGTERM to the process group, SIGKILL after `timeout`; returns seconds until it exited."""
    started = time.monotonic()
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass
    return round(time.monotonic() - started, 1)


def flow_run_processes(run_ids: set[str]) -> dict[str, list[int]]:
    """Live processes executing one of these flow runs (a worker sets PREFECT__FLOW_RUN_ID)."""
    found: dict[str, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item.startswith(b"PREFECT__FLOW_RUN_ID="):
                run_id = item.split(b"=", 1)[1].decode()
                if run_id in run_ids:
                    found.setdefault(run_id, []).append(int(entry.name))
    return found


@dataclass
class Worker:
    name: str
    env: dict[str, str]
    logs: Path
    process: subprocess.Popen[bytes] | None = None
    generation: int = 0
    stop_seconds: list[float] = field(default_factory=list)

    @property
    def log(self) -> Path:
        return self.logs / f"{self.name}-{self.generation}.log"

    def start(self) -> None:
        self.launch()
        self.wait_started()

    def launch(self) -> None:
        assert self.process is None or self.process.poll() is not None, f"{self.name} is running"
        self.generation += 1
        command = ["worker", "--pool", POOL, "--name", self.name, "--limit", str(WORKER_LIMIT)]
        with self.log.open("wb") as log:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hitl.cli", *command],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_started(self) -> None:
        def started() -> bool:
            assert self.process is not None
            assert self.process.poll() is None, f"worker {self.name} exited:\n{tail(self.log)}"
            return f"Worker '{self.name}' started" in self.log.read_text(errors="replace")

        wait_for(started, 120, f"worker {self.name} to start (log {self.log})")
        shown = f"worker start --pool {POOL} --type process --limit {WORKER_LIMIT} --name {self.name}"
        assert shown in self.log.read_text().splitlines()[0], "hitl worker prints the command it runs"

    def stop(self) -> None:
        if self.process is not None:
            self.stop_seconds.append(stop_process(self.process))


@dataclass
class Cluster:
    api: str
    http: httpx.Client
    db: Database
    ops_env: dict[str, str]  # what an operator's shell has: the server, the app database
    workers: dict[str, Worker]
    tmp: Path
    server_log: Path
    figures: dict[str, Any] = field(default_factory=dict)

    def cli(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hitl.cli", *args],
            cwd=ROOT,
            env=self.ops_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def post(self, path: str, body: dict[str, Any]) -> Any:
        response = self.http.post(path, json=body)
        assert response.status_code < 300, f"POST {path}: {response.status_code} {response.text[:300]}"
        return response.json()

    def deployment(self, name: str) -> dict[str, Any]:
        response = self.http.get(f"/deployments/name/{name}")
        assert response.status_code == 200, f"deployment {name}: {response.status_code} {response.text[:200]}"
        return dict(response.json())

    def runs_of(self, deployment_id: str) -> list[dict[str, Any]]:
        body = {"deployments": {"id": {"any_": [deployment_id]}}, "limit": 200, "sort": "ID_DESC"}
        return list(self.post("/flow_runs/filter", body))

    def run(self, run_id: str) -> dict[str, Any]:
        return dict(self.http.get(f"/flow_runs/{run_id}").json())

    def states(self, run_id: str) -> list[tuple[str, str, float]]:
        """(type, name, POSIX time) of every state the run went through, oldest first."""
        from datetime import datetime

        states = self.http.get("/flow_run_states/", params={"flow_run_id": run_id}).json()
        out = [(s["type"], s["name"], datetime.fromisoformat(s["timestamp"]).timestamp()) for s in states]
        return sorted(out, key=lambda s: s[2])

    def running_states(self, run_id: str) -> int:
        return sum(1 for kind, _, _ in self.states(run_id) if kind == "RUNNING")

    def timings(self, run_ids: set[str], resumed: bool = False) -> dict[str, float]:
        """Median seconds from (re)scheduling to Running (worker poll + process start) and from
        Running to the next checkpoint or the end, over the runs' first start or their resume."""
        to_running, to_checkpoint = [], []
        for run_id in run_ids:
            states = self.states(run_id)
            starts = [i for i, (_, name, _) in enumerate(states) if name in ("Scheduled", "Resuming")]
            i = starts[-1] if resumed else starts[0]
            running = next(j for j in range(i, len(states)) if states[j][0] == "RUNNING")
            after = next(
                (j for j in range(running, len(states)) if states[j][0] in ("PAUSED", "COMPLETED")), None
            )
            to_running.append(states[running][2] - states[i][2])
            if after is not None:
                to_checkpoint.append(states[after][2] - states[running][2])
        return {
            "to_running_s": round(statistics.median(to_running), 1),
            "running_to_next_s": round(statistics.median(to_checkpoint), 1) if to_checkpoint else -1.0,
        }

    def submissions(self, since: str) -> dict[str, list[str]]:
        """flow run id -> the workers that submitted it, in order ("prefect.worker.submitted-flow-run"
        events, emitted once a worker's Pending transition was accepted, so exactly once per start)."""
        body: dict[str, Any] = {
            "filter": {
                "event": {"name": ["prefect.worker.submitted-flow-run"]},
                "occurred": {"since": since, "until": "2100-01-01T00:00:00Z"},
                "order": "ASC",
            },
            "limit": 50,
        }
        page = self.post("/events/filter", body)
        events = list(page["events"])
        while page.get("next_page"):
            page = self.http.get(page["next_page"]).json()
            events += page["events"]
        out: dict[str, list[str]] = {}
        for event in sorted(events, key=lambda e: e["occurred"]):
            worker = event["resource"]["prefect.resource.name"]
            for related in event.get("related", []):
                if related.get("prefect.resource.role") == "flow-run":
                    run_id = related["prefect.resource.id"].removeprefix("prefect.flow-run.")
                    out.setdefault(run_id, []).append(worker)
        return out


# ---------------------------------------------------------------- fixture
@contextmanager
def prefect_database() -> Iterator[str]:
    """A fresh PostgreSQL database for the Prefect server; dropped (connections forced) afterwards."""
    assert PG_URL is not None
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    name = f"hitl_prefect_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(PG_URL).set(drivername="postgresql+asyncpg", database=name, query={})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def prefect_server(tmp: Path, database_url: str) -> Iterator[tuple[str, Path]]:
    """`prefect server start` on a free port over that database; stopped afterwards."""
    home = tmp / "server-home"
    home.mkdir()
    port = free_port()
    env = {
        **clean_env(),
        "PREFECT_HOME": str(home),
        "PREFECT_API_DATABASE_CONNECTION_URL": database_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "false",
        # No scheduled runs (checkpoint-timeouts every minute) competing for the 2 cores; the
        # schedules themselves are registered and compared below.
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
    }
    log = tmp / "server.log"
    prefect = str(Path(sys.executable).with_name("prefect"))
    with log.open("wb") as output:
        process = subprocess.Popen(
            [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
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
        wait_for(healthy, 180, f"the Prefect server on PostgreSQL (log {log})")
        yield api, log
    finally:
        stop_process(process)


def _train_demo_model(settings: Settings, db: Database) -> None:
    """The category head as the lifecycle tests train it: 600 generated tickets, no char n-grams."""
    records = generate_tickets(count=600, seed=11)
    data = LabelledSet(description="demo")
    for record in records:
        data.texts.append(ticket_text(record.subject, record.body))
        data.labels.append(label_of(record, "category") or "")
    result = train(data, "category", cv_folds=0, spec=PipelineSpec(char_ngram=None))
    with db.session() as session:
        service.register(session, settings.effective_models_dir, result, data, "category", make_active=True)


def _scale_policy(db: Database) -> None:
    """Every checkpoint automatic, except a 10 % audit sample of triage (see AUDIT_RATE)."""
    with db.session() as session:
        _, policy = current_policy(session)
        changed = policy.model_copy(deep=True)
        for checkpoint in changed.checkpoints.values():
            checkpoint.threshold, checkpoint.audit_rate = 0.0, 0.0
            checkpoint.autonomous_values, checkpoint.classes, checkpoint.clients = None, {}, {}
        changed.checkpoints["triage"].audit_rate = AUDIT_RATE
        create_version(session, changed, "test", "scale-out: a bounded audit sample waits for a human")


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    try:
        import asyncpg  # noqa: F401  (the Prefect server's PostgreSQL driver)
    except ImportError:
        message = "asyncpg is not installed: the Prefect server cannot use PostgreSQL"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    runbooks = tmp_path / "runbooks"  # only the firewall runbook: high risk, so always two approvers
    runbooks.mkdir()
    shutil.copy(ROOT / "policies" / "runbooks" / "firewall-allow-rule.yaml", runbooks)
    hitl = {
        "HITL_DATABASE_URL": pg_url,
        "HITL_TRIAGE_HEADS": "category",
        "HITL_MODELS_DIR": str(tmp_path / "models"),  # one model store, as a shared mount would be
        "HITL_RUNBOOKS_DIR": str(runbooks),
        "HITL_WORK_POOL": POOL,
    }
    for key, value in {**hitl, "HITL_HOME": str(tmp_path / "test-var")}.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    settings = get_settings()
    db = db_module.get_database(settings)
    with ExitStack() as stack:  # on exit, in reverse: workers, server, Prefect database, app engine
        stack.callback(db_module._databases.clear)
        stack.callback(db.dispose)
        stack.callback(get_settings.cache_clear)
        started = time.monotonic()
        api, server_log = stack.enter_context(
            prefect_server(tmp_path, stack.enter_context(prefect_database()))
        )
        server_seconds = round(time.monotonic() - started, 1)
        monkeypatch.setenv("PREFECT_API_URL", api)
        base = {**clean_env(), **hitl, "PREFECT_API_URL": api, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        workers: dict[str, Worker] = {}
        for name in WORKERS:  # two machines: their own HITL_HOME and PREFECT_HOME (result storage)
            home = tmp_path / name
            env = {**base, "HITL_HOME": str(home / "var"), "PREFECT_HOME": str(home / "prefect")}
            workers[name] = Worker(name, env, tmp_path)
            stack.callback(workers[name].stop)
        ops = tmp_path / "ops"
        ops_env = {**base, "HITL_HOME": str(ops / "var"), "PREFECT_HOME": str(ops / "prefect")}
        _train_demo_model(settings, db)
        _scale_policy(db)
        from prefect.settings import PREFECT_API_URL, temporary_settings

        stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api}))
        http = stack.enter_context(httpx.Client(base_url=api, timeout=30))
        figures: dict[str, Any] = {"server_start_s": server_seconds}
        stack.callback(lambda: print("\nscale-out figures: " + json.dumps(figures, sort_keys=True)))
        yield Cluster(api, http, db, ops_env, workers, tmp_path, server_log, figures)


# ---------------------------------------------------------------- the test
def _check_pool_deployments(cluster: Cluster) -> None:
    from deployments.definitions import all_deployments

    for declared in all_deployments(Settings()):
        stored = cluster.deployment(f"{declared.flow_name}/{declared.name}")
        assert stored["work_pool_name"] == POOL, stored["work_pool_name"]
        assert stored["entrypoint"] == f"flows/{Path(declared.entrypoint or '').name}"
        assert stored["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ROOT)}}
        ]
        assert stored["parameters"] == declared.parameters
        assert sorted(stored["tags"]) == sorted(declared.tags)
        assert stored["description"] == declared.description
        limit = (stored.get("global_concurrency_limit") or {}).get("limit")
        assert limit == declared.concurrency_limit, (declared.name, limit)
        stored_schedules = [_schedule(s["schedule"]) for s in stored["schedules"]]
        assert stored_schedules == [_schedule(s.schedule.model_dump()) for s in declared.schedules]


def _schedule(schedule: dict[str, Any]) -> tuple[Any, ...]:
    if "cron" in schedule:
        return ("cron", schedule["cron"], schedule["timezone"], schedule["day_or"])
    interval = schedule["interval"]
    return ("interval", interval if isinstance(interval, float | int) else interval.total_seconds())


def _waiting(cluster: Cluster) -> dict[int, Decision]:
    """Ticket id -> its waiting decision (one head per checkpoint here)."""
    with cluster.db.session() as session:
        rows = session.execute(select(Decision).where(Decision.status == "waiting")).scalars().all()
        session.expunge_all()
    by_ticket: dict[int, Decision] = {}
    for row in rows:
        assert row.ticket_id not in by_ticket, f"ticket {row.ticket_id} waits twice"
        by_ticket[row.ticket_id] = row
    return by_ticket


def _no_duplicate_decisions(cluster: Cluster) -> int:
    with cluster.db.session() as session:
        duplicates = session.execute(
            select(Decision.ticket_id, Decision.checkpoint, Decision.head, func.count())
            .group_by(Decision.ticket_id, Decision.checkpoint, Decision.head)
            .having(func.count() > 1)
        ).all()
        total = session.execute(select(func.count()).select_from(Decision)).scalar_one()
    assert not duplicates, f"decisions made twice: {duplicates[:10]}"
    return int(total)


def _resume(cluster: Cluster, run_id: str, decision: Decision, action: str, reviewer: str) -> str:
    """Answer through `hitl resume`; returns the pause key that was answered."""
    key = cluster.run(run_id)["state"]["state_details"]["pause_key"]
    args = ["resume", run_id, "--decision", action, "--reviewer", reviewer]
    if action == "override":
        choices = [
            c
            for c in decision.details.get("choices") or []
            if c not in (decision.ai_value, "firewall_change")
        ]
        args += ["--value", (choices or ["printer"])[0], "--reason-code", "wrong_category"]
    result = cluster.cli(*args)
    assert result.returncode == 0, f"hitl resume {run_id}: {result.stderr}"
    return str(key)


def _past_checkpoint(cluster: Cluster, run_id: str, key: str) -> Callable[[], str | None]:
    """Done when the run completed or waits at a new checkpoint key; a failure fails at once."""

    def check() -> str | None:
        run = cluster.run(run_id)
        kind, details = run["state_type"], (run.get("state") or {}).get("state_details") or {}
        assert kind not in ("FAILED", "CRASHED", "CANCELLED"), f"run {run_id}: {run['state']}"
        if kind == "COMPLETED" or (run["state_name"] == "Suspended" and details.get("pause_key") != key):
            return str(run["state_name"])
        return None

    return check


def _resume_phase(
    cluster: Cluster, alive: str, plan: list[tuple[str, Decision, str]], since: str
) -> dict[str, Any]:
    """Resume each planned run while only `alive` runs; check that `alive` executed every one."""
    started = time.monotonic()
    keys = {run_id: _resume(cluster, run_id, d, action, f"op-{alive}") for run_id, d, action in plan}
    outcomes = {
        run_id: wait_for(_past_checkpoint(cluster, run_id, key), 240, f"resumed run {run_id} on {alive}")
        for run_id, key in keys.items()
    }
    elapsed = round(time.monotonic() - started, 1)

    def submitted() -> dict[str, list[str]] | None:
        subs = cluster.submissions(since)
        return subs if all(run_id in subs for run_id in keys) else None

    subs = wait_for(submitted, 30, "worker submission events of the resumed runs")
    for run_id in keys:
        assert subs[run_id] == [alive], f"run {run_id} after resume submitted by {subs[run_id]}, not {alive}"
        labels = cluster.run(run_id).get("labels") or {}
        assert labels.get("prefect.worker.name") == alive, labels
        assert cluster.running_states(run_id) == 2, f"run {run_id} should have run twice (start, resume)"
    timings = cluster.timings(set(keys), resumed=True)
    return {"resumed": len(plan), "outcomes": dict(Counter(outcomes.values())), "seconds": elapsed, **timings}


def _quiet(cluster: Cluster, run_ids: set[str]) -> None:
    """Stop a worker only when no flow process is alive: a run whose process is still exiting after
    its suspension was left Cancelled by a stopping runner (docs/prefect-semantics.md, section 1)."""
    wait_for(lambda: not flow_run_processes(run_ids), 90, "flow-run processes to exit")


def test_two_workers_process_200_tickets_once_and_resume_from_either(cluster: Cluster) -> None:
    from prefect.deployments import run_deployment

    figures = cluster.figures
    t0 = time.monotonic()
    for worker in cluster.workers.values():  # they start while the deployments are registered
        worker.launch()
    deployed = cluster.cli("deploy", "--work-pool", POOL)
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.count(f"on work pool {POOL}") == 5, deployed.stdout
    figures["deploy_s"] = round(time.monotonic() - t0, 1)
    _check_pool_deployments(cluster)
    for worker in cluster.workers.values():
        worker.wait_started()
    figures["deploy_and_workers_s"] = round(time.monotonic() - t0, 1)
    since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))

    inbox = cluster.tmp / "inbox" / f"demo-seed{SEED}-{TICKETS}.csv"
    write_batch(inbox, generate_tickets(count=TICKETS, seed=SEED))
    t0 = time.monotonic()
    ingestion = run_deployment(
        "nightly-ingestion/nightly-ingestion",
        parameters={"path": str(inbox), "mapping": "canonical", "source": "scale", "move_processed": False},
        timeout=300,
    )
    logs = "\n".join(f"--- {w.log}\n{tail(w.log)}" for w in cluster.workers.values())
    assert ingestion.state is not None and ingestion.state.is_completed(), f"{ingestion.state}\n{logs}"
    figures["ingestion_run_s"] = round(time.monotonic() - t0, 1)
    ingestion_worker = (cluster.run(str(ingestion.id)).get("labels") or {}).get("prefect.worker.name")
    assert ingestion_worker in WORKERS, ingestion_worker

    # ---- after the batch: every ticket once, decided once; one run per waiting ticket
    waiting = _waiting(cluster)
    assert EXPECTED_WAITING[0] <= len(waiting) <= EXPECTED_WAITING[1], f"{len(waiting)} tickets wait"
    lifecycle_id = cluster.deployment(LIFECYCLE)["id"]

    def all_suspended() -> list[dict[str, Any]] | None:
        runs = cluster.runs_of(lifecycle_id)
        bad = [r for r in runs if r["state_type"] in FINAL]
        assert not bad, (
            f"lifecycle runs ended instead of waiting: {[(r['id'], r['state_name']) for r in bad]}"
        )
        if len(runs) >= len(waiting) and all(r["state_name"] == "Suspended" for r in runs):
            return runs
        return None

    t0 = time.monotonic()
    runs = wait_for(all_suspended, 300, f"{len(waiting)} lifecycle runs to reach their checkpoint", every=2)
    figures["lifecycle_runs_to_suspended_s"] = round(time.monotonic() - t0, 1)
    run_ids = {r["id"] for r in runs}
    _quiet(cluster, run_ids | {str(ingestion.id)})
    figures["lifecycle_first_start"] = cluster.timings(run_ids)
    waiting = _waiting(cluster)  # again: each run wrote its flow run id on its decision before waiting
    per_ticket = Counter(int(r["parameters"]["ticket_id"]) for r in runs)
    assert all(n == 1 for n in per_ticket.values()), f"tickets with several runs: {per_ticket.most_common(3)}"
    assert set(per_ticket) == set(waiting), (
        "a waiting ticket without a run, or a run without a waiting ticket"
    )
    run_of = {int(r["parameters"]["ticket_id"]): r["id"] for r in runs}
    for ticket_id, decision in waiting.items():
        assert decision.flow_run_id == run_of[ticket_id], f"ticket {ticket_id}: decision points elsewhere"

    with cluster.db.session() as session:
        tickets = session.execute(select(Ticket.id, Ticket.external_id, Ticket.lifecycle_stage)).all()
        [ingest_row] = session.execute(select(IngestionRun)).scalars().all()
        assert (ingest_row.read, ingest_row.inserted, ingest_row.quarantined) == (TICKETS, TICKETS, 0)
        triaged = set(
            session.execute(select(Decision.ticket_id).where(Decision.checkpoint == "triage")).scalars()
        )
    assert len(tickets) == TICKETS and len({t.external_id for t in tickets}) == TICKETS
    assert triaged == {t.id for t in tickets}, "a ticket never reached triage"
    lost = [t.id for t in tickets if t.id not in waiting and t.lifecycle_stage != "done"]
    assert not lost, f"tickets neither finished nor waiting: {lost[:10]}"
    figures["decisions_after_batch"] = _no_duplicate_decisions(cluster)

    subs = wait_for(
        lambda: (s := cluster.submissions(since)) and all(r in s for r in run_ids) and s,
        30,
        "submission events of the lifecycle runs",
    )
    first = {run_id: subs[run_id] for run_id in run_ids}
    assert all(len(w) == 1 for w in first.values()), "a lifecycle run was started twice"
    by_worker = Counter(w[0] for w in first.values())
    assert set(by_worker) == set(WORKERS), f"one worker ran every lifecycle run: {by_worker}"
    figures.update(
        tickets=TICKETS,
        waiting=len(waiting),
        waiting_by_checkpoint=dict(Counter(d.checkpoint for d in waiting.values())),
        lifecycle_runs_by_worker=dict(by_worker),
        ingestion_worker=ingestion_worker,
    )

    # ---- resumability from either worker: B stopped, A resumes (runs B started first), then A
    # stopped, B restarted, B resumes (runs A started first)
    a, b = WORKERS
    triage = sorted(  # those b started first, then those a started
        (t for t, d in waiting.items() if d.checkpoint == "triage"),
        key=lambda t: (first[run_of[t]][0] == a, t),
    )
    remediation = sorted(t for t, d in waiting.items() if d.checkpoint == "remediation")
    assert len(triage) >= 2 and len(triage) + len(remediation) >= 4, (triage, remediation)
    tickets_a = [(triage.pop(0), "approve")]  # started by b: the cross-worker resume
    tickets_b = [(triage.pop(), "override")]  # started by a
    tickets_a.append((remediation.pop(0), "escalate") if remediation else (triage.pop(0), "approve"))
    # four-eyes: a first approval is recorded and the run waits again for a second approver
    tickets_b.append((remediation.pop(0), "approve") if remediation else (triage.pop(), "approve"))
    plan_a = [(run_of[t], waiting[t], action) for t, action in tickets_a]
    plan_b = [(run_of[t], waiting[t], action) for t, action in tickets_b]
    cross = {a: sum(first[r][0] == b for r, _, _ in plan_a), b: sum(first[r][0] == a for r, _, _ in plan_b)}
    assert all(cross.values()), f"no run started by one worker is resumed by the other: {cross}"

    cluster.workers[b].stop()
    resume_since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))
    figures["phase_a"] = {"alive": a, **_resume_phase(cluster, a, plan_a, resume_since)}
    _quiet(cluster, run_ids)
    cluster.workers[a].stop()
    cluster.workers[b].start()
    resume_since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 2))
    figures["phase_b"] = {"alive": b, **_resume_phase(cluster, b, plan_b, resume_since)}
    figures["cross_worker_resumes"] = cross

    # ---- every resumed checkpoint has exactly one review; nothing else was reviewed
    resumed = {d.id: (run_id, action) for run_id, d, action in plan_a + plan_b}
    with cluster.db.session() as session:
        reviews = Counter(session.execute(select(Review.decision_id)).scalars())
    assert set(reviews) == set(resumed), f"reviews on {sorted(reviews)}, resumed {sorted(resumed)}"
    assert all(n == 1 for n in reviews.values()), f"a checkpoint recorded several reviews: {reviews}"
    figures["decisions_at_end"] = _no_duplicate_decisions(cluster)
    final = Counter(r["state_name"] for r in cluster.runs_of(lifecycle_id))
    assert sum(final.values()) == len(waiting) and set(final) <= {"Suspended", "Completed"}, final
    figures["lifecycle_runs_at_end"] = dict(final)

    verified = cluster.cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr
    _quiet(cluster, run_ids)
    cluster.workers[b].stop()
    figures["worker_stop_s"] = {w.name: w.stop_seconds for w in cluster.workers.values()}
