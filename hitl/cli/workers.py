"""`hitl deploy` and `hitl worker`: scale-out. The deployments are registered on a Prefect process
work pool, and `prefect worker start` processes (one or more per machine) run their flows, instead
of the single runner of `hitl serve`. See docs/scale-out.md."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import sys
from pathlib import Path

import typer

from hitl.cli.common import out
from hitl.errors import ConfigError
from hitl.settings import Settings, get_settings

app = typer.Typer()


def _server(settings: Settings, what: str) -> str:
    """The Prefect server to use; a work pool on the embedded, per-process server serves nobody."""
    from hitl.prefect_env import configure_prefect

    configure_prefect(settings)
    api = os.environ.get("PREFECT_API_URL")
    if not api:
        raise ConfigError(f"{what} needs a running Prefect server: set PREFECT_API_URL (docs/scale-out.md)")
    import httpx

    try:
        httpx.get(f"{api.rstrip('/')}/health", timeout=10).raise_for_status()
    except httpx.HTTPError as exc:
        raise ConfigError(f"the Prefect server at {api} does not answer ({type(exc).__name__})") from exc
    return api


@app.command()
def deploy(
    work_pool: str | None = typer.Option(
        None, "--work-pool", help="Process work pool to register on (default: HITL_WORK_POOL)."
    ),
) -> None:
    """Register every deployment on a process work pool (created if missing), for `hitl worker`."""
    settings = get_settings()
    api = _server(settings, "hitl deploy")
    pool = work_pool or settings.work_pool
    from deployments.work_pool import deploy_to_work_pool

    with contextlib.redirect_stdout(io.StringIO()):  # Prefect prints a table and hints per deployment
        registered = deploy_to_work_pool(settings, pool)
    for name, deployment_id in registered.items():
        out.print(f"registered {name} ({deployment_id}) on work pool {pool}")
    out.print(f"server {api}; start workers with: hitl worker --pool {pool}")


def worker_command(pool: str, limit: int, name: str | None) -> list[str]:
    prefect = Path(sys.executable).with_name("prefect")
    command = [str(prefect), "worker", "start", "--pool", pool, "--type", "process", "--limit", str(limit)]
    return [*command, "--name", name] if name else command


@app.command()
def worker(
    pool: str | None = typer.Option(None, "--pool", help="Work pool to poll (default: HITL_WORK_POOL)."),
    limit: int | None = typer.Option(
        None, "--limit", min=1, help="Flow processes at once (default: HITL_RUNNER_LIMIT)."
    ),
    name: str | None = typer.Option(
        None, "--name", help="Worker name, unique per pool (default: Prefect's)."
    ),
) -> None:
    """Run a Prefect process worker for the product's deployments in the foreground (Ctrl-C stops it).

    The worker and every flow process it starts get this environment: PREFECT_API_URL, PREFECT_HOME,
    and the HITL_ settings (HITL_HOME made absolute, since flows start in the repository root)."""
    settings = get_settings()
    _server(settings, "hitl worker")
    from hitl.store.db import get_database

    get_database(settings).ensure_schema()  # fail fast on an unreachable database, not in every run
    os.environ["HITL_HOME"] = str(settings.home)
    # resume -> next stage in ~3-5 s rather than ~12 s (Prefect polls every 10 s by default)
    os.environ.setdefault("PREFECT_WORKER_QUERY_SECONDS", "1")
    command = worker_command(pool or settings.work_pool, limit or settings.runner_limit, name)
    out.print(f"running: {shlex.join(command)}")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(command[0], command)  # the worker replaces this process: signals reach it directly
