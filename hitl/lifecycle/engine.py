"""The lifecycle engine: propose, route, wait, record, apply, stage after stage.

Everything is driven by the decision rows, so it is idempotent: running `advance` again on a
ticket (a resumed flow re-runs from the top, a crashed batch is retried) finds the decisions
already made and the effects already applied, and continues where the ticket is. The batch path
(ingestion) and the per-ticket flow call the same functions.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import timedelta
from enum import StrEnum
from typing import Any, NamedTuple

from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session, defer

from hitl.audit import NewEvent, append_event, append_events
from hitl.checkpoints import (
    CheckpointView,
    Suggestion,
    TicketView,
    Verdict,
    check_review,
    distinct_people,
    is_valid_text,
    same_person,
)
from hitl.lifecycle import proposals
from hitl.lifecycle.effects import apply_checkpoint, apply_in_session
from hitl.lifecycle.resources import LifecycleResources
from hitl.ml.predictor import Alternative
from hitl.store.bulk import insert_returning_ids
from hitl.store.orm import AuditEvent, Client, Decision, Review, Ticket, utcnow
from hitl.store.policies import current_policy
from policies.checkpoint_policy import CHECKPOINTS, PolicyDocument, Route, audit_draw, route_decision

AI_ACTOR = "ai"


class StageStatus(StrEnum):
    DONE = "done"
    NEEDS_HUMAN = "needs_human"
    STOPPED = "stopped"


class StageState(BaseModel):
    ticket_id: int
    status: StageStatus
    checkpoint: str | None = None
    decision_ids: list[int] = Field(default_factory=list)
    view: CheckpointView | None = None
    timeout_seconds: float | None = None
    message: str = ""


class AnswerResult(BaseModel):
    recorded: bool
    problems: list[str] = Field(default_factory=list)
    stop: bool = False


def _decisions(
    session: Session, ticket_ids: Sequence[int], checkpoint: str, lean: bool = False
) -> dict[int, list[Decision]]:
    """The checkpoint's decisions per ticket. `lean` defers the JSON columns (alternatives,
    details: the triage choices alone are dozens of labels) until something reads them."""
    out: dict[int, list[Decision]] = {t: [] for t in ticket_ids}
    query = select(Decision).where(Decision.ticket_id.in_(ticket_ids), Decision.checkpoint == checkpoint)
    if lean:
        query = query.options(defer(Decision.alternatives), defer(Decision.details))
    rows = session.execute(query.order_by(Decision.id)).scalars()
    for row in rows:
        out[row.ticket_id].append(row)
    return out


def _final(decisions: Sequence[Decision], head: str) -> str | None:
    return next((d.final_value for d in decisions if d.head == head), None)


# ---------------------------------------------------------------- propose and route
def _propose(
    res: LifecycleResources, session: Session, checkpoint: str, tickets: list[Ticket]
) -> dict[int, list[proposals.Proposal]]:
    ids = [t.id for t in tickets]
    if checkpoint == "triage":
        return proposals.propose_triage(res, tickets)
    triage = _decisions(session, ids, "triage", lean=True)
    if checkpoint == "escalation":
        return proposals.propose_escalation(
            session, tickets, {t: _final(d, "priority") for t, d in triage.items()}
        )
    if checkpoint == "remediation":
        return proposals.propose_remediation(
            res, tickets, {t: _final(d, "category") for t, d in triage.items()}
        )
    return proposals.propose_reply(res, session, tickets)


def _route(
    policy: PolicyDocument,
    version: int,
    checkpoint: str,
    proposal: proposals.Proposal,
    ticket: Ticket,
    client: str,
) -> tuple[Route, float, float, str, float]:
    settings = policy.effective(checkpoint, proposal.value, client)
    routed = route_decision(
        settings,
        proposal.value,
        proposal.confidence,
        audit_draw(ticket.id, checkpoint, proposal.head, version),
    )
    route, reason, propensity = routed.route, routed.reason, routed.propensity
    if checkpoint == "remediation" and proposal.value == "none":
        route, reason, propensity = Route.AUTO, "no runbook matches: nothing to execute", 0.0
    elif checkpoint == "remediation" and proposal.details.get("required_approvers", 1) > 1:
        route, reason, propensity = Route.HUMAN, "high-risk runbook: two different approvers needed", 1.0
    elif checkpoint == "remediation" and proposal.value not in (settings.autonomous_values or []):
        route, reason, propensity = Route.HUMAN, "no autonomy granted to this runbook: a human approves", 1.0
    elif checkpoint == "remediation" and proposal.details.get("missing"):
        route, reason, propensity = (
            Route.HUMAN,
            f"parameters missing: {', '.join(proposal.details['missing'])}",
            1.0,
        )
    return route, routed.threshold, propensity, reason, routed.timeout_minutes


def propose_and_route(
    res: LifecycleResources, session: Session, checkpoint: str, tickets: list[Ticket]
) -> None:
    """Create the checkpoint's decision rows for tickets that have none yet (batched)."""
    if not tickets:
        return
    version, policy = current_policy(session)
    clients = dict(
        session.execute(
            select(Client.id, Client.name).where(Client.id.in_({t.client_id for t in tickets}))
        ).all()
    )
    now = utcnow()
    by_id = {t.id: t for t in tickets}
    rows: list[dict[str, Any]] = []
    for ticket_id, items in _propose(res, session, checkpoint, tickets).items():
        ticket = by_id[ticket_id]
        for p in items:
            if checkpoint == "triage" and res.choices(p.head):
                p.details["choices"] = res.choices(p.head)
            route, threshold, propensity, reason, timeout = _route(
                policy, version, checkpoint, p, ticket, clients[ticket.client_id]
            )
            automatic = route is Route.AUTO
            rows.append(
                {
                    "ticket_id": ticket.id,
                    "checkpoint": checkpoint,
                    "head": p.head,
                    "ai_value": p.value,
                    "confidence": p.confidence,
                    "alternatives": [a.model_dump() for a in p.alternatives],
                    "model_version": p.model_version,
                    "policy_version": version,
                    "threshold": threshold,
                    "route": route.value,
                    "propensity": propensity,
                    "final_value": p.value if automatic else None,
                    "status": "auto" if automatic else "waiting",
                    # the run that waits for it, set when one announces itself (announce_waiting): the
                    # batch path's run (the ingestion) cannot be resumed, and `hitl queue` listed it
                    "flow_run_id": res.flow_run_id if automatic else None,
                    "reason": reason,
                    "details": p.details,
                    "deadline": None if automatic else now + timedelta(minutes=timeout),
                    "created_at": now,
                    "decided_at": now if automatic else None,
                }
            )
    if not rows:
        return
    # One multi-row INSERT and one chain append for the whole batch: per-row flushes and appends
    # were most of the batch path's time (bench/ingestion_throughput.py). Core, not the ORM's
    # bulk insert: its RETURNING bookkeeping cost more than the rows themselves.
    ids = insert_returning_ids(session, Decision.__table__, rows)  # type: ignore[arg-type]
    append_events(
        session,
        [
            NewEvent(
                "decision.created",
                AI_ACTOR,
                row["ticket_id"],
                {
                    "decision_id": decision_id,
                    "checkpoint": checkpoint,
                    "head": row["head"],
                    "ai_value": row["ai_value"],
                    "confidence": row["confidence"],
                    "model_version": row["model_version"],
                    "policy_version": version,
                    "threshold": row["threshold"],
                    "route": row["route"],
                    "propensity": row["propensity"],
                    "reason": row["reason"],
                    "flow_run_id": res.flow_run_id,  # the run that made it
                },
            )
            for decision_id, row in zip(ids, rows, strict=True)
        ],
    )


