"""Lifecycle runs whose process died: notice them, mark them Crashed, and get their tickets going.

A worker machine that dies (power, kernel panic, SIGKILL of the whole process tree) says goodbye
to nobody: its flow runs stay `Running` in Prefect with no process behind them, and nothing in
Prefect restarts them. What tells a live run from a dead one is its heartbeat: every flow process
emits a `prefect.flow-run.heartbeat` event every PREFECT_FLOWS_HEARTBEAT_FREQUENCY seconds (180 by
default in Prefect 3.9, 30 at least). The checkpoint-timeouts sweeper, every minute, calls `sweep`:

1. **Orphans.** A `Running` run of a watched deployment (ticket-lifecycle, checkpoint-timeouts:
   short runs that never hold the GIL for long) with no heartbeat for MISSED_HEARTBEATS intervals
   (and `Running` for at least as long) is set `Crashed`, as Prefect's own zombie-flow automation
   would (docs.prefect.io, "Detect zombie flows": after a heartbeat, expect another within 90 s
   at a 30 s frequency).
2. **Recovery.** Every `Crashed` ticket-lifecycle run of the last LOOKBACK (crashed in step 1, by
   a worker that saw its child die, or by that automation) is looked at once it is known to this
   database (its id is on one of the ticket's decisions, reviews or action executions: a Prefect
   server shared by several databases never gets a ticket of another one restarted):
   * an action execution of the dead run is still `running`: its result is unknown. It is never
     run again; the decision gets `execution_status = "unknown"`, the ticket goes to the escalation
     queue (hitl.lifecycle.effects.record_unknown_result). Recorded here rather than by a new run:
     the sweeper knows the owner is dead, and no process start is spent to learn what the
     database already says;
   * otherwise, unless the ticket's lifecycle is finished or a newer run carries it, a fresh
     ticket-lifecycle run is started. The engine is idempotent (decisions live in the database),
     so it replays to where the ticket was: an action whose row was never committed runs once,
     one that finished is not repeated, a checkpoint waits again (its decisions now name the new
     run);
   * after MAX_RESTARTS automatic restarts of one ticket, it goes to the escalation queue instead,
     so a ticket that kills its process every time is not restarted for ever.

3. **Stuck in Pending.** A worker claims a run (Pending) and then starts its process; a machine
   that dies in between leaves the run Pending for good, and Pending runs send no heartbeat. A
   watched run Pending for longer than PENDING_LIMIT is put back: a ticket-lifecycle run is
   Scheduled again (now), so any live worker starts it as if it had never been claimed (no
   process of it ever ran: nothing can have happened twice); a checkpoint-timeouts run is set
   Crashed, since the next minute's sweep does its work anyway.

Every recovery of a ticket (step 2) writes a `lifecycle.recovered` audit event. Step 3 changes
no ticket, only the run's Prefect state, whose message says who put it back and why. The decisions
are pure functions (`orphaned`, `plan_recovery`, `stuck_pending`), tested on their own; `sweep`
only gathers the facts and acts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import func, select

from hitl.audit import append_event
from hitl.store.db import Database
from hitl.store.orm import ActionExecution, AuditEvent, Decision, Review, Ticket, utcnow

LIFECYCLE_DEPLOYMENT = "ticket-lifecycle"
WATCHED_DEPLOYMENTS = ("ticket-lifecycle", "checkpoint-timeouts")
MISSED_HEARTBEATS = 3
MAX_RESTARTS = 3
LOOKBACK = timedelta(days=7)
# Claim to Running takes seconds (process start, imports); ten minutes is a dead claim even on a
# machine starting a thousand runs (benchmark 3: a run waits in Scheduled, not Pending, for a slot).
PENDING_LIMIT = timedelta(minutes=10)
FINISHED_STATUSES = frozenset({"escalated", "overdue"})
ACTOR = "system:recovery"


# ---------------------------------------------------------------- pure decisions
def stale_after(heartbeat_frequency_s: float | None) -> timedelta | None:
    """How long without a heartbeat makes a run an orphan; None when heartbeats are off (then
    nothing can be told apart from a slow run, and no run is declared dead)."""
    if not heartbeat_frequency_s:
        return None
    return timedelta(seconds=MISSED_HEARTBEATS * max(float(heartbeat_frequency_s), 30.0))


@dataclass(frozen=True)
class ActiveRun:
    """A flow run Prefect believes is running: since when, and its newest heartbeat."""

    id: str
    deployment: str
    running_since: datetime
    last_heartbeat: datetime | None = None
    state_id: str | None = None


def orphaned(runs: Iterable[ActiveRun], now: datetime, stale: timedelta) -> list[ActiveRun]:
    """Runs with no sign of life for longer than `stale`: neither a heartbeat nor the Running
    state itself (a run that just started or was just resumed has not had time to beat)."""
    out = []
    for run in runs:
        last = max(run.running_since, run.last_heartbeat or run.running_since)
        if now - last > stale:
            out.append(run)
    return out


@dataclass(frozen=True)
class PendingRun:
    """A flow run a worker claimed but whose process has not reported Running."""

    id: str
    deployment: str
    pending_since: datetime
    state_id: str | None = None


def stuck_pending(
    runs: Iterable[PendingRun], now: datetime, limit: timedelta = PENDING_LIMIT
) -> list[PendingRun]:
    """Claims older than `limit`: the process that should have started them never did."""
    return [run for run in runs if now - run.pending_since > limit]


class Recovery(StrEnum):
    RESULT_UNKNOWN = "result_unknown"  # an action of the dead run may have half-happened
    RESTART = "restart"  # a fresh lifecycle run replays to where the ticket was
    ESCALATE = "escalate"  # restarted too often: people take over
    NOTHING = "nothing"


@dataclass(frozen=True)
class TicketFacts:
    """What the database (and Prefect) say about the ticket of a crashed lifecycle run."""

    exists: bool
    run_known: bool  # the dead run's id is on one of the ticket's decisions, reviews or executions
    stage: str | None = None
    status: str | None = None
    running_executions: tuple[int, ...] = ()  # executions of the dead run still "running"
    restarts: int = 0  # automatic restarts of this ticket so far
    newer_run: bool = False  # another lifecycle run of the ticket was created after the dead one


def plan_recovery(facts: TicketFacts) -> tuple[Recovery, str]:
    """What to do about a crashed lifecycle run, and why (the audit event says it)."""
    if not facts.exists or not facts.run_known:
        return Recovery.NOTHING, "the run is not one of this database's lifecycle runs"
    if facts.running_executions:
        return (
            Recovery.RESULT_UNKNOWN,
            "its process died while an action was running: the result is unknown and the action "
            "is not run again",
        )
    if facts.newer_run:
        return Recovery.NOTHING, "a newer lifecycle run carries the ticket"
    if facts.stage == "done" or facts.status in FINISHED_STATUSES:
        return Recovery.NOTHING, "the ticket's lifecycle is finished"
    if facts.restarts >= MAX_RESTARTS:
        return (
            Recovery.ESCALATE,
            f"its lifecycle run crashed after {facts.restarts} automatic restarts: people take over",
        )
    return Recovery.RESTART, "a fresh lifecycle run replays the ticket to where it was"


# ---------------------------------------------------------------- the database side
def ticket_facts(db: Database, ticket_id: int, run_id: str) -> TicketFacts:
    with db.session() as session:
        ticket = session.get(Ticket, ticket_id)
        if ticket is None:
            return TicketFacts(exists=False, run_known=False)
        known = any(
            session.execute(
                select(func.count()).select_from(model).where(model.ticket_id == ticket_id, column == run_id)
            ).scalar_one()
            for model, column in (
                (Decision, Decision.flow_run_id),
                (ActionExecution, ActionExecution.flow_run_id),
                (Review, Review.flow_run_id),
            )
        )
        running = session.execute(
            select(ActionExecution.id)
            .where(
                ActionExecution.ticket_id == ticket_id,
                ActionExecution.flow_run_id == run_id,
                ActionExecution.status == "running",
            )
            .order_by(ActionExecution.id)
        ).scalars()
        return TicketFacts(
            exists=True,
            run_known=known,
            stage=ticket.lifecycle_stage,
            status=ticket.status,
            running_executions=tuple(running),
            restarts=_restarts(session, ticket_id),
        )


def _restarts(session: Any, ticket_id: int) -> int:
    import json

    bodies = session.execute(
        select(AuditEvent.body).where(
            AuditEvent.ticket_id == ticket_id, AuditEvent.kind == "lifecycle.recovered"
        )
    ).scalars()
    return sum(json.loads(body)["data"].get("action") == Recovery.RESTART.value for body in bodies)


def record_result_unknown(
    db: Database, ticket_id: int, run_id: str, execution_ids: Sequence[int], why: str
) -> bool:
    """The dead run's running executions: result unknown, ticket escalated (see effects). Returns
    whether anything was newly recorded (False on a repeated sweep)."""
    from hitl.lifecycle.effects import RESULT_UNKNOWN_MESSAGE, record_unknown_result

    recorded = False
    with db.session() as session:
        for execution_id in execution_ids:
            execution = session.get(ActionExecution, execution_id)
            if execution is None or execution.status != "running":
                continue  # finished in the meantime: nothing is unknown
            note = (
                f"execution {execution.id} ({execution.runbook_id}) started at "
                f"{execution.started_at:%Y-%m-%d %H:%M:%S} UTC by flow run {run_id}, whose process died "
                "before it recorded the result: the action may or may not have been applied. It is not "
                "re-executed: check the target system."
            )
            if record_unknown_result(session, execution, note, detected_by=ACTOR):
                recorded = True
                append_event(
                    session,
                    kind="lifecycle.recovered",
                    actor=ACTOR,
                    ticket_id=ticket_id,
                    data={
                        "flow_run_id": run_id,
                        "action": Recovery.RESULT_UNKNOWN.value,
                        "execution_id": execution.id,
                        "why": why,
                        "message": RESULT_UNKNOWN_MESSAGE,
                    },
                )
    return recorded


def record_restart(db: Database, ticket_id: int, run_id: str, new_run_id: str, why: str) -> None:
    """The ticket's decisions that waited under the dead run now name the new one (the queue links
    to it), and the restart is audited."""
    with db.session() as session:
        for decision in session.execute(
            select(Decision).where(
                Decision.ticket_id == ticket_id, Decision.flow_run_id == run_id, Decision.status == "waiting"
            )
        ).scalars():
            decision.flow_run_id = new_run_id
        append_event(
            session,
            kind="lifecycle.recovered",
            actor=ACTOR,
            ticket_id=ticket_id,
            data={
                "flow_run_id": run_id,
                "action": Recovery.RESTART.value,
                "new_flow_run_id": new_run_id,
                "why": why,
            },
        )


def record_escalation(db: Database, ticket_id: int, run_id: str, why: str) -> None:
    with db.session() as session:
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        ticket.assigned_queue = "escalation"
        if ticket.status != "overdue":
            ticket.status = "escalated"
        append_event(
            session,
            kind="lifecycle.recovered",
            actor=ACTOR,
            ticket_id=ticket_id,
            data={"flow_run_id": run_id, "action": Recovery.ESCALATE.value, "why": why},
        )


# ---------------------------------------------------------------- the Prefect side
class Recovered(BaseModel):
    ticket_id: int
    flow_run_id: str
    action: Recovery
    why: str
    new_flow_run_id: str | None = None


class SweepReport(BaseModel):
    crashed: list[str] = Field(
        default_factory=list,
        description="runs set Crashed: missing heartbeats, or a sweeper run stuck in Pending",
    )
    requeued: list[str] = Field(
        default_factory=list, description="ticket-lifecycle runs stuck in Pending, Scheduled again"
    )
    recovered: list[Recovered] = Field(default_factory=list, description="tickets acted on (not NOTHING)")
    heartbeats: bool = True  # False: heartbeats are off, orphans cannot be told from slow runs


def _deployment_runs(
    client: Any, deployment: str, state: Any, sort: str = "START_TIME_DESC", **flow_run_filter: Any
) -> list[Any]:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    return list(
        client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[state])), **flow_run_filter
            ),
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment])),
            sort=FlowRunSort(sort),
            limit=200,
        )
    )


def _last_heartbeats(client: Any, run_ids: Sequence[str], since: datetime) -> dict[str, datetime]:
    """The newest heartbeat since `since` of each run (one query: distinct per resource)."""
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )

    if not run_ids:
        return {}
    events_filter = EventFilter(  # built per query: `until` defaults to the time of construction
        occurred=EventOccurredFilter(since=since, until=utcnow() + timedelta(minutes=5)),
        event=EventNameFilter(name=["prefect.flow-run.heartbeat"]),
        resource=EventResourceFilter(id=[f"prefect.flow-run.{r}" for r in run_ids], distinct=True),
    )
    page = client.read_events(filter=events_filter, limit=50)  # the API's largest page
    events = list(page.events)
    while page.next_page and len(events) < 5 * len(run_ids):
        page = client.read_events_page(page.next_page)
        events += page.events
    last: dict[str, datetime] = {}
    for event in events:
        run_id = event.resource.id.removeprefix("prefect.flow-run.")
        if run_id not in last or event.occurred > last[run_id]:
            last[run_id] = event.occurred
    return last


def active_runs(client: Any, since: datetime) -> list[ActiveRun]:
    from prefect.client.schemas.objects import StateType

    runs = [
        (deployment, run)
        for deployment in WATCHED_DEPLOYMENTS
        for run in _deployment_runs(client, deployment, StateType.RUNNING)
    ]
    beats = _last_heartbeats(client, [str(run.id) for _, run in runs], since)
    return [
        ActiveRun(
            id=str(run.id),
            deployment=deployment,
            running_since=run.state.timestamp,
            last_heartbeat=beats.get(str(run.id)),
            state_id=str(run.state.id),
        )
        for deployment, run in runs
        if run.state is not None and run.state.timestamp is not None
    ]


def pending_runs(client: Any) -> list[PendingRun]:
    from prefect.client.schemas.objects import StateType

    return [
        PendingRun(
            id=str(run.id),
            deployment=deployment,
            pending_since=run.state.timestamp,
            state_id=str(run.state.id),
        )
        for deployment in WATCHED_DEPLOYMENTS
        for run in _deployment_runs(client, deployment, StateType.PENDING, sort="START_TIME_ASC")
        if run.state is not None and run.state.timestamp is not None
    ]


def _unstick(client: Any, run: PendingRun) -> bool:
    """Put a dead claim back (see the module's docstring), unless its state moved since it was read."""
    from prefect.states import Crashed, Scheduled

    why = (
        f"Pending since {run.pending_since:%Y-%m-%d %H:%M:%S} UTC (more than "
        f"{PENDING_LIMIT.total_seconds():.0f} s) and never started: the worker that claimed it is gone."
    )
    if run.deployment == LIFECYCLE_DEPLOYMENT:
        state = Scheduled(scheduled_time=utcnow(), message=f"{why} Scheduled again by checkpoint-timeouts.")
    else:
        state = Crashed(message=f"{why} Marked Crashed by checkpoint-timeouts; the next sweep does its work.")
    return _set_state_unless_moved(client, run.id, run.state_id, state)


def _crash(client: Any, run: ActiveRun, stale: timedelta) -> bool:
    """Set an orphan Crashed, unless its state moved since it was read (it came back to life)."""
    from prefect.states import Crashed

    last = run.last_heartbeat or run.running_since
    message = (
        f"No heartbeat since {last:%Y-%m-%d %H:%M:%S} UTC (more than {stale.total_seconds():.0f} s): the "
        "process running this flow run is gone. Marked Crashed by checkpoint-timeouts."
    )
    return _set_state_unless_moved(client, run.id, run.state_id, Crashed(message=message))


def _set_state_unless_moved(client: Any, run_id: str, state_id: str | None, state: Any) -> bool:
    """Propose `state` only if the run is still in the state the sweep judged (`state_id`): a run
    that moved meanwhile (started, beat, was resumed) is alive and left alone."""
    from prefect.client.schemas.responses import SetStateStatus

    current = client.read_flow_run(run_id)
    if current.state is None or str(current.state.id) != state_id:
        return False
    result = client.set_flow_run_state(run_id, state)
    return bool(result.status == SetStateStatus.ACCEPT)


def _newer_run(client: Any, ticket_id: int, run: Any) -> bool:
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterTags,
    )

    from hitl.lifecycle.runs import ticket_tag

    others = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[ticket_tag(ticket_id)])),
        deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[LIFECYCLE_DEPLOYMENT])),
        limit=200,
    )
    return any(
        o.id != run.id
        and int((o.parameters or {}).get("ticket_id", -1)) == ticket_id
        and o.created is not None
        and run.created is not None
        and o.created > run.created
        for o in others
    )


