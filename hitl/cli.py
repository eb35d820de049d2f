"""The `hitl` command line: what operators, schedulers and analysts type.

Expected failures (bad input, unknown mapping, unreachable database) end in one line on stderr
and a non-zero exit code; `--json` output is exactly one JSON document on stdout.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hitl.errors import HitlError
from hitl.models import IngestReport
from hitl.settings import get_settings
from hitl.store.db import get_database, redacted

app = typer.Typer(
    help="Human-in-the-loop automation of MSP ticket operations on Prefect 3.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)
db_app = typer.Typer(help="The application database.", no_args_is_help=True)
tickets_app = typer.Typer(help="Tickets in the store.", no_args_is_help=True)
quarantine_app = typer.Typer(help="Records that failed validation.", no_args_is_help=True)
runs_app = typer.Typer(help="Ingestion runs.", no_args_is_help=True)
demo_app = typer.Typer(help="The bundled demo data (generated, seeded).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(tickets_app, name="tickets")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(runs_app, name="runs")
app.add_typer(demo_app, name="demo")

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout.")


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str, ensure_ascii=False) + "\n")


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)


# ---------------------------------------------------------------- ingestion
@app.command()
def ingest(
    path: str = typer.Argument(..., help="A CSV/JSONL file, a drop folder, or an http(s) PSA endpoint."),
    mapping: str = typer.Option("canonical", help="Column mapping name (see `hitl mappings`)."),
    source: str | None = typer.Option(None, help="Source name; default: the mapping's source."),
    json_output: bool = JSON_OPTION,
    no_lifecycle: bool = typer.Option(False, "--no-lifecycle", help="Ingest only; start no ticket flows."),
    keep_files: bool = typer.Option(False, "--keep-files", help="Leave drop-folder files in place."),
) -> None:
    """Run the ingestion flow on one input and report what happened."""
    report = _run_ingestion(
        path,
        mapping=mapping,
        source=source,
        start_lifecycle=not no_lifecycle,
        move_processed=False if keep_files else None,
    )
    if json_output:
        _print_json(
            {
                **report.stats.model_dump(),
                "flow_run_id": report.flow_run_id,
                "run_id": report.run_id,
                "status": report.status,
                "failed_inputs": [{"name": i.name, "error": i.error} for i in report.failed_inputs],
            }
        )
    else:
        _print_report(report)
    if report.failed_inputs:
        first = report.failed_inputs[0]
        _fail_line(f"{first.name}: {first.error}")
        raise typer.Exit(1)


def _run_ingestion(
    target: str,
    mapping: str,
    source: str | None,
    start_lifecycle: bool = True,
    move_processed: bool | None = None,
) -> IngestReport:
    """Run the ingestion flow here, with a progress line per input on stderr (when it is a terminal)."""
    from hitl.ingestion.progress import listening
    from hitl.prefect_env import configure_prefect, quiet_shutdown

    configure_prefect(get_settings())
    from flows.ingestion import nightly_ingestion, preflight  # the CLI is the outermost layer

    path, url = preflight(target, mapping, source, move_processed)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} records"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=err, transient=True, disable=not err.is_terminal) as progress:
        bars: dict[str, Any] = {}

        def update(input_name: str, done: int) -> None:
            if input_name not in bars:
                bars[input_name] = progress.add_task(Path(input_name).name or input_name, total=None)
            progress.update(bars[input_name], completed=done)

        with listening(update):
            report = nightly_ingestion(
                path=path,
                url=url,
                mapping=mapping,
                source=source,
                move_processed=move_processed,
                start_lifecycle=start_lifecycle,
            )
    quiet_shutdown()
    return report


def _print_report(report: IngestReport) -> None:
    rows = [
        [
            Path(i.name).name,
            i.stats.read,
            i.stats.inserted,
            i.stats.updated,
            i.stats.unchanged,
            i.stats.quarantined,
            i.error or ("moved to processed/" if i.moved_to else ""),
        ]
        for i in report.inputs
    ]
    s = report.stats
    rows.append(["TOTAL", s.read, s.inserted, s.updated, s.unchanged, s.quarantined, report.status])
    _table(
        f"Ingestion of {report.source!r} (mapping {report.mapping!r}, flow run {report.flow_run_id})",
        ["input", "read", "inserted", "updated", "unchanged", "quarantined", "note"],
        rows,
    )
    if s.quarantined:
        out.print(f"{s.quarantined} record(s) quarantined: hitl quarantine list --run {report.run_id}")


@app.command("mappings")
def mappings_list(json_output: bool = JSON_OPTION) -> None:
    """List the column mappings `hitl ingest --mapping` accepts."""
    from policies.mappings import available_mappings, load_mapping

    settings = get_settings()
    found = [load_mapping(name, settings.mappings_dir) for name in available_mappings(settings.mappings_dir)]
    if json_output:
        _print_json([m.model_dump(mode="json") for m in found])
        return
    _table(
        "Column mappings",
        ["name", "source", "default client", "description"],
        [[m.name, m.source, m.default_client or get_settings().default_client, m.description] for m in found],
    )


# ---------------------------------------------------------------- database
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


# ---------------------------------------------------------------- listings
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
        _print_json(rows)
        return
    _table(
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
        _print_json(rows)
        return
    _table(
        f"{len(rows)} quarantined record(s)",
        ["id", "input", "row", "line", "error"],
        [[r["id"], Path(r["input"]).name, r["row_number"], r["line_number"], r["error"]] for r in rows],
    )


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
        _print_json(rows)
        return
    _table(
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
        _print_json(rows)
        return
    _table(
        f"{len(rows)} client(s)",
        ["id", "name", "tier", "SLA hours"],
        [
            [r["id"], r["name"], r["tier"], ", ".join(f"{k} {v:g}" for k, v in r["sla_hours"].items())]
            for r in rows
        ],
    )


# ---------------------------------------------------------------- demo
@demo_app.command("generate")
def demo_generate(
    count: int = typer.Option(60, min=1, max=1_000_000, help="Number of tickets."),
    seed: int = typer.Option(7, help="Random seed (same seed, same tickets)."),
    out_path: Path | None = typer.Option(None, "--out", help="CSV or JSONL file; default: the inbox."),
) -> None:
    """Write a batch of realistic MSP demo tickets in the canonical format."""
    from hitl.demo import generate_tickets, write_batch

    target = out_path or get_settings().effective_inbox / f"demo-seed{seed}-{count}.csv"
    written = write_batch(target, generate_tickets(count=count, seed=seed))
    out.print(f"wrote {count} demo tickets to {written}")


@demo_app.command("run")
def demo_run(
    count: int = typer.Option(60, min=1, max=100_000),
    seed: int = typer.Option(7),
) -> None:
    """The `make run` job: drop a demo batch in the inbox and run the nightly ingestion on it."""
    from hitl.demo import generate_tickets, write_batch

    settings = get_settings()
    batch = write_batch(
        settings.effective_inbox / f"demo-seed{seed}-{count}.csv", generate_tickets(count=count, seed=seed)
    )
    out.print(f"demo batch: {count} tickets written to {batch}")
    report = _run_ingestion(str(settings.effective_inbox), mapping="canonical", source="demo")
    _print_report(report)
    _print_client_mix(report.new_ticket_ids)
    out.print(
        f"database: {redacted(settings.effective_database_url)}; try `hitl tickets list` or `hitl runs list`"
    )
    if report.failed_inputs:
        raise typer.Exit(1)


def _fail_line(message: str) -> None:
    """Exactly one line on stderr, whatever the terminal width."""
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")


def _print_client_mix(ticket_ids: list[int]) -> None:
    """What the new tickets are: per client (with tier), how many and of which priorities."""
    from hitl.store.tickets import client_mix

    if not ticket_ids:
        return
    with get_database().session() as session:
        mix = client_mix(session, ticket_ids)
    _table(
        f"{len(ticket_ids)} new ticket(s) by client",
        ["client", "tier", "tickets", "critical", "high", "medium", "low"],
        [
            [
                m.client,
                m.tier,
                m.total,
                *(m.by_priority.get(p, 0) for p in ("critical", "high", "medium", "low")),
            ]
            for m in mix
        ],
    )


def main() -> None:
    """Entry point: expected errors become one line on stderr, never a traceback."""
    try:
        result = app(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        err.print("aborted")
        sys.exit(130)
    except HitlError as exc:
        _fail_line(str(exc))
        sys.exit(1)
    sys.exit(result if isinstance(result, int) else 0)


if __name__ == "__main__":
    main()
