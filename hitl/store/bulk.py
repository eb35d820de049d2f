"""Multi-row INSERT ... RETURNING id, fast on PostgreSQL too.

SQLAlchemy sends such an insert as large multi-row statements ("insertmanyvalues"). psycopg caches
the parsing of a statement only when it is short (4,096 characters, 50 parameters), so it parses
each of those statements again, placeholder by placeholder: for 24,000 decision rows that took
5.1 s of Python, and 36 % of a 50,000-ticket PostgreSQL import (py-spy) went the same way. psycopg's own
`executemany(..., returning=True)` prepares the one-row statement once and sends the rows in
pipeline mode: 1.2 s for the same decision rows, 9.5 -> 5.7 s for the import (scratch scripts;
BENCHMARKS.md §1 has the end-to-end effect). The one-row statement is compiled by SQLAlchemy and
every value goes through the column type's own bind processing, so what is stored is exactly what
the ORM path stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session


def insert_returning_ids(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert `rows` (all with the same keys) and return their ids in the order of `rows`."""
    if not rows:
        return []
    connection = session.connection()
    ids = _psycopg_executemany(connection, table, rows, conflict_keys=())
    if ids is None:
        result = connection.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
        return list(result.scalars().all())
    if None in ids:
        raise RuntimeError(f"inserted {len(rows)} rows into {table.name} but not every row gave its id")
    return cast(list[int], ids)


def insert_skipping_conflicts(
    session: Session, table: Table, rows: Sequence[dict[str, Any]], keys: Sequence[str]
) -> list[int | None]:
    """Insert the `rows` whose `keys` (a unique constraint's columns) are not stored yet; returns
    the new ids in the order of `rows`, None for a row that was skipped. Another writer inserting
    the same key meanwhile is a skip, not an error."""
    if not rows:
        return []
    connection = session.connection()
    ids = _psycopg_executemany(connection, table, rows, conflict_keys=keys)
    if ids is not None:
        return ids
    dialect = connection.dialect.name
    if dialect not in ("postgresql", "sqlite"):  # portable path: one savepoint per row
        written: list[int | None] = []
        for row in rows:
            try:
                with session.begin_nested():
                    written.append(
                        session.execute(insert(table).values(row).returning(table.c.id)).scalar_one()
                    )
            except IntegrityError:
                written.append(None)
        return written
    base = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    stmt = base.on_conflict_do_nothing(index_elements=list(keys)).returning(
        table.c.id, *(table.c[key] for key in keys)
    )
    # Skipped rows return nothing, so the rows are matched to their ids by key, not by position.
    by_key = {tuple(found[1:]): found[0] for found in connection.execute(stmt, rows).all()}
    return [by_key.get(tuple(row[key] for key in keys)) for row in rows]


def _psycopg_executemany(
    connection: Connection, table: Table, rows: Sequence[dict[str, Any]], conflict_keys: Sequence[str]
) -> list[int | None] | None:
    """The ids (None where ON CONFLICT skipped the row) through psycopg's executemany, or None
    when this connection is not psycopg on PostgreSQL or the statement needs more than the rows
    give (a column default computed in Python): SQLAlchemy's own executemany knows what to do."""
    dialect = connection.dialect
    if dialect.name != "postgresql" or dialect.driver != "psycopg":
        return None
    keys = list(rows[0])
    one_row = postgresql.insert(table).values({key: bindparam(key) for key in keys})
    if conflict_keys:
        one_row = one_row.on_conflict_do_nothing(index_elements=list(conflict_keys))
    compiled = one_row.returning(table.c.id).compile(dialect=dialect)
    if set(compiled.params) != set(keys):
        return None
    processors = {key: compiled._bind_processors.get(key) for key in keys}
    parameters = [
        {key: (fn(row[key]) if (fn := processors[key]) is not None else row[key]) for key in keys}
        for row in rows
    ]
    ids: list[int | None] = []
    with connection.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.executemany(compiled.string, parameters, returning=True)
        while True:
            found = cursor.fetchone()
            ids.append(None if found is None else found[0])
            if not cursor.nextset():
                break
    if len(ids) != len(rows):
        raise RuntimeError(f"sent {len(rows)} rows to {table.name} but got {len(ids)} results back")
    return ids
