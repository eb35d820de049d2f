"""Ingestion runs, their quarantine, and the per-source cursor of incremental sources."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from hitl.models import IngestStats
from hitl.store.orm import IngestionRun, QuarantineRecord, SourceCursor, utcnow


@dataclass(frozen=True)
class QuarantineEntry:
    input_name: str
    row_number: int
    line_number: int | None
    raw: str
    error: str


def start_run(session: Session, source: str, mapping: str, input_desc: str, flow_run_id: str | None) -> str:
    run_id = str(uuid.uuid4())
    session.add(
        IngestionRun(
            id=run_id,
            source=source,
            mapping=mapping,
            input=input_desc,
            flow_run_id=flow_run_id,
            status="running",
            started_at=utcnow(),
            details={},
        )
    )
    return run_id


def add_to_run(session: Session, run_id: str, stats: IngestStats) -> None:
    """Count a committed batch into the run, in the batch's own transaction, so counts never drift."""
    session.execute(
        update(IngestionRun)
        .where(IngestionRun.id == run_id)
        .values(
            read=IngestionRun.read + stats.read,
            inserted=IngestionRun.inserted + stats.inserted,
            updated=IngestionRun.updated + stats.updated,
            unchanged=IngestionRun.unchanged + stats.unchanged,
            quarantined=IngestionRun.quarantined + stats.quarantined,
        )
    )


def finish_run(
    session: Session, run_id: str, status: str, details: dict[str, Any], error: str | None = None
) -> IngestionRun:
    run = session.get(IngestionRun, run_id)
    if run is None:
        raise LookupError(f"ingestion run {run_id} not found")
    run.status = status
    run.finished_at = utcnow()
    run.details = details
    run.error = error
    return run


def quarantine(session: Session, run_id: str, source: str, entries: list[QuarantineEntry]) -> None:
    if not entries:
        return
    session.execute(
        insert(QuarantineRecord),
        [
            {
                "ingestion_run_id": run_id,
                "source": source,
                "input_name": e.input_name,
                "row_number": e.row_number,
                "line_number": e.line_number,
                "raw": e.raw,
                "error": e.error,
                "created_at": utcnow(),
            }
            for e in entries
        ],
    )


def get_cursor(session: Session, source: str) -> str | None:
    return session.execute(select(SourceCursor.cursor).where(SourceCursor.source == source)).scalar()


def set_cursor(session: Session, source: str, cursor: str, run_id: str) -> None:
    row = session.get(SourceCursor, source)
    if row is None:
        session.add(SourceCursor(source=source, cursor=cursor, ingestion_run_id=run_id, updated_at=utcnow()))
    elif cursor > row.cursor:  # ISO-8601 UTC strings sort in time order; never move back
        row.cursor, row.ingestion_run_id, row.updated_at = cursor, run_id, utcnow()


def list_runs(session: Session, source: str | None = None, limit: int = 20) -> list[IngestionRun]:
    query = select(IngestionRun).order_by(IngestionRun.started_at.desc()).limit(limit)
    if source:
        query = query.where(IngestionRun.source == source)
    return list(session.execute(query).scalars())


def list_quarantine(
    session: Session, run_id: str | None = None, source: str | None = None, limit: int = 100
) -> list[QuarantineRecord]:
    query = select(QuarantineRecord).order_by(QuarantineRecord.id.desc()).limit(limit)
    if run_id:
        query = query.where(QuarantineRecord.ingestion_run_id == run_id)
    if source:
        query = query.where(QuarantineRecord.source == source)
    return list(session.execute(query).scalars())
