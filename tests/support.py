"""Constants and helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA_CANDIDATES = [
    Path(os.environ["HITL_TEST_DATA_DIR"]) if os.environ.get("HITL_TEST_DATA_DIR") else None,
    ROOT.parent / "shared" / "data",  # the layout of the development machines
    Path("/work/shared/data"),  # where CI's clean clone may live elsewhere on the same machine
]
DATA = next((p for p in DATA_CANDIDATES if p is not None and p.is_dir()), ROOT.parent / "shared" / "data")
ENDAVA = DATA / "endava_tickets.csv"
HELPDESK = DATA / "helpdesk_customer_tickets.csv"
PG_URL = os.environ.get("HITL_TEST_DATABASE_URL")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def needs_shared_data() -> pytest.MarkDecorator:
    return pytest.mark.skipif(not ENDAVA.exists(), reason=f"real ticket data not found at {DATA}")


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the real `hitl` entry point in a subprocess, with the test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "hitl.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )
