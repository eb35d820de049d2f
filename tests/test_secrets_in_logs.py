"""Secrets never leave through logs: with an RMM token, an SMTP password, a notification webhook URL
and a PSA token planted in the environment, real runs use all four (checkpoint notifications by
webhook and e-mail, two human approvals, a remediation through the webhook executor against an RMM
that echoes the token back, `hitl outbox send`, and an ingestion from a PSA API that refuses the
token and echoes it). Afterwards no secret appears in the run logs, flow/task runs, events,
artifacts, automations or blocks read from the Prefect API, in the CLI's stdout/stderr, in the audit
trail, in any file the stack wrote (runner and server logs included), or in either database file."""

from __future__ import annotations

import base64
import json
import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from sqlalchemy import select

from hitl.models import TicketRecord
from hitl.store.orm import ActionExecution, AuditEvent, Decision, OutboxMessage

from .lifecycle_stack import state_of, wait_for
from .support import run_cli
from .test_notifications import HUMAN, LENIENT, SmtpReceiver, Stack, WebhookReceiver, lifecycle_stack

RMM_TOKEN = f"rmm-{uuid.uuid4().hex}"
SMTP_PASSWORD = f"smtp-{uuid.uuid4().hex}:p@ss/w&rd"
WEBHOOK_TOKEN = f"hook{uuid.uuid4().hex}"
HTTP_TOKEN = f"psa-{uuid.uuid4().hex}"
SECRETS = {
    "HITL_RMM_TOKEN": RMM_TOKEN,
    "HITL_SMTP_PASSWORD": SMTP_PASSWORD,
    "webhook URL token": WEBHOOK_TOKEN,
    "HITL_HTTP_TOKEN": HTTP_TOKEN,
}


def _forms(secret: str) -> list[str]:
    """The secret as it could leak: plain, URL-quoted, and inside an SMTP AUTH PLAIN blob."""
    auth_plain = base64.b64encode(f"\0relay-user\0{secret}".encode()).decode()
    return [secret, quote(secret, safe=""), auth_plain]


def assert_clean(where: str, text: str | bytes) -> None:
    data = text if isinstance(text, str) else text.decode("utf-8", "replace")
    for name, secret in SECRETS.items():
        for form in _forms(secret):
            assert form not in data, f"{name} leaked into {where}"


