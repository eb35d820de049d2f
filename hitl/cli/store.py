"""`hitl db`, `hitl tickets`, `hitl quarantine`, `hitl runs`, `hitl clients`: the ticket store."""

from __future__ import annotations

from pathlib import Path

import typer

from hitl.cli.common import JSON_OPTION, out, print_json, table
from hitl.store.db import get_database, redacted

app = typer.Typer()
db_app = typer.Typer(help="The application database.", no_args_is_help=True)
tickets_app = typer.Typer(help="Tickets in the store.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Records that failed validation.", no_args_is_help=True)
runs_app = typer.Typer(help="Ingestion runs.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply pending schema migrations (every command also does this on first use)."""
    database = get_database()
    before = database.current_revision()
    after = database.upgrade()
    out.print(f"{redacted(database.url)}: schema at revision {after} (was {before or 'empty'})")


@db_app.command("current")
def db_current() -> None:
    """Show the schema revision of the database and the newest one this code knows."""
    database = get_database()
    out.print(
        f"{redacted(database.url)}: revision {database.current_revision() or 'empty'}, "
        f"head {database.head_revision()}"
    )


@tickets_app.command("list")
def tickets_list(
    client: str | None = typer.Option(None, help="Only this client's tickets."),
    status: str | None = typer.Option(None, help="Only tickets in this status (new, open, ...)."),
    source: str | None = typer.Option(None, help="Only tickets of this source."),
    limit: int = typer.Option(50, min=1, max=100_000, help="At most this many, newest first."),
    json_output: bool = JSON_OPTION,
) -> None:
    """List tickets, newest first."""
    from hitl.store.tickets import list_tickets

    with get_database().session() as session:
        found = list_tickets(session, client=client, status=status, source=source, limit=limit)
        rows = [
            {
                "id": t.id,
                "source": t.source,
                "external_id": t.external_id,
                "client": name,
                "subject": t.subject,
                "status": t.status,
                "priority": t.priority,
                "urgency": t.urgency,
                "impact": t.impact,
                "category": t.category,
                "queue": t.queue,
                "created_at": t.created_at.isoformat(),
            }
            for t, name in found
        ]
    if json_output:
        print_json(rows)
        return
    table(
        f"{len(rows)} ticket(s)",
        ["id", "source", "external id", "client", "status", "priority", "subject"],
        [
            [
                r["id"],
                r["source"],
                r["external_id"],
                r["client"],
                r["status"],
                r["priority"],
                r["subject"][:60],
            ]
            for r in rows
        ],
    )


@quarantine_app.command("list")
def quarantine_list(
    run: str | None = typer.Option(None, help="Only records of this ingestion run."),
    source: str | None = typer.Option(None, help="Only records of this source."),
    limit: int = typer.Option(100, min=1, max=100_000),
    json_output: bool = JSON_OPTION,
) -> None:
    """List quarantined records with their row number and the reason."""
    from hitl.store.runs import list_quarantine

    with get_database().session() as session:
        rows = [
            {
                "id": q.id,
                "run_id": q.ingestion_run_id,
                "source": q.source,
                "input": q.input_name,
                "row_number": q.row_number,
                "line_number": q.line_number,
                "error": q.error,
                "raw": q.raw,
                "created_at": q.created_at.isoformat(),
            }
            for q in list_quarantine(session, run_id=run, source=source, limit=limit)
        ]
    if json_output:
        print_json(rows)
        return
    table(
        f"{len(rows)} quarantined record(s)",
        ["id", "input", "row", "line", "error", "raw (start)"],
        [
            [
                r["id"],
                Path(r["input"]).name,
                r["row_number"],
                r["line_number"],
                r["error"],
                _glimpse(r["raw"]),
            ]
            for r in rows
        ],
    )


def _glimpse(raw: object, width: int = 60) -> str:
    """The start of a quarantined record on one line, so the operator recognises it (--json: whole)."""
    text = " ⏎ ".join(str(raw or "").splitlines())
    return text if len(text) <= width else text[: width - 1] + "…"


@runs_app.command("list")
def runs_list(
    source: str | None = typer.Option(None, help="Only runs of this source."),
    limit: int = typer.Option(20, min=1, max=10_000),
    json_output: bool = JSON_OPTION,
) -> None:
    """List ingestion runs, newest first, with their counts (running ones count as they go)."""
    from hitl.store.runs import list_runs

    with get_database().session() as session:
        rows = [
            {
                "id": r.id,
                "source": r.source,
                "mapping": r.mapping,
                "status": r.status,
                "started_at": r.started_at.isoformat(),
                "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                "read": r.read,
                "inserted": r.inserted,
                "updated": r.updated,
                "unchanged": r.unchanged,
                "quarantined": r.quarantined,
                "flow_run_id": r.flow_run_id,
                "error": r.error,
            }
            for r in list_runs(session, source=source, limit=limit)
        ]
    if json_output:
        print_json(rows)
        return
    table(
        f"{len(rows)} ingestion run(s)",
        ["id", "source", "status", "started", "read", "ins", "upd", "same", "quar"],
        [
            [
                r["id"][:8],
                r["source"],
                r["status"],
                r["started_at"][:19],
                r["read"],
                r["inserted"],
                r["updated"],
                r["unchanged"],
                r["quarantined"],
            ]
            for r in rows
        ],
    )


@app.command("clients")
def clients_list(json_output: bool = JSON_OPTION) -> None:
    """List clients with their tier and SLA hours per priority."""
    from hitl.store.clients import list_clients

    with get_database().session() as session:
        rows = [
            {"id": c.id, "name": c.name, "tier": c.tier, "sla_hours": c.sla_hours}
            for c in list_clients(session)
        ]
    if json_output:
        print_json(rows)
        return
    table(
        f"{len(rows)} client(s)",
        ["id", "name", "tier", "SLA hours"],
        [
            [r["id"], r["name"], r["tier"], ", ".join(f"{k} {v:g}" for k, v in r["sla_hours"].items())]
            for r in rows
        ],
    )
