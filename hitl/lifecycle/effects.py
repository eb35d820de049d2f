"""What a resolved checkpoint does to the world: route the ticket, set its tier, run the
runbook (once, under its idempotency key), queue the reply. Each effect is safe to repeat."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hitl.audit import append_event
from hitl.errors import HitlError
from hitl.lifecycle.resources import LifecycleResources
from hitl.store.orm import Decision, Review, Ticket, utcnow


def _approvers(session: Session, decision: Decision) -> list[str]:
    reviews = session.execute(select(Review).where(Review.decision_id == decision.id)).scalars()
    names = [r.reviewer for r in reviews if r.action in ("approve", "override")]
    return names or ["policy:auto"]


def apply_checkpoint(
    res: LifecycleResources, ticket_id: int, checkpoint: str, decision_ids: list[int]
) -> None:
    if checkpoint == "remediation":
        for decision_id in decision_ids:
            _apply_remediation(res, ticket_id, decision_id)
        return
    with res.db.session() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        for decision_id in decision_ids:
            d = session.get(Decision, decision_id)
            assert d is not None
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


def _queue_reply(session: Session, ticket: Ticket, d: Decision) -> None:
    from hitl.replies.outbox import queue_reply

    draft = str(d.details.get("draft", ""))
    final = str(d.details.get("final_text") or draft)
    approver = _approvers(session, d)[0]
    message = queue_reply(
        session,
        ticket_id=ticket.id,
        decision_id=d.id,
        to_address=None,
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


def _apply_remediation(res: LifecycleResources, ticket_id: int, decision_id: int) -> None:
    from hitl.remediation.idempotency import execute_once
    from policies.runbooks import validate_parameters

    with res.db.session() as session:
        d = session.get(Decision, decision_id)
        assert d is not None
        if d.status == "applied":
            return
        runbook_id = d.final_value
        if not runbook_id or runbook_id == "none":
            d.status = "applied"
            return
        params = dict(d.details.get("final_parameters") or d.details.get("parameters") or {})
        approvers = _approvers(session, d)
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
        d.details = {**d.details, "execution_status": outcome.status, "executed_at": utcnow().isoformat()}
