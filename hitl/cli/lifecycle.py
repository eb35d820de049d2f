"""`hitl queue`, `hitl resume`, `hitl audit`, `hitl lifecycle`: the operator's side of checkpoints."""

from __future__ import annotations

import json
import os
from typing import Any

import typer
from rich.style import Style
from rich.text import Text

from hitl.cli.common import JSON_OPTION, out, print_json, table
from hitl.errors import HitlError
from hitl.settings import get_settings
from hitl.store.db import get_database

app = typer.Typer()
audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
lifecycle_app = typer.Typer(help="Ticket lifecycle runs.", no_args_is_help=True)

FIELD_OF = {"triage": "category", "escalation": "tier", "remediation": "runbook", "reply": "reply_text"}


class ResumeError(HitlError):
    """The resume was refused: nothing was sent to the flow run."""


def ui_url() -> str | None:
    from hitl.prefect_env import configure_prefect

    configure_prefect(get_settings())
    api = os.environ.get("PREFECT_API_URL")
    return api.rstrip("/").removesuffix("/api") if api else None


@app.command()
def queue(json_output: bool = JSON_OPTION) -> None:
    """The approval queue: every waiting checkpoint, oldest deadline first."""
    from hitl.lifecycle.queue import MIN_PREFIX, approval_queue

    base = ui_url()
    with get_database().session() as session:
        items = approval_queue(session, base)
    if json_output:
        print_json([i.model_dump(mode="json") for i in items])
        return
    table(
        f"{len(items)} checkpoint(s) waiting",
        ["deadline", "ticket", "client", "checkpoint", "AI", "conf", "waiting", "run"],
        [
            [
                f"{i.deadline:%m-%d %H:%M}",
                i.ticket_id,
                i.client,
                i.checkpoint,
                (i.ai_value or "")[:30],
                "" if i.confidence is None else f"{i.confidence:.2f}",
                f"{i.waiting_minutes:.0f} min",
                _run_cell(i.flow_run_id, i.ui_link, MIN_PREFIX),
            ]
            for i in items
        ],
        whole=frozenset({"run"}),
    )
    if any(i.flow_run_id for i in items):
        full = f"the Prefect UI ({base}: Runs, state Suspended) and" if base else ""
        out.print(
            f"run: the first {MIN_PREFIX} characters of the flow run id, enough for `hitl resume <run>"
            f" --decision ... --reviewer NAME`; {full} `hitl queue --json` give the full ids and links"
        )


def _run_cell(flow_run_id: str | None, link: str | None, width: int) -> Text | str:
    """Short enough to keep the table readable in 80 columns, and enough for `hitl resume`; where
    the terminal supports links, a click opens the run's form in the Prefect UI."""
    if not flow_run_id:
        return "(no run yet: `hitl serve` starts it)"
    return Text(flow_run_id[:width], style=Style(link=link) if link else "")


@app.command()
def resume(
    flow_run_id: str = typer.Argument(
        ..., help="The waiting flow run: its id, or its first 8+ characters (see `hitl queue`)."
    ),
    decision: str = typer.Option(..., help="approve, override, reject or escalate."),
    value: str | None = typer.Option(None, help="Corrected value of the checkpoint's main field."),
    set_field: list[str] | None = typer.Option(
        None, "--set", help="FIELD=VALUE for other fields (repeatable)."
    ),
    reason_code: str | None = typer.Option(None, help="Required for override and reject."),
    comment: str | None = typer.Option(None),
    reviewer: str = typer.Option(..., help="Who decides: recorded with the review."),
) -> None:
    """Answer a waiting checkpoint, exactly as the UI form does (and checked the same way)."""
    from hitl.checkpoints import check_review
    from hitl.lifecycle.queue import resolve_waiting_run, waiting_view

    settings = get_settings()
    with get_database(settings).session() as session:
        flow_run_id = resolve_waiting_run(session, flow_run_id)
        view = waiting_view(session, settings, flow_run_id)
    answer: dict[str, Any] = {s.field: s.ai_value for s in view.suggestions}
    answer.update(
        {
            "decision": decision,
            "reviewer": reviewer,
            "reason_code": reason_code or "none",
            "comment": comment or "",
        }
    )
    if value is not None:
        answer[FIELD_OF[view.checkpoint]] = value
    fields = [s.field for s in view.suggestions]  # not decision, reviewer, ...: their own options say so
    for item in set_field or []:
        name, sep, text = item.partition("=")
        if not sep or name not in fields:
            raise ResumeError(f"--set needs FIELD=VALUE with FIELD one of {', '.join(fields)}")
        answer[name] = text
    verdict = check_review(view, answer)
    if isinstance(verdict, list):
        raise ResumeError("; ".join(verdict))
    from hitl.prefect_env import configure_prefect

    configure_prefect(settings)
    _resume(flow_run_id, answer)
    out.print(f"resumed {flow_run_id}: {decision} by {reviewer} at the {view.checkpoint} checkpoint")


