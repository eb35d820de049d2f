"""The audit trail on real SQLite and PostgreSQL: the chain verifies, concurrent appenders never
fork it, the triggers refuse UPDATE and DELETE, and tampering around them is found and named."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from hitl.audit import (
    GENESIS_HASH,
    LIFECYCLE_KINDS,
    NewEvent,
    append_event,
    append_events,
    canonical_json,
    ticket_timeline,
    verify_chain,
)
from hitl.store.db import Database
from hitl.store.orm import AuditEvent


def _append_many(database: Database, count: int, ticket_id: int | None = 7) -> None:
    for i in range(count):
        with database.session() as session:
            append_event(
                session, kind="decision.created", actor="triage-model", ticket_id=ticket_id, data={"i": i}
            )


def _bypass_triggers(database: Database, statement: str, **params: object) -> None:
    """Run `statement` the way an attacker with direct database access would, triggers out of the way."""
    with database.engine.begin() as conn:
        if database.dialect == "postgresql":
            conn.exec_driver_sql("ALTER TABLE audit_events DISABLE TRIGGER USER")
        else:
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_events_no_delete")
        conn.execute(text(statement), params)


# ---------------------------------------------------------------- chain and timeline
def test_a_chain_of_events_verifies(database: Database) -> None:
    with database.session() as session:
        empty = verify_chain(session)
    assert empty.ok and empty.events_checked == 0 and empty.head_hash == GENESIS_HASH

    with database.session() as session:
        first = append_event(session, kind="decision.created", actor="triage-model", ticket_id=1, data={})
        second = append_event(session, kind="policy.version_created", actor="alice", ticket_id=None, data={})
    assert (first.seq, second.seq) == (1, 2)
    assert first.prev_hash == GENESIS_HASH and second.prev_hash == first.hash
    _append_many(database, 10)

    with database.session() as session:
        report = verify_chain(session, batch=3)  # batch boundaries fall inside the chain
        last = session.scalars(select(AuditEvent).order_by(AuditEvent.seq.desc()).limit(1)).one()
    assert report.ok and report.events_checked == 12
    assert report.first_broken_seq is None and report.problem is None
    assert report.head_hash == last.hash


def test_the_body_is_the_canonical_json_that_was_hashed(database: Database) -> None:
    with database.session() as session:
        event = append_event(
            session, kind="review.recorded", actor="bob@msp.example", ticket_id=3, data={"é": "ü", "n": 1}
        )
    body = json.loads(event.body)
    assert set(body) == {"seq", "kind", "actor", "ticket_id", "at", "data"}
    assert body["seq"] == 1 and body["kind"] == "review.recorded" and body["ticket_id"] == 3
    assert body["data"] == {"n": 1, "é": "ü"}
    assert canonical_json(body) == event.body
    assert datetime.fromisoformat(body["at"]) == event.created_at


def test_ticket_timeline_is_in_order_with_its_data(database: Database) -> None:
    steps = [
        (
            5,
            "decision.created",
            "triage-model",
            {"head": "category", "ai_value": "network", "confidence": 0.62},
        ),
        (6, "decision.created", "triage-model", {"head": "category"}),
        (5, "decision.routed", "policy", {"route": "HUMAN", "threshold": 0.8}),
        (5, "checkpoint.waiting", "lifecycle", {"deadline": datetime(2026, 1, 2, 9, 30, tzinfo=UTC)}),
        (None, "model.activated", "alice", {"version": "category-3"}),
        (5, "review.recorded", "bob", {"action": "override", "final_value": "security", "reason_code": "R2"}),
    ]
    with database.session() as session:
        for ticket_id, kind, actor, data in steps:
            append_event(session, kind=kind, actor=actor, ticket_id=ticket_id, data=data)

    with database.session() as session:
        timeline = ticket_timeline(session, 5)
        assert ticket_timeline(session, 404) == []
    assert [(e.seq, e.kind, e.actor) for e in timeline] == [
        (1, "decision.created", "triage-model"),
        (3, "decision.routed", "policy"),
        (4, "checkpoint.waiting", "lifecycle"),
        (6, "review.recorded", "bob"),
    ]
    assert timeline[0].data == {"head": "category", "ai_value": "network", "confidence": 0.62}
    assert timeline[2].data == {"deadline": "2026-01-02T09:30:00.000000Z"}
    assert all(e.at.tzinfo is not None for e in timeline)
    assert [e.at for e in timeline] == sorted(e.at for e in timeline)


def test_append_rolls_back_with_the_callers_transaction(database: Database) -> None:
    with pytest.raises(RuntimeError), database.session() as session:
        append_event(session, kind="action.executed", actor="runner", ticket_id=1, data={})
        raise RuntimeError("the action's own write failed")
    _append_many(database, 1)
    with database.session() as session:
        assert session.scalars(select(AuditEvent.seq)).all() == [1]
        assert verify_chain(session).ok


def test_append_refuses_arguments_the_columns_cannot_hold(database: Database) -> None:
    with database.session() as session:
        for bad in ({"kind": ""}, {"kind": "k" * 51}, {"actor": ""}, {"actor": "a" * 201}):
            args = {"kind": "decision.created", "actor": "x", **bad}
            with pytest.raises(ValueError):
                append_event(session, ticket_id=None, data={}, **args)
        with pytest.raises(ValueError, match="NaN"):
            append_event(
                session, kind="decision.created", actor="x", ticket_id=None, data={"p": float("nan")}
            )
        assert session.scalars(select(AuditEvent)).all() == []


def test_lifecycle_kinds_are_documented() -> None:
    assert "review.recorded" in LIFECYCLE_KINDS and len(set(LIFECYCLE_KINDS)) == len(LIFECYCLE_KINDS) == 15


# ---------------------------------------------------------------- concurrency
def test_concurrent_appenders_never_fork_the_chain(database: Database) -> None:
    database.ensure_schema()
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def appender(name: str) -> None:
        own = Database(database.url)  # its own engine and connections, as a second process would have
        try:
            barrier.wait()
            for i in range(150):
                with own.session() as session:
                    append_event(session, kind="action.executed", actor=name, ticket_id=None, data={"i": i})
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=appender, args=(f"worker-{n}",)) for n in (1, 2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors

    with database.session() as session:
        rows = session.execute(select(AuditEvent.seq, AuditEvent.actor).order_by(AuditEvent.seq)).all()
        report = verify_chain(session, batch=64)
    assert [r.seq for r in rows] == list(range(1, 301))
    assert sorted({r.actor for r in rows}) == ["worker-1", "worker-2"]
    assert sum(r.actor == "worker-1" for r in rows) == 150
    assert report.ok and report.events_checked == 300


def test_bulk_append_continues_the_chain_between_single_appends(database: Database) -> None:
    with database.session() as session:
        append_event(session, kind="decision.created", actor="ai", ticket_id=1, data={"n": 0})
    batch = [NewEvent("decision.created", "ai", i, {"n": i, "text": "x" * i}) for i in range(1, 1201)]
    with database.session() as session:
        assert append_events(session, batch) == 1200
        assert append_events(session, []) == 0
    with database.session() as session:
        last = append_event(session, kind="review.recorded", actor="alice", ticket_id=3, data={})
        report = verify_chain(session, batch=500)
        timeline = ticket_timeline(session, 7)
    assert last.seq == 1202 and report.ok and report.events_checked == 1202
    assert [e.data for e in timeline] == [{"n": 7, "text": "xxxxxxx"}]


def test_bulk_append_refuses_a_bad_event_and_writes_none_of_the_batch(database: Database) -> None:
    batch = [NewEvent("decision.created", "ai", 1, {}), NewEvent("decision.created", "", 2, {})]
    with pytest.raises(ValueError), database.session() as session:
        append_events(session, batch)
    with database.session() as session:
        assert verify_chain(session).events_checked == 0


def test_bulk_and_single_appenders_at_once_never_fork_the_chain(database: Database) -> None:
    database.ensure_schema()
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def bulk() -> None:
        own = Database(database.url)
        try:
            barrier.wait()
            for i in range(20):
                with own.session() as session:
                    append_events(session, [NewEvent("decision.created", "bulk", None, {"i": i})] * 10)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.dispose()

    def single() -> None:
        own = Database(database.url)
        try:
            barrier.wait()
            for i in range(100):
                with own.session() as session:
                    append_event(session, kind="review.recorded", actor="one", ticket_id=None, data={"i": i})
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.dispose()

    threads = [threading.Thread(target=bulk), threading.Thread(target=single)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors
    with database.session() as session:
        seqs = list(session.execute(select(AuditEvent.seq).order_by(AuditEvent.seq)).scalars())
        report = verify_chain(session, batch=64)
    assert seqs == list(range(1, 301)) and report.ok and report.events_checked == 300


# ---------------------------------------------------------------- triggers and tampering
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2",
        "DELETE FROM audit_events WHERE seq = 2",
        "DELETE FROM audit_events",
    ],
)
def test_the_database_refuses_update_and_delete(database: Database, statement: str) -> None:
    _append_many(database, 3)
    with pytest.raises(DBAPIError, match="audit_events is append-only"), database.engine.begin() as conn:
        conn.exec_driver_sql(statement)
    with database.session() as session:
        assert session.scalars(select(AuditEvent.actor).where(AuditEvent.seq == 2)).one() == "triage-model"
        assert verify_chain(session).ok


def test_the_orm_cannot_delete_an_event_either(database: Database) -> None:
    _append_many(database, 1)
    with pytest.raises(DBAPIError, match="audit_events is append-only"), database.session() as session:
        session.delete(session.get(AuditEvent, 1))


def test_an_edited_body_is_reported_at_its_seq(database: Database) -> None:
    _append_many(database, 8)
    with database.session() as session:
        body = session.scalars(select(AuditEvent.body).where(AuditEvent.seq == 5)).one()
    forged = body.replace('"i":4', '"i":40')
    assert forged != body
    _bypass_triggers(database, "UPDATE audit_events SET body = :body WHERE seq = 5", body=forged)

    with database.session() as session:
        report = verify_chain(session, batch=2)
    assert not report.ok
    assert report.first_broken_seq == 5 and report.events_checked == 4
    assert report.problem is not None and report.problem.startswith("body hash mismatch at event 5")


def test_a_rehashed_event_breaks_the_next_link(database: Database) -> None:
    """Recomputing the edited event's own hash just moves the break to the event after it."""
    _append_many(database, 6)
    with database.session() as session:
        row = session.get(AuditEvent, 3)
        assert row is not None
        forged = row.body.replace('"i":2', '"i":99')
        new_hash = hashlib.sha256((row.prev_hash + forged).encode()).hexdigest()
    _bypass_triggers(
        database,
        "UPDATE audit_events SET body = :body, hash = :hash WHERE seq = 3",
        body=forged,
        hash=new_hash,
    )
    with database.session() as session:
        report = verify_chain(session)
    assert (report.ok, report.first_broken_seq) == (False, 4)
    assert report.problem is not None and report.problem.startswith("prev_hash mismatch at event 4")


