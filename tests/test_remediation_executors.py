"""Executors against real parts (subprocesses in a sandbox, a real HTTP server on 127.0.0.1) and
`execute_once` on SQLite and PostgreSQL: an approved action runs at most once, whatever happens."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from hitl.errors import ConfigError
from hitl.remediation import (
    ExecutionOutcome,
    SubprocessExecutor,
    WebhookExecutor,
    execute_once,
    idempotency_key,
)
from hitl.remediation.executors import OUTPUT_LIMIT
from hitl.store.db import Database
from hitl.store.orm import ActionExecution, Client, Ticket
from policies.runbooks import BUILTIN_DIR, InvalidParameters, Runbook, load_runbook_catalog

from .support import ROOT, free_port

TOKEN = "s3cret-gateway-token-0123456789"
KEY = "a" * 64


@pytest.fixture(scope="module")
def catalog() -> dict[str, Runbook]:
    return load_runbook_catalog()


def _log(sandbox: Path) -> list[dict[str, Any]]:
    path = sandbox / "actions.log"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _test_runbook(steps: list[dict[str, Any]], parameters: list[dict[str, Any]] | None = None) -> Runbook:
    """A runbook made for one test, running the shipped simulation scripts or plain Python."""
    return Runbook.model_validate(
        {
            "id": "test-runbook",
            "title": "Test",
            "risk": "low",
            "blast_radius": 1,
            "match": {"categories": ["printer"]},
            "parameters": parameters or [],
            "executor": "subprocess",
            "steps": steps,
            "dry_run": ["test"],
        }
    )


# ---------------------------------------------------------------- subprocess executor
def test_a_run_writes_its_log_in_its_own_sandbox_and_nowhere_else(
    tmp_path: Path, catalog: dict[str, Runbook]
) -> None:
    scripts_before = _files(BUILTIN_DIR)
    repo_log_existed = (ROOT / "actions.log").exists()
    executor = SubprocessExecutor(tmp_path / "sandboxes")

    result = executor.run(catalog["reset-password"], {"username": "DMorales"}, KEY)

    assert result.status == "succeeded", result
    assert result.error is None
    assert "$ reset password\ndmorales: password reset" in result.output
    assert _files(tmp_path) == [f"sandboxes/{KEY}/actions.log"]
    entries = _log(tmp_path / "sandboxes" / KEY)
    assert [(e["tool"], e["action"], e["user"]) for e in entries] == [
        ("ad_account", "reset-password", "dmorales"),
        ("ad_account", "status", "dmorales"),
    ]
    assert _files(BUILTIN_DIR) == scripts_before  # no log, no __pycache__ beside the scripts
    assert (ROOT / "actions.log").exists() == repo_log_existed


def test_a_second_run_with_the_same_key_is_refused_by_the_sandbox(
    tmp_path: Path, catalog: dict[str, Runbook]
) -> None:
    executor = SubprocessExecutor(tmp_path)
    assert executor.run(catalog["reset-password"], {"username": "dmorales"}, KEY).status == "succeeded"
    again = executor.run(catalog["reset-password"], {"username": "dmorales"}, KEY)
    assert again.status == "failed" and "refusing to run twice" in (again.error or "")
    assert len(_log(tmp_path / KEY)) == 2


def test_a_failing_step_stops_the_run_and_is_named(tmp_path: Path) -> None:
    runbook = _test_runbook(
        [
            {"name": "check", "argv": ["{python}", "{scripts}/ad_account.py", "status", "--user=bob"]},
            {"name": "break", "argv": ["{python}", "-c", "import sys; print('access denied'); sys.exit(3)"]},
            {"name": "never", "argv": ["{python}", "{scripts}/ad_account.py", "unlock", "--user=bob"]},
        ]
    )
    result = SubprocessExecutor(tmp_path).run(runbook, {}, KEY)
    assert result.status == "failed"
    assert result.error == "step 2/3 'break': exited with code 3: access denied"
    assert [e["action"] for e in _log(tmp_path / KEY)] == ["status"]
    assert "never" not in result.output


def test_shell_metacharacters_are_one_literal_argument(tmp_path: Path, catalog: dict[str, Runbook]) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep.txt").write_text("still here")
    pwned = tmp_path / "pwned"
    # Relative to the sandbox (tmp_path/sandboxes/<key>): what a shell would hit if one were involved.
    reason = "; rm -rf ../../canary ; touch ../../pwned && $(touch ../../pwned) `touch ../../pwned`"

    result = SubprocessExecutor(tmp_path / "sandboxes").run(
        catalog["unlock-account"], {"username": "dmorales", "reason": reason}, KEY
    )

    assert result.status == "succeeded", result
    entries = _log(tmp_path / "sandboxes" / KEY)
    assert [(e["action"], e.get("reason")) for e in entries] == [("unlock", reason), ("status", None)]
    assert (canary / "keep.txt").read_text() == "still here"
    assert not pwned.exists()
    assert _files(tmp_path) == ["canary/keep.txt", f"sandboxes/{KEY}/actions.log"]


def test_steps_see_a_minimal_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HITL_REMEDIATION_WEBHOOK_TOKEN", TOKEN)
    runbook = _test_runbook(
        [{"name": "env", "argv": ["{python}", "-c", "import json, os; print(json.dumps(dict(os.environ)))"]}]
    )
    result = SubprocessExecutor(tmp_path).run(runbook, {}, KEY)
    environment = json.loads(result.output.split("\n", 1)[1])
    assert TOKEN not in result.output
    assert set(environment) <= {
        "PATH", "HOME", "LANG", "PYTHONIOENCODING", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE",
        "SYSTEMROOT", "WINDIR", "TZ", "LC_CTYPE",
    }  # fmt: skip
    assert environment["HOME"] == str((tmp_path / KEY).resolve())


def test_a_step_that_hangs_is_killed_at_the_deadline(tmp_path: Path) -> None:
    runbook = _test_runbook(
        [
            {
                "name": "hang",
                "argv": ["{python}", "-c", "import time; print('waiting', flush=True); time.sleep(60)"],
            },
            {"name": "after", "argv": ["{python}", "-c", "print('too late')"]},
        ]
    )
    started = time.monotonic()
    result = SubprocessExecutor(tmp_path, timeout_s=1.5).run(runbook, {}, KEY)
    assert time.monotonic() - started < 15
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("step 1/2 'hang': timed out after")
    assert "waiting" in result.output and "too late" not in result.output


def test_a_missing_program_and_a_huge_output_are_reported_not_raised(tmp_path: Path) -> None:
    missing = _test_runbook([{"name": "ghost", "argv": ["/nonexistent/rmm-cli", "run"]}])
    result = SubprocessExecutor(tmp_path).run(missing, {}, "k" * 64)
    assert result.status == "failed" and "cannot start '/nonexistent/rmm-cli'" in (result.error or "")

    chatty = _test_runbook([{"name": "chatty", "argv": ["{python}", "-c", "print('x' * 200_000 + 'END')"]}])
    result = SubprocessExecutor(tmp_path).run(chatty, {}, "c" * 64)
    assert result.status == "succeeded"
    assert len(result.output) <= OUTPUT_LIMIT and "cut]" in result.output and result.output.endswith("END")


def test_rollback(tmp_path: Path, catalog: dict[str, Runbook]) -> None:
    executor = SubprocessExecutor(tmp_path)
    params = {"host": "fs01", "kb": "KB5034441"}
    assert executor.run(catalog["patch-host"], params, KEY).status == "succeeded"
    undone = executor.rollback(catalog["patch-host"], params, KEY)
    assert undone.status == "succeeded"
    assert [e["action"] for e in _log(tmp_path / KEY)][-1] == "uninstall"  # same sandbox as the run

    without_kb = executor.rollback(catalog["patch-host"], {"host": "FS01"}, "b" * 64)
    assert without_kb.status == "failed" and "exited with code 2" in (without_kb.error or "")
    none = executor.rollback(catalog["reset-password"], {"username": "bob"}, KEY)
    assert none.status == "failed" and "no rollback steps" in (none.error or "")


def test_the_executor_refuses_what_it_cannot_run(tmp_path: Path, catalog: dict[str, Runbook]) -> None:
    executor = SubprocessExecutor(tmp_path)
    with pytest.raises(ConfigError, match="needs the webhook executor"):
        executor.run(catalog["firewall-allow-rule"], {"source_ip": "203.0.113.7", "port": 22}, KEY)
    with pytest.raises(InvalidParameters):
        executor.run(catalog["reset-password"], {"username": "bob; reboot"}, KEY)
    with pytest.raises(ValueError, match="invalid execution key"):
        executor.run(catalog["reset-password"], {"username": "bob"}, "../../etc")
    assert _files(tmp_path) == []


# ---------------------------------------------------------------- webhook executor
@dataclass
class Gateway:
    """What the automation gateway received, and how it answers."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 201
    delay_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(gateway: Gateway) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with gateway.lock:
                gateway.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "headers": dict(self.headers.items()),
                        "json": json.loads(body) if body else None,
                    }
                )
            time.sleep(gateway.delay_s)
            # A careless gateway that echoes the request headers, token included, into its answer.
            payload = json.dumps({"ok": gateway.status < 300, "echo": dict(self.headers.items())}).encode()
            self.send_response(gateway.status)
            if gateway.status in (301, 302):
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_POST = do_PUT = do_DELETE = do_GET = _answer

    return Handler


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    state = Gateway()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}/api"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


