"""Basic auth on the local Prefect server: `hitl serve` with PREFECT_SERVER_API_AUTH_STRING starts its
own server (a separate one, on a free port, with its own PREFECT_HOME) that refuses unauthenticated
API calls, while its runner, the flow processes it starts, the notification setup and the CLI (with
PREFECT_API_AUTH_STRING) all work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hitl.demo import generate_tickets, write_batch

from .lifecycle_stack import wait_for
from .support import ROOT, free_port
from .test_notifications import WebhookReceiver

AUTH = f"admin:{uuid.uuid4().hex}"
WEBHOOK_TOKEN = f"T{uuid.uuid4().hex}"


class Served:
    def __init__(self, api: str, home: Path, log: Path, webhook: WebhookReceiver) -> None:
        self.api, self.home, self.log, self.webhook = api, home, log, webhook

    def call(self, method: str, path: str, auth: str | None = AUTH, **kwargs: Any) -> httpx.Response:
        """One API call, retried on 503 (a busy SQLite-backed server) as Prefect's client does."""
        basic = tuple(auth.split(":", 1)) if auth else None
        for _ in range(10):
            response = httpx.request(method, f"{self.api}{path}", auth=basic, timeout=10, **kwargs)  # type: ignore[arg-type]
            if response.status_code != 503:
                break
            time.sleep(1)
        return response


