"""What every command module shares: consoles, JSON and table output, one-line errors."""

from __future__ import annotations

import json
import re
import sys
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hitl.errors import ConfigError

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout.")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str, ensure_ascii=False) + "\n")


def table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    view = Table(title=title, show_lines=False)
    for column in columns:
        view.add_column(column, overflow="fold")
    for row in rows:
        view.add_row(*("" if v is None else str(v) for v in row))
    out.print(view)


def fail_line(message: str) -> None:
    """Exactly one line on stderr, whatever the terminal width."""
    sys.stderr.write("error: " + " ".join(message.split()) + "\n")


def head_name(name: str) -> str:
    if not re.fullmatch(r"[a-z0-9][a-z0-9_]{0,49}", name):
        raise ConfigError(f"invalid head name {name!r}: use lower-case letters, digits and _")
    return name


def status(message: str) -> AbstractContextManager[Any]:
    """A spinner on a terminal; nothing when output goes to a file or a pipe."""
    return err.status(message) if err.is_terminal else nullcontext()
