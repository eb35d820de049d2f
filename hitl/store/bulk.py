"""Multi-row INSERT ... RETURNING id, fast on PostgreSQL too.

SQLAlchemy sends such an insert as large multi-row statements ("insertmanyvalues"). psycopg caches
the parsing of a statement only when it is short (4,096 characters, 50 parameters), so it parses
each of those statements again, placeholder by placeholder: for 24,000 decision rows that took
5.1 s of Python. psycopg's own `executemany(..., returning=True)` prepares the one-row statement
once and sends the rows in pipeline mode: 1.2 s for the same rows (measured in a scratch script;
BENCHMARKS.md §1 has the end-to-end effect). The one-row statement is compiled by SQLAlchemy and
every value goes through the column type's own bind processing, so what is stored is exactly what
the ORM path stores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table, bindparam, insert
from sqlalchemy.orm import Session


def insert_returning_ids(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Insert `rows` (all with the same keys) and return their ids in the order of `rows`."""
    if not rows:
        return []
    connection = session.connection()
    dialect = connection.dialect
    keys = list(rows[0])
    compiled = None
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        one_row = insert(table).values({key: bindparam(key) for key in keys}).returning(table.c.id)
        compiled = one_row.compile(dialect=dialect)
    # Elsewhere, or when the statement needs more than the rows give (a column default computed in
    # Python), SQLAlchemy's own executemany is the one that knows what to do.
    if compiled is None or set(compiled.params) != set(keys):
        result = connection.execute(insert(table).returning(table.c.id, sort_by_parameter_order=True), rows)
        return list(result.scalars().all())
    processors = {key: compiled._bind_processors.get(key) for key in keys}
    parameters = [
        {key: (fn(row[key]) if (fn := processors[key]) is not None else row[key]) for key in keys}
        for row in rows
    ]
    ids: list[int] = []
    with connection.connection.driver_connection.cursor() as cursor:  # type: ignore[union-attr]
        cursor.executemany(compiled.string, parameters, returning=True)
        while True:
            ids.append(cursor.fetchone()[0])  # type: ignore[index]
            if not cursor.nextset():
                break
    if len(ids) != len(rows):
        raise RuntimeError(f"inserted {len(rows)} rows into {table.name} but got {len(ids)} ids back")
    return ids
