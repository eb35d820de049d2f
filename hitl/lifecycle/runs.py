"""Starting per-ticket lifecycle runs: only tickets that wait for a human get a run of their own
(a run is a process start, ~2 s here); the rest finished in the batch path."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from hitl.errors import HitlError

DEPLOYMENT = "ticket-lifecycle/ticket-lifecycle"
UNFINISHED = ["SCHEDULED", "PENDING", "RUNNING", "PAUSED"]  # Prefect state types of a live run


def start_lifecycle_runs(ticket_ids: Sequence[int]) -> dict[int, str]:
    """One `ticket-lifecycle` deployment run per ticket; returns their flow run ids."""
    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    started: dict[int, str] = {}
    for ticket_id in ticket_ids:
        try:
            run = run_deployment(
                DEPLOYMENT,
                parameters={"ticket_id": ticket_id},
                timeout=0,
                as_subflow=False,
                tags=["lifecycle", ticket_tag(ticket_id)],
            )
        except ObjectNotFound as exc:
            raise HitlError(f"deployment {DEPLOYMENT} is not registered: start `hitl serve` first") from exc
        started[ticket_id] = str(run.id)
    return started


def ticket_tag(ticket_id: int) -> str:
    """The tag that names a lifecycle run's ticket in Prefect (filters find a ticket's runs by it)."""
    return f"ticket-{ticket_id}"


def _unfinished_lifecycle_runs(*tags: str) -> list[Any]:
    """Lifecycle runs carrying every tag that are scheduled, pending, running or waiting for input."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
        FlowRunFilterTags,
    )

    with get_client(sync_client=True) as client:
        return client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                tags=FlowRunFilterTags(all_=["lifecycle", *tags]),
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=UNFINISHED)),
            ),
            limit=None,
        )


def unfinished_runs_of(ticket_id: int) -> list[tuple[str, str]]:
    """(flow run id, state name) of the ticket's lifecycle runs that have not finished. A second run
    beside one of these asks the same questions twice, and an answer given to the other one is never
    read."""
    runs = _unfinished_lifecycle_runs(ticket_tag(ticket_id))
    return [(str(r.id), r.state.name if r.state else "unknown") for r in runs]


def cancel_waiting_run(flow_run_id: str) -> None:
    """Cancel a suspended run whose checkpoint timed out: a late resume must not act."""
    from uuid import UUID

    from prefect import get_client
    from prefect.states import Cancelled

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(UUID(flow_run_id))
        if run.state is not None and run.state.is_paused():
            client.set_flow_run_state(
                UUID(flow_run_id), Cancelled(message="checkpoint timed out"), force=True
            )


def start_runs_for_waiting() -> dict[int, str]:
    """Tickets waiting for a human with no run yet (ingested while no server ran) get one now."""
    from sqlalchemy import select

    from hitl.store.db import get_database
    from hitl.store.orm import Decision

    with get_database().session() as session:
        ids = set(
            session.execute(
                select(Decision.ticket_id).where(Decision.status == "waiting", Decision.flow_run_id.is_(None))
            ).scalars()
        )
    if ids:  # a run started but not yet at its checkpoint (a runner backlog) has not announced itself
        ids -= tickets_with_unfinished_runs()
    return start_lifecycle_runs(sorted(ids)) if ids else {}


def tickets_with_unfinished_runs() -> set[int]:
    """Tickets whose lifecycle run is scheduled, pending, running or waiting: one Prefect query."""
    runs = _unfinished_lifecycle_runs()
    return {int(t.removeprefix("ticket-")) for r in runs for t in r.tags if re.fullmatch(r"ticket-\d+", t)}
