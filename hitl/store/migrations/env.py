"""Alembic environment: migrations run on a connection handed over by `Database.upgrade`.

Running them through the project (not the `alembic` command) is what takes the migration lock
and applies the project's SQLite settings.
"""

from alembic import context

from hitl.store.orm import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations with `hitl db upgrade`, which supplies the connection")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
