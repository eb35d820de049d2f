"""What a resolved checkpoint does to the world: route the ticket, set its tier, run the
runbook (once, under its idempotency key), queue the reply. Each effect is safe to repeat.

One effect can stop the lifecycle: a runbook whose earlier execution is still marked "running"
(its process died half-way, or another process is on it) has an unknown result. It is never run
again; the decision keeps `execution_status = "unknown"` and is not `applied`, the ticket goes to
the escalation queue, and `apply_checkpoint` returns the reason to stop, so nothing after it
(the reply) acts as if the action had succeeded.
"""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from hitl.audit import append_event
from hitl.errors import HitlError
from hitl.lifecycle.resources import LifecycleResources
from hitl.store.orm import ActionExecution, AuditEvent, Decision, Review, Ticket, utcnow

RESULT_UNKNOWN_MESSAGE = "remediation result unknown: check the target system"
"""Why the lifecycle stops after an action whose result is unknown (the ticket is escalated)."""


def _approvers(session: Session, decision: Decision) -> list[str]:
    reviews = session.execute(select(Review).where(Review.decision_id == decision.id)).scalars()
    names = [r.reviewer for r in reviews if r.action in ("approve", "override")]
    return names or ["policy:auto"]


def apply_checkpoint(
    res: LifecycleResources, ticket_id: int, checkpoint: str, decision_ids: list[int]
) -> str | None:
    """Apply the checkpoint's effects. Returns None when the lifecycle may go on, or the reason
    it must stop for people (an action whose result is unknown)."""
    if checkpoint == "remediation":
        stops = [stop for d in decision_ids if (stop := _apply_remediation(res, ticket_id, d))]
        return stops[0] if stops else None
    with res.db.session() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        decisions = [session.get_one(Decision, decision_id) for decision_id in decision_ids]
        apply_in_session(session, ticket, checkpoint, decisions)


def apply_in_session(session: Session, ticket: Ticket, checkpoint: str, decisions: list[Decision]) -> None:
    """The effects of a resolved triage, escalation or reply checkpoint, in the caller's
    transaction: the batch path applies hundreds of tickets in one. Remediation is never applied
    here: each runbook execution needs transactions of its own (see `_apply_remediation`)."""
    if checkpoint == "remediation":
        raise ValueError("remediation effects run through apply_checkpoint, one execution at a time")
    for d in decisions:
        if d.status == "applied":
            continue
        if checkpoint == "triage" and d.head == "category" and d.final_value:
            ticket.assigned_queue = d.final_value
        elif checkpoint == "escalation" and d.final_value in ("T1", "T2", "T3"):
            ticket.tier = d.final_value
        elif checkpoint == "reply" and d.final_value == "send":
            _queue_reply(session, ticket, d)
        ticket.lifecycle_stage = checkpoint
        d.status = "applied"
    return None


def _queue_reply(session: Session, ticket: Ticket, d: Decision) -> None:
    from hitl.replies.outbox import queue_reply

    draft = str(d.details.get("draft", ""))
    final = str(d.details.get("final_text") or draft)
    approver = _approvers(session, d)[0]
    message = queue_reply(
        session,
        ticket_id=ticket.id,
        decision_id=d.id,
        to_address=ticket.requester_email,  # None: kept in the outbox for a PSA integration to post
        subject=str(d.details.get("subject") or f"Re: {ticket.subject}"),
        draft_body=draft,
        final_body=final,
        approved_by=approver,
    )
    append_event(
        session,
        kind="reply.queued",
        actor=approver,
        ticket_id=ticket.id,
        data={
            "decision_id": d.id,
            "outbox_id": message.id,
            "edit_distance": message.edit_distance,
            "characters": len(final),
        },
    )


def _cannot_run(session: Session, d: Decision, runbook_id: str, why: str, approvers: list[str]) -> str:
    """An approved runbook this deployment cannot run: nothing is executed, the ticket goes to the
    escalation queue with the reason (it used to fail the flow run and strand the ticket)."""
    if d.details.get("execution_status") == "not_run":  # a replay: said and logged once
        return str(d.details["execution_note"])
    ticket = session.get(Ticket, d.ticket_id)
    assert ticket is not None
    message = f"runbook {runbook_id} cannot run here: {why}; nothing was executed"
    ticket.assigned_queue = "escalation"
    d.details = {**d.details, "execution_status": "not_run", "execution_note": message}
    append_event(
        session,
        kind="action.not_run",
        actor=",".join(approvers) or "system",
        ticket_id=ticket.id,
        data={"decision_id": d.id, "runbook": runbook_id, "message": message, "fallback": "escalation queue"},
    )
    return message