def propose_stage(res: LifecycleResources, ticket_ids: Sequence[int], checkpoint: str) -> dict[int, int]:
    """Make the stage's proposals for tickets that have none; returns decisions per ticket."""
    if checkpoint == "triage":  # a run resumed past triage finds its decisions and loads no model
        with res.db.session() as session:
            undecided = set(ticket_ids) - set(_count(session, ticket_ids, checkpoint))
        if undecided:
            res.load_models()  # seconds of file loading, never inside a transaction (SQLite's write lock)
    with res.db.session() as session:
        tickets = list(session.execute(select(Ticket).where(Ticket.id.in_(ticket_ids))).scalars())
        existing = _count(session, ticket_ids, checkpoint)
        propose_and_route(res, session, checkpoint, [t for t in tickets if not existing.get(t.id)])
        made = _count(session, ticket_ids, checkpoint)
        return {t: made.get(t, 0) for t in ticket_ids}


def _count(session: Session, ticket_ids: Sequence[int], checkpoint: str) -> dict[int, int]:
    query = (
        select(Decision.ticket_id, func.count())
        .where(Decision.ticket_id.in_(ticket_ids), Decision.checkpoint == checkpoint)
        .group_by(Decision.ticket_id)
    )
    return {ticket_id: int(n) for ticket_id, n in session.execute(query).all()}