FIREWALL = {"source_ip": "203.0.113.7", "port": "443", "destination_ip": "10.4.2.17"}


def test_webhook_steps_carry_body_key_and_token(gateway: Gateway, catalog: dict[str, Runbook]) -> None:
    executor = WebhookExecutor(gateway.url, token=SecretStr(TOKEN))
    result = executor.run(catalog["firewall-allow-rule"], FIREWALL, KEY)

    assert result.status == "succeeded", result
    assert [(r["method"], r["path"]) for r in gateway.requests] == [
        ("POST", "/api/firewall/config-backups"),
        ("POST", "/api/firewall/rules"),
    ]
    rule = gateway.requests[1]
    assert rule["json"] == {
        "action": "allow",
        "direction": "inbound",
        "source": "203.0.113.7",
        "destination": "10.4.2.17",
        "port": 443,
        "protocol": "tcp",
    }
    assert [r["headers"]["Idempotency-Key"] for r in gateway.requests] == [f"{KEY}-1", f"{KEY}-2"]
    assert all(r["headers"]["Authorization"] == f"Bearer {TOKEN}" for r in gateway.requests)
    assert TOKEN not in result.output and "***" in result.output  # the echoed header is scrubbed


def test_path_values_are_url_encoded_and_rollback_keys_differ(
    gateway: Gateway, catalog: dict[str, Runbook]
) -> None:
    executor = WebhookExecutor(gateway.url)
    params = {"ring": "Pilot", "kb": "KB5034441"}
    assert executor.run(catalog["deploy-patch-fleet"], params, KEY).status == "succeeded"
    assert executor.rollback(catalog["deploy-patch-fleet"], params, KEY).status == "succeeded"
    assert [(r["path"], r["headers"]["Idempotency-Key"]) for r in gateway.requests] == [
        ("/api/rmm/rings/pilot/deployments", f"{KEY}-1"),
        ("/api/rmm/rings/pilot/deployments/rollback", f"{KEY}-rollback-1"),
    ]
    assert "Authorization" not in gateway.requests[0]["headers"]


