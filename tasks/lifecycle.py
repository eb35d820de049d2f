"""Prefect tasks of the ticket lifecycle: thin wrappers over hitl.lifecycle.

`propose` persists its result: a resumed flow re-runs from the top and finds the stage's proposal
already made (Prefect reuses the persisted result; the decision rows make it idempotent anyway).
`settle` and `record` are never cached: they read the current state of the ticket.
"""

from __future__ import annotations

import uuid
from typing import Any

from prefect import get_run_logger, task
from prefect.cache_policies import INPUTS, NO_CACHE, RUN_ID
from prefect.events import emit_event
from prefect.runtime import flow_run

from hitl.errors import HitlError
from hitl.lifecycle import engine
from hitl.lifecycle.bootstrap import build_resources
from hitl.lifecycle.resources import LifecycleResources
from hitl.lifecycle.runs import start_lifecycle_runs
from hitl.settings import get_settings

_resources: dict[str, LifecycleResources] = {}


def resources() -> LifecycleResources:
    """Models and catalogs are loaded once per process (a flow run is one process)."""
    run_id = str(flow_run.id) if flow_run.id else "local"
    if run_id not in _resources:
        _resources.clear()
        _resources[run_id] = build_resources(get_settings(), flow_run_id=flow_run.id)
    return _resources[run_id]


@task(name="propose", persist_result=True, cache_policy=INPUTS + RUN_ID)
def propose(ticket_id: int, checkpoint: str) -> int:
    """Returns how many decisions the stage has (made now or earlier)."""
    return engine.propose_stage(resources(), [ticket_id], checkpoint)[ticket_id]


@task(name="settle", cache_policy=NO_CACHE)
def settle(ticket_id: int, checkpoint: str, problems: list[str]) -> engine.StageState:
    return engine.settle(resources(), ticket_id, checkpoint, problems)


@task(name="record-answer", cache_policy=NO_CACHE)
def record(ticket_id: int, checkpoint: str, answer: dict[str, Any], key: str) -> engine.AnswerResult:
    result = engine.record_answer(resources(), ticket_id, checkpoint, answer, flow_run.id, key)
    if result.problems:
        get_run_logger().warning("answer not recorded: %s", "; ".join(result.problems))
    return result


@task(name="announce-waiting", cache_policy=NO_CACHE)
def announce_waiting(state: engine.StageState, key: str) -> None:
    """Once per pause key: an audit event and a Prefect event that automations can notify on."""
    if engine.announce_waiting(resources(), state, key, flow_run.id):
        emit_event(
            id=uuid.uuid5(uuid.NAMESPACE_URL, f"hitl/{flow_run.id}/{key}/waiting"),  # replays dedupe
            event="hitl.checkpoint.waiting",
            resource={
                "prefect.resource.id": f"hitl.ticket.{state.ticket_id}",
                "hitl.checkpoint": str(state.checkpoint),
            },
            payload={
                "ticket_id": state.ticket_id,
                "checkpoint": state.checkpoint,
                "key": key,
                "flow_run_id": str(flow_run.id),
                "why": state.view.why_human if state.view else "",
            },
        )


@task(name="lifecycle-batch", cache_policy=NO_CACHE)
def lifecycle_batch(ticket_ids: list[int], chunk: int = 500) -> list[int]:
    """The batch path: every stage for many tickets in this process; returns those waiting for a human."""
    waiting: list[int] = []
    for start in range(0, len(ticket_ids), chunk):
        states = engine.advance(resources(), ticket_ids[start : start + chunk], views=False)
        waiting += [t for t, s in states.items() if s.status is engine.StageStatus.NEEDS_HUMAN]
    return waiting


@task(name="start-lifecycle-runs", cache_policy=NO_CACHE)
def start_runs(ticket_ids: list[int]) -> dict[int, str]:
    """A deployment run per waiting ticket; without a served deployment they wait in `hitl queue`."""
    try:
        return start_lifecycle_runs(ticket_ids)
    except HitlError as exc:
        get_run_logger().warning("%d ticket(s) wait without a run: %s", len(ticket_ids), exc)
        return {}


@task(name="finish", cache_policy=NO_CACHE)
def finish(ticket_id: int, stopped: str | None) -> str:
    return engine.finish(resources(), ticket_id, stopped)
