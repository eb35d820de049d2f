"""The MSP's client catalog (tiers and SLAs), kept in YAML so account managers can edit it.

Every problem is reported as a one-line `ValueError` naming the file, because the catalog is
edited by hand and the person fixing it needs to know where to look, not read a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hitl.errors import ConfigError
from hitl.models import ClientSpec
from hitl.yamlfile import read_yaml

DEFAULT_CATALOG = Path(__file__).with_name("clients.yaml")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _first_error(exc: ValidationError) -> str:
    """Only the first problem: one fix at a time keeps the message on one line."""
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "entry"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"field '{field}': {_one_line(error['msg'])}{more}"


def _read_yaml(path: Path) -> Any:
    return read_yaml(path, "the client catalog")


def load_client_catalog(path: Path | None = None) -> dict[str, ClientSpec]:
    """Keyed by name because tickets refer to their client by name."""
    path = DEFAULT_CATALOG if path is None else Path(path)
    document = _read_yaml(path)
    entries = document.get("clients") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a top-level 'clients' list")

    catalog: dict[str, ClientSpec] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: clients[{index}] must be a mapping with name, tier and sla_hours")
        try:
            spec = ClientSpec.model_validate(entry)
        except ValidationError as exc:
            raise ConfigError(f"{path}: clients[{index}] {_first_error(exc)}") from exc
        if spec.name in catalog:
            raise ConfigError(f"{path}: clients[{index}] duplicate client name {spec.name!r}")
        catalog[spec.name] = spec
    return catalog
