"""The application database as a resource: engine set-up, sessions, and migrate-on-first-use.

SQLite is the embedded default, so it gets what concurrent writers need: WAL, a busy timeout,
and `BEGIN IMMEDIATE` so that a read-then-write transaction never dies with SQLITE_BUSY when
another process (a second ingestion, a worker) writes at the same time.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hitl.errors import DatabaseError
from hitl.settings import Settings, get_settings

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 72_736_001  # pg_advisory_xact_lock key: one migrator at a time


# Query parameters that carry a secret: libpq and psycopg take `password` and `sslpassword` in the
# URL's query as well as in its userinfo, and other drivers name theirs similarly (`passwd`, `token`).
_SECRET_PARAMETER = re.compile(r"pass|pwd|secret|token|credential|api_?key", re.IGNORECASE)


def redacted(url: str) -> str:
    """The URL with its passwords hidden, for messages and logs: the userinfo password and every
    password-like query parameter (`?password=...` is as good a place for one as `user:pw@`)."""
    try:
        parsed = make_url(url)
        hidden = "REDACTED0SECRET"  # survives URL quoting, unlike "***", and is swapped back below
        query = {
            key: (hidden if _SECRET_PARAMETER.search(key) else value) for key, value in parsed.query.items()
        }
        return parsed.set(query=query).render_as_string(hide_password=True).replace(hidden, "***")
    except ArgumentError:
        return "<unparseable database URL>"


def _sqlite_engine(url: str, busy_timeout_s: float) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": busy_timeout_s})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def create_db_engine(url: str, busy_timeout_s: float = 60.0) -> Engine:
    try:
        if make_url(url).get_backend_name() == "sqlite":
            return _sqlite_engine(url, busy_timeout_s)
        return create_engine(url, pool_pre_ping=True)
    except (ArgumentError, NoSuchModuleError) as exc:
        raise DatabaseError(f"invalid database URL {redacted(url)}: {exc}") from exc
    except ImportError as exc:  # a dialect SQLAlchemy knows, whose driver is not installed
        raise DatabaseError(
            f"cannot use the database {redacted(url)}: its driver is not installed ({exc}); "
            "SQLite (sqlite:///PATH) and PostgreSQL (postgresql+psycopg://...) are supported"
        ) from exc


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


class Database:
    """Engine + session factory for one URL; built once per process and passed to the code that needs it."""

    def __init__(self, url: str, busy_timeout_s: float = 60.0) -> None:
        self.url = url
        self.engine = create_db_engine(url, busy_timeout_s)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._schema_ready = False
        self._lock = threading.Lock()

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends normally, rolled back otherwise."""
        self.ensure_schema()
        with self._sessions.begin() as session:
            yield session

    def current_revision(self) -> str | None:
        with self._connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()

    @staticmethod
    def head_revision() -> str | None:
        return ScriptDirectory.from_config(_alembic_config()).get_current_head()

    def upgrade(self) -> str | None:
        """Apply pending migrations under a lock, so two processes starting at once cannot race."""
        config = _alembic_config()
        with self._connect() as connection, connection.begin():
            if self.dialect == "postgresql":
                connection.execute(select(func.pg_advisory_xact_lock(_PG_MIGRATION_LOCK)))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        self._schema_ready = True
        return self.head_revision()

    def ensure_schema(self) -> None:
        """Migrate on first use in this process; a cheap revision check afterwards is skipped."""
        if self._schema_ready:
            return
        with self._lock:
            if not self._schema_ready:
                if self.current_revision() != self.head_revision():
                    self.upgrade()
                self._schema_ready = True

    def _connect(self) -> Any:
        try:
            return self.engine.connect()
        except OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise DatabaseError(f"cannot reach the database {redacted(self.url)}: {reason}") from exc

    def dispose(self) -> None:
        self.engine.dispose()


_databases: dict[str, Database] = {}
_registry_lock = threading.Lock()


def get_database(settings: Settings | None = None) -> Database:
    """The process-wide Database for the configured URL (flows and the CLI share it)."""
    settings = settings or get_settings()
    url = settings.effective_database_url
    with _registry_lock:
        if url not in _databases:
            _databases[url] = Database(url, settings.sqlite_busy_timeout_s)
        return _databases[url]
