"""The ticket lifecycle on a real Prefect server with a served deployment: suspension that holds no
process, resume from the CLI (checked like the UI form), invalid input refused, AUTO and AUDIT
routes, timeouts that act on nothing, four-eyes remediation executed once, and the audit chain."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prefect.flow_runs import resume_flow_run
from sqlalchemy import select

from hitl.demo import generate_tickets
from hitl.ml import service
from hitl.ml.dataset import LabelledSet, label_of, ticket_text
from hitl.ml.pipelines import PipelineSpec
from hitl.ml.training import train
from hitl.models import TicketRecord
from hitl.settings import get_settings
from hitl.store import db as db_module
from hitl.store.db import Database
from hitl.store.orm import ActionExecution, Decision, Review, Ticket

from .lifecycle_stack import processes_of, served_deployments, set_policy, state_of, wait_for
from .support import run_cli
from .test_lifecycle_engine import Rmm, ingest

pytestmark = pytest.mark.usefixtures("prefect_api")


class Stack:
    def __init__(self, api: str, db: Database, rmm: Rmm) -> None:
        self.api, self.db, self.rmm = api, db, rmm

    def policy(self, **checkpoints: dict[str, Any]) -> None:
        set_policy(self.db, **checkpoints)

    def start(self, record: TicketRecord) -> tuple[int, str]:
        from hitl.lifecycle.runs import start_lifecycle_runs

        [ticket_id] = ingest(self.db, [record])
        return ticket_id, start_lifecycle_runs([ticket_id])[ticket_id]

    def suspended(self, run_id: str, key_suffix: str | None = None, checkpoint: str = "") -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            run = httpx.get(f"{self.api}/flow_runs/{run_id}", timeout=10).json()
            pause_key = (run.get("state") or {}).get("state_details", {}).get("pause_key") or ""
            if (
                run["state_name"] == "Suspended"
                and (key_suffix is None or pause_key.endswith(key_suffix))
                and pause_key.startswith(checkpoint)
            ):
                return run
            assert run["state_type"] not in ("FAILED", "CRASHED"), run["state"]
            return None

        return wait_for(check, what=f"run {run_id} suspended")

    def finished(self, run_id: str, allow_pause: bool = False) -> str:
        def check() -> str | None:
            kind, name = state_of(self.api, run_id)
            assert allow_pause or kind != "PAUSED", f"run {run_id} is waiting ({name}) where it should finish"
            return kind if kind in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

        return wait_for(check, what=f"run {run_id} finished")

    def description(self, run: dict[str, Any]) -> str:
        key = f"suspended-{run['state']['state_details']['pause_key']}-description"
        value = httpx.get(f"{self.api}/flow_runs/{run['id']}/input/{key}", timeout=10).json()
        return value if isinstance(value, str) else json.loads(value["value"])


@pytest.fixture(scope="module")
def stack(prefect_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("lifecycle")
    rmm = Rmm()
    env = {
        "HITL_HOME": str(home / "var"),
        "HITL_DATABASE_URL": f"sqlite:///{home / 'hitl.db'}",
        "HITL_TRIAGE_HEADS": "category",
        "HITL_RMM_WEBHOOK_URL": rmm.url,
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
    }
    previous = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    get_settings.cache_clear()
    database = db_module.get_database()
    records = generate_tickets(count=600, seed=11)
    data = LabelledSet(description="demo")
    for r in records:
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
                        f"{prefect_api}/deployments/name/ticket-lifecycle/ticket-lifecycle", timeout=5
                    ).status_code
                    == 200
                ),
                what="the served deployments",
            )
            yield Stack(prefect_api, database, rmm)
    finally:
        for key, value in previous.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        get_settings.cache_clear()
        database.dispose()
        db_module._databases.clear()
        rmm.server.shutdown()


LENIENT = {"threshold": 0.0, "audit_rate": 0.0, "autonomous_values": None}
HOSTILE = "Printer jammed **bold** <script>alert(1)</script> [click](http://evil.example) `code`"


def test_suspended_ticket_holds_no_process_and_resumes_with_override(stack: Stack) -> None:
    stack.policy(triage={"threshold": 0.999, "audit_rate": 0.0}, escalation=LENIENT, reply=LENIENT)
    record = TicketRecord(
        external_id=f"T-{uuid.uuid4().hex[:6]}",
        client="Harbor Point Dental Group",
        subject="Printer on floor 2",
        body=HOSTILE,
        priority="low",
    )
    ticket_id, run_id = stack.start(record)
    run = stack.suspended(run_id)
    wait_for(lambda: not processes_of(run_id), timeout=30, what="the run's process to exit")
    description = stack.description(run)
    assert "````text\n" + HOSTILE + "\n````" in description or "```text\n" + HOSTILE + "\n```" in description
    assert "<script>" not in description.replace(HOSTILE, "")

    resume_flow_run(
        uuid.UUID(run_id),
        run_input={
            "decision": "override",
            "category": "mailbox",
            "reviewer": "alice",
            "reason_code": "none",
            "comment": "",
        },
    )
    again = stack.suspended(run_id, key_suffix="-1")
    assert "Your previous answer was not recorded" in stack.description(again)
    assert "override needs a reason code" in stack.description(again)
    with stack.db.session() as session:
        assert session.execute(select(Review).where(Review.ticket_id == ticket_id)).first() is None

    result = run_cli(
        "resume",
        run_id,
        "--decision",
        "override",
        "--value",
        "mailbox",
        "--reason-code",
        "wrong_category",
        "--comment",
        "shared mailbox",
        "--reviewer",
        "alice",
    )
    assert result.returncode == 0, result.stderr
    assert stack.finished(run_id) == "COMPLETED"
    with stack.db.session() as session:
        [review] = session.execute(select(Review).where(Review.ticket_id == ticket_id)).scalars()
        assert (review.reviewer, review.action, review.final_value, review.reason_code, review.comment) == (
            "alice",
            "override",
            "mailbox",
            "wrong_category",
            "shared mailbox",
        )
        decision = session.get(Decision, review.decision_id)
        assert decision is not None and decision.route == "HUMAN" and decision.final_value == "mailbox"
        assert session.get(Ticket, ticket_id).assigned_queue == "mailbox"  # type: ignore[union-attr]
    timeline = json.loads(run_cli("audit", "show", str(ticket_id), "--json").stdout)
    kinds = [e["kind"] for e in timeline]
    assert kinds.count("review.refused") == 1 and kinds.count("review.recorded") == 1
    assert run_cli("audit", "verify").returncode == 0
    second = run_cli("resume", run_id, "--decision", "approve", "--reviewer", "bob")
    assert second.returncode == 1 and "not waiting" in second.stderr


def test_auto_ticket_completes_and_audit_sample_waits(stack: Stack) -> None:
    low_risk = [
        "clear-print-queue",
        "unlock-account",
        "reset-password",
        "reset-vpn-profile",
        "restart-service",
        "patch-host",
    ]
    stack.policy(
        triage=LENIENT,
        escalation=LENIENT,
        reply=LENIENT,
        remediation={**LENIENT, "autonomous_values": low_risk},
    )
    easy = next(r for r in generate_tickets(count=40, seed=41) if r.category in ("mailbox", "printer"))
    _, auto_run = stack.start(easy.model_copy(update={"external_id": "AUTO-1"}))
    assert stack.finished(auto_run) == "COMPLETED"
    stack.policy(triage={"threshold": 0.0, "audit_rate": 1.0}, escalation=LENIENT, reply=LENIENT)
    ticket_id, audit_run = stack.start(
        generate_tickets(count=1, seed=42)[0].model_copy(update={"external_id": "AUDIT-1"})
    )
    stack.suspended(audit_run)
    with stack.db.session() as session:
        decision = session.execute(
            select(Decision).where(Decision.ticket_id == ticket_id, Decision.checkpoint == "triage")
        ).scalar_one()
        assert decision.route == "AUDIT" and decision.propensity == 1.0
    queue = json.loads(run_cli("queue", "--json").stdout)
    item = next(i for i in queue if i["ticket_id"] == ticket_id)
    assert item["flow_run_id"] == audit_run and item["checkpoint"] == "triage" and item["deadline"]
    shown = run_cli("queue", env={"COLUMNS": "80"})  # the table keeps the short run id whole
    assert shown.returncode == 0 and f"│ {audit_run[:8]} │" in shown.stdout, shown.stdout
    answered = run_cli("resume", audit_run[:8], "--decision", "approve", "--reviewer", "alice")
    assert answered.returncode == 0, answered.stderr
    assert f"resumed {audit_run}: approve by alice" in answered.stdout

    def reviewed() -> Review | None:
        with stack.db.session() as session:
            return session.execute(
                select(Review).where(Review.ticket_id == ticket_id, Review.reviewer == "alice")
            ).scalar()

    wait_for(reviewed, timeout=120, what="the review given with the short run id")


def test_timeout_marks_overdue_and_executes_nothing(stack: Stack) -> None:
    from flows.checkpoint_timeouts import checkpoint_timeouts

    stack.policy(triage={"threshold": 0.999, "timeout_minutes": 0.02}, escalation=LENIENT, reply=LENIENT)
    ticket_id, run_id = stack.start(
        generate_tickets(count=1, seed=43)[0].model_copy(update={"external_id": "TO-1"})
    )
    stack.suspended(run_id)
    wait_for(lambda: checkpoint_timeouts() or None, timeout=60, what="a checkpoint to expire")
    assert state_of(stack.api, run_id)[0] == "CANCELLED"
    with stack.db.session() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.status == "overdue" and ticket.assigned_queue == "escalation"
        assert session.execute(select(Review).where(Review.ticket_id == ticket_id)).first() is None
    late = run_cli("resume", run_id, "--decision", "approve", "--reviewer", "alice")
    assert late.returncode == 1


def test_high_risk_remediation_needs_two_reviewers_and_runs_once(stack: Stack) -> None:
    """Three answers at two checkpoints of one run: every re-run replays the earlier ones under the
    keys they were given (a whole-run attempt count once re-asked the second checkpoint, and the
    operator's answer was lost)."""
    from hitl.lifecycle.runs import start_lifecycle_runs

    stack.policy(
        # a human at triage first, whatever the models say; not the timeout test's 0.02 minutes
        triage={"autonomy": False, "audit_rate": 0.0, "timeout_minutes": 240},
        escalation=LENIENT,
        reply=LENIENT,
        remediation={"threshold": 0.0, "audit_rate": 0.0},
    )
    record = TicketRecord(
        external_id="FW-9",
        client="Northgate Freight & Logistics",
        subject="Whitelist 198.51.100.23 on port 8443 (firewall change)",
        body="Please add an allow rule on the firewall so 198.51.100.23 can reach our SFTP "
        "server on TCP port 8443.",
        priority="medium",
    )
    ticket_id, run_id = stack.start(record)
    stack.suspended(run_id, "-0", checkpoint="triage-")
    with stack.db.session() as session:
        category = session.execute(
            select(Decision).where(Decision.ticket_id == ticket_id, Decision.head == "category")
        ).scalar_one()
    triage = ["--decision", "approve"]
    if category.ai_value != "firewall_change":
        triage = ["--decision", "override", "--value", "firewall_change", "--reason-code", "wrong_category"]
    assert run_cli("resume", run_id, *triage, "--reviewer", "alice").returncode == 0
    stack.suspended(run_id, "-0", checkpoint="remediation-")
    first = run_cli("resume", run_id, "--decision", "approve", "--reviewer", "bob")
    assert first.returncode == 0, first.stderr
    run = stack.suspended(run_id, "-1", checkpoint="remediation-")
    assert "Four-eyes" in stack.description(run) and not stack.rmm.requests
    same = run_cli("resume", run_id, "--decision", "approve", "--reviewer", "bob")
    assert same.returncode == 1 and "different approver" in same.stderr
    second = run_cli("resume", run_id, "--decision", "approve", "--reviewer", "carol")
    assert second.returncode == 0, second.stderr
    assert stack.finished(run_id) == "COMPLETED"
    assert [r["path"] for r in stack.rmm.requests] == ["/firewall/config-backups", "/firewall/rules"]
    rerun = start_lifecycle_runs([ticket_id])[ticket_id]  # re-running the ticket's flow acts on nothing
    assert stack.finished(rerun) == "COMPLETED"
    assert len(stack.rmm.requests) == 2
    with stack.db.session() as session:
        execution = session.execute(
            select(ActionExecution).where(ActionExecution.ticket_id == ticket_id)
        ).scalar_one()
        assert execution.status == "succeeded" and sorted(execution.approved_by) == ["bob", "carol"]


def test_lifecycle_start_refuses_unknown_tickets_and_a_second_run(stack: Stack) -> None:
    """`hitl lifecycle start` started a run for a ticket that does not exist (it failed later with
    KeyError) and a second run beside a waiting one (both suspended; an answer to either was lost)."""
    stack.policy(
        triage={"autonomy": False, "audit_rate": 0.0, "timeout_minutes": 240},
        escalation=LENIENT,
        reply=LENIENT,
    )
    record = TicketRecord(external_id=f"T-{uuid.uuid4().hex[:6]}", client="Harbor Point Dental Group",
                          subject="Printer on floor 4", body="paper jam again", priority="low")  # fmt: skip
    ticket_id, run_id = stack.start(record)
    stack.suspended(run_id)
    second = run_cli("lifecycle", "start", str(ticket_id))
    assert second.returncode == 1 and second.stderr.count("\n") == 1, second.stderr
    assert f"ticket {ticket_id} already has lifecycle run {run_id} (Suspended)" in second.stderr
    for missing in ("99999", "-1"):
        unknown = run_cli("lifecycle", "start", "--", missing)
        assert unknown.returncode == 1 and f"no ticket {missing} in the store" in unknown.stderr
    runs = httpx.post(
        f"{stack.api}/flow_runs/filter", json={"flow_runs": {"tags": {"all_": [f"ticket-{ticket_id}"]}}}
    )
    assert [r["id"] for r in runs.json()] == [run_id]

    # `hitl serve` starts runs for waiting tickets that name none, but not beside a run that has not
    # announced itself yet (started, still in the runner's backlog)
    from hitl.lifecycle.runs import cancel_waiting_run, start_runs_for_waiting

    with stack.db.session() as session:
        for d in session.execute(select(Decision).where(Decision.ticket_id == ticket_id)).scalars():
            d.flow_run_id = None if d.status == "waiting" else d.flow_run_id
    assert start_runs_for_waiting() == {}
    cancel_waiting_run(run_id)
    [(again, new_run)] = start_runs_for_waiting().items()
    assert again == ticket_id and new_run != run_id
    stack.suspended(new_run)


def test_two_operators_resume_the_same_checkpoint_at_once(stack: Stack) -> None:
    """Fault test (issue #7): two `hitl resume` processes answer the same waiting checkpoint at the
    same moment; exactly one review is recorded and the other operator is told, in one line."""
    import threading

    triage = {"threshold": 0.999, "audit_rate": 0.0, "timeout_minutes": 240}  # not the timeout test's 0.02
    stack.policy(triage=triage, escalation=LENIENT, reply=LENIENT)
    record = TicketRecord(external_id=f"T-{uuid.uuid4().hex[:6]}", client="Harbor Point Dental Group",
                          subject="Printer on floor 3", body="paper jam", priority="low")  # fmt: skip
    ticket_id, run_id = stack.start(record)
    stack.suspended(run_id)
    barrier = threading.Barrier(2)
    results: dict[str, Any] = {}

    def answer(reviewer: str, value: str) -> None:
        barrier.wait()
        results[reviewer] = run_cli("resume", run_id, "--decision", "override", "--value", value,
                                    "--reason-code", "wrong_category", "--reviewer", reviewer)  # fmt: skip

    threads = [threading.Thread(target=answer, args=a) for a in (("alice", "mailbox"), ("bob", "network"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    codes = sorted(r.returncode for r in results.values())
    assert codes == [0, 1], {k: (r.returncode, r.stderr) for k, r in results.items()}
    loser = next(r for r in results.values() if r.returncode == 1)
    assert loser.stderr.strip().count("\n") == 0 and "Traceback" not in loser.stderr, loser.stderr
    winner = next(name for name, r in results.items() if r.returncode == 0)
    assert stack.finished(run_id) == "COMPLETED"
    with stack.db.session() as session:
        reviews = list(session.execute(select(Review).where(Review.ticket_id == ticket_id)).scalars())
    assert [(r.reviewer, r.final_value) for r in reviews] == [
        (winner, "mailbox" if winner == "alice" else "network")
    ]
    assert run_cli("audit", "verify").returncode == 0


def test_tampered_audit_row_fails_verification(stack: Stack) -> None:
    assert run_cli("audit", "verify").returncode == 0
    path = Path(get_settings().effective_database_url.removeprefix("sqlite:///"))
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER audit_events_no_update")
        conn.execute(
            "UPDATE audit_events SET body = replace(body, 'alice', 'mallory') WHERE kind = 'review.recorded'"
        )
    result = run_cli("audit", "verify")
    assert result.returncode == 1 and "audit chain broken at event" in result.stderr


def test_a_claim_whose_worker_died_is_run_by_the_live_runner(stack: Stack) -> None:
    """A ticket-lifecycle run left Pending (a worker claimed it and died before starting it) is put
    back by the sweeper, and the served runner then runs it like any other: the ticket is decided
    once and its run reaches its end."""
    import time
    from datetime import timedelta

    from prefect import get_client
    from prefect.states import Pending, Scheduled

    from hitl.lifecycle import recovery
    from hitl.store.orm import utcnow

    stack.policy(triage=LENIENT, escalation=LENIENT, reply=LENIENT)
    record = generate_tickets(count=1, seed=77)[0].model_copy(update={"external_id": "PENDING-1"})
    [ticket_id] = ingest(stack.db, [record])
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("ticket-lifecycle/ticket-lifecycle")
        later = Scheduled(scheduled_time=utcnow() + timedelta(hours=1))  # out of the runner's reach
        run = client.create_flow_run_from_deployment(
            deployment.id, parameters={"ticket_id": ticket_id}, state=later, tags=[f"ticket-{ticket_id}"]
        )
        assert client.set_flow_run_state(run.id, Pending()).status.value == "ACCEPT"
    run_id = str(run.id)
    time.sleep(3)  # the runner polls every second; nobody starts a claimed run
    assert state_of(stack.api, run_id)[0] == "PENDING"

    def no_starts(ticket_ids: Any) -> dict[int, str]:
        raise AssertionError(f"no new lifecycle run should start: {ticket_ids}")

    stuck = utcnow() + recovery.PENDING_LIMIT + timedelta(seconds=5)
    # heartbeats None: this sweep must not judge the module's other (live) runs by a future clock
    report = recovery.sweep(stack.db, heartbeat_frequency_s=None, now=stuck, start_runs=no_starts)
    assert report.requeued == [run_id]

    def reached_a_stop() -> str | None:
        kind, name = state_of(stack.api, run_id)
        assert kind not in ("FAILED", "CRASHED", "CANCELLED"), name
        return name if kind in ("PAUSED", "COMPLETED") else None

    wait_for(reached_a_stop, what=f"run {run_id} started by the runner")
    with stack.db.session() as session:
        triage = session.scalars(
            select(Decision).where(Decision.ticket_id == ticket_id, Decision.checkpoint == "triage")
        ).all()
        assert len(triage) == 1 and triage[0].flow_run_id == run_id
