"""Reading the project's YAML data files (policies, runbooks, templates, catalogs) with errors an
operator can act on: one line naming the file and, for syntax errors, the line and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hitl.errors import ConfigError


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def read_yaml(path: Path, what: str) -> Any:
    """The parsed document; `what` names the file's role in the error ("the runbook")."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read {what}: {one_line(exc)}") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{where}: {one_line(exc.problem or exc)}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {one_line(exc)}") from exc


def first_problem(exc: ValidationError) -> str:
    """`where: what` of the first validation error: one fix at a time keeps the message on one line."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "(top level)"
    return f"{where}: {one_line(first['msg']).removeprefix('Value error, ')}"
