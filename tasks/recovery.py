"""The recovery task of the checkpoint-timeouts sweeper: a thin wrapper over hitl.lifecycle.recovery
(logging, one Prefect event per ticket acted on, for the notification automations)."""

from __future__ import annotations

import uuid

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.events import emit_event
from prefect.settings import get_current_settings

from hitl.lifecycle.recovery import SweepReport, sweep
from hitl.settings import get_settings
from hitl.store.db import get_database


@task(name="recover-orphaned-runs", cache_policy=NO_CACHE)
def recover_orphaned_runs() -> SweepReport:
    """Lifecycle runs whose process died: Crashed, then restarted, or escalated (result unknown)."""
    logger = get_run_logger()
    frequency = get_current_settings().flows.heartbeat_frequency
    report = sweep(get_database(get_settings()), heartbeat_frequency_s=frequency)
    if not report.heartbeats:
        logger.warning(
            "flow run heartbeats are off (PREFECT_FLOWS_HEARTBEAT_FREQUENCY): orphans go unnoticed"
        )
    for run_id in report.crashed:
        logger.warning("flow run %s is dead (no heartbeat, or a claim never started): marked Crashed", run_id)
    for run_id in report.requeued:
        logger.warning("flow run %s was claimed but never started: Scheduled again", run_id)
    for item in report.recovered:
        logger.warning(
            "ticket %s (crashed run %s): %s%s: %s",
            item.ticket_id,
            item.flow_run_id,
            item.action.value,
            f" as run {item.new_flow_run_id}" if item.new_flow_run_id else "",
            item.why,
        )
        emit_event(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"hitl/recovery/{item.flow_run_id}/{item.action.value}"),
            event="hitl.lifecycle.recovered",
            resource={"prefect.resource.id": f"hitl.ticket.{item.ticket_id}"},
            payload=item.model_dump(mode="json"),
        )
    return report