def _logged(session: Session, ticket_id: int, kind: str, key: str) -> bool:
    """Whether an event of this kind was already written for this pause key (a replay)."""
    bodies = session.execute(
        select(AuditEvent.body).where(AuditEvent.ticket_id == ticket_id, AuditEvent.kind == kind)
    ).scalars()
    return any(json.loads(body)["data"].get("key") == key for body in bodies)


def announce_waiting(res: LifecycleResources, state: StageState, key: str, flow_run_id: str | None) -> bool:
    """Record that a run waits under `key`; False when it was already recorded (a replay)."""
    with res.db.session() as session:
        if _logged(session, state.ticket_id, "checkpoint.waiting", key):
            return False
        for decision_id in state.decision_ids:
            d = session.get(Decision, decision_id)
            if d is not None and d.status == "waiting":
                d.flow_run_id = flow_run_id
        append_event(
            session,
            kind="checkpoint.waiting",
            actor="system",
            ticket_id=state.ticket_id,
            data={
                "checkpoint": state.checkpoint,
                "key": key,
                "flow_run_id": flow_run_id,
                "decision_ids": state.decision_ids,
                "timeout_seconds": state.timeout_seconds,
                "why": state.view.why_human if state.view else None,
            },
        )
    return True


def finish(res: LifecycleResources, ticket_id: int, stopped: str | None) -> str:
    return finish_many(res, {ticket_id: stopped})[ticket_id]


def finish_many(res: LifecycleResources, outcomes: dict[int, str | None]) -> dict[int, str]:
    """Close the lifecycle of tickets in one transaction: `None` means every stage was applied,
    a message means it stopped for people (escalated, rejected, timed out, result unknown)."""
    messages: dict[int, str] = {}
    with res.db.session() as session:
        tickets = session.execute(select(Ticket).where(Ticket.id.in_(list(outcomes)))).scalars()
        for ticket in tickets:
            stopped = outcomes[ticket.id]
            if stopped:
                if ticket.status != "overdue":
                    ticket.status = "escalated" if ticket.assigned_queue == "escalation" else "open"
                messages[ticket.id] = stopped
            else:
                if ticket.lifecycle_stage != "done":
                    ticket.lifecycle_stage, ticket.status = "done", "open"
                messages[ticket.id] = "lifecycle complete"
    return messages


# ---------------------------------------------------------------- views
def _ticket_view(session: Session, ticket: Ticket) -> TicketView:
    client = session.get(Client, ticket.client_id)
    assert client is not None
    escalation = _decisions(session, [ticket.id], "escalation")[ticket.id]
    deadline = escalation[0].details.get("sla_deadline") if escalation else None
    return TicketView(
        id=ticket.id,
        external_id=ticket.external_id,
        source=ticket.source,
        client=client.name,
        client_tier=client.tier,
        subject=ticket.subject,
        body=ticket.body,
        priority=ticket.priority,
        created_at=ticket.created_at,
        sla_deadline=deadline,
    )