def _resume(flow_run_id: str, answer: dict[str, Any]) -> None:
    """Resume through the client and insist on ACCEPT: Prefect's helper returns quietly when a
    concurrent resume won (ABORT), and that operator must be told their answer was not used."""
    from uuid import UUID

    from prefect import get_client
    from prefect.client.schemas.responses import SetStateStatus
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            run = client.read_flow_run(UUID(flow_run_id))
        except ObjectNotFound as exc:
            raise ResumeError(f"no flow run {flow_run_id} on the Prefect server") from exc
        if run.state is None or not run.state.is_paused():
            state = run.state.name if run.state else "unknown"
            raise ResumeError(f"flow run {flow_run_id} is not waiting for input (it is {state})")
        try:
            response = client.resume_flow_run(UUID(flow_run_id), run_input=answer)
        except RuntimeError as exc:
            raise ResumeError(f"the flow run refused the input: {str(exc).splitlines()[0]}") from exc
    if response.status == SetStateStatus.ABORT:
        raise ResumeError("another operator answered this checkpoint first; your answer was not used")
    if response.status != SetStateStatus.ACCEPT:
        reason = response.details.reason if hasattr(response.details, "reason") else response.status.value
        raise ResumeError(f"the flow run could not be resumed: {reason}")


@audit_app.command("show")
def audit_show(ticket_id: int = typer.Argument(...), json_output: bool = JSON_OPTION) -> None:
    """A ticket's timeline: every decision, review, action and reply, in order."""
    from hitl.audit import ticket_timeline

    with get_database().session() as session:
        entries = ticket_timeline(session, ticket_id)
        if not entries:  # not "0 event(s)", as if erased
            _require_ticket(session, ticket_id)
    if json_output:
        print_json([e.model_dump(mode="json") for e in entries])
        return
    table(
        f"ticket {ticket_id}: {len(entries)} event(s)",
        ["seq", "at", "kind", "actor", "data"],
        [
            [
                e.seq,
                f"{e.at:%Y-%m-%d %H:%M:%S}",
                e.kind,
                e.actor,
                json.dumps(e.data, ensure_ascii=False)[:160],
            ]
            for e in entries
        ],
    )


@audit_app.command("verify")
def audit_verify(json_output: bool = JSON_OPTION) -> None:
    """Recompute the hash chain; exit 1 and name the first broken link when it does not hold."""
    from hitl.audit import verify_chain

    with get_database().session() as session:
        report = verify_chain(session)
    if json_output:
        print_json(report.model_dump(mode="json"))
    elif report.ok:
        out.print(f"audit chain intact: {report.events_checked} events, head {report.head_hash}")
    if not report.ok:
        raise HitlError(f"audit chain broken at event {report.first_broken_seq}: {report.problem}")


def _require_ticket(session: Any, ticket_id: int) -> None:
    from hitl.store.orm import Ticket

    if session.get(Ticket, ticket_id) is None:
        raise HitlError(f"no ticket {ticket_id} in the store (see `hitl tickets list`)")


@lifecycle_app.command("start")
def lifecycle_start(ticket_id: int = typer.Argument(...)) -> None:
    """Start (or continue) a ticket's lifecycle as a run of the ticket-lifecycle deployment."""
    from hitl.lifecycle.runs import start_lifecycle_runs, unfinished_runs_of
    from hitl.prefect_env import configure_prefect

    settings = get_settings()
    with get_database(settings).session() as session:
        _require_ticket(session, ticket_id)  # the run would fail on it ("KeyError: 99999")
    configure_prefect(settings)
    if unfinished := unfinished_runs_of(ticket_id):
        run_id, state = unfinished[0]
        raise HitlError(
            f"ticket {ticket_id} already has lifecycle run {run_id} ({state}): answer it with "
            f"`hitl resume {run_id[:8]} ...` (see `hitl queue`)"
        )
    started = start_lifecycle_runs([ticket_id])
    out.print(f"ticket {ticket_id}: flow run {started[ticket_id]}")


