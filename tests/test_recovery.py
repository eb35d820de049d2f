"""Recovery after a process died mid-lifecycle, without Prefect: which runs are orphaned, what a
crashed run's ticket needs, and what an action whose result is unknown does to the ticket (never
run again, escalation queue, the lifecycle stops), on SQLite and PostgreSQL with a real webhook
executor against a real local HTTP server. The end-to-end kill is tests/test_worker_kill.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError
from sqlalchemy import func, select

from hitl.audit import verify_chain
from hitl.lifecycle import recovery
from hitl.lifecycle.action_results import (
    ActionResultError,
    CheckedResultInput,
    record_checked_result,
    unknown_actions,
)
from hitl.lifecycle.effects import RESULT_UNKNOWN_MESSAGE, apply_checkpoint
from hitl.lifecycle.recovery import (
    ActiveRun,
    PendingRun,
    Recovery,
    TicketFacts,
    orphaned,
    plan_recovery,
    stale_after,
    stuck_pending,
)
from hitl.lifecycle.resources import LifecycleResources
from hitl.models import TicketRecord
from hitl.remediation.executors import WebhookExecutor
from hitl.remediation.idempotency import idempotency_key
from hitl.store.db import Database
from hitl.store.orm import ActionExecution, AuditEvent, Decision, Ticket, utcnow
from policies.runbooks import Runbook, load_runbook_catalog, validate_parameters

from .test_lifecycle_engine import Rmm, ingest

T0 = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
STALE = timedelta(seconds=90)


# ---------------------------------------------------------------- pure: orphans
def test_stale_after_is_three_heartbeats_and_none_without_heartbeats() -> None:
    assert stale_after(30) == timedelta(seconds=90)
    assert stale_after(180) == timedelta(seconds=540)  # Prefect 3.9's default frequency: 9 min
    assert stale_after(10) == timedelta(seconds=90)  # Prefect never beats more often than every 30 s
    assert stale_after(None) is None and stale_after(0) is None


@pytest.mark.parametrize(
    ("running_since", "last_heartbeat", "is_orphan"),
    [
        (T0 - timedelta(minutes=10), T0 - timedelta(seconds=20), False),  # beating
        (T0 - timedelta(minutes=10), T0 - timedelta(seconds=89), False),  # two beats late: not yet
        (T0 - timedelta(minutes=10), T0 - timedelta(seconds=91), True),  # three missed: gone
        (T0 - timedelta(minutes=10), None, True),  # running for long, never beat
        (T0 - timedelta(seconds=30), None, False),  # just started: no beat yet
        (T0 - timedelta(seconds=10), T0 - timedelta(hours=2), False),  # resumed just now after a wait
    ],
)
def test_orphaned_needs_no_sign_of_life_for_longer_than_stale(
    running_since: datetime, last_heartbeat: datetime | None, is_orphan: bool
) -> None:
    run = ActiveRun(
        id="r", deployment="ticket-lifecycle", running_since=running_since, last_heartbeat=last_heartbeat
    )
    assert orphaned([run], T0, STALE) == ([run] if is_orphan else [])


def test_a_claim_is_stuck_only_after_the_pending_limit() -> None:
    assert timedelta(minutes=10) == recovery.PENDING_LIMIT
    runs = [
        PendingRun(id=name, deployment="ticket-lifecycle", pending_since=T0 - age)
        for name, age in (("fresh", timedelta(seconds=30)), ("edge", timedelta(minutes=10)),
                          ("dead", timedelta(minutes=10, seconds=1)))
    ]  # fmt: skip
    assert [run.id for run in stuck_pending(runs, T0)] == ["dead"]


def test_a_claim_that_never_started_is_scheduled_again(prefect_api: str, database: Database) -> None:
    """On a real Prefect server: a ticket-lifecycle run left Pending (its worker died between the
    claim and the process start) is Scheduled again for any live worker; a sweeper run left Pending
    is Crashed; a fresh claim is left alone. No run is started and the database is not touched."""
    from prefect import get_client
    from prefect.states import Pending

    from deployments.definitions import lifecycle_deployment, timeouts_deployment

    sweeper = timeouts_deployment()
    sweeper.schedules = []  # no runs every minute on the session's server
    ids = {"ticket-lifecycle": lifecycle_deployment().apply(), "checkpoint-timeouts": sweeper.apply()}
    with get_client(sync_client=True) as client:
        runs = {}
        for name, deployment_id in ids.items():
            run = client.create_flow_run_from_deployment(deployment_id, parameters={"ticket_id": 10**9})
            assert client.set_flow_run_state(run.id, Pending()).status.value == "ACCEPT"
            runs[name] = str(run.id)

        fresh = recovery.sweep(database, heartbeat_frequency_s=30, start_runs=_no_starts)
        assert runs["ticket-lifecycle"] not in fresh.requeued
        assert runs["checkpoint-timeouts"] not in fresh.crashed

        later = utcnow() + recovery.PENDING_LIMIT + timedelta(seconds=5)
        report = recovery.sweep(database, heartbeat_frequency_s=30, now=later, start_runs=_no_starts)
        assert runs["ticket-lifecycle"] in report.requeued
        assert runs["checkpoint-timeouts"] in report.crashed
        requeued = client.read_flow_run(runs["ticket-lifecycle"]).state
        assert requeued is not None and requeued.is_scheduled() and "never started" in str(requeued.message)
        assert requeued.state_details.scheduled_time <= utcnow()  # due now: the next poll takes it
        crashed = client.read_flow_run(runs["checkpoint-timeouts"]).state
        assert crashed is not None and crashed.is_crashed()

        again = recovery.sweep(database, heartbeat_frequency_s=30, now=later, start_runs=_no_starts)
        assert runs["ticket-lifecycle"] not in again.requeued  # Scheduled now, nothing to put back
    with database.session() as session:
        assert session.scalar(select(func.count()).select_from(AuditEvent)) == 0


def _no_starts(ticket_ids: Any) -> dict[int, str]:
    raise AssertionError(f"no lifecycle run should start here: {ticket_ids}")


def test_watched_deployments_are_the_products() -> None:
    from deployments.definitions import all_deployments
    from hitl.settings import Settings

    names = {d.name for d in all_deployments(Settings())}
    assert set(recovery.WATCHED_DEPLOYMENTS) <= names and recovery.LIFECYCLE_DEPLOYMENT in names


# ---------------------------------------------------------------- pure: what a crashed run's ticket needs
KNOWN = {"exists": True, "run_known": True, "stage": "remediation", "status": "new"}


@pytest.mark.parametrize(
    ("facts", "action"),
    [
        ({**KNOWN, "running_executions": (7,)}, Recovery.RESULT_UNKNOWN),
        ({**KNOWN, "running_executions": (7,), "newer_run": True}, Recovery.RESULT_UNKNOWN),
        ({**KNOWN, "status": "escalated", "running_executions": (7,)}, Recovery.RESULT_UNKNOWN),  # idempotent
        (KNOWN, Recovery.RESTART),  # the row was never committed (or nothing ran): replay, execute once
        ({**KNOWN, "stage": "triage", "status": "waiting"}, Recovery.RESTART),
        ({**KNOWN, "restarts": 2}, Recovery.RESTART),
        ({**KNOWN, "restarts": 3}, Recovery.ESCALATE),  # crashed again after 3 restarts: people take over
        ({**KNOWN, "newer_run": True}, Recovery.NOTHING),
        ({**KNOWN, "stage": "done", "status": "open"}, Recovery.NOTHING),
        ({**KNOWN, "status": "escalated"}, Recovery.NOTHING),
        ({**KNOWN, "status": "overdue"}, Recovery.NOTHING),
        ({**KNOWN, "run_known": False, "running_executions": ()}, Recovery.NOTHING),  # another database's
        ({"exists": False, "run_known": False}, Recovery.NOTHING),
    ],
)
def test_plan_recovery(facts: dict[str, Any], action: Recovery) -> None:
    planned, why = plan_recovery(TicketFacts(**facts))
    assert planned is action and why


# ---------------------------------------------------------------- effects and the sweeper's records
RUNBOOK = "deploy-patch-fleet"  # the webhook runbook of the shipped catalog
PARAMS = {"ring": "pilot", "kb": "KB5034441"}


@pytest.fixture
def rmm() -> Iterator[Rmm]:
    server = Rmm()
    yield server
    server.server.shutdown()


@pytest.fixture
def catalog() -> dict[str, Runbook]:
    return load_runbook_catalog()


def _res(database: Database, catalog: dict[str, Runbook], rmm: Rmm, flow_run_id: str) -> LifecycleResources:
    webhook = WebhookExecutor(rmm.url)
    return LifecycleResources(
        db=database, runbooks=catalog, executor_for=lambda _: webhook, flow_run_id=flow_run_id
    )


def _approved_remediation(database: Database, flow_run_id: str, status: str = "decided") -> tuple[int, int]:
    record = TicketRecord(
        external_id=f"PATCH-{flow_run_id[:6]}",
        client="Harbor Point Dental Group",
        subject="Roll KB5034441 out to the pilot ring",
        body="Please approve KB5034441 for the pilot ring.",
        priority="medium",
    )
    [ticket_id] = ingest(database, [record])
    with database.session() as session:
        decision = Decision(
            ticket_id=ticket_id,
            checkpoint="remediation",
            head="runbook",
            ai_value=RUNBOOK,
            confidence=0.9,
            route="HUMAN",
            propensity=1.0,
            final_value=RUNBOOK if status == "decided" else None,
            status=status,
            flow_run_id=flow_run_id,
            details={"parameters": PARAMS},
            deadline=utcnow() + timedelta(hours=1) if status == "waiting" else None,
        )
        session.add(decision)
        session.flush()
        return ticket_id, decision.id


def _left_running(
    database: Database, catalog: dict[str, Runbook], ticket_id: int, decision_id: int, run: str
) -> int:
    """What a worker killed in the middle of the webhook call leaves: the row, committed "running"."""
    key = idempotency_key(ticket_id, RUNBOOK, validate_parameters(catalog[RUNBOOK], PARAMS))
    with database.session() as session:
        row = ActionExecution(
            idempotency_key=key,
            ticket_id=ticket_id,
            decision_id=decision_id,
            runbook_id=RUNBOOK,
            parameters=PARAMS,
            executor="webhook",
            status="running",
            approved_by=["alice", "bob"],
            flow_run_id=run,
            started_at=utcnow(),
        )
        session.add(row)
        session.flush()
        return row.id


def _events(database: Database, ticket_id: int, kind: str) -> list[dict[str, Any]]:
    with database.session() as session:
        bodies = session.execute(
            select(AuditEvent.body).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == kind)
        ).scalars()
        return [json.loads(b)["data"] for b in bodies]


def test_a_rerun_that_finds_the_action_running_never_runs_it_and_stops_for_people(
    database: Database, catalog: dict[str, Runbook], rmm: Rmm
) -> None:
    ticket_id, decision_id = _approved_remediation(database, "run-killed")
    execution_id = _left_running(database, catalog, ticket_id, decision_id, "run-killed")
    res = _res(database, catalog, rmm, "run-rerun")

    assert apply_checkpoint(res, ticket_id, "remediation", [decision_id]) == RESULT_UNKNOWN_MESSAGE
    assert apply_checkpoint(res, ticket_id, "remediation", [decision_id]) == RESULT_UNKNOWN_MESSAGE  # replay
    assert rmm.requests == []
    with database.session() as session:
        decision = session.get_one(Decision, decision_id)
        assert decision.status == "decided"  # never "applied": the effect is not known to be done
        assert decision.details["execution_status"] == "unknown"
        assert decision.details["execution_id"] == execution_id
        assert "not re-executed" in decision.details["execution_note"]
        ticket = session.get_one(Ticket, ticket_id)
        assert (ticket.assigned_queue, ticket.status, ticket.lifecycle_stage) == (
            "escalation",
            "escalated",
            "remediation",
        )
        assert session.get_one(ActionExecution, execution_id).status == "running"
        assert verify_chain(session).ok
    [event] = _events(database, ticket_id, "action.result_unknown")  # once, however often replayed
    assert event["execution_id"] == execution_id and event["message"] == RESULT_UNKNOWN_MESSAGE
    assert event["detected_by"] == "run-rerun" and event["flow_run_id"] == "run-killed"
    assert not _events(database, ticket_id, "action.skipped_duplicate")

    with database.session() as session:  # someone checked the RMM and recorded the result
        recorded = record_checked_result(
            session,
            CheckedResultInput(
                execution_id=execution_id, result="succeeded", checked_by="carol", note="RMM job 4411: done"
            ),
        )
    assert (recorded.ticket_id, recorded.decision_id) == (ticket_id, decision_id)
    assert recorded.result == "succeeded"
    [checked] = _events(database, ticket_id, "action.result_recorded")
    assert checked["execution_id"] == execution_id and checked["was"] == "unknown"
    assert checked["note"] == "RMM job 4411: done" and checked["result"] == "succeeded"
    assert apply_checkpoint(res, ticket_id, "remediation", [decision_id]) is None
    assert rmm.requests == []
    with database.session() as session:
        decision = session.get_one(Decision, decision_id)
        assert decision.status == "applied" and decision.details["execution_status"] == "succeeded"
    assert len(_events(database, ticket_id, "action.skipped_duplicate")) == 1


def test_killed_before_the_row_was_committed_the_rerun_executes_once(
    database: Database, catalog: dict[str, Runbook], rmm: Rmm
) -> None:
    ticket_id, decision_id = _approved_remediation(database, "run-killed")
    facts = recovery.ticket_facts(database, ticket_id, "run-killed")
    assert facts.run_known and facts.running_executions == ()
    assert plan_recovery(facts)[0] is Recovery.RESTART

    res = _res(database, catalog, rmm, "run-rerun")
    assert apply_checkpoint(res, ticket_id, "remediation", [decision_id]) is None
    assert apply_checkpoint(res, ticket_id, "remediation", [decision_id]) is None
    assert [r["path"] for r in rmm.requests] == ["/rmm/rings/pilot/deployments"]
    with database.session() as session:
        [row] = session.execute(select(ActionExecution)).scalars()
        assert row.status == "succeeded" and row.flow_run_id == "run-rerun"
        assert session.get_one(Decision, decision_id).details["execution_id"] == row.id


def test_sweeper_records_an_unknown_result_once_for_the_dead_runs_execution(
    database: Database, catalog: dict[str, Runbook]
) -> None:
    ticket_id, decision_id = _approved_remediation(database, "run-dead")
    execution_id = _left_running(database, catalog, ticket_id, decision_id, "run-dead")
    assert recovery.ticket_facts(database, ticket_id, "another-databases-run").run_known is False
    facts = recovery.ticket_facts(database, ticket_id, "run-dead")
    assert facts.running_executions == (execution_id,)
    action, why = plan_recovery(facts)
    assert action is Recovery.RESULT_UNKNOWN

    assert recovery.record_result_unknown(database, ticket_id, "run-dead", facts.running_executions, why)
    assert not recovery.record_result_unknown(database, ticket_id, "run-dead", facts.running_executions, why)
    [unknown] = _events(database, ticket_id, "action.result_unknown")
    assert unknown["detected_by"] == recovery.ACTOR and "whose process died" in unknown["note"]
    [recovered] = _events(database, ticket_id, "lifecycle.recovered")
    assert recovered == {
        "flow_run_id": "run-dead",
        "action": "result_unknown",
        "execution_id": execution_id,
        "why": why,
        "message": RESULT_UNKNOWN_MESSAGE,
    }
    with database.session() as session:
        ticket = session.get_one(Ticket, ticket_id)
        assert (ticket.assigned_queue, ticket.status) == ("escalation", "escalated")
        assert session.get_one(Decision, decision_id).details["execution_status"] == "unknown"
        assert session.get_one(ActionExecution, execution_id).status == "running"  # untouched
        assert verify_chain(session).ok


def test_a_restart_repoints_waiting_decisions_and_counts_towards_escalation(database: Database) -> None:
    ticket_id, decision_id = _approved_remediation(database, "run-1", status="waiting")
    for n in range(1, recovery.MAX_RESTARTS + 1):
        facts = recovery.ticket_facts(database, ticket_id, f"run-{n}")
        assert facts.restarts == n - 1 and plan_recovery(facts)[0] is Recovery.RESTART
        recovery.record_restart(database, ticket_id, f"run-{n}", f"run-{n + 1}", "test")
        with database.session() as session:
            assert session.get_one(Decision, decision_id).flow_run_id == f"run-{n + 1}"
    facts = recovery.ticket_facts(database, ticket_id, f"run-{recovery.MAX_RESTARTS + 1}")
    action, why = plan_recovery(facts)
    assert action is Recovery.ESCALATE
    recovery.record_escalation(database, ticket_id, "run-4", why)
    with database.session() as session:
        ticket = session.get_one(Ticket, ticket_id)
        assert (ticket.assigned_queue, ticket.status) == ("escalation", "escalated")
        assert verify_chain(session).ok
    actions = [e["action"] for e in _events(database, ticket_id, "lifecycle.recovered")]
    assert actions == ["restart"] * recovery.MAX_RESTARTS + ["escalate"]


def test_the_engine_stops_the_ticket_at_an_unknown_result(
    database: Database, catalog: dict[str, Runbook], rmm: Rmm
) -> None:
    """What a manual re-run (`hitl lifecycle start`) of such a ticket does: the stage stops with
    the reason, nothing is sent, the ticket ends escalated and no reply is proposed."""
    from hitl.lifecycle import engine

    ticket_id, decision_id = _approved_remediation(database, "run-killed")
    _left_running(database, catalog, ticket_id, decision_id, "run-killed")
    res = _res(database, catalog, rmm, "run-rerun")
    state = engine.settle(res, ticket_id, "remediation")
    assert state.status is engine.StageStatus.STOPPED and state.message == RESULT_UNKNOWN_MESSAGE
    assert engine.finish(res, ticket_id, state.message) == RESULT_UNKNOWN_MESSAGE
    assert engine.settle(res, ticket_id, "remediation").status is engine.StageStatus.STOPPED  # a replay
    assert rmm.requests == []
    with database.session() as session:
        ticket = session.get_one(Ticket, ticket_id)
        assert (ticket.assigned_queue, ticket.status) == ("escalation", "escalated")
        assert not session.execute(
            select(Decision).where(Decision.ticket_id == ticket_id, Decision.checkpoint == "reply")
        ).first()
    assert len(_events(database, ticket_id, "action.result_unknown")) == 1


def test_a_checked_result_is_recorded_only_for_an_action_declared_unknown(
    database: Database, catalog: dict[str, Runbook], rmm: Rmm
) -> None:
    """A "running" row nobody declared unknown may belong to a live process: refused. So is a
    second answer, an unknown id, and input that is not text; a refusal changes nothing."""
    ticket_id, decision_id = _approved_remediation(database, "run-alive")
    execution_id = _left_running(database, catalog, ticket_id, decision_id, "run-alive")

    def answer(**changes: Any) -> CheckedResultInput:
        fields = {"execution_id": execution_id, "result": "failed", "checked_by": "carol"}
        return CheckedResultInput(**{**fields, "note": "job absent", **changes})

    with database.session() as session:
        assert unknown_actions(session) == []
        with pytest.raises(ActionResultError, match="never declared unknown: it may still be in progress"):
            record_checked_result(session, answer())
        with pytest.raises(ActionResultError, match="no action execution 9999"):
            record_checked_result(session, answer(execution_id=9999))
    for bad in ({"checked_by": "  "}, {"note": ""}, {"result": "maybe"}, {"checked_by": "eve\ud800"}):
        with pytest.raises(ValidationError):
            answer(**bad)

    res = _res(database, catalog, rmm, "run-rerun")
    assert apply_checkpoint(res, ticket_id, "remediation", [decision_id]) == RESULT_UNKNOWN_MESSAGE
    with database.session() as session:
        [waiting] = unknown_actions(session)
        assert (waiting.execution_id, waiting.ticket_id) == (execution_id, ticket_id)
        assert waiting.runbook == RUNBOOK
        assert waiting.approved_by == ["alice", "bob"]
        record_checked_result(session, answer())
    with database.session() as session:
        assert unknown_actions(session) == []
        row = session.get_one(ActionExecution, execution_id)
        assert row.status == "failed" and row.error == "checked by carol: job absent"
        assert session.get_one(Decision, decision_id).details["execution_checked_by"] == "carol"
        with pytest.raises(ActionResultError, match="already has its result \\(failed\\)"):
            record_checked_result(session, answer(result="succeeded"))
    with database.session() as session:
        assert session.get_one(ActionExecution, execution_id).status == "failed"
        [event] = session.execute(
            select(AuditEvent).where(AuditEvent.kind == "action.result_recorded")
        ).scalars()
        assert event.actor == "carol" and event.ticket_id == ticket_id
        assert verify_chain(session).ok
    assert apply_checkpoint(res, ticket_id, "remediation", [decision_id]) is None  # done, not re-run
    assert rmm.requests == []


def test_the_action_commands_list_and_resolve_an_unknown_result(
    database: Database, catalog: dict[str, Runbook], rmm: Rmm
) -> None:
    from .support import run_cli

    ticket_id, decision_id = _approved_remediation(database, "run-killed")
    execution_id = _left_running(database, catalog, ticket_id, decision_id, "run-killed")
    res = _res(database, catalog, rmm, "run-rerun")
    assert apply_checkpoint(res, ticket_id, "remediation", [decision_id]) == RESULT_UNKNOWN_MESSAGE
    [listed] = json.loads(run_cli("action", "unknown", "--json").stdout)
    assert (listed["execution_id"], listed["ticket_id"]) == (execution_id, ticket_id)

    base = ["action", "resolve", str(execution_id), "--checked-by", "carol", "--note", "RMM job 4411 done"]
    for args, message in (
        ([*base, "--result", "maybe"], "error: --result: Input should be 'succeeded' or 'failed'"),
        ([*base[:3], "--checked-by", " ", "--note", "x", "--result", "failed"], "error: --checked-by:"),
        (["action", "resolve", "4242", *base[3:], "--result", "failed"], "error: no action execution 4242"),
    ):
        refused = run_cli(*args)
        assert refused.returncode == 1 and refused.stderr.startswith(message), refused.stderr
        assert refused.stderr.count("\n") == 1 and "Traceback" not in refused.stderr
    done = run_cli(*base, "--result", "succeeded", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["result"] == "succeeded"
    assert json.loads(run_cli("action", "unknown", "--json").stdout) == []
    again = run_cli(*base, "--result", "failed")
    assert again.returncode == 1 and "already has its result (succeeded)" in again.stderr
    verified = run_cli("audit", "verify")
    assert verified.returncode == 0, verified.stderr
