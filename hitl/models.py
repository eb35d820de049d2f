"""Domain models shared by every layer (pydantic v2).

`TicketRecord` is the one shape a ticket has after a column mapping is applied, whatever the
source: validating it is what decides between the ticket store and the quarantine.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator


class ClientTier(StrEnum):
    platinum = "platinum"
    gold = "gold"
    silver = "silver"
    bronze = "bronze"
    standard = "standard"


class TicketStatus(StrEnum):
    new = "new"
    open = "open"
    waiting = "waiting"
    resolved = "resolved"
    closed = "closed"


class Priority(StrEnum):
    critical = "critical"
    high = "high"
    medium = "medium"
    low = "low"


DEFAULT_SLA_HOURS: dict[Priority, float] = {
    Priority.critical: 4,
    Priority.high: 8,
    Priority.medium: 24,
    Priority.low: 72,
}


class ClientSpec(BaseModel):
    """A managed client as the MSP's catalog describes it."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=200)]
    tier: ClientTier = ClientTier.standard
    sla_hours: dict[Priority, Annotated[float, Field(gt=0)]] = Field(
        default_factory=lambda: dict(DEFAULT_SLA_HOURS)
    )


def _blank_to_none(value: Any) -> Any:
    """CSV cells are strings: an empty cell means 'not given', not an empty label."""
    if isinstance(value, str) and not value.strip():
        return None
    if isinstance(value, float) and value != value:  # NaN from a JSON/pandas source
        return None
    return value


def _label(value: Any) -> Any:
    """Labels are codes or names; integers from JSON (`4`) and CSV (`"4"`) must hash alike."""
    value = _blank_to_none(value)
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError("a label must be text or a number, not true/false")
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        return value.strip()
    raise ValueError(f"a label must be text or a number, not {type(value).__name__}")


def _strict_int(value: Any) -> Any:
    """Accept `3`, `"3"`, `3.0`; refuse `"high"` and `3.5` with a message naming the value."""
    value = _blank_to_none(value)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            pass
    raise ValueError(f"expected a whole number, got {value!r}")


def _aware_datetime(value: Any) -> Any:
    """Datetimes without a zone are taken as UTC; all are stored in UTC."""
    value = _blank_to_none(value)
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip().replace("Z", "+00:00") if value.strip().endswith("Z") else value.strip()
        try:
            value = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"not an ISO 8601 date/time: {value!r}") from exc
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    raise ValueError(f"not an ISO 8601 date/time: {value!r}")


Label = Annotated[Annotated[str, Field(max_length=200)] | None, BeforeValidator(_label)]
ShortLabel = Annotated[Annotated[str, Field(max_length=20)] | None, BeforeValidator(_label)]
Level = Annotated[Annotated[int, Field(ge=0, le=10)] | None, BeforeValidator(_strict_int)]
OptDatetime = Annotated[datetime | None, BeforeValidator(_aware_datetime)]
OptText = Annotated[str | None, BeforeValidator(_blank_to_none)]


_PLAIN_ADDRESS = re.compile(r"[^@\s,;<>\"()]+@[^@\s,;<>\"()]+\.[^@\s,;<>\"()]+")


def _email(value: Any) -> Any:
    """The requester's address, where approved replies go: one plain address or nothing (no display
    name, no list: the outbox puts it in the To header as it is)."""
    value = _blank_to_none(value)
    if value is None:
        return None
    text = str(value).strip()
    if not _PLAIN_ADDRESS.fullmatch(text):
        raise ValueError(f"not an e-mail address: {text[:80]!r}")
    return text


Email = Annotated[Annotated[str, Field(max_length=320)] | None, BeforeValidator(_email)]


class TicketRecord(BaseModel):
    """One ticket from any source, after its column mapping; the unit of validation."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    external_id: Annotated[str, BeforeValidator(_label), Field(min_length=1, max_length=200)]
    client: Label = None
    requester_email: Email = None  # who raised it: approved replies are sent there
    subject: Annotated[str, Field(max_length=1000)] = ""
    body: Annotated[str, Field(min_length=1, max_length=100_000)]
    created_at: OptDatetime = None
    updated_at: OptDatetime = None
    priority: Priority | None = None
    urgency: Level = None
    impact: Level = None
    category: Label = None
    business_service: Label = None
    queue: Label = None
    ticket_type: Label = None
    language: ShortLabel = None
    resolution: OptText = None
    status: TicketStatus = TicketStatus.new
    labels: dict[str, str | list[str]] = Field(default_factory=dict)

    @field_validator("subject", mode="before")
    @classmethod
    def _subject(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        return "" if value is None else value

    @field_validator("body", mode="before")
    @classmethod
    def _body(cls, value: Any) -> Any:
        if _blank_to_none(value) is None:
            raise ValueError("missing or empty")
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("status", mode="before")
    @classmethod
    def _status(cls, value: Any) -> Any:
        value = _blank_to_none(value)
        if value is None:
            return TicketStatus.new
        return value.strip().lower() if isinstance(value, str) else value

    def content_hash(self) -> str:
        """SHA-256 of the ticket's content: equal hashes mean re-ingesting changes nothing."""
        payload = self.model_dump(mode="json")
        if payload["requester_email"] is None:  # absent: the hash of tickets stored before the field
            del payload["requester_email"]
        encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


class IngestStats(BaseModel):
    """Counts of one ingestion run (or one input of it); what `hitl ingest --json` prints."""

    read: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    quarantined: int = 0

    def add(self, other: IngestStats) -> IngestStats:
        return IngestStats(**{k: getattr(self, k) + getattr(other, k) for k in IngestStats.model_fields})


class InputResult(BaseModel):
    """What happened to one input (a file, or one HTTP source) of an ingestion run."""

    name: str
    stats: IngestStats = Field(default_factory=IngestStats)
    error: str | None = None
    moved_to: str | None = None


class IngestReport(BaseModel):
    """The outcome of one ingestion run, returned by the flow and printed by the CLI."""

    run_id: str
    source: str
    mapping: str
    flow_run_id: str | None = None
    status: str
    stats: IngestStats
    inputs: list[InputResult] = Field(default_factory=list)
    new_ticket_ids: list[int] = Field(default_factory=list)
    cursor: str | None = None
    started_at: datetime
    finished_at: datetime | None = None
    ignored_files: list[str] = Field(default_factory=list)  # in the drop folder, of a type not read

    @property
    def failed_inputs(self) -> list[InputResult]:
        return [item for item in self.inputs if item.error]