def sweep(
    db: Database,
    *,
    heartbeat_frequency_s: float | None,
    now: datetime | None = None,
    start_runs: Callable[[Sequence[int]], dict[int, str]] | None = None,
) -> SweepReport:
    """Crash the orphans, then recover the crashed lifecycle runs this database knows (see the
    module's docstring). `start_runs` starts lifecycle runs (default: the deployment's)."""
    from prefect import get_client
    from prefect.client.schemas.filters import FlowRunFilterEndTime
    from prefect.client.schemas.objects import StateType

    from hitl.lifecycle.runs import start_lifecycle_runs

    start = start_runs or start_lifecycle_runs
    now = now or utcnow()
    stale = stale_after(heartbeat_frequency_s)
    report = SweepReport(heartbeats=stale is not None)
    with get_client(sync_client=True) as client:
        if stale is not None:
            for run in orphaned(active_runs(client, now - 2 * stale), now, stale):
                if _crash(client, run, stale):
                    report.crashed.append(run.id)
        for pending in stuck_pending(pending_runs(client), now):
            if _unstick(client, pending):
                target = report.requeued if pending.deployment == LIFECYCLE_DEPLOYMENT else report.crashed
                target.append(pending.id)
        crashed = _deployment_runs(
            client,
            LIFECYCLE_DEPLOYMENT,
            StateType.CRASHED,
            sort="END_TIME_DESC",
            end_time=FlowRunFilterEndTime(after_=now - LOOKBACK),
        )
        handled: set[int] = set()
        for run in crashed:  # the latest crash first: one recovery per ticket and sweep
            ticket_id = int((run.parameters or {}).get("ticket_id", -1))
            if ticket_id in handled:
                continue
            run_id = str(run.id)
            facts = ticket_facts(db, ticket_id, run_id)
            if not facts.exists or not facts.run_known:
                continue
            if not facts.running_executions:
                facts = TicketFacts(**{**facts.__dict__, "newer_run": _newer_run(client, ticket_id, run)})
            action, why = plan_recovery(facts)
            handled.add(ticket_id)
            if action is Recovery.RESULT_UNKNOWN:
                if record_result_unknown(db, ticket_id, run_id, facts.running_executions, why):
                    report.recovered.append(
                        Recovered(ticket_id=ticket_id, flow_run_id=run_id, action=action, why=why)
                    )
            elif action is Recovery.ESCALATE:
                record_escalation(db, ticket_id, run_id, why)
                report.recovered.append(
                    Recovered(ticket_id=ticket_id, flow_run_id=run_id, action=action, why=why)
                )
            elif action is Recovery.RESTART:
                new_run_id = start([ticket_id])[ticket_id]
                record_restart(db, ticket_id, run_id, new_run_id, why)
                report.recovered.append(
                    Recovered(
                        ticket_id=ticket_id,
                        flow_run_id=run_id,
                        action=action,
                        why=why,
                        new_flow_run_id=new_run_id,
                    )
                )
    return report