def test_a_server_error_fails_without_leaking_the_token(
    gateway: Gateway, catalog: dict[str, Runbook]
) -> None:
    gateway.status = 500
    result = WebhookExecutor(gateway.url, token=SecretStr(TOKEN)).run(
        catalog["firewall-allow-rule"], FIREWALL, KEY
    )
    assert result.status == "failed"
    assert result.error is not None
    assert result.error.startswith(
        "step 1/2 'back up firewall configuration': POST /firewall/config-backups answered HTTP 500"
    )
    assert len(gateway.requests) == 1  # the rule is not created after a failed backup
    assert TOKEN not in result.error and TOKEN not in result.output
    assert TOKEN not in result.model_dump_json()


def test_redirects_and_unreachable_gateways_fail(gateway: Gateway, catalog: dict[str, Runbook]) -> None:
    gateway.status = 302
    redirected = WebhookExecutor(gateway.url, token=SecretStr(TOKEN)).run(
        catalog["firewall-allow-rule"], FIREWALL, KEY
    )
    assert redirected.status == "failed" and "HTTP 302" in (redirected.error or "")
    assert len(gateway.requests) == 1

    closed = WebhookExecutor(f"http://127.0.0.1:{free_port()}", token=SecretStr(TOKEN), timeout_s=5)
    result = closed.run(catalog["firewall-allow-rule"], FIREWALL, KEY)
    assert result.status == "failed" and "may or may not have been applied" in (result.error or "")
    assert TOKEN not in (result.error or "")


