"""Declarative column mappings: how a source's columns become `TicketRecord` fields.

Mappings are data (YAML in `policies/mappings/`, plus an optional operator folder), so a new
PSA export needs a file, not code. A mapping is chosen by name on the command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hitl.errors import ConfigError, UnknownMappingError
from hitl.models import TicketRecord
from hitl.yamlfile import first_problem, read_yaml

BUILTIN_DIR = Path(__file__).with_name("mappings")
_TARGETS = frozenset(TicketRecord.model_fields) - {"labels"}


class HttpOptions(BaseModel):
    """How a PSA-style REST API pages its results and filters by update time."""

    model_config = ConfigDict(extra="forbid")

    items_key: str = "tickets"
    next_key: str | None = "next_page"
    since_param: str = "updated_since"
    page_param: str = "page"
    page_size_param: str = "page_size"


class ColumnMapping(BaseModel):
    """One named mapping; `fields` maps a ticket field to a source column (dots reach into JSON)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    source: str = Field(min_length=1)
    default_client: str | None = None
    fields: dict[str, str]
    extras: dict[str, str] = Field(default_factory=dict)
    lists: dict[str, list[str]] = Field(default_factory=dict)
    defaults: dict[str, Any] = Field(default_factory=dict)
    http: HttpOptions = Field(default_factory=HttpOptions)

    @field_validator("fields", "defaults")
    @classmethod
    def _known_targets(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - _TARGETS)
        if unknown:
            raise ValueError(f"unknown ticket field(s) {unknown}; known: {sorted(_TARGETS)}")
        return value

    @model_validator(mode="after")
    def _required(self) -> ColumnMapping:
        missing = [name for name in ("external_id", "body") if name not in self.fields]
        if missing:
            raise ValueError(f"fields must map {missing}")
        return self

    @property
    def required_columns(self) -> list[str]:
        """Columns a tabular input must have, or no row of it could ever be valid."""
        return [self.fields["external_id"].split(".")[0], self.fields["body"].split(".")[0]]

    def apply(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Turn one raw record into TicketRecord input; validation happens afterwards."""
        data: dict[str, Any] = dict(self.defaults)
        for target, column in self.fields.items():
            value = _lookup(raw, column)
            if value is not None and not (isinstance(value, str) and not value.strip()):
                data[target] = value
            else:
                data.setdefault(target, value)
        labels: dict[str, str | list[str]] = {}
        for key, column in self.extras.items():
            value = _lookup(raw, column)
            if value is not None and str(value).strip():
                labels[key] = str(value).strip()
        for key, columns in self.lists.items():
            values = [str(v).strip() for v in (_lookup(raw, c) for c in columns) if v is not None]
            values = [v for v in values if v and v.lower() != "nan"]
            if values:
                labels[key] = values
        if labels:
            data["labels"] = labels
        return data


def _lookup(raw: Mapping[str, Any], path: str) -> Any:
    value: Any = raw
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _search_dirs(extra_dir: Path | None) -> list[Path]:
    return [d for d in (extra_dir, BUILTIN_DIR) if d is not None]


def available_mappings(extra_dir: Path | None = None) -> list[str]:
    """Names of every mapping an operator can choose (operator folder first)."""
    names = {p.stem for d in _search_dirs(extra_dir) if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def load_mapping(name: str, extra_dir: Path | None = None) -> ColumnMapping:
    """Load a mapping by name; an operator's file of the same name wins over the built-in one."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise UnknownMappingError(f"invalid mapping name {name!r}")
    for folder in _search_dirs(extra_dir):
        path = folder / f"{name}.yaml"
        if path.is_file():
            return parse_mapping_file(path)
    known = ", ".join(available_mappings(extra_dir)) or "none"
    raise UnknownMappingError(f"unknown mapping {name!r} (known: {known})")


def parse_mapping_file(path: Path) -> ColumnMapping:
    document = read_yaml(path, "the mapping file")
    if not isinstance(document, dict):
        raise ConfigError(f"mapping file {path} must hold a YAML mapping (name, source, fields, ...)")
    try:
        return ColumnMapping.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"invalid mapping file {path}: {first_problem(exc)}") from exc
