"""Recording what a person found on the target system after an action's result became unknown.

An action whose process died mid-call is never run again (hitl.lifecycle.effects): its execution
row stays "running", the decision says `execution_status = "unknown"` and the ticket waits in the
escalation queue. Someone then checks the RMM or the client's system. This is where they record
what they found, under their name and with a note, so the trail shows who decided that the
action happened (or not) and why; `hitl lifecycle start TICKET` then continues the ticket and the
action counts as done, never executed a second time.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from hitl.audit import append_event
from hitl.checkpoints import is_valid_text
from hitl.errors import HitlError
from hitl.lifecycle.effects import declared_unknown
from hitl.store.orm import ActionExecution, Decision, utcnow

CheckedResult = Literal["succeeded", "failed"]


class ActionResultError(HitlError):
    """The result was not recorded: nothing changed."""


class CheckedResultInput(BaseModel):
    """What the person found, as the CLI (or any other front end) hands it in."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    execution_id: int = Field(gt=0)
    result: CheckedResult
    checked_by: str = Field(min_length=1, max_length=100)
    note: str = Field(min_length=1, max_length=2000, description="what was checked, where")

    @field_validator("checked_by", "note")
    @classmethod
    def _encodable(cls, value: str) -> str:
        if not is_valid_text(value):
            raise ValueError("contains characters that are not valid Unicode text")
        return value


class CheckedResultRecord(BaseModel):
    execution_id: int
    ticket_id: int
    decision_id: int | None
    runbook: str
    result: CheckedResult
    checked_by: str
    audit_seq: int


def record_checked_result(session: Session, answer: CheckedResultInput) -> CheckedResultRecord:
    """Only an execution already declared unknown can be resolved: a row that is "running" for
    any other reason may belong to a process that is still on it, and a finished one has its
    result from the executor. Commits with the caller's transaction, audit event included."""
    execution = session.get(ActionExecution, answer.execution_id, with_for_update=True)
    if execution is None:
        raise ActionResultError(f"no action execution {answer.execution_id}")
    if execution.status != "running":
        raise ActionResultError(
            f"action execution {execution.id} already has its result ({execution.status}); nothing to record"
        )
    decision = session.get(Decision, execution.decision_id) if execution.decision_id is not None else None
    if not declared_unknown(session, execution, decision):
        raise ActionResultError(
            f"action execution {execution.id} is running and its result was never declared unknown: "
            "it may still be in progress (the checkpoint-timeouts sweeper declares it once its run is dead)"
        )
    now = utcnow()
    execution.status = answer.result
    execution.finished_at = now
    checked = f"checked by {answer.checked_by}: {answer.note}"
    if answer.result == "failed":
        execution.error = checked
    else:
        execution.output = checked
    if decision is not None:
        decision.details = {
            **decision.details,
            "execution_status": answer.result,
            "execution_checked_by": answer.checked_by,
            "execution_note": answer.note,
        }
    event = append_event(
        session,
        kind="action.result_recorded",
        actor=answer.checked_by,
        ticket_id=execution.ticket_id,
        data={
            "execution_id": execution.id,
            "decision_id": execution.decision_id,
            "runbook": execution.runbook_id,
            "idempotency_key": execution.idempotency_key,
            "result": answer.result,
            "note": answer.note,
            "was": "unknown",
            "recorded_at": now,
        },
    )
    return CheckedResultRecord(
        execution_id=execution.id,
        ticket_id=execution.ticket_id,
        decision_id=execution.decision_id,
        runbook=execution.runbook_id,
        result=answer.result,
        checked_by=answer.checked_by,
        audit_seq=event.seq,
    )


class UnknownAction(BaseModel):
    """An action waiting for someone to check the target system."""

    execution_id: int
    ticket_id: int
    decision_id: int | None
    runbook: str
    executor: str
    parameters: dict[str, object]
    approved_by: list[object]
    started_at: str
    flow_run_id: str | None


def unknown_actions(session: Session) -> list[UnknownAction]:
    """Executions still "running" that were declared unknown, oldest first."""
    rows = session.execute(
        select(ActionExecution).where(ActionExecution.status == "running").order_by(ActionExecution.id)
    ).scalars()
    out = []
    for execution in rows:
        decision = session.get(Decision, execution.decision_id) if execution.decision_id is not None else None
        if declared_unknown(session, execution, decision):
            out.append(
                UnknownAction(
                    execution_id=execution.id,
                    ticket_id=execution.ticket_id,
                    decision_id=execution.decision_id,
                    runbook=execution.runbook_id,
                    executor=execution.executor,
                    parameters=dict(execution.parameters or {}),
                    approved_by=list(execution.approved_by or []),
                    started_at=execution.started_at.isoformat(),
                    flow_run_id=execution.flow_run_id,
                )
            )
    return out