def test_a_bad_base_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="http"):
        WebhookExecutor("ftp://gateway.example")


# ---------------------------------------------------------------- execute_once (SQLite and PostgreSQL)
def _ticket(database: Database) -> int:
    with database.session() as session:
        client = Client(name="Acme Dental", tier="gold", sla_hours={"high": 4})
        session.add(client)
        session.flush()
        ticket = Ticket(
            source="test",
            external_id="T-1",
            client_id=client.id,
            subject="Need password reset - dmorales",
            body="Please reset the password for Dana Morales (dmorales).",
            created_at=datetime.now(UTC),
            content_hash="0" * 64,
            status="open",
        )
        session.add(ticket)
        session.flush()
        return ticket.id


def _executions(database: Database) -> int:
    with database.session() as session:
        return session.scalar(select(func.count()).select_from(ActionExecution)) or 0


def test_execute_once_runs_an_action_only_once(
    database: Database, tmp_path: Path, catalog: dict[str, Runbook]
) -> None:
    ticket_id = _ticket(database)
    executor = SubprocessExecutor(tmp_path)

    def run(username: str) -> ExecutionOutcome:
        return execute_once(
            database,
            ticket_id=ticket_id,
            decision_id=None,
            runbook=catalog["reset-password"],
            params={"username": username},
            executor=executor,
            approved_by=["alice", "alice"],
            flow_run_id="flow-1",
        )

    first = run("dmorales")
    assert first.executed_now and first.status == "succeeded" and not first.result_unknown
    assert first.key == idempotency_key(ticket_id, "reset-password", {"username": "dmorales"})
    again = run("DMorales")  # another spelling of the same action
    assert not again.executed_now
    assert (again.key, again.execution_id, again.status, again.output) == (
        first.key,
        first.execution_id,
        "succeeded",
        first.output,
    )
    assert len(_log(tmp_path / first.key)) == 2  # the scripts ran once: reset + status

    other = run("pmurphy")
    assert other.executed_now and other.key != first.key
    assert _executions(database) == 2
    with database.session() as session:
        row = session.get_one(ActionExecution, first.execution_id)
        assert (row.status, row.approved_by, row.flow_run_id, row.executor) == (
            "succeeded",
            ["alice"],
            "flow-1",
            "subprocess",
        )
        assert row.parameters == {"username": "dmorales"} and row.finished_at is not None


def test_a_failed_action_is_stored_and_not_retried(
    database: Database, tmp_path: Path, catalog: dict[str, Runbook]
) -> None:
    runbook = _test_runbook(
        [
            {
                "name": "unlock",
                "argv": ["{python}", "{scripts}/ad_account.py", "unlock", "--user={username}"],
            },
            {"name": "break", "argv": ["{python}", "-c", "import sys; sys.exit('directory unreachable')"]},
        ],
        parameters=[{"name": "username", "type": "username"}],
    )
    arguments: dict[str, Any] = {
        "ticket_id": _ticket(database),
        "decision_id": None,
        "runbook": runbook,
        "params": {"username": "bob"},
        "executor": SubprocessExecutor(tmp_path),
        "approved_by": ["alice"],
        "flow_run_id": None,
    }
    first = execute_once(database, **arguments)
    assert first.executed_now and first.status == "failed"
    assert first.error == "step 2/2 'break': exited with code 1: directory unreachable"
    second = execute_once(database, **arguments)  # a retried task: the half-done action is not repeated
    assert not second.executed_now and second.status == "failed" and "not run again" in (second.note or "")
    assert [e["action"] for e in _log(tmp_path / first.key)] == ["unlock"]


