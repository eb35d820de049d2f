"""Execute an approved action at most once, whatever retries, resumed flows or races do.

The execution row is inserted under its idempotency key and committed *before* the executor is
called. Whoever commits the key runs the action; everyone else (a retried task, a resumed flow,
a second worker at the same moment) hits the unique constraint and gets the stored row back.
A row still marked "running" is never re-executed: the process that owned it may have died
half-way, and repeating a half-applied change to a client environment is worse than asking a
human to look. The caller gets `result_unknown=True` and must stop for people
(hitl.lifecycle.effects sends the ticket to the escalation queue; the checkpoint-timeouts sweeper
does the same for the executions of a run whose process died, hitl.lifecycle.recovery).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from hitl.errors import ConfigError
from hitl.remediation.executors import ExecutionResult, Executor
from hitl.store.db import Database
from hitl.store.orm import ActionExecution, utcnow
from policies.runbooks import Runbook, validate_parameters


class ExecutionOutcome(BaseModel):
    key: str
    execution_id: int
    executed_now: bool
    status: Literal["running", "succeeded", "failed"]
    output: str | None = None
    error: str | None = None
    result_unknown: bool = False  # an earlier attempt is still "running": it may have died half-way
    note: str | None = None
    started_at: datetime
    finished_at: datetime | None = None


def idempotency_key(ticket_id: int, runbook_id: str, params: Mapping[str, Any]) -> str:
    """SHA-256 hex of canonical JSON. Pass *validated* parameters (as `execute_once` does), so
    `"443"` and `443`, or `fs01` and `FS01`, give the same key."""
    document = {"ticket_id": ticket_id, "runbook_id": runbook_id, "parameters": dict(params)}
    canonical = json.dumps(
        document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def execute_once(
    db: Database,
    *,
    ticket_id: int,
    decision_id: int | None,
    runbook: Runbook,
    params: Mapping[str, Any],
    executor: Executor,
    approved_by: list[str],
    flow_run_id: str | None,
) -> ExecutionOutcome:
    """Run `runbook` for the ticket unless this exact action (ticket, runbook, parameters) has
    been started before; invalid parameters raise before anything is recorded or run."""
    values = validate_parameters(runbook, params)
    if executor.name != runbook.executor:
        raise ConfigError(
            f"runbook '{runbook.id}' needs the {runbook.executor} executor, not {executor.name}"
        )
    key = idempotency_key(ticket_id, runbook.id, values)
    try:
        with db.session() as session:
            row = ActionExecution(
                idempotency_key=key,
                ticket_id=ticket_id,
                decision_id=decision_id,
                runbook_id=runbook.id,
                parameters=values,
                executor=executor.name,
                status="running",
                approved_by=list(dict.fromkeys(approved_by)),
                flow_run_id=flow_run_id,
                started_at=utcnow(),
            )
            session.add(row)
            session.flush()
            execution_id = row.id
    except IntegrityError:
        earlier = _find(db, key)
        if earlier is None:
            raise  # another constraint: the ticket or decision does not exist
        return _outcome(earlier, executed_now=False)

    try:
        result = executor.run(runbook, values, key)
    except Exception as exc:
        error = f"executor error: {type(exc).__name__}: {' '.join(str(exc).split())[:500]}"
        _finish(db, execution_id, ExecutionResult(status="failed", error=error))
        raise
    return _outcome(_finish(db, execution_id, result), executed_now=True)


def _find(db: Database, key: str) -> ActionExecution | None:
    with db.session() as session:
        return session.scalars(select(ActionExecution).where(ActionExecution.idempotency_key == key)).first()


def _finish(db: Database, execution_id: int, result: ExecutionResult) -> ActionExecution:
    with db.session() as session:
        row = session.get_one(ActionExecution, execution_id)
        row.status = result.status
        row.output = result.output
        row.error = result.error
        row.finished_at = utcnow()
        return row


def _outcome(row: ActionExecution, *, executed_now: bool) -> ExecutionOutcome:
    note = None
    if not executed_now and row.status == "running":
        note = (
            f"execution {row.id} of this action started at {row.started_at:%Y-%m-%d %H:%M:%S} UTC is still "
            "marked running: it may still be in progress or its process may have died, so its result "
            "is unknown. It is not re-executed automatically: check the target system (the ticket goes "
            "to the escalation queue)."
        )
    elif not executed_now:
        note = f"already executed as execution {row.id} ({row.status}): not run again"
    return ExecutionOutcome(
        key=row.idempotency_key,
        execution_id=row.id,
        executed_now=executed_now,
        status=row.status,
        output=row.output,
        error=row.error,
        result_unknown=not executed_now and row.status == "running",
        note=note,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )
