"""`hitl ingest`, `hitl mappings`, `hitl demo`: getting tickets in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from hitl.cli.common import JSON_OPTION, err, fail_line, out, print_json, table
from hitl.errors import ConfigError
from hitl.models import IngestReport
from hitl.settings import get_settings
from hitl.store.db import get_database, redacted

app = typer.Typer()
demo_app = typer.Typer(help="The bundled demo data (generated, seeded).", no_args_is_help=True)


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
        print_json(
            {
                **report.stats.model_dump(),
                "flow_run_id": report.flow_run_id,
                "run_id": report.run_id,
                "status": report.status,
                "failed_inputs": [{"name": i.name, "error": i.error} for i in report.failed_inputs],
                "ignored_files": report.ignored_files,
            }
        )
    else:
        _print_report(report)
    if report.failed_inputs:
        first = report.failed_inputs[0]
        fail_line(f"{first.name}: {first.error}")
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
        TextColumn("{task.description}", markup=False),  # a file name, literally
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
    table(
        f"Ingestion of {report.source!r} (mapping {report.mapping!r}, flow run {report.flow_run_id})",
        ["input", "read", "inserted", "updated", "unchanged", "quarantined", "note"],
        rows,
    )
    if s.quarantined:
        out.print(f"{s.quarantined} record(s) quarantined: hitl quarantine list --run {report.run_id}")
    if report.ignored_files:  # file names from the folder: printed literally (markup is off)
        out.print(f"not read, not a ticket file type: {', '.join(report.ignored_files)}")


@app.command("mappings")
def mappings_list(json_output: bool = JSON_OPTION) -> None:
    """List the column mappings `hitl ingest --mapping` accepts."""
    from policies.mappings import available_mappings, load_mapping

    settings = get_settings()
    found = [load_mapping(name, settings.mappings_dir) for name in available_mappings(settings.mappings_dir)]
    if json_output:
        print_json([m.model_dump(mode="json") for m in found])
        return
    table(
        "Column mappings",
        ["name", "source", "default client", "description"],
        [[m.name, m.source, m.default_client or get_settings().default_client, m.description] for m in found],
    )


@demo_app.command("generate")
def demo_generate(
    count: int = typer.Option(60, min=1, max=1_000_000, help="Number of tickets."),
    seed: int = typer.Option(7, help="Random seed (same seed, same tickets)."),
    out_path: Path | None = typer.Option(None, "--out", help="CSV or JSONL file; default: the inbox."),
) -> None:
    """Write a batch of realistic MSP demo tickets in the canonical format."""
    from hitl.demo import generate_tickets, write_batch

    target = out_path or get_settings().effective_inbox / f"demo-seed{seed}-{count}.csv"
    if target.suffix.lower() not in (".csv", ".jsonl"):  # checked before generating a million tickets
        raise ConfigError(f"--out {target}: the name must end in .csv or .jsonl (it sets the format)")
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


def _print_client_mix(ticket_ids: list[int]) -> None:
    """What the new tickets are: per client (with tier), how many and of which priorities."""
    from hitl.store.tickets import client_mix

    if not ticket_ids:
        return
    with get_database().session() as session:
        mix = client_mix(session, ticket_ids)
    table(
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