def _apply_remediation(res: LifecycleResources, ticket_id: int, decision_id: int) -> str | None:
    from hitl.remediation.idempotency import execute_once
    from policies.runbooks import validate_parameters

    with res.db.session() as session:
        d = session.get(Decision, decision_id)
        assert d is not None
        if d.status == "applied":
            return None
        runbook_id = d.final_value
        if not runbook_id or runbook_id == "none":
            d.status = "applied"
            return None
        if _still_unknown(session, d):  # recorded before and nobody has recorded the result since
            return RESULT_UNKNOWN_MESSAGE
        params = dict(d.details.get("final_parameters") or d.details.get("parameters") or {})
        approvers = _approvers(session, d)
        why_not = res.unavailable_runbooks.get(runbook_id) or (
            None if runbook_id in res.runbooks else "it is not in the runbook catalog"
        )
        if why_not:  # approved when it could run (or before a catalog change): people take over
            return _cannot_run(session, d, runbook_id, why_not, approvers)
    runbook = res.runbooks[runbook_id]
    if res.executor_for is None:
        raise HitlError(f"runbook {runbook_id} was approved but no executor is configured in this process")
    outcome = execute_once(
        res.db,
        ticket_id=ticket_id,
        decision_id=decision_id,
        runbook=runbook,
        params=validate_parameters(runbook, params),
        executor=res.executor_for(runbook) if res.executor_for else None,
        approved_by=approvers,
        flow_run_id=res.flow_run_id,
    )
    with res.db.session() as session:
        if outcome.result_unknown:
            execution = session.get(ActionExecution, outcome.execution_id)
            if execution is not None and execution.status == "running":
                record_unknown_result(
                    session, execution, outcome.note or "", detected_by=res.flow_run_id or "lifecycle"
                )
                return RESULT_UNKNOWN_MESSAGE
        d = session.get(Decision, decision_id)
        ticket = session.get(Ticket, ticket_id)
        assert d is not None and ticket is not None
        kind = "action.executed" if outcome.executed_now else "action.skipped_duplicate"
        append_event(
            session,
            kind=kind,
            actor=",".join(approvers),
            ticket_id=ticket_id,
            data={
                "decision_id": decision_id,
                "runbook": runbook_id,
                "idempotency_key": outcome.key,
                "status": outcome.status,
                "error": outcome.error,
                "approved_by": approvers,
            },
        )
        ticket.lifecycle_stage = "remediation"
        d.status = "applied"
        d.details = {
            **d.details,
            "execution_id": outcome.execution_id,
            "execution_status": outcome.status,
            "executed_at": utcnow().isoformat(),
        }
    return None


def _still_unknown(session: Session, d: Decision) -> bool:
    if d.details.get("execution_status") != "unknown":
        return False
    execution = session.get(ActionExecution, d.details.get("execution_id"))
    return execution is None or execution.status == "running"


def record_unknown_result(
    session: Session, execution: ActionExecution, note: str, *, detected_by: str
) -> bool:
    """An action whose result nobody knows (still "running", its process gone or unaccounted for):
    its decision gets `execution_status = "unknown"` (and stays un-applied, so it is never taken
    for done), the ticket goes to the escalation queue, and an `action.result_unknown` audit event
    records the execution and why. Nothing is executed. Idempotent: returns False when this
    execution was already recorded as unknown."""
    decision = session.get(Decision, execution.decision_id) if execution.decision_id is not None else None
    if declared_unknown(session, execution, decision):
        return False
    ticket = session.get(Ticket, execution.ticket_id)
    assert ticket is not None
    if decision is not None:
        decision.details = {
            **decision.details,
            "execution_id": execution.id,
            "execution_status": "unknown",
            "execution_note": note,
        }
    ticket.lifecycle_stage = "remediation"
    ticket.assigned_queue = "escalation"
    if ticket.status != "overdue":
        ticket.status = "escalated"
    append_event(
        session,
        kind="action.result_unknown",
        actor="system",
        ticket_id=ticket.id,
        data={
            "decision_id": execution.decision_id,
            "execution_id": execution.id,
            "runbook": execution.runbook_id,
            "idempotency_key": execution.idempotency_key,
            "started_at": execution.started_at,
            "flow_run_id": execution.flow_run_id,
            "detected_by": detected_by,
            "note": note,
            "message": RESULT_UNKNOWN_MESSAGE,
            "fallback": "escalation queue; not re-executed",
        },
    )
    return True


def declared_unknown(session: Session, execution: ActionExecution, decision: Decision | None) -> bool:
    """Whether `record_unknown_result` already declared this execution unknown: on its decision,
    or, for an execution without one, in the audit trail."""
    if decision is not None:
        return (
            decision.details.get("execution_status") == "unknown"
            and decision.details.get("execution_id") == execution.id
        )
    return _unknown_logged(session, execution)


def _unknown_logged(session: Session, execution: ActionExecution) -> bool:
    bodies = session.execute(
        select(AuditEvent.body).where(
            AuditEvent.ticket_id == execution.ticket_id, AuditEvent.kind == "action.result_unknown"
        )
    ).scalars()
    return any(json.loads(body)["data"].get("execution_id") == execution.id for body in bodies)
