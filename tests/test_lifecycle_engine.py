"""The lifecycle engine without Prefect: batch path, routing, human answers, four-eyes,
timeouts and idempotent replays, on SQLite and PostgreSQL, with real executors."""

from __future__ import annotations

import dataclasses
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from hitl import checkpoints
from hitl.audit import verify_chain
from hitl.demo import generate_tickets
from hitl.ingestion import pipeline as ingestion
from hitl.lifecycle import engine
from hitl.lifecycle.bootstrap import _reply_drafter
from hitl.lifecycle.queue import approval_queue
from hitl.lifecycle.resources import LifecycleResources
from hitl.ml.dataset import LabelledSet, label_of, ticket_text
from hitl.ml.pipelines import PipelineSpec
from hitl.ml.predictor import LoadedModel
from hitl.ml.training import train
from hitl.models import TicketRecord
from hitl.remediation.executors import SubprocessExecutor, WebhookExecutor
from hitl.settings import Settings
from hitl.store.db import Database
from hitl.store.orm import ActionExecution, AuditEvent, Decision, OutboxMessage, Review, Ticket, utcnow
from hitl.store.policies import create_version, current_policy
from policies.mappings import load_mapping
from policies.runbooks import load_runbook_catalog

from .support import run_cli

FAST = PipelineSpec(char_ngram=None, C=10.0)


@pytest.fixture(scope="module")
def models() -> dict[str, LoadedModel]:
    records = generate_tickets(count=600, seed=11)
    out = {}
    for head in ("category", "priority"):
        data = LabelledSet()
        for r in records:
            data.texts.append(ticket_text(r.subject, r.body))
            data.labels.append(label_of(r, head) or "")
        result = train(data, head, cv_folds=0, spec=FAST)
        out[head] = LoadedModel(
            version=f"{head}-test", head=head, pipeline=result.pipeline, classes=result.classes
        )
    return out


