"""insert_returning_ids and insert_skipping_conflicts on SQLite and PostgreSQL: ids in the rows'
order (None for a skipped row), and every value stored as the ORM stores it (JSON, time zones,
NULLs), whichever path the database takes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from hitl.models import TicketRecord
from hitl.store.bulk import insert_returning_ids, insert_skipping_conflicts
from hitl.store.db import Database
from hitl.store.orm import Decision, Ticket
from hitl.store.tickets import PreparedTicket, _columns

from .test_lifecycle_engine import ingest

NOW = datetime(2026, 11, 28, 18, 0, 0, 123456, tzinfo=UTC)


def _row(ticket_id: int, i: int) -> dict[str, object]:
    return {
        "ticket_id": ticket_id,
        "checkpoint": "triage",
        "head": "category",
        "ai_value": f"label-{i}",
        "confidence": i / 1000,
        "alternatives": [{"label": "a'b\"c", "probability": 0.25}],
        "model_version": "m1",
        "policy_version": 3,
        "threshold": 0.8,
        "route": "HUMAN" if i % 2 else "AUTO",
        "propensity": 1.0,
        "final_value": None if i % 2 else f"label-{i}",
        "status": "waiting" if i % 2 else "auto",
        "flow_run_id": None,
        "reason": "ünïcode %(not_a_param)s and %s stay text",
        "details": {"classes": ["x", "y"], "n": i},
        "deadline": NOW + timedelta(minutes=i) if i % 2 else None,
        "created_at": NOW,
        "decided_at": None if i % 2 else NOW,
    }


def test_ids_come_back_in_order_and_values_as_the_orm_reads_them(database: Database) -> None:
    [ticket_id] = ingest(database, [TicketRecord(external_id="B1", client="Acme", subject="s", body="b")])
    rows = [_row(ticket_id, i) for i in range(1_200)]
    with database.session() as session:
        ids = insert_returning_ids(session, Decision.__table__, rows)  # type: ignore[arg-type]
    assert len(ids) == 1_200 and ids == sorted(ids) and len(set(ids)) == 1_200
    with database.session() as session:
        stored = {d.id: d for d in session.execute(select(Decision).where(Decision.id.in_(ids))).scalars()}
    for decision_id, row in zip(ids, rows, strict=True):
        decision = stored[decision_id]
        for key, value in row.items():
            assert getattr(decision, key) == value, (key, getattr(decision, key), value)
    with database.session() as session:
        assert insert_returning_ids(session, Decision.__table__, []) == []  # type: ignore[arg-type]


def test_rows_that_leave_a_python_default_out_get_it(database: Database) -> None:
    [ticket_id] = ingest(database, [TicketRecord(external_id="B2", client="Acme", subject="s", body="b")])
    left_out = ("details", "alternatives")
    rows = [{k: v for k, v in _row(ticket_id, i).items() if k not in left_out} for i in range(3)]
    with database.session() as session:
        ids = insert_returning_ids(session, Decision.__table__, rows)  # type: ignore[arg-type]
    with database.session() as session:
        stored = session.execute(select(Decision).where(Decision.id.in_(ids)).order_by(Decision.id)).scalars()
        assert [(d.ai_value, d.details, d.alternatives) for d in stored] == [
            (f"label-{i}", {}, []) for i in range(3)
        ]


def test_rows_whose_key_is_stored_are_skipped_and_the_rest_get_their_ids_in_order(database: Database) -> None:
    [a1, a2] = ingest(
        database,
        [
            TicketRecord(external_id="A1", client="Acme", subject="stored one", body="b"),
            TicketRecord(external_id="A2", client="Acme", subject="stored two", body="b"),
        ],
    )
    with database.session() as session:
        client_id = session.execute(select(Ticket.client_id).where(Ticket.id == a1)).scalar_one()
    wanted = [("demo", "N1"), ("demo", "A1"), ("other", "A1"), ("demo", "A2"), ("demo", "N2")]
    rows = [
        _columns(
            PreparedTicket(
                TicketRecord(external_id=external_id, client="Acme", subject=f"new {i} 'q' %s", body="ü"),
                f"hash-{i}",
                client_id,
            ),
            source,
            None,
            NOW,
        )
        for i, (source, external_id) in enumerate(wanted)
    ]
    with database.session() as session:
        ids = insert_skipping_conflicts(session, Ticket.__table__, rows, ("source", "external_id"))  # type: ignore[arg-type]
    assert [i is None for i in ids] == [False, True, False, True, False]
    assert len({i for i in ids if i is not None} | {a1, a2}) == 5
    with database.session() as session:
        stored = {t.id: t for t in session.execute(select(Ticket)).scalars()}
    assert len(stored) == 5
    assert (stored[a1].subject, stored[a2].subject) == ("stored one", "stored two")
    for new_id, row in zip(ids, rows, strict=True):
        if new_id is None:
            continue
        for key, value in row.items():
            assert getattr(stored[new_id], key) == value, (key, getattr(stored[new_id], key), value)
    with database.session() as session:
        assert insert_skipping_conflicts(session, Ticket.__table__, [], ("source", "external_id")) == []  # type: ignore[arg-type]
