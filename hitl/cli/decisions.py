"""`hitl decisions export`: the product's decision log in the exchange format.

The export is what the threshold review reads, so an analyst can review it elsewhere, join other
evidence in a spreadsheet, or hand it to another installation's `--from-csv`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import typer

from hitl.cli.common import JSON_OPTION, out, print_json
from hitl.errors import ConfigError
from hitl.store.db import get_database

decisions_app = typer.Typer(help="The decision log (AI decisions and their reviews).", no_args_is_help=True)


def parse_moment(option: str, value: str | None) -> datetime | None:
    """An ISO 8601 date or date-time; a naive one is UTC, like every time in the store."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ConfigError(f"{option} {value!r} is not an ISO 8601 date or date-time") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


@decisions_app.command("export")
def decisions_export(
    path: Path = typer.Argument(..., help="The CSV file to write (replaced if it exists)."),
    since: str | None = typer.Option(None, help="Only decisions decided at or after this ISO 8601 time."),
    until: str | None = typer.Option(None, help="Only decisions decided before this ISO 8601 time."),
    json_output: bool = JSON_OPTION,
) -> None:
    """Write the analysable decisions as an exchange CSV (docs/threshold-review.md)."""
    from hitl.analysis.db_log import load_decisions
    from hitl.analysis.decision_log import write_decision_csv

    start, end = parse_moment("--since", since), parse_moment("--until", until)
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"--since {since} must be earlier than --until {until}")
    with get_database().session() as session:
        frame = load_decisions(session, since=start, until=end)
    try:
        written = write_decision_csv(frame, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if json_output:
        print_json({"path": str(path), "decisions": written})
        return
    out.print(f"exported {written} decisions to {path}")