class Rmm:
    """A real HTTP server standing in for the RMM tool."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                outer.requests.append(
                    {"path": self.path, "body": json.loads(self.rfile.read(length) or b"{}")}
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def rmm() -> Any:
    server = Rmm()
    yield server
    server.server.shutdown()


@pytest.fixture
def res(
    database: Database, settings: Settings, models: dict[str, LoadedModel], rmm: Rmm
) -> LifecycleResources:
    subprocess_executor = SubprocessExecutor(settings.effective_sandbox_dir)
    webhook = WebhookExecutor(rmm.url)
    return LifecycleResources(
        db=database,
        models=models,
        runbooks=load_runbook_catalog(),
        executor_for=lambda rb: webhook if rb.executor == "webhook" else subprocess_executor,
        reply_drafter=_reply_drafter(settings),
    )


def ingest(database: Database, records: list[TicketRecord]) -> list[int]:
    run_id = ingestion.open_run(database, "demo", "canonical", "test", None)
    ctx = ingestion.IngestionContext(
        db=database,
        mapping=load_mapping("canonical"),
        source="demo",
        run_id=run_id,
        default_client="unassigned",
    )
    outcome = ingestion.ingest_records(ctx, [_raw(i, r) for i, r in enumerate(records, 1)], "test")
    return outcome.new_ids


def _raw(i: int, record: TicketRecord) -> Any:
    from hitl.ingestion.files import RawRecord

    return RawRecord(i, None, "", data=record.model_dump(mode="json", exclude={"labels"}))


def count(database: Database, model: type) -> int:
    with database.session() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_batch_path_decides_and_waits(res: LifecycleResources, database: Database) -> None:
    res.triage_heads = ("category",)  # demo priorities are random per category: no model can be sure of them
    with database.session() as session:  # replies drafted from a nearly empty store are never sure either
        _, policy = current_policy(session)
        lenient = policy.model_copy(deep=True)
        lenient.checkpoints["reply"].threshold = 0.0
        create_version(session, lenient, "test", "let confident drafts go out in this test")
    ids = ingest(database, generate_tickets(count=40, seed=3))
    res.flow_run_id = batch_run = "5d0c8f4e-0000-4000-8000-00000000b47c"  # as under the ingestion flow
    states = engine.advance(res, ids)
    done = [t for t, s in states.items() if s.status is engine.StageStatus.DONE]
    waiting = [t for t, s in states.items() if s.status is engine.StageStatus.NEEDS_HUMAN]
    assert (
        done
        and waiting
        and len(done) + len(waiting) + sum(s.status is engine.StageStatus.STOPPED for s in states.values())
        == 40
    )
    with database.session() as session:
        decisions = list(session.execute(select(Decision)).scalars())
        assert {d.checkpoint for d in decisions} == {"triage", "escalation", "remediation", "reply"}
        assert all(d.policy_version == 2 and d.threshold is not None for d in decisions)
        assert all((d.route == "HUMAN") == (d.propensity == 1.0) for d in decisions)
        # The batch run cannot be resumed: a waiting decision names no run until one announces itself
        # (`hitl queue` showed the finished ingestion run, and `hitl serve` started no run for them).
        assert {d.flow_run_id for d in decisions if d.status == "waiting"} == {None}
        assert {d.flow_run_id for d in decisions if d.status != "waiting"} == {batch_run}
        assert {i.flow_run_id for i in approval_queue(session, "http://ui")} == {None}
        created = session.execute(select(AuditEvent.body).where(AuditEvent.kind == "decision.created"))
        assert {json.loads(body)["data"]["flow_run_id"] for body in created.scalars()} == {batch_run}
        for t in done:
            ticket = session.get(Ticket, t)
            assert (
                ticket is not None and ticket.lifecycle_stage == "done" and ticket.tier in ("T1", "T2", "T3")
            )
        for t in waiting:
            assert session.get(Ticket, t).status == "waiting"  # type: ignore[union-attr]
        replies = session.execute(select(func.count()).select_from(OutboxMessage)).scalar_one()
        assert replies >= len(done) - 5  # done tickets got a reply queued (unless a reviewer rejected)
        # addressed to the ticket's requester (the outbox had no recipient for any reply before)
        sent_to = session.execute(select(OutboxMessage.to_address, Ticket.requester_email).join(Ticket)).all()
        assert sent_to and all(to == requester for to, requester in sent_to)
        assert sum(to is not None for to, _ in sent_to) >= len(sent_to) - 3  # demo tickets without a client
        assert verify_chain(session).ok
    events = count(database, AuditEvent)
    again = engine.advance(res, ids)  # a replay: nothing new is decided, sent or logged
    assert {t: s.status for t, s in again.items()} == {t: s.status for t, s in states.items()}
    assert count(database, AuditEvent) == events


def _wait_at(res: LifecycleResources, database: Database, checkpoint: str, record: TicketRecord) -> int:
    [ticket_id] = ingest(database, [record])
    state = engine.advance(res, [ticket_id])[ticket_id]
    assert state.status is engine.StageStatus.NEEDS_HUMAN and state.checkpoint == checkpoint, state
    return ticket_id


def _strict_triage(database: Database) -> None:
    with database.session() as session:
        _, policy = current_policy(session)
        strict = policy.model_copy(deep=True)
        strict.checkpoints["triage"].threshold = 0.999
        strict.checkpoints["triage"].classes = {}
        create_version(session, strict, "test", "every triage to a human")


def test_override_with_reason_code_is_logged_and_applied(res: LifecycleResources, database: Database) -> None:
    _strict_triage(database)
    record = next(r for r in generate_tickets(count=50, seed=5) if r.category == "printer")
    ticket_id = _wait_at(res, database, "triage", record)
    refused = engine.record_answer(
        res,
        ticket_id,
        "triage",
        {"decision": "override", "category": "mailbox", "priority": record.priority, "reviewer": "alice"},
    )
    assert not refused.recorded and "override needs a reason code" in refused.problems
    assert count(database, Review) == 0
    answer = {
        "decision": "override",
        "category": "mailbox",
        "priority": str(record.priority),
        "reason_code": "wrong_category",
        "comment": "it is about a shared mailbox",
        "reviewer": "alice",
    }
    assert engine.record_answer(res, ticket_id, "triage", answer).recorded
    assert engine.record_answer(res, ticket_id, "triage", answer).recorded  # a replay records nothing twice
    with database.session() as session:
        reviews = {r.final_value: r for r in session.execute(select(Review)).scalars()}
        assert reviews["mailbox"].action == "override" and reviews["mailbox"].reason_code == "wrong_category"
        assert reviews[str(record.priority)].action == "approve" and len(reviews) == 2
        assert all(r.reviewer == "alice" and r.wait_seconds is not None for r in reviews.values())
    engine.advance(res, [ticket_id])
    with database.session() as session:
        assert session.get(Ticket, ticket_id).assigned_queue == "mailbox"  # type: ignore[union-attr]
        kinds = [e.kind for e in session.execute(select(AuditEvent).order_by(AuditEvent.seq)).scalars()]
        assert "review.refused" in kinds and "review.recorded" in kinds and verify_chain(session).ok


def _at_four_eyes(res: LifecycleResources, database: Database) -> tuple[int, engine.StageState]:
    """A firewall change past triage (answered by alice), waiting at remediation for two approvers."""
    record = TicketRecord(
        external_id="FW-1",
        client="Northgate Freight & Logistics",
        subject="Please whitelist 203.0.113.7 on port 8443",
        body="Our bank's SFTP gateway 203.0.113.7 must reach our server on TCP port 8443. "
        "Please add an allow rule on the firewall.",
        priority="medium",
        category="firewall_change",
    )
    ticket_id = _wait_at(res, database, "triage", record)  # firewall changes need 0.95 at triage
    with database.session() as session:
        ai = {d.head: d.ai_value for d in session.execute(select(Decision)).scalars()}
    changed = ai["category"] != "firewall_change"
    answer = {
        "decision": "override" if changed else "approve",
        "category": "firewall_change",
        "priority": ai["priority"],
        "reason_code": "wrong_category" if changed else "none",
        "reviewer": "alice",
    }
    assert engine.record_answer(res, ticket_id, "triage", answer).recorded
    states = engine.advance(res, [ticket_id])
    state = states[ticket_id]
    while state.status is engine.StageStatus.NEEDS_HUMAN and state.checkpoint != "remediation":
        assert engine.record_answer(
            res, ticket_id, state.checkpoint, {"decision": "approve", "reviewer": "alice"}
        )
        state = engine.advance(res, [ticket_id])[ticket_id]
    return ticket_id, state


def test_high_risk_remediation_needs_two_approvers_and_runs_once(
    res: LifecycleResources, database: Database, rmm: Rmm
) -> None:
    ticket_id, state = _at_four_eyes(res, database)
    assert state.checkpoint == "remediation" and state.view is not None
    assert state.view.approvals_needed == 2 and state.view.suggestions[0].ai_value == "firewall-allow-rule"
    assert "203.0.113.7" in (state.view.details or "")
    assert engine.record_answer(
        res, ticket_id, "remediation", {"decision": "approve", "reviewer": "bob"}
    ).recorded
    state = engine.advance(res, [ticket_id])[ticket_id]
    assert state.status is engine.StageStatus.NEEDS_HUMAN and state.view.approved_by == ["bob"]  # type: ignore[union-attr]
    assert not rmm.requests  # one approval is not enough: nothing ran
    same = engine.record_answer(res, ticket_id, "remediation", {"decision": "approve", "reviewer": "bob"})
    assert same.recorded and count(database, Review) >= 1  # bob's replay, not a second approval
    assert engine.advance(res, [ticket_id])[ticket_id].checkpoint == "remediation"
    assert engine.record_answer(
        res, ticket_id, "remediation", {"decision": "approve", "reviewer": "carol"}
    ).recorded
    engine.advance(res, [ticket_id])
    engine.advance(res, [ticket_id])
    assert [r["path"] for r in rmm.requests] == ["/firewall/config-backups", "/firewall/rules"]
    with database.session() as session:
        execution = session.execute(select(ActionExecution)).scalar_one()
        assert execution.status == "succeeded" and sorted(execution.approved_by) == ["bob", "carol"]


def test_a_second_approval_needs_another_person_whatever_the_key_or_letter_case(
    res: LifecycleResources, database: Database, rmm: Rmm
) -> None:
    """The flow passes each answer with the pause key it came under: a re-run's replay of a key is
    recorded once; the same person under a new key (the UI's form submitted again, or "Bob" for
    "bob") is refused and logged, and never counts as the second approver."""
    ticket_id, state = _at_four_eyes(res, database)
    assert state.checkpoint == "remediation" and state.view is not None and state.view.approvals_needed == 2
    bob = {"decision": "approve", "reviewer": "bob"}
    assert engine.record_answer(res, ticket_id, "remediation", bob, key="remediation-9-0").recorded
    reviews = count(database, Review)
    assert engine.record_answer(res, ticket_id, "remediation", bob, key="remediation-9-0").recorded  # replay
    assert count(database, Review) == reviews
    for key, name in (("remediation-9-1", "bob"), ("remediation-9-2", " Bob ")):
        again = engine.record_answer(res, ticket_id, "remediation", {**bob, "reviewer": name}, key=key)
        assert not again.recorded and "a second, different approver is required" in again.problems[0]
    assert count(database, Review) == reviews and not rmm.requests
    with database.session() as session:
        refused = session.execute(select(AuditEvent).where(AuditEvent.kind == "review.refused")).scalars()
        assert [json.loads(e.body)["data"]["key"] for e in refused] == ["remediation-9-1", "remediation-9-2"]
    carol = {"decision": "approve", "reviewer": "carol"}
    assert engine.record_answer(res, ticket_id, "remediation", carol, key="remediation-9-3").recorded
    engine.advance(res, [ticket_id])
    with database.session() as session:
        execution = session.execute(select(ActionExecution)).scalar_one()
        assert sorted(execution.approved_by) == ["bob", "carol"]


def test_an_answer_after_the_deadline_is_refused_before_the_sweep(
    res: LifecycleResources, database: Database
) -> None:
    """The deadline holds at the moment of the answer, not only at the next sweep (every minute, and
    late on a busy runner): a late answer acts on nothing, is logged, and the sweep still owns the
    timeout (overdue, escalation queue, notification)."""
    _strict_triage(database)
    ticket_id = _wait_at(res, database, "triage", generate_tickets(count=1, seed=8)[0])
    with database.session() as session:
        for d in session.execute(select(Decision).where(Decision.status == "waiting")).scalars():
            d.deadline = utcnow() - timedelta(minutes=3)
    state = engine.advance(res, [ticket_id])[ticket_id]
    assert state.view is not None and "**Answer by**" in checkpoints.render_description(state.view)
    late = engine.record_answer(
        res, ticket_id, "triage", {"decision": "approve", "reviewer": "larry"}, key="k-0"
    )
    assert not late.recorded and "this checkpoint timed out at" in late.problems[0]
    assert count(database, Review) == 0
    with database.session() as session:
        [event] = session.execute(select(AuditEvent).where(AuditEvent.kind == "review.refused")).scalars()
        assert event.actor == "larry"
    assert [e.ticket_id for e in engine.expire_overdue(res)] == [ticket_id]
    assert engine.advance(res, [ticket_id])[ticket_id].status is engine.StageStatus.STOPPED
    assert count(database, Review) == 0 and count(database, ActionExecution) == 0


def test_hitl_resume_refuses_late_answers_and_set_on_the_answer_fields(
    res: LifecycleResources, database: Database
) -> None:
    """`hitl resume` checks before it resumes anything: --set reviewer=... or decision=... once
    replaced what --reviewer and --decision said while the confirmation line named the options
    (an answer recorded under another person's name); and a late answer is refused in one line."""
    _strict_triage(database)
    ticket_id = _wait_at(res, database, "triage", generate_tickets(count=1, seed=8)[0])
    run_id = "0b6f6e0e-5d2c-4c59-9d2a-51c5d06b8c11"  # no Prefect server: every refusal comes first
    with database.session() as session:
        for d in session.execute(select(Decision).where(Decision.ticket_id == ticket_id)).scalars():
            d.flow_run_id = run_id
    for field in ("reviewer=mallory", "decision=escalate", "reason_code=other", "comment=x"):
        result = run_cli("resume", run_id[:8], "--decision", "approve", "--reviewer", "alice", "--set", field)
        assert result.returncode == 1 and result.stderr.count("\n") == 1, result.stderr
        assert "--set needs FIELD=VALUE with FIELD one of category, priority" in result.stderr
    with database.session() as session:
        for d in session.execute(select(Decision).where(Decision.ticket_id == ticket_id)).scalars():
            d.deadline = utcnow() - timedelta(minutes=3)
    late = run_cli("resume", run_id[:8], "--decision", "approve", "--reviewer", "alice")
    assert late.returncode == 1 and "this checkpoint timed out at" in late.stderr, late.stderr
    assert late.stderr.count("\n") == 1 and count(database, Review) == 0


def test_a_runbook_this_deployment_cannot_run_is_not_offered_and_escalates_if_approved(
    res: LifecycleResources, database: Database, rmm: Rmm, settings: Settings
) -> None:
    """Without HITL_RMM_WEBHOOK_URL (as under `make run`) webhook runbooks were still proposed; two
    approvals of one failed the ticket's run ("needs HITL_RMM_WEBHOOK_URL") and left the ticket
    waiting in no queue. They are not offered now, and one approved while it could run escalates."""
    from hitl.lifecycle.bootstrap import unavailable_runbooks

    catalog = load_runbook_catalog()
    webhook = sorted(r for r, rb in catalog.items() if rb.executor == "webhook")
    assert webhook and sorted(unavailable_runbooks(settings, catalog)) == webhook
    with_rmm = settings.model_copy(update={"rmm_webhook_url": rmm.url})
    assert unavailable_runbooks(with_rmm, catalog) == {}

    ticket_id, state = _at_four_eyes(res, database)  # proposed while the RMM webhook was configured
    assert state.view is not None and state.view.suggestions[0].ai_value == "firewall-allow-rule"
    for name in ("bob", "carol"):
        assert engine.record_answer(res, ticket_id, "remediation", {"decision": "approve", "reviewer": name})
    without_rmm = dataclasses.replace(res, unavailable_runbooks=unavailable_runbooks(settings, catalog))
    for _ in range(2):  # a replay says the same and logs nothing twice
        stopped = engine.advance(without_rmm, [ticket_id])[ticket_id]
        assert stopped.status is engine.StageStatus.STOPPED and "cannot run here" in stopped.message
    engine.finish(without_rmm, ticket_id, stopped.message)
    assert not rmm.requests and count(database, ActionExecution) == 0
    with database.session() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and (ticket.assigned_queue, ticket.status) == ("escalation", "escalated")
        events = session.execute(select(AuditEvent).where(AuditEvent.kind == "action.not_run")).scalars()
        assert len(list(events)) == 1

    record = TicketRecord(
        external_id="FW-2",
        client="Northgate Freight & Logistics",
        subject="Please whitelist 198.51.100.9 on port 443",
        body="Please add an allow rule on the firewall so 198.51.100.9 reaches our web server on port 443.",
        priority="medium",
        category="firewall_change",
    )
    [other] = ingest(database, [record])
    state = engine.advance(without_rmm, [other])[other]
    while state.status is engine.StageStatus.NEEDS_HUMAN and state.checkpoint != "remediation":
        answer = {"decision": "approve", "reviewer": "alice"}
        if state.checkpoint == "triage":
            answer["category"] = "firewall_change"
            if state.view and state.view.suggestions[0].ai_value != "firewall_change":
                answer.update(decision="override", reason_code="wrong_category")
        assert engine.record_answer(without_rmm, other, state.checkpoint, answer).recorded
        state = engine.advance(without_rmm, [other])[other]
    with database.session() as session:
        [runbook] = session.execute(
            select(Decision).where(Decision.ticket_id == other, Decision.checkpoint == "remediation")
        ).scalars()
        assert (
            runbook.ai_value == "none"
            and "firewall-allow-rule matches this ticket" in runbook.details["note"]
        )
    if state.view is not None and state.checkpoint == "remediation":
        assert not set(webhook) & set(state.view.suggestions[0].choices or [])


def test_timeout_marks_overdue_and_acts_on_nothing(res: LifecycleResources, database: Database) -> None:
    _strict_triage(database)
    ticket_id = _wait_at(res, database, "triage", generate_tickets(count=1, seed=8)[0])
    assert engine.expire_overdue(res) == []  # not yet due
    expired = engine.expire_overdue(res, now=utcnow() + timedelta(days=1))
    assert [(e.ticket_id, e.checkpoint) for e in expired] == [(ticket_id, "triage")]
    with database.session() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.status == "overdue" and ticket.assigned_queue == "escalation"
    late = engine.record_answer(res, ticket_id, "triage", {"decision": "approve", "reviewer": "alice"})
    assert late.stop and not late.recorded and "timed out" in late.problems[0]
    assert engine.advance(res, [ticket_id])[ticket_id].status is engine.StageStatus.STOPPED
    assert count(database, Review) == 0 and count(database, ActionExecution) == 0
    assert count(database, OutboxMessage) == 0


def test_escalate_stops_the_lifecycle(res: LifecycleResources, database: Database, tmp_path: Path) -> None:
    _strict_triage(database)
    ticket_id = _wait_at(res, database, "triage", generate_tickets(count=1, seed=9)[0])
    assert engine.record_answer(
        res, ticket_id, "triage", {"decision": "escalate", "reviewer": "dan"}
    ).recorded
    state = engine.advance(res, [ticket_id])[ticket_id]
    assert state.status is engine.StageStatus.STOPPED and "escalat" in state.message
    with database.session() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None and ticket.assigned_queue == "escalation" and ticket.status == "escalated"


def test_recent_incidents_for_a_batch_match_a_count_per_ticket(database: Database) -> None:
    from hitl.lifecycle.proposals import _recent_incidents

    ids = ingest(database, generate_tickets(count=150, seed=5))
    with database.session() as session:
        tickets = list(session.execute(select(Ticket).where(Ticket.id.in_(ids))).scalars())
        batched = _recent_incidents(session, tickets[::3])  # a batch that is not the whole store
    severe = [t for t in tickets if t.priority in ("critical", "high")]
    expected = {
        t.id: sum(
            1
            for o in severe
            if o.client_id == t.client_id
            and o.id != t.id
            and t.created_at - timedelta(days=7) <= o.created_at <= t.created_at
        )
        for t in tickets[::3]
    }
    assert batched == expected and any(expected.values()) and not all(expected.values())


_ANY_TEXT = st.text(max_size=30)  # lone surrogates included: JSON from the API can carry them
_ANSWERS = st.dictionaries(
    st.sampled_from(["decision", "category", "priority", "reason_code", "reviewer", "comment", "extra"]),
    st.one_of(
        _ANY_TEXT,
        st.sampled_from(["approve", "override", "reject", "escalate", "wrong_category", "printer", "low"]),
        st.none(),
        st.integers(),
        st.lists(_ANY_TEXT, max_size=2),
    ),
    max_size=7,
)


def test_any_answer_is_recorded_or_refused_and_the_chain_holds(
    res: LifecycleResources, database: Database
) -> None:
    """Fuzzing the door operators' input comes through, against the real engine and database:
    whatever an answer holds, it is recorded or refused with problems (never an exception), a
    refusal records no review, and the audit chain verifies afterwards."""
    _strict_triage(database)
    record = next(r for r in generate_tickets(count=50, seed=5) if r.category == "printer")
    ticket_id = _wait_at(res, database, "triage", record)
    outcomes: list[bool] = []

    @hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(answer=_ANSWERS)
    @example(answer={"decision": "reject", "reason_code": "wrong_category", "reviewer": "eve\ud800"})
    @example(answer={"decision": "reject", "reason_code": "other", "reviewer": "bob", "comment": "x\udcff"})
    def check(answer: dict[str, Any]) -> None:
        reviews = count(database, Review)
        result = engine.record_answer(res, ticket_id, "triage", answer)
        assert result.recorded or result.problems
        if not result.recorded:
            assert count(database, Review) == reviews
        outcomes.append(result.recorded)

    check()
    with database.session() as session:
        assert verify_chain(session).ok
    assert outcomes.count(False) > 0


def _active_category_model(database: Database, settings: Settings) -> list[str]:
    """A real registered, active category model file; returns its classes."""
    from hitl.ml import service

    data = LabelledSet()
    for r in generate_tickets(count=200, seed=4):
        data.texts.append(ticket_text(r.subject, r.body))
        data.labels.append(label_of(r, "category") or "")
    result = train(data, "category", cv_folds=0, spec=FAST)
    with database.session() as session:
        service.register(session, settings.effective_models_dir, result, data, "category", make_active=True)
    return result.classes


def test_a_tampered_active_model_is_refused_when_first_used_and_decides_nothing(
    database: Database, settings: Settings
) -> None:
    from hitl.lifecycle.bootstrap import build_resources
    from hitl.ml.registry import ModelIntegrityError

    classes = _active_category_model(database, settings)
    [model_file] = (settings.effective_models_dir / "category").glob("*.skops")
    content = bytearray(model_file.read_bytes())
    content[len(content) // 2] ^= 0xFF
    model_file.write_bytes(bytes(content))
    res = build_resources(settings)  # reads the registry only: a run that never triages loads no file
    assert res.choices("category") == classes
    ids = ingest(database, generate_tickets(count=3, seed=8))
    with pytest.raises(ModelIntegrityError, match="refusing to load a file that was changed after training"):
        engine.propose_stage(res, ids, "triage")
    assert count(database, Decision) == 0


def test_models_load_once_per_process_and_never_inside_a_transaction(
    database: Database, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a transaction holds the write lock: flow processes that loaded model files (seconds
    each) inside one queued behind each other until "database is locked". The probe below is a
    second connection that must get the write lock at once whenever a file is being loaded."""
    import sqlite3

    from hitl.lifecycle.bootstrap import build_resources
    from hitl.ml import registry

    _active_category_model(database, settings)
    ids = ingest(database, generate_tickets(count=4, seed=9))
    real_load = registry.load_model
    probes: list[str] = []

    def probing_load(row: Any, models_dir: Path) -> LoadedModel:
        if database.dialect == "sqlite":
            probe = sqlite3.connect(str(database.engine.url.database), timeout=0, isolation_level=None)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                probes.append("write lock free")
            except sqlite3.OperationalError as exc:
                probes.append(str(exc))
            finally:
                probe.close()
        else:
            probes.append("write lock free")
        return real_load(row, models_dir)

    monkeypatch.setattr(registry, "load_model", probing_load)
    made = engine.propose_stage(build_resources(settings), ids[:2], "triage")
    assert made == {ids[0]: 1, ids[1]: 1} and probes == ["write lock free"]
    again = engine.propose_stage(build_resources(settings), ids[2:], "triage")  # the next run, same process
    assert again == {ids[2]: 1, ids[3]: 1} and len(probes) == 1, "a verified model is loaded once per process"
    assert engine.propose_stage(build_resources(settings), ids, "triage") == dict.fromkeys(ids, 1)
    fresh_process: dict[Any, LoadedModel] = {}
    monkeypatch.setattr(registry, "_loaded", fresh_process)
    engine.propose_stage(build_resources(settings), ids, "triage")  # all decided: a resumed run
    assert fresh_process == {} and len(probes) == 1, "a run past triage must not load a model file"


def test_a_flow_run_process_that_drafts_no_reply_imports_no_scikit_learn(tmp_path: Path) -> None:
    """Every waiting ticket's run is a process of its own: the lifecycle's imports plus its
    resources (templates, catalog, registry rows) must not pull in scikit-learn and SciPy (about
    2 CPU seconds and 100 MB per process here) before a stage really needs them."""
    import os
    import subprocess
    import sys

    from .support import ROOT

    script = (
        "import sys\n"
        "import flows.ticket_lifecycle\n"
        "from hitl.lifecycle.bootstrap import build_resources\n"
        "from hitl.settings import get_settings\n"
        "res = build_resources(get_settings())\n"
        "heavy = sorted(m for m in ('sklearn', 'scipy', 'skops') if m in sys.modules)\n"
        "print('heavy:', heavy)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HITL_")}
    env["HITL_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "heavy: []", done.stdout
