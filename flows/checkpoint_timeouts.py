"""The checkpoint-timeouts flow (every minute while `hitl serve` or a worker runs): checkpoints past
their deadline are marked overdue and routed to the escalation queue, their suspended runs are
cancelled so a late answer cannot act, and an event is emitted for notifications. Then lifecycle
runs whose process died (no heartbeat) are marked Crashed and their tickets recovered: a fresh run,
or, when an action of the dead run may have half-happened, the escalation queue (docs/lifecycle.md).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event

from hitl.lifecycle import engine
from hitl.lifecycle.resources import LifecycleResources
from hitl.lifecycle.runs import cancel_waiting_run
from hitl.settings import get_settings
from hitl.store.db import get_database
from tasks.recovery import recover_orphaned_runs


@task(name="expire-overdue", cache_policy=NO_CACHE)
def expire() -> list[engine.Expired]:
    # The database is all it needs: no models loaded every minute (the sweep stays a few seconds)
    return engine.expire_overdue(LifecycleResources(db=get_database(get_settings())))


@task(name="notify-timeout", cache_policy=NO_CACHE)
def notify(ticket_id: int, flow_run_id: str | None, checkpoint: str) -> None:
    if flow_run_id:
        cancel_waiting_run(flow_run_id)
    emit_event(
        event="hitl.checkpoint.timed_out",
        resource={"prefect.resource.id": f"hitl.ticket.{ticket_id}"},
        payload={
            "ticket_id": ticket_id,
            "flow_run_id": flow_run_id,
            "checkpoint": checkpoint,
            "fallback": "escalation queue",
        },
    )


@flow(
    name="checkpoint-timeouts",
    description=(
        "Overdue checkpoints go to the escalation queue; lifecycle runs whose process died are recovered."
    ),
)
def checkpoint_timeouts() -> int:
    """Returns how many checkpoints timed out."""
    expired = expire()
    for item in expired:
        notify(item.ticket_id, item.flow_run_id, item.checkpoint)
    if expired:
        get_run_logger().warning("%d checkpoint(s) timed out and went to the escalation queue", len(expired))
    recover_orphaned_runs()
    return len(expired)
