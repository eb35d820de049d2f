"""The runbook catalog: which remediation actions exist, what they need, and how each one runs.

Runbooks are data (YAML in `policies/runbooks/`), reviewed like code, because every one of them
changes a client environment. The loader therefore refuses anything ambiguous (an unknown
placeholder, an invalid regex, a duplicate id) with a one-line message naming the file and the
field, instead of letting it surface half-way through an execution.

Placeholders are `{name}` with `name` a parameter (or, in subprocess argv only, the built-ins
`{python}` and `{scripts}`). They are substituted per argv element or per JSON string, never
through a shell. A template that names an optional parameter left empty is dropped as a whole
(argv element, dry-run line) or becomes `null` (JSON), so `--printer={printer}` simply vanishes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator, Mapping
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from hitl.errors import ConfigError, HitlError
from hitl.yamlfile import read_yaml

BUILTIN_DIR = Path(__file__).with_name("runbooks")
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
ARGV_BUILTINS = frozenset({"python", "scripts"})
MAX_STRING_LENGTH = 256

ParameterValue = str | int
ParameterType = Literal["string", "integer", "ipv4", "hostname", "username", "enum"]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}\Z){_LABEL}(?:\.{_LABEL})*\Z")
_USERNAME = re.compile(rf"[A-Za-z0-9](?:[A-Za-z0-9._-]{{0,62}}[A-Za-z0-9])?(?:@{_LABEL}(?:\.{_LABEL})*)?\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class Risk(StrEnum):
    low = "low"
    medium = "medium"
    high = "high"


class InvalidParameters(HitlError, ValueError):
    """Parameter values a runbook cannot run with; `problems` maps each parameter to its reason,
    so a form can show every problem next to its field at once."""

    def __init__(self, runbook_id: str, problems: dict[str, str]) -> None:
        self.runbook_id = runbook_id
        self.problems = problems
        listed = "; ".join(f"{name}: {reason}" for name, reason in problems.items())
        super().__init__(f"runbook '{runbook_id}': invalid parameters ({', '.join(problems)}): {listed}")


@lru_cache(maxsize=512)
def compile_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def placeholders(template: str) -> list[str]:
    return PLACEHOLDER.findall(template)


def render_text(template: str, values: Mapping[str, Any]) -> str | None:
    """`template` with its placeholders filled, or None when one of them has no value."""
    if any(values.get(name) in (None, "") for name in placeholders(template)):
        return None
    return PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def render_json(template: Any, values: Mapping[str, Any]) -> Any:
    """A JSON body template filled in; a string that is exactly one placeholder keeps the value's
    type (so `"{port}"` becomes the integer 443), and an empty optional value becomes null."""
    if isinstance(template, str):
        names = placeholders(template)
        if len(names) == 1 and template == f"{{{names[0]}}}":
            value = values.get(names[0])
            return None if value == "" else value
        return render_text(template, values)
    if isinstance(template, list):
        return [render_json(item, values) for item in template]
    if isinstance(template, dict):
        return {key: render_json(item, values) for key, item in template.items()}
    return template


def _coerce_integer(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*-?\d{1,18}\s*", value):
        return int(value)
    raise ValueError(f"{_one_line(repr(value))[:60]} is not an integer")


def _coerce_text(kind: str, value: Any) -> str:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ValueError(f"expected text, got {type(value).__name__}")
    text = str(value).strip()
    shown = repr(text[:60])
    if _CONTROL.search(text):
        raise ValueError(f"{shown} contains control characters")
    if len(text) > MAX_STRING_LENGTH:
        raise ValueError(f"longer than {MAX_STRING_LENGTH} characters")
    if kind == "ipv4":
        try:
            return str(ipaddress.IPv4Address(text))
        except ValueError:
            raise ValueError(f"{shown} is not an IPv4 address") from None
    if kind == "hostname":
        if not _HOSTNAME.match(text):
            raise ValueError(f"{shown} is not a valid hostname")
        # One spelling per host, so the idempotency key does not depend on how the ticket typed it:
        # short Windows names upper-case (LT-0423, FS01), fully qualified names lower-case.
        return text.lower() if "." in text else text.upper()
    if kind == "username":
        if not _USERNAME.match(text):
            raise ValueError(f"{shown} is not a valid username")
        return text.lower()  # directory user names are case-insensitive
    if text.startswith("-"):
        raise ValueError(f"{shown} must not start with '-' (a program would read it as an option)")
    return text


class RunbookParameter(BaseModel):
    """One input of a runbook: its type and constraints, and how to find it in a ticket."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    type: ParameterType
    required: bool = True
    description: str = ""
    pattern: str | None = None
    enum: tuple[str, ...] | None = None
    min: int | None = None
    max: int | None = None
    default: str | int | None = None
    # Regexes with one group, tried in order on "subject\nbody"; the first value that passes
    # validation wins, so a loose pattern cannot fill a parameter with something invalid.
    extract: tuple[str, ...] = ()

    @field_validator("extract", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                compile_regex(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from None
        return value

    @field_validator("extract")
    @classmethod
    def _valid_extract(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for index, pattern in enumerate(value):
            try:
                groups = compile_regex(pattern).groups
            except re.error as exc:
                raise ValueError(f"[{index}] invalid regex {pattern!r}: {exc}") from None
            if groups != 1:
                raise ValueError(f"[{index}] regex {pattern!r} must have exactly one group, has {groups}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> RunbookParameter:
        if (self.type == "enum") != bool(self.enum):
            raise ValueError(
                f"parameter '{self.name}': 'enum' values are required for, and only for, type enum"
            )
        if self.type != "integer" and (self.min is not None or self.max is not None):
            raise ValueError(f"parameter '{self.name}': min/max apply to type integer only")
        if self.pattern is not None and self.type in ("integer", "enum"):
            raise ValueError(f"parameter '{self.name}': 'pattern' does not apply to type {self.type}")
        if self.name in ARGV_BUILTINS:
            raise ValueError(f"parameter '{self.name}': the name is reserved for a built-in placeholder")
        if self.default is not None:
            try:
                self.coerce(self.default)
            except ValueError as exc:
                raise ValueError(f"parameter '{self.name}': default {exc}") from None
        return self

    def coerce(self, value: Any) -> ParameterValue:
        """The value in its canonical type and spelling, or ValueError saying what is wrong."""
        if self.type == "integer":
            number = _coerce_integer(value)
            if self.min is not None and number < self.min:
                raise ValueError(f"{number} is below the minimum {self.min}")
            if self.max is not None and number > self.max:
                raise ValueError(f"{number} is above the maximum {self.max}")
            return number
        text = _coerce_text(self.type, value)
        if self.enum is not None:
            for option in self.enum:
                if option.casefold() == text.casefold():
                    return option
            raise ValueError(f"{text[:60]!r} is not one of {', '.join(self.enum)}")
        if self.pattern is not None and not compile_regex(self.pattern).fullmatch(text):
            raise ValueError(f"{text[:60]!r} does not match the pattern {self.pattern}")
        return text

    def extract_from(self, text: str) -> ParameterValue | None:
        for pattern in self.extract:
            for found in compile_regex(pattern).finditer(text):
                if found.group(1) is None:
                    continue
                try:
                    return self.coerce(found.group(1))
                except ValueError:
                    continue
        return None


class RunbookStep(BaseModel):
    """A subprocess step (`argv`) or a webhook step (`method`, `path`, `json` body template)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    name: str = Field(min_length=1, max_length=100)
    argv: tuple[str, ...] | None = Field(default=None, min_length=1)
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] | None = None
    path: str | None = None
    json_body: Any = Field(default=None, alias="json")

    @model_validator(mode="after")
    def _one_kind(self) -> RunbookStep:
        if self.argv is not None:
            if self.method or self.path or self.json_body is not None:
                raise ValueError(f"step '{self.name}': argv cannot be combined with method/path/json")
        elif not (self.method and self.path):
            raise ValueError(f"step '{self.name}': needs either argv or method and path")
        elif not self.path.startswith("/") or self.path.startswith("//"):
            # an absolute URL here would send the bearer token to another host
            raise ValueError(f"step '{self.name}': path must start with a single '/'")
        return self

    @property
    def kind(self) -> Literal["subprocess", "webhook"]:
        return "subprocess" if self.argv is not None else "webhook"

    def templates(self) -> Iterator[tuple[str, str]]:
        """(field, template) for every string that placeholders may appear in."""
        for index, element in enumerate(self.argv or ()):
            yield f"argv.{index}", element
        if self.path is not None:
            yield "path", self.path
        yield from _json_strings(self.json_body, "json")


def _json_strings(node: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, str):
        yield where, node
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from _json_strings(item, f"{where}.{index}")
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from _json_strings(item, f"{where}.{key}")


class MatchRule(BaseModel):
    """When a runbook is proposed: ticket categories, keywords that refine, keywords that veto."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _something_to_match(self) -> MatchRule:
        if not self.categories and not self.keywords:
            raise ValueError("needs categories or keywords, or the runbook could never be proposed")
        return self


class Runbook(BaseModel):
    """A remediation action; the checkpoint reads `risk`, `required_approvers` and the dry run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z][a-z0-9-]{1,99}$")
    title: str = Field(min_length=1)
    description: str = ""
    risk: Risk
    blast_radius: int = Field(ge=1, description="devices or users the action touches at most")
    changes_environment: bool = True
    match: MatchRule
    parameters: tuple[RunbookParameter, ...] = ()
    executor: Literal["subprocess", "webhook"]
    steps: tuple[RunbookStep, ...] = Field(min_length=1)
    rollback: tuple[RunbookStep, ...] = ()
    dry_run: tuple[str, ...] = Field(min_length=1)

    _catalog_dir: Path = PrivateAttr(default=BUILTIN_DIR)

    @model_validator(mode="after")
    def _coherent(self) -> Runbook:
        names = [p.name for p in self.parameters]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"field 'parameters': duplicate name(s) {duplicates}")
        for group in ("steps", "rollback"):
            for index, step in enumerate(getattr(self, group)):
                where = f"{group}.{index}"
                if step.kind != self.executor:
                    raise ValueError(
                        f"field '{where}': a {step.kind} step, but the runbook's executor is {self.executor}"
                    )
                allowed = set(names) | (ARGV_BUILTINS if step.kind == "subprocess" else set())
                for field, template in step.templates():
                    self._check_placeholders(f"{where}.{field}", template, allowed)
        for index, line in enumerate(self.dry_run):
            self._check_placeholders(f"dry_run.{index}", line, set(names))
        return self

    @staticmethod
    def _check_placeholders(where: str, template: str, allowed: set[str]) -> None:
        unknown = [name for name in placeholders(template) if name not in allowed]
        if unknown:
            raise ValueError(
                f"field '{where}': placeholder {{{unknown[0]}}} names no parameter of this runbook"
            )

    @property
    def required_approvers(self) -> int:
        """Distinct humans who must approve before it runs (the checkpoint enforces it)."""
        return 2 if self.risk is Risk.high else 1

    @property
    def scripts_dir(self) -> Path:
        """What `{python} {scripts}/x.py` refers to: the `scripts/` folder beside the YAML file."""
        return self._catalog_dir / "scripts"

    def parameter(self, name: str) -> RunbookParameter | None:
        return next((p for p in self.parameters if p.name == name), None)


def validate_parameters(runbook: Runbook, values: Mapping[str, Any]) -> dict[str, ParameterValue]:
    """Typed, canonical values (defaults applied, empty optionals left out), or InvalidParameters
    listing every problem at once, so a human fixes the form in one pass."""
    problems: dict[str, str] = {}
    result: dict[str, ParameterValue] = {}
    for unknown in sorted(set(values) - {p.name for p in runbook.parameters}):
        problems[unknown] = "not a parameter of this runbook"
    for parameter in runbook.parameters:
        value = values.get(parameter.name)
        if value is None or (isinstance(value, str) and not value.strip()):
            if parameter.default is not None:
                result[parameter.name] = parameter.coerce(parameter.default)
            elif parameter.required:
                problems[parameter.name] = "missing (required)"
            continue
        try:
            result[parameter.name] = parameter.coerce(value)
        except ValueError as exc:
            problems[parameter.name] = str(exc)
    if problems:
        raise InvalidParameters(runbook.id, problems)
    return result


def render_dry_run(runbook: Runbook, params: Mapping[str, Any]) -> list[str]:
    """What would happen, in plain text (escape before rendering as markdown: values come from
    tickets). A required value still missing shows as `<name?>`; a line about an empty optional
    value is left out."""
    shown: dict[str, Any] = {k: _one_line(str(v)) for k, v in params.items() if v not in (None, "")}
    for parameter in runbook.parameters:
        if parameter.name not in shown:
            if parameter.default is not None:
                shown[parameter.name] = parameter.default
            elif parameter.required:
                shown[parameter.name] = f"<{parameter.name}?>"
    lines = (render_text(line, shown) for line in runbook.dry_run)
    return [line for line in lines if line is not None]


def _read_yaml(path: Path) -> Any:
    return read_yaml(path, "the runbook")


def _first_error(exc: ValidationError) -> str:
    """Only the first problem: one fix at a time keeps the message on one line."""
    error = exc.errors()[0]
    message = _one_line(error["msg"]).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if not error["loc"]:  # a whole-runbook check: its message starts with the field it is about
        return f"{message}{more}"
    return f"field '{'.'.join(str(part) for part in error['loc'])}': {message}{more}"


def parse_runbook_file(path: Path) -> Runbook:
    document = _read_yaml(path)
    if not isinstance(document, dict):
        raise ConfigError(f"{path}: a runbook file must hold a YAML mapping (id, title, risk, steps, ...)")
    try:
        runbook = Runbook.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from exc
    runbook._catalog_dir = path.parent
    return runbook


def load_runbook_catalog(folder: Path | None = None) -> dict[str, Runbook]:
    """Every `*.yaml` in `folder` (default: the shipped catalog), keyed by runbook id."""
    folder = BUILTIN_DIR if folder is None else Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: runbook folder not found")
    files = sorted(folder.glob("*.yaml"))
    if not files:
        raise ConfigError(f"{folder}: no runbook files (*.yaml) in the folder")
    catalog: dict[str, Runbook] = {}
    origin: dict[str, Path] = {}
    for path in files:
        runbook = parse_runbook_file(path)
        if runbook.id in catalog:
            raise ConfigError(
                f"{path}: field 'id': duplicate runbook id '{runbook.id}' (also in {origin[runbook.id]})"
            )
        catalog[runbook.id], origin[runbook.id] = runbook, path
    return catalog