def build_view(
    res: LifecycleResources,
    session: Session,
    ticket: Ticket,
    checkpoint: str,
    decisions: list[Decision],
    problems: list[str] | None = None,
) -> CheckpointView:
    _, policy = current_policy(session)
    suggestions: list[Suggestion] = []
    details_title, details = None, None
    approvals_needed, approved_by = 1, []
    for d in decisions:
        alternatives = [Alternative.model_validate(a) for a in d.alternatives]
        if checkpoint == "triage":
            suggestions.append(
                Suggestion(
                    field=d.head,
                    label=d.head,
                    ai_value=d.ai_value,
                    confidence=d.confidence,
                    threshold=d.threshold,
                    alternatives=alternatives,
                    choices=d.details.get("choices") or res.choices(d.head),
                )
            )
        elif checkpoint == "escalation":
            suggestions.append(
                Suggestion(
                    field="tier",
                    label="support tier",
                    ai_value=d.ai_value,
                    confidence=d.confidence,
                    threshold=d.threshold,
                    choices=["T1", "T2", "T3"],
                )
            )
            details_title, details = "Why this tier", "\n".join(d.details.get("reasons", []))
        elif checkpoint == "remediation":
            choices = sorted({*(r for r in res.runbooks if r not in res.unavailable_runbooks), "none"})
            suggestions.append(
                Suggestion(
                    field="runbook",
                    label="runbook",
                    ai_value=d.ai_value,
                    confidence=d.confidence,
                    threshold=d.threshold,
                    alternatives=alternatives,
                    choices=choices,
                )
            )
            suggestions.append(
                Suggestion(
                    field="parameters",
                    label="parameters (JSON)",
                    ai_value=json.dumps(d.details.get("parameters", {}), sort_keys=True),
                )
            )
            details_title = (
                f"Dry-run plan ({d.details.get('risk', '?')} risk, blast radius "
                f"{d.details.get('blast_radius', '?')})"
            )
            details = "\n".join(d.details.get("dry_run", [])) or d.details.get("note")
            approvals_needed = int(d.details.get("required_approvers", 1))
            approved_by = [r.reviewer for r in _reviews(session, d.id) if r.action in ("approve", "override")]
        else:
            suggestions.append(
                Suggestion(
                    field="reply_text",
                    label="reply",
                    ai_value=d.details.get("draft", ""),
                    confidence=d.confidence,
                    threshold=d.threshold,
                )
            )
            sources = [f"{x['ref']} (similarity {x['similarity']:.2f})" for x in d.details.get("sources", [])]
            to_fill = d.details.get("to_fill") or []
            details_title = "Where the draft comes from"
            details = "\n".join(
                [
                    f"template: {d.details.get('template_id')}",
                    *sources,
                    *([f"replace before sending: {', '.join(to_fill)}"] if to_fill else []),
                ]
            )
    why = (
        "; ".join(dict.fromkeys(d.reason or "" for d in decisions if d.status == "waiting"))
        or "review requested"
    )
    return CheckpointView(
        checkpoint=checkpoint,
        ticket=_ticket_view(session, ticket),
        suggestions=suggestions,
        why_human=why,
        details_title=details_title,
        details=details,
        reason_codes=policy.checkpoints[checkpoint].reason_codes,
        approvals_needed=approvals_needed,
        approved_by=approved_by,
        problems=problems or [],
        deadline=min((d.deadline for d in decisions if d.status == "waiting" and d.deadline), default=None),
    )


def _reviews(session: Session, decision_id: int) -> list[Review]:
    return list(
        session.execute(select(Review).where(Review.decision_id == decision_id).order_by(Review.id)).scalars()
    )


# ---------------------------------------------------------------- advance
def advance(
    res: LifecycleResources,
    ticket_ids: Sequence[int],
    problems: dict[int, list[str]] | None = None,
    views: bool = True,
) -> dict[int, StageState]:
    """Take each ticket as far as it can go without a human; report where each one stopped.

    Batched: per stage one proposal pass and one settling transaction for all the tickets still
    going (runbook executions keep their own transactions). The batch path asks for no form
    views (`views=False`): the ticket's own flow run builds its view when it suspends."""
    states: dict[int, StageState] = {}
    active = list(dict.fromkeys(ticket_ids))
    for checkpoint in CHECKPOINTS:
        if not active:
            break
        propose_stage(res, active, checkpoint)
        settled = settle_many(res, active, checkpoint, problems, views)
        states.update({t: s for t, s in settled.items() if s.status is not StageStatus.DONE})
        active = [t for t in active if settled[t].status is StageStatus.DONE]
    outcomes: dict[int, str | None] = {t: None for t in active}
    outcomes.update({t: s.message for t, s in states.items() if s.status is StageStatus.STOPPED})
    for ticket_id, message in finish_many(res, outcomes).items() if outcomes else ():
        if ticket_id in active:
            states[ticket_id] = StageState(ticket_id=ticket_id, status=StageStatus.DONE, message=message)
    return states


def settle(
    res: LifecycleResources, ticket_id: int, checkpoint: str, problems: list[str] | None = None
) -> StageState:
    """Apply a resolved checkpoint, or describe the human input it is waiting for (with its form)."""
    return settle_many(res, [ticket_id], checkpoint, {ticket_id: problems or []})[ticket_id]


def settle_many(
    res: LifecycleResources,
    ticket_ids: Sequence[int],
    checkpoint: str,
    problems: dict[int, list[str]] | None = None,
    views: bool = True,
) -> dict[int, StageState]:
    """`settle` for many tickets in one transaction. Runbook executions run after it, each in its
    own transactions (execute-once commits its row before the action starts)."""
    states: dict[int, StageState] = {}
    remediations: dict[int, list[int]] = {}
    with res.db.session() as session:
        tickets = {
            t.id: t for t in session.execute(select(Ticket).where(Ticket.id.in_(ticket_ids))).scalars()
        }
        by_ticket = _decisions(session, ticket_ids, checkpoint, lean=not views)
        reviews = _reviews_of(session, [d.id for ds in by_ticket.values() for d in ds])
        now = utcnow()
        for ticket_id in ticket_ids:
            ticket, decisions = tickets[ticket_id], by_ticket[ticket_id]
            waiting = [d for d in decisions if d.status == "waiting"]
            stop = _stops_lifecycle(decisions, reviews)
            if any(d.status == "overdue" for d in decisions):
                stop = "checkpoint timed out: the ticket is in the escalation queue"
            elif waiting:
                ticket.status, ticket.lifecycle_stage = "waiting", checkpoint
                deadline = min(d.deadline for d in waiting if d.deadline is not None)
                view = None
                if views:
                    view = build_view(
                        res, session, ticket, checkpoint, decisions, (problems or {}).get(ticket_id)
                    )
                states[ticket_id] = StageState(
                    ticket_id=ticket_id,
                    status=StageStatus.NEEDS_HUMAN,
                    checkpoint=checkpoint,
                    decision_ids=[d.id for d in decisions],
                    view=view,
                    timeout_seconds=max((deadline - now).total_seconds(), 1.0),
                )
                continue
            if stop:  # timed out, escalated or rejected: no effects, people take over
                states[ticket_id] = StageState(
                    ticket_id=ticket_id, status=StageStatus.STOPPED, checkpoint=checkpoint, message=stop
                )
                continue
            pending = [d for d in decisions if d.status != "applied"]
            if checkpoint != "remediation":
                apply_in_session(session, ticket, checkpoint, pending)
            elif pending:
                remediations[ticket_id] = [d.id for d in pending]
            states[ticket_id] = StageState(
                ticket_id=ticket_id, status=StageStatus.DONE, checkpoint=checkpoint
            )
    for ticket_id, pending_ids in remediations.items():
        stopped = apply_checkpoint(res, ticket_id, checkpoint, pending_ids)
        if stopped:
            states[ticket_id] = StageState(
                ticket_id=ticket_id, status=StageStatus.STOPPED, checkpoint=checkpoint, message=stopped
            )
    return states


