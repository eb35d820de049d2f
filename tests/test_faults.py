"""Fault tests (issue #7): ingestion killed half-way through a file, and a database that cannot be
reached when the nightly ingestion starts. After each: nothing lost, nothing twice, nothing
half-written, and the audit chain still verifies."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hitl.settings import Settings
from hitl.store.db import Database
from hitl.store.orm import Ticket

from .support import ROOT, run_cli

pytestmark = pytest.mark.usefixtures("prefect_api")


def _count(database: Database) -> int:
    with database.session() as session:
        return int(session.execute(select(func.count()).select_from(Ticket)).scalar_one())


def test_ingestion_killed_half_way_then_rerun_stores_every_row_once(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    source = tmp_path / "batch.csv"
    assert run_cli("demo", "generate", "--count", "6000", "--seed", "3", "--out", str(source)).returncode == 0
    with source.open(newline="", encoding="utf-8") as handle:
        rows = {r["external_id"]: r for r in csv.DictReader(handle)}
    env = {
        **os.environ,
        "HITL_BATCH_SIZE": "25",
    }  # many small transactions: a kill lands between or inside one
    process = subprocess.Popen(
        [sys.executable, "-m", "hitl.cli", "ingest", str(source), "--no-lifecycle"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 180
    stored = 0
    while time.monotonic() < deadline and process.poll() is None:
        stored = _count(database)
        if stored >= 200:
            break
        time.sleep(0.05)
    assert process.poll() is None, f"the ingestion ended before it could be killed: {process.stderr.read()}"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    killed_at = _count(database)
    assert 0 < killed_at < len(rows), f"kill landed outside the file ({killed_at} of {len(rows)} stored)"

    again = run_cli("ingest", str(source), "--no-lifecycle", "--json", env={"HITL_BATCH_SIZE": "500"})
    assert again.returncode == 0, again.stderr
    report = json.loads(again.stdout)
    assert report["read"] == len(rows) and report["quarantined"] == 0
    assert report["inserted"] + report["unchanged"] + report["updated"] == len(rows)
    assert report["inserted"] == len(rows) - killed_at
    with database.session() as session:
        tickets = list(session.execute(select(Ticket)).scalars())
    assert len(tickets) == len(rows) == len({t.external_id for t in tickets})
    for ticket in tickets:  # no half-written ticket: every stored field is the source's
        row = rows[ticket.external_id]
        assert (ticket.subject, ticket.body) == (row["subject"].strip(), row["body"].strip())
    assert run_cli("audit", "verify").returncode == 0


def test_database_unreachable_at_ingestion_start_keeps_the_drop_folder(
    settings: Settings, tmp_path: Path
) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    batch = inbox / "tonight.csv"
    assert run_cli("demo", "generate", "--count", "20", "--out", str(batch)).returncode == 0
    before = batch.read_bytes()
    result = run_cli("ingest", str(inbox), env={"HITL_DATABASE_URL": "postgresql+psycopg://x@127.0.0.1:1/x"})
    assert result.returncode == 1
    message = result.stderr.strip()
    assert message.count("\n") == 0 and "cannot reach the database" in message and "Traceback" not in message
    assert batch.read_bytes() == before, "the file must stay in the drop folder, untouched"
    assert sorted(p.name for p in inbox.iterdir()) == ["tonight.csv"], "nothing may be marked processed"
    # and once the database is back, the same folder ingests normally
    ok = run_cli("ingest", str(inbox), "--no-lifecycle", "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["inserted"] == 20
    assert not batch.exists() and (inbox / "processed").is_dir()
    assert run_cli("audit", "verify").returncode == 0
