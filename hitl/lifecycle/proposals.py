"""What the AI proposes at each checkpoint, for a batch of tickets at once (one predict call per
model per batch): triage labels, an escalation tier, a runbook with parameters, a reply draft."""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from hitl.lifecycle.escalation import EscalationInput, recommend_tier, reopen_signals
from hitl.lifecycle.resources import LifecycleResources
from hitl.ml.dataset import ticket_text
from hitl.ml.predictor import Alternative
from hitl.store.orm import Client, Ticket, utcnow

MIN_RUNBOOK_SCORE = 0.3


class Proposal(BaseModel):
    head: str
    value: str | None
    confidence: float | None
    alternatives: list[Alternative] = Field(default_factory=list)
    model_version: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


def _clients(session: Session, tickets: Sequence[Ticket]) -> dict[int, Client]:
    ids = {t.client_id for t in tickets}
    return {c.id: c for c in session.execute(select(Client).where(Client.id.in_(ids))).scalars()}


def propose_triage(res: LifecycleResources, tickets: Sequence[Ticket]) -> dict[int, list[Proposal]]:
    texts = [ticket_text(t.subject, t.body) for t in tickets]
    out: dict[int, list[Proposal]] = {t.id: [] for t in tickets}
    heads = [h for h in res.triage_heads if h in res.models]
    if not heads:
        for t in tickets:
            out[t.id].append(
                Proposal(
                    head=res.triage_heads[0],
                    value=None,
                    confidence=None,
                    details={"note": "no active model: train one with `hitl train --activate`"},
                )
            )
        return out
    for head in heads:
        for ticket, prediction in zip(tickets, res.models[head].predict(texts), strict=True):
            out[ticket.id].append(
                Proposal(
                    head=head,
                    value=prediction.label,
                    confidence=prediction.confidence,
                    alternatives=prediction.alternatives,
                    model_version=prediction.model_version,
                )
            )
    return out


_SEVERE = ("critical", "high")
_INCIDENT_WINDOW = timedelta(days=7)


def _recent_incidents(session: Session, tickets: Sequence[Ticket]) -> dict[int, int]:
    """Per ticket: the client's other critical/high tickets created in the 7 days up to it.
    One query for the whole batch (a query per ticket was most of the escalation stage's time)."""
    if not tickets:
        return {}
    rows = session.execute(
        select(Ticket.client_id, Ticket.created_at).where(
            Ticket.client_id.in_({t.client_id for t in tickets}),
            Ticket.priority.in_(_SEVERE),
            Ticket.created_at >= min(t.created_at for t in tickets) - _INCIDENT_WINDOW,
            Ticket.created_at <= max(t.created_at for t in tickets),
        )
    ).all()
    moments: dict[int, list[Any]] = {}
    for client_id, created_at in rows:
        moments.setdefault(client_id, []).append(created_at)
    for values in moments.values():
        values.sort()
    out: dict[int, int] = {}
    for t in tickets:
        values = moments.get(t.client_id, [])
        within = bisect_right(values, t.created_at) - bisect_left(values, t.created_at - _INCIDENT_WINDOW)
        out[t.id] = within - (1 if t.priority in _SEVERE else 0)  # not the ticket itself
    return out


def propose_escalation(
    session: Session, tickets: Sequence[Ticket], priorities: dict[int, str | None]
) -> dict[int, list[Proposal]]:
    """`priorities` are the triage checkpoint's final priorities (the source's when triage had none)."""
    now = utcnow()
    out: dict[int, list[Proposal]] = {}
    clients = _clients(session, tickets)
    incidents = _recent_incidents(session, tickets)
    for t in tickets:
        client = clients[t.client_id]
        priority = priorities.get(t.id) or t.priority or "medium"
        recommendation = recommend_tier(
            EscalationInput(
                priority=priority,
                urgency=t.urgency,
                impact=t.impact,
                client_tier=client.tier,
                sla_hours=float(client.sla_hours.get(priority, 24)),
                created_at=t.created_at,
                now=now,
                reopen_signals=reopen_signals(t.subject, t.body),
                recent_client_incidents=incidents[t.id],
            )
        )
        out[t.id] = [
            Proposal(
                head="tier",
                value=recommendation.tier,
                confidence=recommendation.confidence,
                details={
                    "reasons": recommendation.reasons,
                    "score": recommendation.score,
                    "sla_deadline": recommendation.sla_deadline.isoformat(),
                },
            )
        ]
    return out


def propose_remediation(
    res: LifecycleResources, tickets: Sequence[Ticket], categories: dict[int, str | None]
) -> dict[int, list[Proposal]]:
    from hitl.remediation.matching import match_runbooks
    from policies.runbooks import render_dry_run

    out: dict[int, list[Proposal]] = {}
    for t in tickets:
        matches = (
            [
                m
                for m in match_runbooks(t.subject, t.body, categories.get(t.id), res.runbooks)
                if m.score >= MIN_RUNBOOK_SCORE
            ]
            if res.runbooks
            else []
        )
        blocked = [m for m in matches if m.runbook_id in res.unavailable_runbooks]
        matches = [m for m in matches if m.runbook_id not in res.unavailable_runbooks]
        if not matches:
            note = "no runbook in the catalog matches this ticket"
            if blocked:
                first = blocked[0].runbook_id
                note = (
                    f"runbook {first} matches this ticket but cannot run here "
                    f"({res.unavailable_runbooks[first]}): do it by hand"
                )
            out[t.id] = [Proposal(head="runbook", value="none", confidence=None, details={"note": note})]
            continue
        best = matches[0]
        runbook = res.runbooks[best.runbook_id]
        plan = (
            render_dry_run(runbook, best.parameters)
            if not best.missing
            else [f"(parameters missing: {', '.join(best.missing)}; fill them in before approving)"]
        )
        out[t.id] = [
            Proposal(
                head="runbook",
                value=best.runbook_id,
                confidence=round(best.score, 4),
                alternatives=[
                    Alternative(label=m.runbook_id, probability=round(m.score, 4)) for m in matches[:3]
                ],
                details={
                    "parameters": best.parameters,
                    "missing": best.missing,
                    "dry_run": plan,
                    "risk": runbook.risk,
                    "blast_radius": runbook.blast_radius,
                    "required_approvers": runbook.required_approvers,
                    "title": runbook.title,
                },
            )
        ]
    return out


def propose_reply(
    res: LifecycleResources, session: Session, tickets: Sequence[Ticket]
) -> dict[int, list[Proposal]]:
    out: dict[int, list[Proposal]] = {}
    clients = _clients(session, tickets)
    for t in tickets:
        if res.reply_drafter is None:
            out[t.id] = [
                Proposal(
                    head="reply",
                    value=None,
                    confidence=None,
                    details={"note": "reply drafting is not configured"},
                )
            ]
            continue
        draft = res.reply_drafter(t, clients[t.client_id], session)
        out[t.id] = [
            Proposal(
                head="reply",
                value="send",
                confidence=round(float(draft.confidence), 4),
                details={
                    "subject": draft.subject,
                    "draft": draft.body,
                    "sources": [s.model_dump() if hasattr(s, "model_dump") else s for s in draft.sources],
                },
            )
        ]
    return out