def _reviews_of(session: Session, decision_ids: Sequence[int]) -> dict[int, list[Review]]:
    out: dict[int, list[Review]] = {d: [] for d in decision_ids}
    for start in range(0, len(decision_ids), 500):
        chunk = decision_ids[start : start + 500]
        for review in session.execute(
            select(Review).where(Review.decision_id.in_(chunk)).order_by(Review.id)
        ).scalars():
            out[review.decision_id].append(review)
    return out


def _stops_lifecycle(decisions: Sequence[Decision], reviews: dict[int, list[Review]]) -> str:
    for d in decisions:
        actions = {r.action for r in reviews.get(d.id, [])}
        if "escalate" in actions:
            return "escalated by a reviewer: the ticket is in the escalation queue"
        if d.checkpoint == "triage" and "reject" in actions:
            return "triage rejected by a reviewer: the ticket goes to manual triage"
    return ""


# ---------------------------------------------------------------- human answers
def record_answer(
    res: LifecycleResources,
    ticket_id: int,
    checkpoint: str,
    answer: dict[str, Any],
    flow_run_id: str | None = None,
    key: str | None = None,
) -> AnswerResult:
    """Record an operator's answer, or say why it cannot be recorded (then nothing is written)."""
    reviewer = str(answer.get("reviewer") or "").strip()
    with res.db.session() as session:
        if key is not None and _logged(session, ticket_id, "review.recorded", key):
            return AnswerResult(recorded=True)  # a resumed flow replaying an answer already recorded
        ticket = session.get(Ticket, ticket_id)
        assert ticket is not None
        decisions = _decisions(session, [ticket_id], checkpoint)[ticket_id]
        if any(d.status == "overdue" for d in decisions):
            return AnswerResult(
                recorded=False,
                stop=True,
                problems=[
                    "this checkpoint timed out before the answer arrived; "
                    "the ticket is in the escalation queue"
                ],
            )
        waiting = [d for d in decisions if d.status == "waiting"]
        if key is None:  # no pause key to tell a replay by: the same reviewer's same answer is one
            mine = [r for d in decisions for r in _reviews(session, d.id)]
            already = [r for r in mine if same_person(r.reviewer, reviewer)]
            if already and (not waiting or _same_answer(already, answer)):
                return AnswerResult(recorded=True)
        if not waiting:
            return AnswerResult(recorded=False, problems=["this checkpoint is no longer waiting for input"])
        view = build_view(res, session, ticket, checkpoint, decisions)
        verdict = check_review(view, answer)
        if isinstance(verdict, list):
            if key is None or not _logged(session, ticket_id, "review.refused", key):
                append_event(
                    session,
                    kind="review.refused",
                    actor=reviewer if reviewer and is_valid_text(reviewer) else "unknown",
                    ticket_id=ticket_id,
                    data={"checkpoint": checkpoint, "problems": verdict, "key": key},
                )
            return AnswerResult(recorded=False, problems=verdict)
        _store_verdict(session, ticket, decisions, view, verdict, flow_run_id, key)
    return AnswerResult(recorded=True)


def _same_answer(reviews: list[Review], answer: dict[str, Any]) -> bool:
    return all(r.action == answer.get("decision") for r in reviews)


