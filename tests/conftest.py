"""Shared fixtures: a real Prefect server for the session, and a fresh application database per
test on SQLite and (when configured) PostgreSQL.

PostgreSQL tests read HITL_TEST_DATABASE_URL (`make test` sets it when PostgreSQL answers);
each test gets its own schema, dropped afterwards. Without it they are skipped with the reason,
except under CI=true, where a missing PostgreSQL fails the run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from hitl.settings import Settings, get_settings
from hitl.store import db as db_module

from .support import IN_CI, PG_URL, free_port


# ---------------------------------------------------------------- labelled demo tickets
@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """400 generated tickets with every label (category, business_service, ...), one file per module."""
    from hitl.demo import generate_tickets, write_batch

    path = tmp_path_factory.mktemp("ml") / "labelled.csv"
    write_batch(path, generate_tickets(count=400, seed=5))
    return path


# ---------------------------------------------------------------- Prefect
@pytest.fixture(scope="session")
def prefect_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `prefect server` on a free port, for in-process flows and CLI subprocesses alike."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home}/prefect.db",
        # The UI asks /ui-settings where the API is; unset, it says port 4200, not this server's.
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("w")
    prefect = shutil.which("prefect", path=str(Path(sys.executable).parent)) or "prefect"
    proc = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"Prefect server did not start; see {home / 'server.log'}")
        time.sleep(0.5)
    previous = {k: os.environ.get(k) for k in ("PREFECT_API_URL", "PREFECT_HOME")}
    os.environ["PREFECT_API_URL"] = url
    os.environ["PREFECT_HOME"] = str(home)
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


# ---------------------------------------------------------------- databases
def _postgres_schema_url(schema: str) -> str:
    assert PG_URL is not None
    separator = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema of this test's own."""
    if not PG_URL:
        if IN_CI:
            pytest.fail("CI=true but HITL_TEST_DATABASE_URL is unset: PostgreSQL must be running in CI")
        pytest.skip("PostgreSQL tests skipped: HITL_TEST_DATABASE_URL is not set (make test sets it)")
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _postgres_schema_url(schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hitl.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def settings(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings for one test: its own HITL_HOME and database, visible to subprocesses via the env."""
    monkeypatch.setenv("HITL_HOME", str(tmp_path / "var"))
    monkeypatch.setenv("HITL_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()
    for database in db_module._databases.values():
        database.dispose()
    db_module._databases.clear()


@pytest.fixture
def database(settings: Settings) -> db_module.Database:
    return db_module.get_database(settings)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the temporary Prefect servers that Prefect starts by itself for code run without
    `prefect_api`, while pytest's output streams are still open: left to Prefect's atexit hook,
    their "Stopping temporary server" log line hits a closed stream and prints a "Logging error"
    traceback under the test summary, which reads like a failure."""
    from prefect.server.api.server import SubprocessASGIServer

    for server in list(SubprocessASGIServer._instances.values()):
        server.stop()
