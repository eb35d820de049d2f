"""The approval queue as operators see it, and the checkpoint view behind one waiting run."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session

from hitl.checkpoints import CheckpointView
from hitl.errors import HitlError
from hitl.lifecycle.engine import build_view
from hitl.lifecycle.resources import LifecycleResources
from hitl.settings import Settings
from hitl.store.db import get_database
from hitl.store.orm import Client, Decision, Ticket, utcnow


class QueueItem(BaseModel):
    flow_run_id: str | None
    ui_link: str | None
    ticket_id: int
    external_id: str
    client: str
    checkpoint: str
    ai_value: str | None
    confidence: float | None
    route: str
    why: str | None
    waiting_minutes: float
    deadline: datetime
    sla_deadline: datetime | None


def approval_queue(session: Session, ui_url: str | None) -> list[QueueItem]:
    rows = session.execute(
        select(Decision, Ticket, Client)
        .join(Ticket, Decision.ticket_id == Ticket.id)
        .join(Client, Ticket.client_id == Client.id)
        .where(Decision.status == "waiting")
        .order_by(Decision.id)
    ).all()
    now = utcnow()
    items: dict[tuple[int, str], QueueItem] = {}
    for decision, ticket, client in rows:
        key = (ticket.id, decision.checkpoint)
        if key in items:  # one row per checkpoint; the first head (e.g. category) speaks for it
            continue
        sla_hours = float(client.sla_hours.get(ticket.priority or "medium", 24))
        ai_value = decision.ai_value if decision.checkpoint != "reply" else "send draft"
        items[key] = QueueItem(
            flow_run_id=decision.flow_run_id,
            ui_link=f"{ui_url}/runs/flow-run/{decision.flow_run_id}"
            if ui_url and decision.flow_run_id
            else None,
            ticket_id=ticket.id,
            external_id=ticket.external_id,
            client=client.name,
            checkpoint=decision.checkpoint,
            ai_value=ai_value,
            confidence=decision.confidence,
            route=decision.route,
            why=decision.reason,
            waiting_minutes=(now - decision.created_at).total_seconds() / 60,
            deadline=decision.deadline or now,
            sla_deadline=ticket.created_at + timedelta(hours=sla_hours),
        )
    return sorted(items.values(), key=lambda i: (i.deadline, i.ticket_id))


MIN_PREFIX = 8


def resolve_waiting_run(session: Session, reference: str) -> str:
    """The full id of the waiting run that `reference` names: the id itself, or a prefix of at least
    MIN_PREFIX characters that names exactly one waiting run (what `hitl queue` prints)."""
    reference = reference.strip().lower()
    if len(reference) >= 36:
        return reference
    if len(reference) < MIN_PREFIX or not re.fullmatch(r"[0-9a-f-]+", reference):
        raise HitlError(
            f"{reference!r} is not a flow run id: give the id or its first {MIN_PREFIX} or more characters"
            " (see `hitl queue`)"
        )
    found = sorted(
        set(
            session.execute(
                select(Decision.flow_run_id).where(
                    Decision.status == "waiting", Decision.flow_run_id.startswith(reference, autoescape=True)
                )
            ).scalars()
        )
    )
    if not found:
        raise HitlError(f"no run waiting at a checkpoint starts with {reference} (see `hitl queue`)")
    if len(found) > 1:
        raise HitlError(
            f"{reference} names {len(found)} waiting runs ({', '.join(found)}): give more characters"
        )
    return found[0]


def waiting_view(session: Session, settings: Settings, flow_run_id: str) -> CheckpointView:
    """The view the run's form was built from, so the CLI checks an answer exactly as the flow will."""
    decision = session.execute(
        select(Decision).where(Decision.flow_run_id == flow_run_id, Decision.status == "waiting").limit(1)
    ).scalar()
    if decision is None:
        raise HitlError(f"flow run {flow_run_id} is not waiting at any checkpoint (see `hitl queue`)")
    ticket = session.get(Ticket, decision.ticket_id)
    assert ticket is not None
    decisions = list(
        session.execute(
            select(Decision)
            .where(Decision.ticket_id == ticket.id, Decision.checkpoint == decision.checkpoint)
            .order_by(Decision.id)
        ).scalars()
    )
    from hitl.lifecycle.bootstrap import runbook_catalog

    runbooks, unavailable = runbook_catalog(settings)
    res = LifecycleResources(
        db=get_database(settings),
        runbooks=runbooks,
        unavailable_runbooks=unavailable,
        triage_heads=settings.heads,
    )
    return build_view(res, session, ticket, decision.checkpoint, decisions)
