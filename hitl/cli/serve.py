"""`hitl serve`: the live system in the foreground: a local Prefect server (unless PREFECT_API_URL
points elsewhere), every deployment registered and served by this process's runner, and,
with `--demo`, a demo batch ingested so that waiting checkpoints appear in the UI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import typer

from hitl.cli.common import out
from hitl.errors import HitlError
from hitl.settings import Settings, get_settings

app = typer.Typer()


def start_prefect_server(host: str, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    """`prefect server start` as a child process; returns once /api/health answers."""
    url = f"http://{host}:{port}/api/health"
    try:
        if httpx.get(url, timeout=1).status_code == 200:
            raise HitlError(f"something already answers on {host}:{port}; set PREFECT_API_URL to use it")
    except httpx.HTTPError:
        pass
    prefect = Path(sys.executable).with_name("prefect")
    log = log_path.open("ab")
    process = subprocess.Popen(
        [str(prefect), "server", "start", "--host", host, "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise HitlError(f"the Prefect server exited at start; see {log_path}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.terminate()
    raise HitlError(f"the Prefect server did not answer within 120 s; see {log_path}")


def _demo(settings: Settings) -> None:
    from hitl.demo import generate_tickets, write_batch
    from hitl.lifecycle.demo_models import ensure_demo_models

    for line in ensure_demo_models(settings):
        out.print(line)
    batch = write_batch(settings.effective_inbox / "demo-seed7-60.csv", generate_tickets(count=60, seed=7))
    out.print(f"demo batch of 60 tickets in {batch}; ingesting with the lifecycle ...")
    from flows.ingestion import nightly_ingestion

    report = nightly_ingestion(path=str(settings.effective_inbox), mapping="canonical", source="demo")
    out.print(f"ingested: {report.stats.model_dump()}")


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _flush_to_api() -> None:
    """Send the logs and events still queued for the Prefect API while our server still answers.
    Queued for a server already stopped, they kept `hitl serve` alive 75-79 s after a SIGTERM:
    Prefect's log worker retries a refused connection before it gives up at interpreter exit,
    past docker's 10 s stop deadline and near systemd's 90 s. Each drain is bounded (5 s)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=5)
    EventsWorker.drain_all(timeout=5)


@app.command()
def serve(
    demo: bool = typer.Option(
        False, "--demo", help="Also train demo models if none and ingest a demo batch."
    ),
    host: str = typer.Option("127.0.0.1", help="Where the local Prefect server listens."),
    port: int = typer.Option(4200, help="Port of the local Prefect server."),
) -> None:
    """Run the live system until Ctrl-C."""
    from hitl.prefect_env import configure_prefect, throttle_runner_capacity_messages

    settings = get_settings()
    signal.signal(signal.SIGTERM, _stop)  # a service manager's stop is a Ctrl-C: clean shutdown
    configure_prefect(settings)
    os.environ.setdefault("PREFECT_RUNNER_POLL_FREQUENCY", "1")  # resume -> next stage in ~3 s, not ~12 s
    server = None
    if not os.environ.get("PREFECT_API_URL"):
        # PREFECT_SERVER_API_AUTH_STRING (inherited by the server) turns on basic auth; this
        # process, its runner and every flow process it starts then send the same string.
        if os.environ.get("PREFECT_SERVER_API_AUTH_STRING"):
            os.environ.setdefault("PREFECT_API_AUTH_STRING", os.environ["PREFECT_SERVER_API_AUTH_STRING"])
        out.print(
            f"starting a Prefect server on {host}:{port} (PREFECT_HOME={os.environ['PREFECT_HOME']}) ..."
        )
        server = start_prefect_server(host, port, settings.home / "prefect-server.log")
        os.environ["PREFECT_API_URL"] = f"http://{host}:{port}/api"
    try:
        from prefect import serve as prefect_serve

        from deployments.definitions import all_deployments
        from hitl.lifecycle.runs import start_runs_for_waiting

        throttle_runner_capacity_messages()  # after importing prefect, which configures its loggers
        deployments = all_deployments(settings)
        for deployment in deployments:
            deployment.apply()
        from hitl.notifications import setup_from_settings

        for line in setup_from_settings(settings):  # only when a webhook or SMTP is configured
            out.print(line)
        if demo:
            _demo(settings)
        started = start_runs_for_waiting()
        if started:
            out.print(f"started lifecycle runs for {len(started)} waiting ticket(s)")
        ui = os.environ["PREFECT_API_URL"].removesuffix("/api")
        out.print(f"Prefect UI: {ui}  ·  approval queue: `hitl queue`  ·  Ctrl-C stops everything")
        # Schedules must survive a restart (Prefect pauses them on shutdown by default), and the
        # runner starts at most HITL_RUNNER_LIMIT flow processes at once: waiting runs hold none.
        prefect_serve(*deployments, pause_on_shutdown=False, limit=settings.runner_limit)
    finally:
        if server is not None:
            try:
                _flush_to_api()
            finally:  # whatever the flush does, the server (in a session of its own) never outlives us
                server.terminate()
                try:
                    server.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    server.kill()
