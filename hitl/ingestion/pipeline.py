"""Ingestion as plain functions: validate records, quarantine the bad, upsert the good, count.

Each batch (tickets, quarantine rows and the run's counters) is one transaction, so a run
killed half-way leaves whole batches or nothing, and running it again stores every good row
exactly once. Prefect tasks wrap these functions; nothing here needs Prefect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hitl.errors import HitlError
from hitl.ingestion.files import RawRecord, has_bad_bytes, iter_file, move_processed
from hitl.ingestion.http_source import HttpTicketSource
from hitl.models import ClientSpec, IngestReport, IngestStats, InputResult, TicketRecord
from hitl.store import runs as run_store
from hitl.store.clients import ensure_clients
from hitl.store.db import Database
from hitl.store.orm import utcnow
from hitl.store.tickets import PlannerStatistics, PreparedTicket, upsert_tickets
from policies.mappings import ColumnMapping

ProgressCallback = Callable[[str, int], None]


@dataclass
class IngestionContext:
    """Everything one run needs, passed in rather than imported, so tests hand in real local parts."""

    db: Database
    mapping: ColumnMapping
    source: str
    run_id: str
    default_client: str
    catalog: Mapping[str, ClientSpec] = field(default_factory=dict)
    batch_size: int = 500
    progress: ProgressCallback | None = None
    _client_ids: dict[str, int] = field(default_factory=dict)
    _statistics: PlannerStatistics | None = None


@dataclass
class RecordsOutcome:
    stats: IngestStats = field(default_factory=IngestStats)
    new_ids: list[int] = field(default_factory=list)
    max_updated_at: datetime | None = None


def describe_validation_error(exc: ValidationError, mapping: ColumnMapping) -> str:
    """One line naming each bad field and the source column it came from."""
    parts = []
    for err in exc.errors():
        target = str(err["loc"][0]) if err["loc"] else "record"
        column = mapping.fields.get(target)
        where = f"{target} (column {column!r})" if column and column != target else target
        message = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def validate_record(raw: RawRecord, mapping: ColumnMapping, default_client: str) -> TicketRecord | str:
    """The validated ticket, or the reason it goes to quarantine."""
    if raw.error is not None or raw.data is None:
        return raw.error or "unparseable record"
    data = mapping.apply(raw.data)
    bad = [k for k, v in data.items() if isinstance(v, str) and has_bad_bytes(v)]
    if bad:
        return f"invalid UTF-8 bytes in {', '.join(bad)}"
    nul = [k for k, v in data.items() if isinstance(v, str) and "\x00" in v]
    if nul:
        return f"NUL character in {', '.join(nul)}"
    try:
        record = TicketRecord.model_validate(data)
    except ValidationError as exc:
        return describe_validation_error(exc, mapping)
    if record.client is None:
        record = record.model_copy(update={"client": mapping.default_client or default_client})
    return record


def open_run(db: Database, source: str, mapping: str, input_desc: str, flow_run_id: str | None) -> str:
    with db.session() as session:
        return run_store.start_run(session, source, mapping, input_desc, flow_run_id)


def ingest_records(
    ctx: IngestionContext,
    records: Iterable[RawRecord],
    input_name: str,
    outcome: RecordsOutcome | None = None,
) -> RecordsOutcome:
    """Store a stream of raw records in batches. When the source fails part-way, the records
    already read are stored before the error propagates; `outcome` then holds what was done."""
    outcome = outcome if outcome is not None else RecordsOutcome()
    batch: list[tuple[RawRecord, TicketRecord | str]] = []
    try:
        for raw in records:
            batch.append((raw, validate_record(raw, ctx.mapping, ctx.default_client)))
            if len(batch) >= ctx.batch_size:
                _store_batch(ctx, batch, input_name, outcome)
                batch = []
    except HitlError:
        if batch:
            _store_batch(ctx, batch, input_name, outcome)
        raise
    if batch:
        _store_batch(ctx, batch, input_name, outcome)
    return outcome


def _store_batch(
    ctx: IngestionContext,
    batch: list[tuple[RawRecord, TicketRecord | str]],
    input_name: str,
    outcome: RecordsOutcome,
) -> None:
    stats = IngestStats(read=len(batch))
    bad: list[run_store.QuarantineEntry] = []
    good: list[TicketRecord] = []
    for raw, result in batch:
        if isinstance(result, str):
            bad.append(
                run_store.QuarantineEntry(input_name, raw.row_number, raw.line_number, raw.raw, result)
            )
        else:
            good.append(result)
    stats.quarantined = len(bad)
    new_ids: list[int] = []
    with ctx.db.session() as session:
        names = {r.client for r in good if r.client} - set(ctx._client_ids)
        ctx._client_ids.update(ensure_clients(session, names, ctx.catalog))
        for group in _rounds(good):
            prepared = [PreparedTicket(r, r.content_hash(), ctx._client_ids[r.client or ""]) for r in group]
            result = upsert_tickets(session, ctx.source, prepared, ctx.run_id)
            stats.inserted += result.inserted
            stats.updated += result.updated
            stats.unchanged += result.unchanged
            new_ids.extend(result.new_ids)
        run_store.quarantine(session, ctx.run_id, ctx.source, bad)
        run_store.add_to_run(session, ctx.run_id, stats)
    if stats.inserted:
        if ctx._statistics is None:
            ctx._statistics = PlannerStatistics(ctx.source)
        ctx._statistics.note(ctx.db, stats.inserted)  # after the batch's commit: ANALYZE sees its rows
    outcome.stats = outcome.stats.add(stats)
    outcome.new_ids.extend(new_ids)
    stamps = [r.updated_at for r in good if r.updated_at is not None]
    if stamps:
        latest = max(stamps)
        outcome.max_updated_at = max(latest, outcome.max_updated_at or latest)
    if ctx.progress is not None:
        ctx.progress(input_name, outcome.stats.read)


def _rounds(records: list[TicketRecord]) -> Iterable[list[TicketRecord]]:
    """Split a batch so that no external id repeats within a round; later repeats see earlier ones."""
    current: list[TicketRecord] = []
    seen: set[str] = set()
    for record in records:
        if record.external_id in seen:
            yield current
            current, seen = [], set()
        current.append(record)
        seen.add(record.external_id)
    if current:
        yield current


def ingest_file(ctx: IngestionContext, path: Path, move_when_done: bool) -> tuple[InputResult, list[int]]:
    """One file of a run. A file that cannot be read is reported, left where it is, and not moved."""
    outcome = RecordsOutcome()
    try:
        ingest_records(ctx, iter_file(path), str(path), outcome)
    except HitlError as exc:
        return InputResult(name=str(path), stats=outcome.stats, error=str(exc)), outcome.new_ids
    moved = str(move_processed(path)) if move_when_done else None
    return InputResult(name=str(path), stats=outcome.stats, moved_to=moved), outcome.new_ids


def ingest_http(ctx: IngestionContext, source: HttpTicketSource) -> tuple[InputResult, list[int], str | None]:
    """One API source; the new cursor is returned only when every page was read."""
    with ctx.db.session() as session:
        since = run_store.get_cursor(session, ctx.source)
    outcome = RecordsOutcome()
    try:
        ingest_records(ctx, source.records(since), source.url, outcome)
    except HitlError as exc:
        return InputResult(name=source.url, stats=outcome.stats, error=str(exc)), outcome.new_ids, None
    finally:
        source.close()
    cursor = _iso(outcome.max_updated_at) if outcome.max_updated_at else since
    return InputResult(name=source.url, stats=outcome.stats), outcome.new_ids, cursor


def fail_run(db: Database, run_id: str, error: str) -> None:
    """A run that crashed is marked failed (with what it had counted), never left 'running'."""
    with db.session() as session:
        run_store.finish_run(session, run_id, "failed", {}, error)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def close_run(
    db: Database,
    run_id: str,
    inputs: list[InputResult],
    new_ids: list[int],
    cursor: str | None = None,
) -> IngestReport:
    """Mark the run finished and keep the per-input results; the cursor moves only on success."""
    failed = [item for item in inputs if item.error]
    status = "failed" if failed else "completed"
    error = "; ".join(f"{item.name}: {item.error}" for item in failed) or None
    details: dict[str, Any] = {"inputs": [item.model_dump(mode="json") for item in inputs]}
    with db.session() as session:
        run = run_store.finish_run(session, run_id, status, details, error)
        if cursor and not failed:
            run_store.set_cursor(session, run.source, cursor, run_id)
        stats = IngestStats(
            read=run.read,
            inserted=run.inserted,
            updated=run.updated,
            unchanged=run.unchanged,
            quarantined=run.quarantined,
        )
        return IngestReport(
            run_id=run_id,
            source=run.source,
            mapping=run.mapping,
            flow_run_id=run.flow_run_id,
            status=status,
            stats=stats,
            inputs=inputs,
            new_ticket_ids=sorted(new_ids),
            cursor=cursor if not failed else None,
            started_at=run.started_at,
            finished_at=run.finished_at or utcnow(),
        )