def _clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HITL_"))}
    return {
        **env,
        "HITL_HOME": str(home / "var"),
        "PREFECT_HOME": str(home / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`hitl serve --port FREE` in a subprocess, with basic auth on and a notification webhook set."""
    home = tmp_path_factory.mktemp("auth")
    port = free_port()
    webhook = WebhookReceiver()
    env = {
        **_clean_env(home),
        "PREFECT_SERVER_API_AUTH_STRING": AUTH,
        "HITL_NOTIFY_WEBHOOK_URL": f"{webhook.base}/services/{WEBHOOK_TOKEN}",
    }
    log = home / "serve.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "hitl.cli", "serve", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    api = f"http://127.0.0.1:{port}/api"
    stack = Served(api, home, log, webhook)

    def ready() -> bool:
        assert process.poll() is None, log.read_text()
        try:
            found = stack.call("POST", "/deployments/filter", json={})
        except httpx.HTTPError:
            return False
        return found.status_code == 200 and len(found.json()) >= 4 and "Prefect UI:" in log.read_text()

    try:
        wait_for(ready, timeout=180, what="hitl serve with basic auth")
        yield stack
    finally:
        process.send_signal(signal.SIGTERM)  # serve's clean shutdown: runner, then its server
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        webhook.close()


def test_unauthenticated_calls_are_refused(served: Served) -> None:
    assert served.call("POST", "/flow_runs/filter", auth=None, json={}).status_code == 401
    assert served.call("POST", "/flow_runs/filter", auth="admin:wrong", json={}).status_code == 401
    assert served.call("POST", "/block_documents/filter", auth=None, json={}).status_code == 401
    assert served.call("POST", "/flow_runs/filter", json={}).status_code == 200
    # Prefect leaves the health probe open (for load balancers); it reveals nothing.
    assert httpx.get(f"{served.api}/health", timeout=10).status_code == 200


def test_runner_and_flow_processes_authenticate(served: Served) -> None:
    """A run of a served deployment is picked up by serve's runner and executed in a flow process
    that reports its states to the protected API."""
    [deployment] = served.call(
        "POST", "/deployments/filter", json={"deployments": {"name": {"any_": ["checkpoint-timeouts"]}}}
    ).json()
    created = served.call("POST", f"/deployments/{deployment['id']}/create_flow_run", json={})
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]

    def finished() -> str | None:
        state = served.call("GET", f"/flow_runs/{run_id}").json()["state_type"]
        return state if state in ("COMPLETED", "FAILED", "CRASHED") else None

    assert wait_for(finished, timeout=120, what="the checkpoint-timeouts run") == "COMPLETED"


def test_serve_set_up_notifications_through_the_protected_api(served: Served) -> None:
    automations = served.call("POST", "/automations/filter", json={}).json()
    assert {a["name"] for a in automations} >= {"hitl-checkpoint-waiting", "hitl-checkpoint-timed-out"}
    log = served.log.read_text()
    assert "notifications: automation hitl-checkpoint-waiting" in log
    assert AUTH not in log and WEBHOOK_TOKEN not in log


def _cli(served: Served, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """The real `hitl` entry point with only this server's environment (nothing from the session)."""
    return _cli_at(served.api, served.home, *args, **extra)


def _cli_at(api: str, home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {**_clean_env(home), "PREFECT_API_URL": api, **extra}
    return subprocess.run(
        [sys.executable, "-m", "hitl.cli", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
        cwd=ROOT,
    )


def test_cli_works_with_the_auth_string_and_fails_without(served: Served, tmp_path: Path) -> None:
    batch = str(write_batch(tmp_path / "batch.csv", generate_tickets(count=5, seed=3)))
    ingest = ("ingest", batch, "--json", "--no-lifecycle", "--keep-files")
    ok = _cli(served, *ingest, PREFECT_API_AUTH_STRING=AUTH)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert report["inserted"] == 5 and report["status"] == "completed"
    assert served.call("GET", f"/flow_runs/{report['flow_run_id']}").json()["state_type"] == "COMPLETED"
    assert AUTH not in ok.stdout + ok.stderr

    refused = _cli(served, *ingest)
    assert refused.returncode == 1
    assert "(401)" in refused.stderr and "PREFECT_API_AUTH_STRING" in refused.stderr, refused.stderr
    assert refused.stderr.strip().count("\n") == 0 and "Traceback" not in refused.stderr


def test_notify_cli_names_the_missing_auth_string(served: Served) -> None:
    hook = f"{served.webhook.base}/x"
    refused = _cli(served, "notify", "setup", HITL_NOTIFY_WEBHOOK_URL=hook)
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: the Prefect API refused the request: HTTP 401")
    assert "PREFECT_API_AUTH_STRING" in refused.stderr
    ok = _cli(served, "notify", "setup", "--json", HITL_NOTIFY_WEBHOOK_URL=hook, PREFECT_API_AUTH_STRING=AUTH)
    assert ok.returncode == 0, ok.stderr
    assert [b["outcome"] for b in json.loads(ok.stdout)["blocks"]] == ["updated"]


def test_a_failing_prefect_api_is_one_line() -> None:
    """A 503 from a real local HTTP server, raised as the Prefect client raises it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    from hitl.cli import _api_refusal

    class Busy(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/api/flow_runs/x/resume"
        with pytest.raises(httpx.HTTPStatusError) as caught:
            httpx.post(url, timeout=10).raise_for_status()
    finally:
        server.shutdown()
    wrapped = RuntimeError("resume failed")
    wrapped.__cause__ = caught.value
    line = _api_refusal(wrapped)
    assert line is not None and "\n" not in line
    assert line.startswith(f"the Prefect API at 127.0.0.1:{server.server_address[1]} answered 503")
    assert "POST /api/flow_runs/x/resume after its retries" in line and line.endswith("try again")


def test_an_unreachable_prefect_api_is_one_line(tmp_path: Path) -> None:
    """The real `hitl` entry point against a port nobody listens on: one line naming the address."""
    from hitl.models import TicketRecord
    from hitl.store.db import Database

    from .test_lifecycle_engine import ingest

    (tmp_path / "var").mkdir()
    database = Database(f"sqlite:///{tmp_path / 'var' / 'hitl.db'}")  # the CLI's default under HITL_HOME
    [ticket_id] = ingest(database, [TicketRecord(external_id="U-1", body="printer jam")])
    database.dispose()
    port = free_port()  # a ticket that exists, so `lifecycle start` goes on to the API
    done = _cli_at(f"http://127.0.0.1:{port}/api", tmp_path, "lifecycle", "start", str(ticket_id))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: cannot reach the Prefect API at http://127.0.0.1:{port} (")
    assert "repeat the command" in done.stderr


def test_a_connection_lost_mid_request_says_to_look_before_repeating() -> None:
    """A real local server that reads the request and closes without answering."""
    import socket
    import threading

    from hitl.cli import _api_refusal

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up() -> None:
        conn, _ = listener.accept()
        conn.recv(65536)
        conn.close()

    threading.Thread(target=hang_up, daemon=True).start()
    try:
        with pytest.raises(httpx.TransportError) as caught:
            httpx.post(f"http://127.0.0.1:{port}/api/flow_runs/x/resume", json={}, timeout=10)
    finally:
        listener.close()
    wrapped = RuntimeError("resume failed")
    wrapped.__context__ = caught.value
    line = _api_refusal(wrapped)
    assert line is not None and "\n" not in line
    assert line.startswith(f"the Prefect API at http://127.0.0.1:{port} stopped answering mid-request (")
    assert "may have taken effect" in line
