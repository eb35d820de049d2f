"""Benchmark (issue #7, 1): nightly ingestion with triage decisions stored, against raw prediction.

    .venv/bin/python bench/ingestion_throughput.py --tickets 50000 --workdir /tmp/ingest-bench

Builds a CSV of `--tickets` rows from ../shared/data/endava_tickets.csv (its 4,344 rows repeated,
each copy with new ticket ids), trains and activates the triage models on the Endava data (the
`category` and `business_service` heads, once per work directory), then in one process:

  e2e   the `nightly-ingestion` flow on that file, with the lifecycle batch path on: read, validate,
        upsert, then every stage each ticket may pass without a human, with every decision and
        its audit event stored (tickets waiting for a human are counted; no per-ticket flow run
        is started because no ticket-lifecycle deployment is served in the benchmark);
  raw   the same tickets' texts through both triage models' batch prediction (`LoadedModel.predict`,
        the call the triage stage makes), in one batch, median of `--repeat` runs.

It checks the outcome (every ticket stored once, one triage decision per ticket and head, the
audit chain verifies) and prints the tickets/s of both, their ratio (target >= 0.5), the same
per CPU second of this process (steadier than wall time when the machine is shared), the phase
times of the flow's task runs and the load average, and writes <workdir>/results-<database>.json.
`--database postgres` puts the application database on a fresh PostgreSQL database (created and
dropped by the script). The script starts a Prefect server of its own (SQLite) on a free port.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "endava_tickets.csv"
HEADS = ("category", "business_service")
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def build_csv(source: Path, target: Path, count: int) -> None:
    import pandas as pd

    frame = pd.read_csv(source, dtype=str, keep_default_na=False)
    copies = -(-count // len(frame))
    big = pd.concat(
        [frame.assign(ticket_id=frame["ticket_id"] + f"-R{copy:03d}") for copy in range(copies)],
        ignore_index=True,
    ).head(count)
    big.to_csv(target, index=False)


def start_prefect_server(home: Path) -> subprocess.Popen[bytes]:
    """A Prefect server of the benchmark's own on a free port (the embedded one's start-up
    timeout is too short on a loaded machine); PREFECT_API_URL points at it."""
    import httpx

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    log = (home / "prefect-server.log").open("wb")
    prefect = str(Path(sys.executable).parent / "prefect")
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"},
    )  # fmt: skip
    api = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                os.environ["PREFECT_API_URL"] = api
                return server
        except httpx.HTTPError:
            pass
        if server.poll() is not None:
            raise SystemExit(f"the Prefect server exited: see {home / 'prefect-server.log'}")
        time.sleep(1)
    server.kill()
    raise SystemExit("the Prefect server did not answer within 180 s")


def _cli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "hitl.cli", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"hitl {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")


def ensure_models() -> None:
    from hitl.ml.service import load_active_models
    from hitl.settings import get_settings
    from hitl.store.db import get_database

    settings = get_settings()
    database = get_database(settings)
    database.ensure_schema()
    with database.session() as session:
        active = {m.head for m in load_active_models(session, settings.effective_models_dir, list(HEADS))}
    for head in HEADS:
        if head not in active:
            print(f"training the {head} model on {DATA.name} (setup, not timed)", flush=True)
            _cli("train", "--data", str(DATA), "--mapping", "endava", "--label", head, "--activate")


def phase_times(flow_run_id: Any) -> dict[str, float]:
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    times: dict[str, float] = {}
    for run in runs:
        if run.start_time and run.end_time:
            name = run.name.rsplit("-", 1)[0]
            times[name] = times.get(name, 0.0) + (run.end_time - run.start_time).total_seconds()
    return dict(sorted(times.items(), key=lambda item: -item[1]))


def outcome_checks(count: int) -> dict[str, Any]:
    from sqlalchemy import func, select

    from hitl.audit import verify_chain
    from hitl.store.db import get_database
    from hitl.store.orm import Decision, Ticket

    database = get_database()
    with database.session() as session:
        tickets = session.execute(select(func.count()).select_from(Ticket)).scalar_one()
        by_head = select(Decision.head, func.count()).where(Decision.checkpoint == "triage")
        triage = dict(session.execute(by_head.group_by(Decision.head)).all())
        per_ticket = session.execute(
            select(func.count()).select_from(
                select(Decision.ticket_id, Decision.head)
                .where(Decision.checkpoint == "triage")
                .group_by(Decision.ticket_id, Decision.head)
                .having(func.count() > 1)
                .subquery()
            )
        ).scalar_one()
        decisions = session.execute(select(func.count()).select_from(Decision)).scalar_one()
        statuses = dict(session.execute(select(Ticket.status, func.count()).group_by(Ticket.status)).all())
        by_stage = select(Ticket.lifecycle_stage, func.count()).group_by(Ticket.lifecycle_stage)
        stages = dict(session.execute(by_stage).all())
    started = time.perf_counter()
    with database.session() as session:
        chain = verify_chain(session)
    verify_s = time.perf_counter() - started
    problems = []
    if tickets != count:
        problems.append(f"{tickets} tickets stored, expected {count}")
    if any(triage.get(head) != count for head in HEADS) or per_ticket:
        problems.append(f"triage decisions per head {triage}, {per_ticket} duplicated")
    if not chain.ok:
        problems.append(f"audit chain broken: {chain.problem}")
    if problems:
        raise SystemExit("benchmark outcome wrong: " + "; ".join(problems))
    return {
        "tickets": tickets,
        "decisions": decisions,
        "triage_decisions": triage,
        "ticket_status": statuses,
        "lifecycle_stage": {str(k): v for k, v in stages.items()},
        "audit_events_verified": chain.events_checked,
        "audit_verify_s": round(verify_s, 2),
    }


def raw_prediction(csv_path: Path, repeat: int) -> dict[str, Any]:
    import pandas as pd

    from hitl.ml.dataset import ticket_text
    from hitl.ml.service import load_active_models
    from hitl.settings import get_settings
    from hitl.store.db import get_database

    settings = get_settings()
    with get_database(settings).session() as session:
        models = load_active_models(session, settings.effective_models_dir, list(HEADS))
    frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    texts = [ticket_text(s.strip(), b.strip()) for s, b in zip(frame["title"], frame["body"], strict=True)]
    runs, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        for model in models:
            model.predict(texts)
        runs.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    median = statistics.median(runs)
    return {
        "models": [m.version for m in models],
        "runs_s": [round(r, 3) for r in runs],
        "cpu_s": [round(c, 3) for c in cpu],
        "median_s": round(median, 3),
        "tickets_per_s": round(len(texts) / median, 1),
        "tickets_per_cpu_s": round(len(texts) / statistics.median(cpu), 1),
    }


def run_flow(csv_path: Path) -> tuple[float, float, Any]:
    """Wall and CPU seconds of this process (the flow's tasks run here; the Prefect server's own
    CPU is not counted) and the flow's report."""
    from prefect import flow

    from flows.ingestion import nightly_ingestion

    @flow(name="bench-warm-up")
    def warm_up() -> None:  # starts the embedded Prefect server before the clock does
        return None

    warm_up()
    started, started_cpu = time.perf_counter(), time.process_time()
    report = nightly_ingestion(path=str(csv_path), mapping="endava", move_processed=False)
    return time.perf_counter() - started, time.process_time() - started_cpu, report


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tickets", type=int, default=50_000)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ingest-bench"))
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--repeat", type=int, default=3, help="raw prediction runs (median taken)")
    args = parser.parse_args()
    if not DATA.exists():
        raise SystemExit(f"{DATA} is missing: the benchmark replicates the Endava tickets")
    home = args.workdir / args.database
    csv_path = args.workdir / f"endava_{args.tickets}.csv"
    args.workdir.mkdir(parents=True, exist_ok=True)
    if not csv_path.exists():
        build_csv(DATA, csv_path, args.tickets)
    pg_name = None
    if home.exists():  # each measurement starts from an empty store (the models are retrained)
        subprocess.run(["rm", "-rf", str(home)], check=True)
    home.mkdir(parents=True)
    os.environ.update(
        {
            "HITL_HOME": str(home),
            "HITL_TRIAGE_HEADS": ",".join(HEADS),
            "PREFECT_HOME": str(home / "prefect"),
            "PREFECT_LOGGING_LEVEL": "WARNING",
        }
    )
    if args.database == "postgres":
        from sqlalchemy import create_engine, text

        pg_name = f"bench_ingest_{uuid.uuid4().hex[:8]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{pg_name}"'))
        os.environ["HITL_DATABASE_URL"] = PG_ADMIN.rsplit("/", 1)[0] + f"/{pg_name}"
    server = start_prefect_server(home)
    try:
        from hitl.prefect_env import configure_prefect
        from hitl.settings import get_settings

        where = configure_prefect(get_settings())
        ensure_models()
        load = os.getloadavg()
        print(f"running the nightly-ingestion flow on {args.tickets} tickets ({where})", flush=True)
        e2e_s, e2e_cpu_s, report = run_flow(csv_path)
        phases = phase_times(report.flow_run_id)
        print(f"e2e {e2e_s:.1f} s; raw prediction x{args.repeat}", flush=True)
        raw = raw_prediction(csv_path, args.repeat)
        checks = outcome_checks(args.tickets)
        e2e_rate = args.tickets / e2e_s
        results = {
            "tickets": args.tickets,
            "database": args.database,
            "prefect": where,
            "e2e_s": round(e2e_s, 2),
            "e2e_tickets_per_s": round(e2e_rate, 1),
            "raw": raw,
            "ratio": round(e2e_rate / raw["tickets_per_s"], 3),
            "e2e_cpu_s": round(e2e_cpu_s, 2),
            "e2e_tickets_per_cpu_s": round(args.tickets / e2e_cpu_s, 1),
            "ratio_cpu": round(args.tickets / e2e_cpu_s / raw["tickets_per_cpu_s"], 3),
            "phases_s": {k: round(v, 2) for k, v in phases.items()},
            "ingest": report.stats.model_dump(),
            "checks": checks,
            "loadavg_start": [round(x, 2) for x in load],
            "loadavg_end": [round(x, 2) for x in os.getloadavg()],
        }
        (args.workdir / f"results-{args.database}.json").write_text(json.dumps(results, indent=2))
        print(json.dumps(results, indent=2))
    finally:
        server.terminate()
        server.wait(timeout=60)
        if pg_name:
            from hitl.store.db import get_database

            get_database().dispose()
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)'))


if __name__ == "__main__":
    main()