def test_concurrent_callers_execute_exactly_once(
    database: Database, gateway: Gateway, catalog: dict[str, Runbook]
) -> None:
    ticket_id = _ticket(database)
    database.ensure_schema()
    gateway.delay_s = 0.3  # the first caller is still executing when the second arrives
    executor = WebhookExecutor(gateway.url, token=SecretStr(TOKEN))
    barrier = threading.Barrier(2)
    outcomes: list[ExecutionOutcome] = []
    errors: list[BaseException] = []

    def call() -> None:
        try:
            barrier.wait(timeout=10)
            outcomes.append(
                execute_once(
                    database,
                    ticket_id=ticket_id,
                    decision_id=None,
                    runbook=catalog["firewall-allow-rule"],
                    params=FIREWALL,
                    executor=executor,
                    approved_by=["alice", "bob"],
                    flow_run_id=None,
                )
            )
        except BaseException as exc:  # surfaced below: a thread's exception is otherwise lost
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(o.executed_now for o in outcomes) == [False, True]
    assert len({o.key for o in outcomes}) == 1
    assert len(gateway.requests) == 2  # the two steps of one execution
    assert _executions(database) == 1


def test_an_action_left_running_is_never_re_executed(
    database: Database, gateway: Gateway, catalog: dict[str, Runbook]
) -> None:
    ticket_id = _ticket(database)
    runbook = catalog["firewall-allow-rule"]
    key = idempotency_key(
        ticket_id,
        runbook.id,
        {
            "source_ip": "203.0.113.7",
            "port": 443,
            "destination_ip": "10.4.2.17",
            "protocol": "tcp",
            "direction": "inbound",
        },
    )
    with database.session() as session:  # what a worker killed mid-execution leaves behind
        session.add(
            ActionExecution(
                idempotency_key=key,
                ticket_id=ticket_id,
                runbook_id=runbook.id,
                parameters={},
                executor="webhook",
                status="running",
                approved_by=["alice", "bob"],
            )
        )

    outcome = execute_once(
        database,
        ticket_id=ticket_id,
        decision_id=None,
        runbook=runbook,
        params=FIREWALL,
        executor=WebhookExecutor(gateway.url),
        approved_by=["alice", "bob"],
        flow_run_id=None,
    )
    assert outcome.key == key
    assert not outcome.executed_now and outcome.status == "running" and outcome.result_unknown
    assert outcome.note is not None and "unknown" in outcome.note and "not re-executed" in outcome.note
    assert gateway.requests == []
    with database.session() as session:
        assert session.scalars(select(ActionExecution.status)).all() == ["running"]


def test_nothing_is_recorded_for_invalid_parameters_or_a_wrong_executor(
    database: Database, tmp_path: Path, catalog: dict[str, Runbook]
) -> None:
    ticket_id = _ticket(database)
    common: dict[str, Any] = {
        "ticket_id": ticket_id,
        "decision_id": None,
        "approved_by": [],
        "flow_run_id": None,
    }
    with pytest.raises(InvalidParameters, match="port"):
        execute_once(
            database,
            runbook=catalog["firewall-allow-rule"],
            params={"source_ip": "203.0.113.7", "port": 70000},
            executor=WebhookExecutor("http://127.0.0.1:9"),
            **common,
        )
    with pytest.raises(ConfigError, match="needs the webhook executor"):
        execute_once(
            database,
            runbook=catalog["firewall-allow-rule"],
            params={"source_ip": "203.0.113.7", "port": 22},
            executor=SubprocessExecutor(tmp_path),
            **common,
        )
    assert _executions(database) == 0
