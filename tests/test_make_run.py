"""`make run` on the embedded default: SQLite under HITL_HOME, Prefect's embedded server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, func, select

from hitl.store.orm import Ticket

from .support import ROOT


def demo_run(home: Path) -> subprocess.CompletedProcess[str]:
    """`hitl demo run` with no Prefect server configured and every setting at its default."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HITL_"))}
    env["HITL_HOME"] = str(home)
    command = [sys.executable, "-m", "hitl.cli", "demo", "run"]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)


def test_demo_run_on_the_embedded_default(tmp_path: Path) -> None:
    result = demo_run(tmp_path / "var")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "60 new ticket(s) by client" in result.stdout
    assert "Traceback" not in result.stderr and "ERROR" not in result.stderr, result.stderr[-3000:]
    assert (tmp_path / "var" / "prefect").is_dir()  # the embedded server kept its data under HITL_HOME
    assert [p.name for p in (tmp_path / "var" / "inbox" / "processed").iterdir()] == ["demo-seed7-60.csv"]
    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'hitl.db'}")
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(Ticket)).scalar_one() == 60
    engine.dispose()

    again = demo_run(tmp_path / "var")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "60 new ticket(s)" not in again.stdout  # the same seed again changes nothing