def _store_verdict(
    session: Session,
    ticket: Ticket,
    decisions: list[Decision],
    view: CheckpointView,
    verdict: Verdict,
    flow_run_id: str | None,
    key: str | None = None,
) -> None:
    now = utcnow()
    field_of = {"triage": None, "escalation": "tier", "remediation": "runbook", "reply": "reply_text"}
    for d in decisions:
        field = field_of[d.checkpoint] or d.head
        final = verdict.final_values.get(field, d.ai_value)
        if d.checkpoint == "reply":
            final_value = "send" if verdict.action in ("approve", "override") else verdict.action
            d.details = {**d.details, "final_text": final}
        else:
            final_value = final
        changed = d.checkpoint != "reply" and (final or "") != (d.ai_value or "")
        if d.checkpoint == "remediation":
            submitted = json.loads(verdict.final_values.get("parameters") or "{}")
            changed = changed or submitted != d.details.get("parameters", {})
        action = "override" if changed else ("approve" if verdict.action == "override" else verdict.action)
        if d.checkpoint == "remediation" and verdict.final_values.get("parameters") is not None:
            d.details = {
                **d.details,
                "final_parameters": json.loads(verdict.final_values["parameters"] or "{}"),
            }
        wait = (now - d.created_at).total_seconds()
        session.add(
            Review(
                decision_id=d.id,
                ticket_id=ticket.id,
                reviewer=verdict.reviewer,
                action=action,
                final_value=final_value,
                reason_code=verdict.reason_code if action != "approve" else None,
                comment=verdict.comment,
                wait_seconds=wait,
                flow_run_id=flow_run_id,
                created_at=now,
            )
        )
        session.flush()
        approvals = [r for r in _reviews(session, d.id) if r.action in ("approve", "override")]
        enough = distinct_people(r.reviewer for r in approvals) >= view.approvals_needed
        if action in ("reject", "escalate") or enough:
            d.final_value, d.status, d.decided_at = final_value, "decided", now
        append_event(
            session,
            kind="review.recorded",
            actor=verdict.reviewer,
            ticket_id=ticket.id,
            data={
                "decision_id": d.id,
                "checkpoint": d.checkpoint,
                "head": d.head,
                "action": action,
                "ai_value": d.ai_value if d.checkpoint != "reply" else "send",
                "final_value": final_value,
                "reason_code": verdict.reason_code if action != "approve" else None,
                "comment": verdict.comment,
                "wait_seconds": round(wait, 1),
                "approvals": len(approvals),
                "approvals_needed": view.approvals_needed,
                "flow_run_id": flow_run_id,
                "key": key,  # the pause key it answered: a re-run replaying it records nothing twice
            },
        )
    if verdict.action == "escalate":
        ticket.assigned_queue = "escalation"


# ---------------------------------------------------------------- timeouts
class Expired(NamedTuple):
    """A checkpoint that timed out: what the notification needs to say and link."""

    ticket_id: int
    flow_run_id: str | None
    checkpoint: str


def expire_overdue(res: LifecycleResources, now: Any = None) -> list[Expired]:
    """Waiting checkpoints past their deadline: marked overdue, ticket to the escalation queue.
    Nothing is executed or sent. Returns one entry per ticket for notification."""
    now = now or utcnow()
    expired: list[Expired] = []
    with res.db.session() as session:
        rows = list(
            session.execute(
                select(Decision)
                .where(Decision.status == "waiting", Decision.deadline < now)
                .order_by(Decision.id)
            ).scalars()
        )
        for d in rows:
            d.status = "overdue"
            ticket = session.get(Ticket, d.ticket_id)
            assert ticket is not None
            if ticket.overdue_at is None:
                ticket.overdue_at, ticket.status, ticket.assigned_queue = now, "overdue", "escalation"
                expired.append(Expired(ticket.id, d.flow_run_id, d.checkpoint))
                append_event(
                    session,
                    kind="checkpoint.timed_out",
                    actor="system",
                    ticket_id=ticket.id,
                    data={
                        "decision_id": d.id,
                        "checkpoint": d.checkpoint,
                        "deadline": d.deadline.isoformat() if d.deadline else None,
                        "fallback": "escalation queue; nothing executed or sent",
                    },
                )
    return expired
