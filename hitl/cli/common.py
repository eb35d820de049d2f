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
from rich.text import Text

from hitl.errors import ConfigError

# No console markup or emoji codes: table cells and messages carry ticket subjects, quarantined raw
# rows, file names and remote error texts, and rich would read "[link=...]", "[black on black]" or
# ":warning:" in them as formatting (and stop with a traceback on a stray "[/x]"). Every string is
# printed literally; what the product itself styles is built from rich objects, not markup.
out = Console(soft_wrap=True, markup=False, emoji=False)
err = Console(stderr=True, soft_wrap=True, markup=False, emoji=False)
JSON_OPTION = typer.Option(False, "--json", help="Print one JSON document on stdout.")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, default=str, ensure_ascii=False) + "\n")


def table(title: str, columns: list[str], rows: list[list[Any]], whole: frozenset[str] = frozenset()) -> None:
    """Cells are plain text (a rich `Text` passes as it is, e.g. to carry a terminal link). `whole`
    columns never wrap: an id an operator copies must stay on one line; the others fold instead."""
    cells = [[v if isinstance(v, Text) else Text("" if v is None else str(v)) for v in row] for row in rows]
    view = Table(title=title, show_lines=False)
    for index, column in enumerate(columns):
        if column in whole:
            widest = max([len(column), *(row[index].cell_len for row in cells)])
            view.add_column(column, no_wrap=True, min_width=widest)
        else:
            view.add_column(column, overflow="fold")
    for row in cells:
        view.add_row(*row)
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