outbox_app = typer.Typer(help="Client replies approved for sending.", no_args_is_help=True)


@outbox_app.command("list")
def outbox_list(json_output: bool = JSON_OPTION) -> None:
    """Replies in the outbox, newest first, with how much the human changed the draft."""
    from sqlalchemy import select

    from hitl.store.orm import OutboxMessage

    with get_database().session() as session:
        rows = [
            {
                "id": m.id,
                "ticket_id": m.ticket_id,
                "status": m.status,
                "to": m.to_address,
                "subject": m.subject,
                "edit_distance": m.edit_distance,
                "approved_by": m.approved_by,
                "created_at": m.created_at.isoformat(),
            }
            for m in session.execute(
                select(OutboxMessage).order_by(OutboxMessage.id.desc()).limit(200)
            ).scalars()
        ]
    if json_output:
        print_json(rows)
        return
    table(
        f"{len(rows)} message(s)",
        ["id", "ticket", "status", "to", "edits", "approved by", "subject"],
        [
            [
                r["id"],
                r["ticket_id"],
                r["status"],
                r["to"],
                r["edit_distance"],
                r["approved_by"],
                r["subject"][:50],
            ]
            for r in rows
        ],
    )


@outbox_app.command("send")
def outbox_send() -> None:
    """Send queued replies through the SMTP relay in HITL_SMTP_HOST."""
    from hitl.replies.smtp import SmtpSender

    settings = get_settings()
    if not settings.smtp_host or not settings.smtp_sender:
        raise HitlError("set HITL_SMTP_HOST and HITL_SMTP_SENDER to send replies (the outbox keeps them)")
    sender = SmtpSender(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_sender,
        username=settings.smtp_username,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
    )
    report = sender.send_pending(get_database(settings))
    line = f"sent {report.sent}, failed {report.failed}, deferred {report.deferred}"
    if report.no_recipient:
        line += (
            f", kept queued without a recipient {report.no_recipient} (their tickets have no requester_email)"
        )
    out.print(line)
    if report.error:
        raise HitlError(report.error)
    if report.failed:  # a scheduler must see it: failed replies are not retried
        raise HitlError(f"{report.failed} repl(ies) failed for good: see `hitl outbox list`")


action_app = typer.Typer(
    help="Remediation actions whose result is unknown (their process died mid-call).", no_args_is_help=True
)


@action_app.command("unknown")
def action_unknown(json_output: bool = JSON_OPTION) -> None:
    """Actions waiting for someone to check the target system: never re-run until a result is recorded."""
    from hitl.lifecycle.action_results import unknown_actions

    with get_database(get_settings()).session() as session:
        actions = unknown_actions(session)
    if json_output:
        print_json([a.model_dump() for a in actions])
        return
    table(
        "Actions with an unknown result",
        ["execution", "ticket", "runbook", "parameters", "approved by", "started"],
        [
            [
                a.execution_id,
                a.ticket_id,
                a.runbook,
                json.dumps(a.parameters),
                ", ".join(map(str, a.approved_by)),
                a.started_at,
            ]
            for a in actions
        ],
    )


@action_app.command("resolve")
def action_resolve(
    execution_id: int = typer.Argument(..., help="From `hitl action unknown` or `hitl audit show TICKET`."),
    result: str = typer.Option(..., "--result", help="What the target system shows: succeeded or failed."),
    checked_by: str = typer.Option(..., "--checked-by", help="Who checked (recorded in the audit trail)."),
    note: str = typer.Option(..., "--note", help="What was checked, and where."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Record what the target system shows for an action whose result was unknown; then
    `hitl lifecycle start TICKET` continues the ticket without running the action again."""
    from pydantic import ValidationError

    from hitl.lifecycle.action_results import ActionResultError, CheckedResultInput, record_checked_result
    from hitl.yamlfile import first_problem

    try:
        answer = CheckedResultInput(
            execution_id=execution_id, result=result, checked_by=checked_by, note=note
        )
    except ValidationError as exc:  # name the option, not the model field
        where, _, what = first_problem(exc).partition(": ")
        raise ActionResultError(f"--{where.replace('_', '-')}: {what}") from None
    with get_database(get_settings()).session() as session:
        recorded = record_checked_result(session, answer)
    if json_output:
        print_json(recorded.model_dump())
        return
    out.print(
        f"execution {recorded.execution_id} ({recorded.runbook}) recorded as {recorded.result} by "
        f"{recorded.checked_by}; continue the ticket with `hitl lifecycle start {recorded.ticket_id}`"
    )