def test_a_column_edited_beside_the_body_is_reported(database: Database) -> None:
    _append_many(database, 4)
    _bypass_triggers(database, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    with database.session() as session:
        report = verify_chain(session)
    assert (report.ok, report.first_broken_seq) == (False, 2)
    assert report.problem == (
        "column differs from body at event 2: actor is 'mallory' but the body says 'triage-model'"
    )


def test_a_deleted_middle_event_is_reported_as_a_gap(database: Database) -> None:
    _append_many(database, 7)
    _bypass_triggers(database, "DELETE FROM audit_events WHERE seq = 4")
    with database.session() as session:
        report = verify_chain(session, batch=3)
    assert (report.ok, report.first_broken_seq, report.events_checked) == (False, 4, 3)
    assert report.problem == "gap in seq: event 4 is missing (the chain jumps from 3 to 5)"


def test_a_deleted_first_event_is_reported_as_a_gap(database: Database) -> None:
    _append_many(database, 2)
    _bypass_triggers(database, "DELETE FROM audit_events WHERE seq = 1")
    with database.session() as session:
        report = verify_chain(session)
    assert (report.ok, report.first_broken_seq) == (False, 1)
    assert report.problem is not None and report.problem.startswith("gap in seq: event 1 is missing")


def test_appending_after_tampering_keeps_the_break_visible(database: Database) -> None:
    _append_many(database, 3)
    _bypass_triggers(database, "DELETE FROM audit_events WHERE seq = 3")
    _append_many(database, 1)  # takes seq 3 again, chained to event 2: the deletion is invisible
    with database.session() as session:
        report = verify_chain(session)
    # An undetectable tail cut: why ChainReport.head_hash should be anchored outside the database.
    assert report.ok and report.events_checked == 3


# ---------------------------------------------------------------- canonical JSON
def test_canonical_json_is_independent_of_key_order() -> None:
    a = {"b": 1, "a": {"y": [1, 2, {"k": None}], "x": True}, "é": "ü"}
    b = {"é": "ü", "a": {"x": True, "y": [1, 2, {"k": None}]}, "b": 1}
    assert canonical_json(a) == canonical_json(b) == '{"a":{"x":true,"y":[1,2,{"k":null}]},"b":1,"é":"ü"}'
    assert canonical_json((1, 2)) == canonical_json([1, 2]) == "[1,2]"


def test_canonical_json_writes_datetimes_as_utc_with_z() -> None:
    paris = timezone(timedelta(hours=1))
    assert canonical_json(datetime(2026, 3, 1, 13, 0, tzinfo=paris)) == '"2026-03-01T12:00:00.000000Z"'
    assert canonical_json(datetime(2026, 3, 1, 12, 0, 0, 5, tzinfo=UTC)) == '"2026-03-01T12:00:00.000005Z"'
    assert canonical_json({"d": date(2026, 3, 1)}) == '{"d":"2026-03-01"}'
    with pytest.raises(ValueError, match="naive datetime"):
        canonical_json({"at": datetime(2026, 3, 1, 12, 0)})


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"p": float("nan")}, ValueError),
        ({"p": [float("inf")]}, ValueError),
        ({1: "x"}, ValueError),
        ({"s": {1, 2}}, TypeError),
        ({"s": "\ud800"}, ValueError),
    ],
)
def test_canonical_json_refuses_what_has_no_single_form(value: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        canonical_json(value)


def test_the_triggers_carry_the_names_the_downgrade_drops(database: Database) -> None:
    """A guard for the migration: the triggers exist under the names its downgrade drops."""
    database.ensure_schema()
    with database.engine.connect() as conn:
        if database.dialect == "postgresql":
            names = conn.execute(
                text(
                    "SELECT tgname FROM pg_trigger WHERE tgrelid = 'audit_events'::regclass "
                    "AND NOT tgisinternal ORDER BY tgname"
                )
            ).scalars()
            assert list(names) == ["audit_events_append_only", "audit_events_no_truncate"]
        else:
            names = conn.execute(
                text("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'audit_events'")
            ).scalars()
            assert sorted(names) == ["audit_events_no_delete", "audit_events_no_update"]


def test_postgresql_refuses_truncate(database: Database) -> None:
    if database.dialect != "postgresql":
        pytest.skip("SQLite has no TRUNCATE; DELETE without WHERE is refused above")
    _append_many(database, 2)
    with pytest.raises(DBAPIError, match="audit_events is append-only"), database.engine.begin() as conn:
        conn.exec_driver_sql("TRUNCATE audit_events")


def test_the_timeline_shows_the_hashed_actor_not_an_edited_column(database: Database) -> None:
    with database.session() as session:
        append_event(session, kind="review.recorded", actor="alice", ticket_id=9, data={"action": "approve"})
    _bypass_triggers(database, "UPDATE audit_events SET actor = 'mallory' WHERE ticket_id = 9")
    with database.session() as session:
        [entry] = ticket_timeline(session, 9)
        assert (entry.kind, entry.actor) == ("review.recorded", "alice")
        assert not verify_chain(session).ok  # the edit itself is what verification reports
