"""The ingestion pipeline against real databases (SQLite and PostgreSQL): idempotent upserts,
quarantine with row numbers, run statistics, and safety under concurrent ingestion."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from hitl.errors import DatabaseError
from hitl.ingestion import pipeline
from hitl.settings import Settings
from hitl.store.db import Database, create_db_engine, redacted
from hitl.store.orm import Client, IngestionRun, QuarantineRecord, Ticket
from policies.mappings import load_mapping

from .support import ENDAVA, free_port, needs_shared_data, run_cli

CANONICAL_HEADER = "external_id,client,subject,body,created_at,priority,urgency,category\n"


def ingest(
    database: Database, path: Path, mapping: str = "canonical", source: str = "test", move: bool = False
) -> pipeline.IngestReport:
    chosen = load_mapping(mapping)
    run_id = pipeline.open_run(database, source, mapping, str(path), None)
    ctx = pipeline.IngestionContext(
        db=database, mapping=chosen, source=source, run_id=run_id, default_client="unassigned", batch_size=50
    )
    result, new_ids = pipeline.ingest_file(ctx, path, move)
    return pipeline.close_run(database, run_id, [result], new_ids)


def count(database: Database, model: type) -> int:
    with database.session() as session:
        return int(session.execute(select(func.count()).select_from(model)).scalar_one())


def test_schema_is_migrated_on_first_use(database: Database) -> None:
    assert database.current_revision() is None
    with database.session() as session:
        session.execute(select(Ticket)).all()
    assert database.current_revision() == Database.head_revision() is not None


@needs_shared_data()
def test_endava_ingest_twice_is_idempotent(database: Database) -> None:
    first = ingest(database, ENDAVA, mapping="endava", source="endava")
    assert first.stats.model_dump() == {
        "read": 4344,
        "inserted": 4344,
        "updated": 0,
        "unchanged": 0,
        "quarantined": 0,
    }
    assert len(first.new_ticket_ids) == 4344
    second = ingest(database, ENDAVA, mapping="endava", source="endava")
    assert second.stats.model_dump() == {
        "read": 4344,
        "inserted": 0,
        "updated": 0,
        "unchanged": 4344,
        "quarantined": 0,
    }
    assert count(database, Ticket) == 4344
    with database.session() as session:
        clients = session.execute(select(Client.name)).scalars().all()
        runs = session.execute(select(IngestionRun.status, IngestionRun.read)).all()
    assert clients == ["endava"]
    assert sorted(runs) == [("completed", 4344), ("completed", 4344)]


def test_malformed_rows_are_quarantined_and_good_rows_kept(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_text(
        CANONICAL_HEADER
        + "T1,Acme,ok,printer jammed,2026-11-01T08:00:00Z,high,2,printer\n"  # row 1 good
        + "T2,Acme,no body,,2026-11-01T08:00:00Z,low,1,mailbox\n"  # row 2 missing body
        + "T3,Acme,bad date,vpn down,31/02/2026,low,1,vpn\n"  # row 3 unparseable date
        + 'T4,Acme,"broken"quote,body,2026-11-01,low,1,vpn\n'  # row 4 broken quoting
        + "T5,Acme,wrong type,disk full,2026-11-01,low,high,backup\n"  # row 5 urgency not a number
        + "T6,,no client,mailbox full,,medium,1,mailbox\n",  # row 6 good, default client
        encoding="utf-8",
    )
    report = ingest(database, path)
    assert report.stats.model_dump() == {
        "read": 6,
        "inserted": 2,
        "updated": 0,
        "unchanged": 0,
        "quarantined": 4,
    }
    with database.session() as session:
        rows = session.execute(
            select(
                QuarantineRecord.row_number, QuarantineRecord.line_number, QuarantineRecord.error
            ).order_by(QuarantineRecord.row_number)
        ).all()
        tickets = dict(session.execute(select(Ticket.external_id, Client.name).join(Client)).all())
    assert [r[0] for r in rows] == [2, 3, 4, 5]
    assert [r[1] for r in rows] == [3, 4, 5, 6]
    assert rows[0][2] == "body: missing or empty"
    assert "created_at" in rows[1][2] and "31/02/2026" in rows[1][2]
    assert "malformed CSV" in rows[2][2]
    assert "urgency" in rows[3][2] and "'high'" in rows[3][2]
    assert tickets == {"T1": "Acme", "T6": "unassigned"}


def test_changed_content_updates_and_same_content_does_not(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "v1.csv"
    path.write_text(CANONICAL_HEADER + "A,Acme,s,body one,,low,1,x\nB,Acme,s,body two,,low,1,x\n")
    ingest(database, path)
    path.write_text(
        CANONICAL_HEADER
        + "A,Acme,s,body one,,low,1,x\nB,Acme,s,body CHANGED,,low,1,x\n"
        + "C,Acme,s,new,,low,1,x\n"
    )
    report = ingest(database, path)
    assert (report.stats.inserted, report.stats.updated, report.stats.unchanged) == (1, 1, 1)
    with database.session() as session:
        body = session.execute(select(Ticket.body).where(Ticket.external_id == "B")).scalar_one()
    assert body == "body CHANGED"


def test_repeated_id_within_one_file(database: Database, tmp_path: Path) -> None:
    path = tmp_path / "dup.csv"
    path.write_text(
        CANONICAL_HEADER
        + "A,Acme,s,first,,low,1,x\nA,Acme,s,second,,low,1,x\n"
        + "A,Acme,s,second,,low,1,x\n"
    )
    report = ingest(database, path)
    assert (report.stats.inserted, report.stats.updated, report.stats.unchanged) == (1, 1, 1)
    assert count(database, Ticket) == 1


def test_drop_folder_files_are_moved_only_when_read(database: Database, tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    (inbox / "good.csv").write_text(CANONICAL_HEADER + "A,Acme,s,b,,low,1,x\n")
    report = ingest(database, inbox / "good.csv", move=True)
    assert report.status == "completed"
    assert (inbox / "processed" / "good.csv").exists() and not (inbox / "good.csv").exists()


def test_concurrent_ingestion_of_overlapping_files(
    settings: Settings, database: Database, tmp_path: Path
) -> None:
    rows_a = "".join(f"T{i},Acme,s,body {i},,low,1,x\n" for i in range(0, 600))
    rows_b = "".join(f"T{i},Acme,s,body {i},,low,1,x\n" for i in range(300, 900))
    (tmp_path / "a.csv").write_text(CANONICAL_HEADER + rows_a)
    (tmp_path / "b.csv").write_text(CANONICAL_HEADER + rows_b)
    database.ensure_schema()
    reports: list[pipeline.IngestReport] = []
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:  # each thread its own engine, as two processes would have
            own = Database(settings.effective_database_url)
            reports.append(ingest(own, tmp_path / name))
            own.dispose()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a.csv", "b.csv")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert count(database, Ticket) == 900
    assert sum(r.stats.inserted for r in reports) == 900
    assert sum(r.stats.unchanged for r in reports) == 300
    with database.session() as session:
        assert session.execute(select(func.count()).select_from(Client)).scalar_one() == 1


@pytest.mark.parametrize("batch_size", [1, 7])
def test_batch_boundaries_do_not_change_counts(database: Database, tmp_path: Path, batch_size: int) -> None:
    path = tmp_path / "x.csv"
    path.write_text(
        CANONICAL_HEADER + "".join(f"T{i},C{i % 3},s,b{i},,low,1,x\n" for i in range(20)) + "bad,row\n"
    )
    run_id = pipeline.open_run(database, "t", "canonical", str(path), None)
    ctx = pipeline.IngestionContext(
        db=database,
        mapping=load_mapping("canonical"),
        source="t",
        run_id=run_id,
        default_client="u",
        batch_size=batch_size,
    )
    result, _ = pipeline.ingest_file(ctx, path, False)
    assert result.stats.model_dump() == {
        "read": 21,
        "inserted": 20,
        "updated": 0,
        "unchanged": 0,
        "quarantined": 1,
    }
    assert count(database, Client) == 3


def test_a_large_import_refreshes_the_planner_statistics(database: Database, tmp_path: Path) -> None:
    """PostgreSQL's statistics follow a new source as it grows (refreshed at 2,000 rows, then
    4,000): with statistics of an empty table, the upsert's batch lookup cost more with every batch
    (hitl/store/tickets.py, PlannerStatistics: 51 s against 14 s for 50,000 rows)."""
    rows = "".join(f"BIG-{i:05d},Acme,subject {i},body {i},,low,1,x\n" for i in range(5_000))
    (tmp_path / "big.csv").write_text(CANONICAL_HEADER + rows)
    run_id = pipeline.open_run(database, "big", "canonical", "big.csv", None)
    ctx = pipeline.IngestionContext(
        db=database, mapping=load_mapping("canonical"), source="big", run_id=run_id, default_client="x"
    )
    result, _ = pipeline.ingest_file(ctx, tmp_path / "big.csv", False)
    assert result.stats.inserted == 5_000
    if database.dialect != "postgresql":
        assert ctx._statistics is not None and ctx._statistics.refreshed == 0  # nothing to do elsewhere
        return
    assert ctx._statistics is not None and ctx._statistics.refreshed == 2
    with database.session() as session:  # what the planner now believes: the 4,000 rows of the last refresh
        believed = session.execute(
            text("SELECT reltuples FROM pg_class WHERE oid = 'tickets'::regclass")
        ).scalar_one()
    assert believed == 4_000
    more = "".join(f"BIG-{i:05d},Acme,subject {i},body {i},,low,1,x\n" for i in range(5_000, 6_000))
    (tmp_path / "more.csv").write_text(CANONICAL_HEADER + more)
    again = pipeline.IngestionContext(
        db=database, mapping=load_mapping("canonical"), source="big", run_id=run_id, default_client="x"
    )
    pipeline.ingest_file(again, tmp_path / "more.csv", False)
    assert again._statistics is not None and again._statistics.refreshed == 0  # 1,000 more of 5,000: no need


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://ops:s3cret@db.example/hitl",
            "cannot use the database mysql://ops:***@db.example/hitl: its driver",
        ),
        ("foo://x", "invalid database URL foo://x: Can't load plugin"),
        ("not a url", "invalid database URL <unparseable database URL>"),
    ],
)
def test_a_database_url_we_cannot_use_is_one_line_without_its_password(url: str, message: str) -> None:
    with pytest.raises(DatabaseError) as refused:
        create_db_engine(url)
    assert str(refused.value).startswith(message) and "s3cret" not in str(refused.value)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql+psycopg://postgres@127.0.0.1:5999/x?password=QPW123",
            "postgresql+psycopg://postgres@127.0.0.1:5999/x?password=***",
        ),
        (
            "postgresql+psycopg://ops:s3cret@db/x?sslmode=require&sslpassword=KEYPW&PassWord=QPW123",
            "postgresql+psycopg://ops:***@db/x?PassWord=***&sslmode=require&sslpassword=***",
        ),
    ],
)
def test_redacted_hides_passwords_given_as_query_parameters(url: str, shown: str) -> None:
    """libpq reads `?password=` and `?sslpassword=` as readily as `user:pw@`: both are hidden,
    the other parameters are kept (they help find the database)."""
    assert redacted(url) == shown


def test_an_unreachable_database_is_named_without_its_query_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/x?password=QPW123"
    for args in (["db", "current"], ["decisions", "export", str(tmp_path / "x.csv")]):
        done = run_cli(*args, env={"HITL_HOME": str(tmp_path / "var"), "HITL_DATABASE_URL": url})
        assert done.returncode == 1 and "cannot reach the database" in done.stderr + done.stdout
        assert "QPW123" not in done.stderr + done.stdout and "password=***" in done.stderr + done.stdout
