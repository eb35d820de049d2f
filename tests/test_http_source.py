"""The PSA REST source against a real local HTTP server: paging, cursor, retries, failure."""

from __future__ import annotations

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from hitl.errors import SourceError
from hitl.ingestion import pipeline
from hitl.ingestion.http_source import HttpTicketSource
from hitl.store import runs as run_store
from hitl.store.db import Database
from hitl.store.orm import QuarantineRecord, Ticket
from policies.mappings import HttpOptions, load_mapping

from .psa_server import PsaState, psa_server


def ticket(i: int, updated: str, body: str | None = None) -> dict[str, object]:
    return {
        "external_id": f"PSA-{i}",
        "client": "Northwind Logistics",
        "subject": f"ticket {i}",
        "body": body if body is not None else f"printer {i} jammed",
        "updated_at": updated,
        "priority": "medium",
    }


def run_once(database: Database, url: str) -> pipeline.IngestReport:
    mapping = load_mapping("canonical")
    run_id = pipeline.open_run(database, "psa", "canonical", url, None)
    ctx = pipeline.IngestionContext(
        db=database, mapping=mapping, source="psa", run_id=run_id, default_client="u", batch_size=4
    )
    source = HttpTicketSource(url, mapping.http, page_size=5, token=SecretStr("s3cret"), backoff_s=0.01)
    result, new_ids, cursor = pipeline.ingest_http(ctx, source)
    return pipeline.close_run(database, run_id, [result], new_ids, cursor)


def test_paged_ingestion_with_cursor(database: Database) -> None:
    state = PsaState(token="s3cret", fail_next=1)
    state.tickets = [ticket(i, f"2026-11-20T10:00:{i:02d}Z") for i in range(12)]
    state.tickets.append(
        {"external_id": "PSA-bad", "subject": "no body", "updated_at": "2026-11-20T10:00:59Z"}
    )
    with psa_server(state) as url:
        first = run_once(database, url)
        assert first.status == "completed"
        assert first.stats.model_dump() == {
            "read": 13,
            "inserted": 12,
            "updated": 0,
            "unchanged": 0,
            "quarantined": 1,
        }
        assert first.cursor == "2026-11-20T10:00:11.000000Z"  # the bad record's time is not trusted
        assert [r.get("page") for r in state.requests] == ["1", "1", "2", "3"]  # 503 retried once
        assert all(h == "Bearer s3cret" for h in state.auth_headers)

        state.requests.clear()
        state.tickets[3] = ticket(3, "2026-11-21T09:00:00Z", body="printer 3 on fire")
        second = run_once(database, url)
        assert state.requests[0]["updated_since"] == "2026-11-20T10:00:11.000000Z"
        assert (second.stats.inserted, second.stats.updated, second.stats.unchanged) == (0, 1, 1)
        assert second.cursor == "2026-11-21T09:00:00.000000Z"
    with database.session() as session:
        assert run_store.get_cursor(session, "psa") == "2026-11-21T09:00:00.000000Z"
        assert session.execute(select(func.count()).select_from(Ticket)).scalar_one() == 12
        quarantined = session.execute(select(QuarantineRecord.error, QuarantineRecord.raw)).all()
    assert quarantined[0][0].startswith("body") and "PSA-bad" in quarantined[0][1]


def test_failing_page_keeps_cursor_and_reports(database: Database) -> None:
    state = PsaState(broken_page=2)
    state.tickets = [ticket(i, f"2026-11-20T10:00:{i:02d}Z") for i in range(8)]
    with psa_server(state) as url:
        report = run_once(database, url)
    assert report.status == "failed" and report.cursor is None
    assert report.inputs[0].error is not None and "HTTP 500 after 4 attempts" in report.inputs[0].error
    with database.session() as session:
        assert run_store.get_cursor(session, "psa") is None
        stored = session.execute(select(func.count()).select_from(Ticket)).scalar_one()
    assert stored == 5  # page 1 stays stored; the next run fetches from the start again
    assert report.stats.inserted == 5 and report.inputs[0].stats.read == 5


def test_client_errors_are_not_retried() -> None:
    state = PsaState(token="right")
    with psa_server(state) as url:
        source = HttpTicketSource(url, HttpOptions(), token=SecretStr("wrong"), backoff_s=0.01)
        with pytest.raises(SourceError, match="HTTP 401 \\(not retried\\)"):
            list(source.records(None))
    assert len(state.requests) == 1


def test_an_api_that_ignores_the_page_parameter_stops_the_source(database: Database) -> None:
    state = PsaState(ignore_paging=True)
    state.tickets = [ticket(i, f"2026-11-20T10:00:{i:02d}Z") for i in range(8)]
    with psa_server(state) as url:
        report = run_once(database, url)
    assert report.status == "failed" and report.cursor is None
    error = report.inputs[0].error or ""
    assert "page 2: the same 5 records as page 1" in error and "'page' parameter" in error
    assert [r["page"] for r in state.requests] == ["1", "2"]
    assert report.stats.inserted == 5  # page 1 is stored once; nothing is read twice