class EchoingRmm:
    """The RMM gateway (POST) and a PSA API (GET), hostile: they answer every request with the
    Authorization header they got; the PSA refuses with HTTP 401."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self.rfile.read(length)
                auth = self.headers.get("Authorization", "")
                outer.requests.append({"path": self.path, "authorization": auth})
                body = json.dumps({"ok": True, "echo": f"you sent {auth}"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                auth = self.headers.get("Authorization", "")
                outer.requests.append({"path": self.path, "authorization": auth})
                self.send_response(401)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(json.dumps({"error": f"token {auth} is not valid"}).encode())

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


class Scenario:
    def __init__(self, stack: Stack, home: Path) -> None:
        self.stack, self.home = stack, home
        self.outputs: list[tuple[str, str]] = []

    def cli(self, *args: str, ok: bool = True) -> str:
        result = run_cli(*args)
        self.outputs.append((" ".join(args), result.stdout + result.stderr))
        if ok:
            assert result.returncode == 0, f"{args}: {result.stderr}"
        return result.stdout

    def waiting(self, ticket_id: int, checkpoint: str, run_id: str) -> Decision:
        """The run suspended at `checkpoint` (read from the store: polling the CLI costs seconds a call)."""

        def check() -> Decision | None:
            if state_of(self.stack.api, run_id)[1] != "Suspended":
                return None
            with self.stack.db.session() as session:
                return session.execute(
                    select(Decision).where(
                        Decision.ticket_id == ticket_id,
                        Decision.checkpoint == checkpoint,
                        Decision.status == "waiting",
                        Decision.flow_run_id == run_id,
                    )
                ).scalar_one_or_none()

        return wait_for(check, what=f"ticket {ticket_id} waiting at {checkpoint}")


@pytest.fixture(scope="module")
def scenario(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    home = tmp_path_factory.mktemp("secrets")
    rmm, webhook = EchoingRmm(), WebhookReceiver()
    smtp = SmtpReceiver(username="relay-user", password=SMTP_PASSWORD)
    env = {
        "HITL_RMM_WEBHOOK_URL": rmm.url,
        "HITL_RMM_TOKEN": RMM_TOKEN,
        "HITL_NOTIFY_WEBHOOK_URL": f"{webhook.base}/services/{WEBHOOK_TOKEN}",
        "HITL_SMTP_HOST": "127.0.0.1",
        "HITL_SMTP_PORT": str(smtp.port),
        "HITL_SMTP_STARTTLS": "false",
        "HITL_SMTP_SENDER": "servicedesk@msp.example",
        "HITL_SMTP_USERNAME": "relay-user",
        "HITL_SMTP_PASSWORD": SMTP_PASSWORD,
        "HITL_NOTIFY_EMAIL_TO": "dispatch@msp.example",
        "HITL_HTTP_TOKEN": HTTP_TOKEN,
    }
    try:
        with lifecycle_stack(prefect_api, home, env) as stack:
            played = Scenario(stack, home)
            played.rmm, played.webhook, played.smtp = rmm, webhook, smtp  # type: ignore[attr-defined]
            _play(played)
            yield played
    finally:
        for server in (rmm.server, webhook.server, smtp.server):
            server.shutdown()
            server.server_close()


def _play(s: Scenario) -> None:
    s.cli("notify", "setup", "--smtp", "--json")
    s.stack.policy(
        triage=HUMAN, escalation=LENIENT, reply=LENIENT, remediation={"threshold": 0.0, "audit_rate": 0.0}
    )
    record = TicketRecord(
        external_id="SECRET-FW-1",
        client="Northgate Freight & Logistics",
        requester_email="it.lead@northgate.example",
        subject="Whitelist 198.51.100.23 on port 8443 (firewall change)",
        body="Please add an allow rule on the firewall so 198.51.100.23 can reach our SFTP "
        "server on TCP port 8443.",
        priority="medium",
    )
    ticket_id, run_id = s.stack.start(record)
    s.ticket_id, s.run_id = ticket_id, run_id  # type: ignore[attr-defined]
    triage = s.waiting(ticket_id, "triage", run_id)
    queue = json.loads(s.cli("queue", "--json"))
    assert [i["checkpoint"] for i in queue if i["ticket_id"] == ticket_id] == ["triage"]
    if triage.ai_value == "firewall_change":
        s.cli("resume", run_id, "--decision", "approve", "--reviewer", "alice")
    else:
        s.cli(
            "resume", run_id, "--decision", "override", "--value", "firewall_change",
            "--reason-code", "wrong_category", "--reviewer", "alice",
        )  # fmt: skip
    s.waiting(ticket_id, "remediation", run_id)
    s.cli("resume", run_id, "--decision", "approve", "--reviewer", "bob")
    s.waiting(ticket_id, "remediation", run_id)
    s.cli("resume", run_id, "--decision", "approve", "--reviewer", "carol")
    assert s.stack.finished(run_id) == "COMPLETED"
    s.cli("outbox", "send")  # the reply goes to the requester, after the login
    s.cli("outbox", "list", "--json")
    s.cli("audit", "show", str(ticket_id), "--json")
    s.cli("audit", "verify")
    s.cli("notify", "test", "--json")
    psa = f"{s.rmm.url}/psa/tickets"  # type: ignore[attr-defined]
    s.cli("ingest", psa, "--json", "--no-lifecycle", ok=False)
    assert "HTTP 401" in s.outputs[-1][1], s.outputs[-1][1]


# ---------------------------------------------------------------- the secrets were really used
def test_the_run_used_every_secret(scenario: Scenario) -> None:
    rmm, webhook, smtp = scenario.rmm, scenario.webhook, scenario.smtp  # type: ignore[attr-defined]
    posts = [r for r in rmm.requests if not r["path"].startswith("/psa/")]
    assert [r["path"] for r in posts] == ["/firewall/config-backups", "/firewall/rules"]
    assert {r["authorization"] for r in posts} == {f"Bearer {RMM_TOKEN}"}
    psa = [r["authorization"] for r in rmm.requests if r["path"].startswith("/psa/")]
    assert psa and set(psa) == {f"Bearer {HTTP_TOKEN}"}
    ticket_id = scenario.ticket_id  # type: ignore[attr-defined]
    wait_for(
        lambda: any(f"Ticket {ticket_id} waits" in t for t in webhook.texts()),
        timeout=60,
        what="a waiting notification",
    )
    assert all(p["path"] == f"/services/{WEBHOOK_TOKEN}" for p in webhook.posts)
    wait_for(lambda: len(smtp.logins) >= 2, timeout=60, what="SMTP logins (notification and outbox)")
    assert set(smtp.logins) == {("relay-user", SMTP_PASSWORD)}
    with scenario.stack.db.session() as session:
        [execution] = session.execute(
            select(ActionExecution).where(ActionExecution.ticket_id == ticket_id)
        ).scalars()
        assert execution.status == "succeeded" and "Bearer ***" in (execution.output or "")
        assert session.execute(select(OutboxMessage)).first() is not None


# ---------------------------------------------------------------- ... and appear nowhere
def _pages(api: str, path: str, body: dict[str, Any] | None = None) -> Iterator[str]:
    offset = 0
    while True:
        page = httpx.post(
            f"{api}/{path}/filter", json={**(body or {}), "limit": 200, "offset": offset}, timeout=30
        )
        assert page.status_code == 200, page.text
        yield page.text
        if len(page.json()) < 200:
            return
        offset += 200


def test_no_secret_in_the_prefect_api(scenario: Scenario, prefect_api: str) -> None:
    run_filter = {"logs": {"flow_run_id": {"any_": [scenario.run_id]}}}  # type: ignore[attr-defined]
    assert json.loads(next(_pages(prefect_api, "logs", run_filter))), "the lifecycle run logged nothing"
    assert_clean("run logs", "".join(_pages(prefect_api, "logs")))
    for path in ("flow_runs", "task_runs", "artifacts", "deployments", "automations", "block_documents"):
        assert_clean(path, "".join(_pages(prefect_api, path)))
    for run in json.loads(next(_pages(prefect_api, "flow_runs"))):
        keys = httpx.get(f"{prefect_api}/flow_runs/{run['id']}", timeout=10).text
        assert_clean(f"flow run {run['id']}", keys)
    events = httpx.post(f"{prefect_api}/events/filter", json={"limit": 50}, timeout=30).json()
    seen = 0
    while True:
        seen += len(events["events"])
        assert_clean("events", json.dumps(events))
        if not events.get("next_page"):
            break
        events = httpx.get(events["next_page"], timeout=30).json()
    assert seen > 0


def test_no_secret_in_cli_output_audit_trail_or_files(scenario: Scenario) -> None:
    assert len(scenario.outputs) >= 10
    for command, output in scenario.outputs:
        assert_clean(f"`hitl {command}`", output)
    with scenario.stack.db.session() as session:
        audit = [f"{e.kind} {e.actor} {e.body}" for e in session.execute(select(AuditEvent)).scalars()]
        executions = [f"{e.output}\n{e.error}" for e in session.execute(select(ActionExecution)).scalars()]
    assert any("checkpoint.waiting" in row for row in audit)
    assert_clean("the audit trail", "\n".join(audit))
    assert_clean("action executions", "\n".join(executions))
    scanned = 0
    prefect_home = Path(os.environ["PREFECT_HOME"])  # the session server's log and database
    for root in (scenario.home, prefect_home):
        for path in root.rglob("*"):
            if path.is_file():
                assert_clean(str(path), path.read_bytes())
                scanned += 1
    assert (scenario.home / "serve.log").stat().st_size > 0 and (prefect_home / "server.log").exists()
    assert scanned > 5
