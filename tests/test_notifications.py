"""Checkpoint notifications end to end: `hitl notify setup` puts blocks and automations on the
session's Prefect server; a real lifecycle run that starts waiting (and the real checkpoint-timeouts
flow) emit the events; the server's automation service posts to a real HTTP receiver on 127.0.0.1 and
sends e-mail through a real SMTP receiver (with AUTH PLAIN) on 127.0.0.1."""

from __future__ import annotations

import base64
import email
import json
import os
import socketserver
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from hitl.demo import generate_tickets
from hitl.ml import service
from hitl.ml.dataset import LabelledSet, label_of, ticket_text
from hitl.ml.pipelines import PipelineSpec
from hitl.ml.training import train
from hitl.models import TicketRecord
from hitl.settings import get_settings
from hitl.store import db as db_module
from hitl.store.db import Database

from .lifecycle_stack import served_deployments, set_policy, state_of, wait_for
from .support import free_port, run_cli
from .test_lifecycle_engine import ingest

LENIENT = {"threshold": 0.0, "audit_rate": 0.0, "autonomous_values": None}
HUMAN = {"threshold": 1.0, "audit_rate": 0.0, "autonomous_values": []}  # always asks a human


# ---------------------------------------------------------------- real local receivers
class WebhookReceiver:
    """An HTTP server on 127.0.0.1 recording every POST; paths containing /fail get HTTP 500."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                outer.posts.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(raw)}
                )
                self.send_response(500 if "/fail" in self.path else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"

    def texts(self) -> list[str]:
        return [str(p["json"].get("text", "")) for p in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class SmtpReceiver:
    """A small SMTP server on 127.0.0.1 that offers AUTH PLAIN, requires it when a password is set,
    and records each login and message (a real socket and a real SMTP dialogue)."""

    def __init__(self, username: str | None = None, password: str | None = None) -> None:
        self.username, self.password = username, password
        self.logins: list[tuple[str, str]] = []
        self.messages: list[tuple[str, list[str], Message]] = []
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def send(self, line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")
                self.wfile.flush()

            def handle(self) -> None:
                self.send("220 hitl-test ESMTP")
                authed, sender, recipients = outer.password is None, "", []
                while raw := self.rfile.readline():
                    line = raw.decode("utf-8", "replace").rstrip("\r\n")
                    verb, _, rest = line.partition(" ")
                    verb = verb.upper()
                    if verb == "EHLO":
                        self.send("250-hitl-test")
                        self.send("250-AUTH PLAIN")
                        self.send("250 8BITMIME")
                    elif verb == "HELO":
                        self.send("250 hitl-test")
                    elif verb == "AUTH":
                        mechanism, _, blob = rest.partition(" ")
                        if mechanism.upper() != "PLAIN":
                            self.send("504 5.5.4 only PLAIN")
                            continue
                        if not blob:
                            self.send("334 ")
                            blob = self.rfile.readline().decode().strip()
                        _, user, password = base64.b64decode(blob).decode().split("\0")
                        outer.logins.append((user, password))
                        authed = (user, password) == (outer.username, outer.password)
                        self.send("235 2.7.0 accepted" if authed else "535 5.7.8 bad credentials")
                    elif verb == "MAIL":
                        if not authed:
                            self.send("530 5.7.0 authentication required")
                            continue
                        sender = rest.split(":", 1)[1].strip().strip("<>")
                        self.send("250 ok")
                    elif verb == "RCPT":
                        recipients.append(rest.split(":", 1)[1].strip().strip("<>"))
                        self.send("250 ok")
                    elif verb == "DATA":
                        self.send("354 end with .")
                        lines = []
                        while (data := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                            lines.append(data[1:] if data.startswith(b"..") else data)
                        outer.messages.append((sender, recipients, email.message_from_bytes(b"".join(lines))))
                        sender, recipients = "", []
                        self.send("250 queued")
                    elif verb == "RSET":
                        sender, recipients = "", []
                        self.send("250 ok")
                    elif verb == "QUIT":
                        self.send("221 bye")
                        return
                    else:
                        self.send("250 ok")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.port = int(self.server.server_address[1])

    def texts(self) -> list[tuple[str, str]]:
        """(subject, plain-text body) of each message."""
        found = []
        for _, _, message in self.messages:
            part = next((p for p in message.walk() if p.get_content_type() == "text/plain"), message)
            payload = part.get_payload(decode=True)
            body = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
            found.append((str(message["Subject"]), body))
        return found

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------- a served lifecycle stack
class Stack:
    def __init__(self, api: str, db: Database) -> None:
        self.api, self.db = api, db

    def policy(self, **checkpoints: dict[str, Any]) -> None:
        set_policy(self.db, **checkpoints)

    def start(self, record: TicketRecord) -> tuple[int, str]:
        from hitl.lifecycle.runs import start_lifecycle_runs

        [ticket_id] = ingest(self.db, [record])
        return ticket_id, start_lifecycle_runs([ticket_id])[ticket_id]

    def suspended(self, run_id: str) -> None:
        def check() -> bool:
            kind, name = state_of(self.api, run_id)
            assert kind not in ("FAILED", "CRASHED"), (kind, name)
            return name == "Suspended"

        wait_for(check, what=f"run {run_id} suspended")

    def finished(self, run_id: str) -> str:
        def check() -> str | None:
            kind, _ = state_of(self.api, run_id)
            return kind if kind in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        return wait_for(check, what=f"run {run_id} finished")


@contextmanager
def lifecycle_stack(api: str, home: Path, env: dict[str, str]) -> Iterator[Stack]:
    """`env` in this process and the served deployments, a trained category model, the deployments
    served by a runner process; everything (env, notifications on the server) undone afterwards."""
    env = {
        "HITL_HOME": str(home / "var"),
        "HITL_DATABASE_URL": f"sqlite:///{home / 'hitl.db'}",
        "HITL_TRIAGE_HEADS": "category",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        **env,
    }
    from hitl.notifications import remove

    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    remove()  # whatever an earlier, interrupted session left on the server
    database = db_module.get_database()
    data = LabelledSet(description="demo")
    for r in generate_tickets(count=600, seed=11):
        data.texts.append(ticket_text(r.subject, r.body))
        data.labels.append(label_of(r, "category") or "")
    result = train(data, "category", cv_folds=0, spec=PipelineSpec(char_ngram=None))
    with database.session() as session:
        service.register(
            session, get_settings().effective_models_dir, result, data, "category", make_active=True
        )
    try:
        with served_deployments(env, home / "serve.log"):
            wait_for(
                lambda: (
                    httpx.get(
                        f"{api}/deployments/name/ticket-lifecycle/ticket-lifecycle", timeout=5
                    ).status_code
                    == 200
                ),
                what="the served deployments",
            )
            yield Stack(api, database)
    finally:
        remove()  # the session's server is shared: leave no automation firing at a closed receiver
        for key, value in previous.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        get_settings.cache_clear()
        database.dispose()
        db_module._databases.clear()


# ---------------------------------------------------------------- fixtures
TOKEN = f"T{uuid.uuid4().hex}"  # the secret part of the webhook URL, as in a Slack webhook
PASSWORD = f"smtp-{uuid.uuid4().hex}:p@ss/w?rd&%"


@pytest.fixture(scope="module")
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def smtp() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver(username="relay-user", password=PASSWORD)
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def stack(
    prefect_api: str, tmp_path_factory: pytest.TempPathFactory, webhook: WebhookReceiver, smtp: SmtpReceiver
) -> Iterator[Stack]:
    env = {
        "HITL_NOTIFY_WEBHOOK_URL": f"{webhook.base}/services/{TOKEN}",
        "HITL_SMTP_HOST": "127.0.0.1",
        "HITL_SMTP_PORT": str(smtp.port),
        "HITL_SMTP_STARTTLS": "false",
        "HITL_SMTP_SENDER": "MSP Service Desk <servicedesk@msp.example>",
        "HITL_SMTP_USERNAME": "relay-user",
        "HITL_SMTP_PASSWORD": PASSWORD,
        "HITL_NOTIFY_EMAIL_TO": "dispatch@msp.example, lead@msp.example",
    }
    with lifecycle_stack(prefect_api, tmp_path_factory.mktemp("notify"), env) as served:
        yield served


def webhook_url() -> str:
    return os.environ["HITL_NOTIFY_WEBHOOK_URL"]


def _setup() -> dict[str, Any]:
    result = run_cli("notify", "setup", "--smtp", "--json")
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr and PASSWORD not in result.stdout + result.stderr
    return json.loads(result.stdout)


# ---------------------------------------------------------------- tests
def test_setup_is_idempotent_and_stores_secrets_encrypted(stack: Stack, prefect_api: str) -> None:
    first = _setup()
    assert {b["name"]: b["outcome"] for b in first["blocks"]} == {
        "hitl-notify-webhook": "created",
        "hitl-notify-email": "created",
    }
    assert {a["name"]: (a["event"], a["channels"], a["outcome"]) for a in first["automations"]} == {
        "hitl-checkpoint-waiting": ("hitl.checkpoint.waiting", ["email", "webhook"], "created"),
        "hitl-checkpoint-timed-out": ("hitl.checkpoint.timed_out", ["email", "webhook"], "created"),
    }
    again = _setup()
    assert [b["outcome"] for b in again["blocks"]] == ["unchanged", "unchanged"]
    assert [a["outcome"] for a in again["automations"]] == ["unchanged", "unchanged"]
    assert [b["id"] for b in again["blocks"]] == [b["id"] for b in first["blocks"]]
    assert [a["id"] for a in again["automations"]] == [a["id"] for a in first["automations"]]

    # A changed secret updates the same block in place.
    changed = run_cli("notify", "setup", "--json", env={"HITL_NOTIFY_WEBHOOK_URL": f"{webhook_url()}x"})
    assert changed.returncode == 0, changed.stderr
    [block] = json.loads(changed.stdout)["blocks"]
    assert block["outcome"] == "updated" and block["id"] == first["blocks"][0]["id"]
    assert [b["outcome"] for b in _setup()["blocks"]] == ["updated", "unchanged"]

    # The API returns the blocks without their secrets unless asked for them ...
    for b in first["blocks"]:
        document = httpx.get(f"{prefect_api}/block_documents/{b['id']}", timeout=10).text
        assert TOKEN not in document and "relay-user" not in document and "mailto" not in document
        assert "********" in document
        revealed = httpx.get(
            f"{prefect_api}/block_documents/{b['id']}", params={"include_secrets": "true"}, timeout=10
        ).text
        assert (TOKEN in revealed) if b["channel"] == "webhook" else ("mailto://relay-user:" in revealed)
    # ... and stores them encrypted: the server's database file never holds them in clear.
    home = Path(os.environ["PREFECT_HOME"])
    stored = b"".join(p.read_bytes() for p in home.glob("prefect.db*"))
    assert stored and TOKEN.encode() not in stored and b"relay-user" not in stored


def test_waiting_checkpoint_notifies_webhook_and_email(
    stack: Stack, webhook: WebhookReceiver, smtp: SmtpReceiver
) -> None:
    _setup()
    stack.policy(triage=HUMAN, escalation=LENIENT, reply=LENIENT)
    record = generate_tickets(count=1, seed=51)[0].model_copy(update={"external_id": "NOTIFY-1"})
    ticket_id, run_id = stack.start(record)
    stack.suspended(run_id)

    def posted() -> str | None:
        return next((t for t in webhook.texts() if f"Ticket {ticket_id} waits" in t), None)

    text = wait_for(posted, timeout=60, what="the waiting notification on the webhook")
    assert "the triage checkpoint" in text and f"/runs/flow-run/{run_id}" in text
    assert text.startswith(f"*hitl: ticket {ticket_id} waits at the triage checkpoint*\n")
    [post] = [p for p in webhook.posts if p["json"].get("text") == text]
    assert post["path"] == f"/services/{TOKEN}" and set(post["json"]) == {"text"}
    assert post["headers"]["Content-Type"] == "application/json"

    def mailed() -> list[tuple[str, str]]:
        return [m for m in smtp.texts() if f"ticket {ticket_id} waits" in m[0]]

    mails = wait_for(mailed, timeout=60, what="the waiting notification by e-mail")
    subject, body = mails[0]
    assert subject == f"hitl: ticket {ticket_id} waits at the triage checkpoint"
    assert f"Ticket {ticket_id} waits for a human at the triage checkpoint." in body
    assert f"/runs/flow-run/{run_id}" in body and "&lt;" not in body
    recipients = sorted(
        r for m in smtp.messages if f"ticket {ticket_id}" in str(m[2]["Subject"]) for r in m[1]
    )
    assert recipients == ["dispatch@msp.example", "lead@msp.example"]
    assert ("relay-user", PASSWORD) in smtp.logins
    assert all(m[0] == "servicedesk@msp.example" for m in smtp.messages)


def test_timed_out_checkpoint_notifies(stack: Stack, webhook: WebhookReceiver, smtp: SmtpReceiver) -> None:
    from flows.checkpoint_timeouts import checkpoint_timeouts

    _setup()
    stack.policy(triage={**HUMAN, "timeout_minutes": 0.02}, escalation=LENIENT, reply=LENIENT)
    record = generate_tickets(count=1, seed=52)[0].model_copy(update={"external_id": "NOTIFY-2"})
    ticket_id, run_id = stack.start(record)
    stack.suspended(run_id)
    wait_for(lambda: checkpoint_timeouts() or None, timeout=60, what="a checkpoint to expire")
    assert state_of(stack.api, run_id)[0] == "CANCELLED"

    def posted() -> str | None:
        return next((t for t in webhook.texts() if f"Ticket {ticket_id} timed out" in t), None)

    text = wait_for(posted, timeout=60, what="the timed-out notification on the webhook")
    assert "escalation queue" in text and "nothing was executed or sent" in text
    assert "the triage checkpoint" in text  # the timed-out event names the checkpoint
    assert f"/runs/flow-run/{run_id}" in text
    mails = wait_for(
        lambda: [m for m in smtp.texts() if f"ticket {ticket_id} timed out" in m[0]],
        timeout=60,
        what="the timed-out notification by e-mail",
    )
    assert f"Ticket {ticket_id} timed out" in mails[0][1]


def test_notify_test_reports_each_channel_without_secrets(
    stack: Stack, webhook: WebhookReceiver, smtp: SmtpReceiver
) -> None:
    _setup()
    before = len(webhook.posts), len(smtp.messages)
    result = run_cli("notify", "test", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    assert {r["channel"]: r["ok"] for r in json.loads(result.stdout)} == {"webhook": True, "email": True}
    assert len(webhook.posts) == before[0] + 1 and "test notification" in webhook.texts()[-1]
    assert len(smtp.messages) == before[1] + 2  # one per recipient

    failing = f"{webhook.base}/fail/{TOKEN}"
    assert run_cli("notify", "setup", "--json", env={"HITL_NOTIFY_WEBHOOK_URL": failing}).returncode == 0
    result = run_cli("notify", "test", "--json")
    assert result.returncode == 1
    checks = {r["channel"]: r for r in json.loads(result.stdout)}
    assert checks["email"]["ok"] and not checks["webhook"]["ok"]
    assert "500" in checks["webhook"]["error"]
    assert TOKEN not in result.stdout + result.stderr and PASSWORD not in result.stdout + result.stderr


def test_setup_refuses_without_a_channel_and_names_no_secret(stack: Stack) -> None:
    nothing = run_cli("notify", "setup", env={"HITL_NOTIFY_WEBHOOK_URL": ""})
    assert nothing.returncode == 1 and nothing.stderr.startswith("error: nothing to set up")
    bad = f"ftp://user:{TOKEN}@example.com/x"
    refused = run_cli("notify", "setup", env={"HITL_NOTIFY_WEBHOOK_URL": bad})
    assert refused.returncode == 1
    assert refused.stderr == "error: HITL_NOTIFY_WEBHOOK_URL is not an http(s) URL\n"
    missing = run_cli("notify", "setup", "--webhook-url-secret", "no-such-secret")
    assert missing.returncode == 1 and "no Prefect Secret block named 'no-such-secret'" in missing.stderr


def test_webhook_url_from_a_prefect_secret_block(stack: Stack, webhook: WebhookReceiver) -> None:
    from prefect.blocks.system import Secret

    Secret(value=SecretStr(f"{webhook.base}/from-secret/{TOKEN}")).save("hitl-test-webhook", overwrite=True)
    result = run_cli("notify", "setup", "--webhook-url-secret", "hitl-test-webhook", "--json")
    assert result.returncode == 0, result.stderr
    assert run_cli("notify", "test").returncode == 0
    assert webhook.posts[-1]["path"] == f"/from-secret/{TOKEN}"
    Secret.delete("hitl-test-webhook")


# ---------------------------------------------------------------- the message templates
def test_messages_render_ids_only_and_escape_for_slack() -> None:
    from prefect.server.utilities.user_templates import render_user_template_sync

    from hitl.notifications import TIMED_OUT_EVENT, WAITING_EVENT, messages

    event = {
        "payload": {
            "ticket_id": 7,
            "checkpoint": "remediation",
            "why": "<!channel> <http://evil.example|click> & more",
            "flow_run_id": "1234",
        }
    }
    subject, body = (
        render_user_template_sync(t, {"event": event}) for t in messages(WAITING_EVENT, "http://ui", True)
    )
    assert subject == "hitl: ticket 7 waits at the remediation checkpoint"
    assert "Why: &lt;!channel&gt; &lt;http://evil.example|click&gt; &amp; more" in body
    assert "http://ui/runs/flow-run/1234" in body and "<" not in body
    _, plain = (render_user_template_sync(t, {"event": event}) for t in messages(WAITING_EVENT, None, False))
    assert "Why: <!channel>" in plain and "flow run 1234" in plain

    timed_out = {"payload": {"ticket_id": 8, "flow_run_id": None, "fallback": "escalation queue"}}
    subject, body = (
        render_user_template_sync(t, {"event": timed_out})
        for t in messages(TIMED_OUT_EVENT, "http://ui", True)
    )
    assert subject == "hitl: ticket 8 timed out at its checkpoint"
    assert "(no flow run)" in body and "escalation queue" in body


def test_email_url_quotes_credentials_and_webhook_url_posts_text_only() -> None:
    from urllib.parse import unquote, urlsplit

    from hitl.notifications import EmailChannel, apprise_json_url

    channel = EmailChannel(
        host="smtp.example",
        port=587,
        sender="Desk <desk@msp.example>",
        recipients=["a@msp.example", "b@msp.example"],
        username="relay@msp.example",
        password=SecretStr(PASSWORD),
    )
    url = urlsplit(channel.apprise_url().get_secret_value())
    assert (url.scheme, url.hostname, url.port) == ("mailto", "smtp.example", 587)
    assert unquote(url.password or "") == PASSWORD and unquote(url.username or "") == "relay@msp.example"
    assert "mode=starttls" in url.query and "to=a%40msp.example%2Cb%40msp.example" in url.query
    assert PASSWORD not in repr(channel) and PASSWORD not in str(channel.model_dump())
    assert apprise_json_url("https://hooks.example/services/A/B?x=1") == (
        "jsons://hooks.example/services/A/B?:message=text&:version=&:title=&:type=&:attachments=&-x=1"
    )
