"""Schema migrations of the job store (jobs, ledger, outbox) with alembic, for SQLite and PostgreSQL.

The revision scripts live in ``versions/``; ``upgrade`` runs them at start, programmatically (no alembic.ini), on a
connection of its own, under a lock so that replicas starting together do not race: an exclusive ``flock`` on a
file beside the SQLite database, ``pg_advisory_lock`` on PostgreSQL. Revision 1 is the schema the store had before
alembic (``schema_v1``): a SQLite file made by an earlier version (no ``alembic_version`` table) gets the tables
and columns that version may lack, is checked against revision 1 and stamped at it, then upgraded like any other.

``HEAD`` names the newest revision: the store compares it with ``alembic_version`` first and skips alembic
entirely when they match (a restart, a second command), so only a new or older database pays for it.
"""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.migrations.schema_v1 import SQLITE_SCHEMA, V1_COLUMNS

log = logging.getLogger(__name__)

HEAD = "0003"  # tests/edges/test_migrations.py checks it against the scripts' head
VERSIONS = Path(__file__).resolve().parent / "versions"
ADVISORY_KEY = 0x6175746F666978  # "autofix": pg_advisory_lock key of the migration (publishing uses another)


class SchemaMismatch(Exception):
    """A SQLite file without alembic_version whose tables are not the pre-alembic schema: not stamped."""


def upgrade(url: str, *, lock_file: Path | None = None) -> str | None:
    """Bring the database at ``url`` (a SQLAlchemy URL) to HEAD; returns the revision it had before (None: new)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(url, poolclass=NullPool)
    if engine.dialect.name == "sqlite":
        _transactional_ddl(engine)
    try:
        with file_lock(lock_file), engine.connect() as conn:
            postgres = conn.dialect.name == "postgresql"
            if postgres:  # session lock: held until unlocked, or the connection ends (a replica killed mid-way)
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_KEY})
                conn.commit()
            try:
                return _upgrade(conn)
            finally:
                if postgres and not conn.closed and not conn.invalidated:
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_KEY})
                    conn.commit()
    finally:
        engine.dispose()


def _transactional_ddl(engine: Any) -> None:
    """SQLAlchemy's recipe for SQLite: the driver begins no transaction (DDL would commit, and sync, statement by
    statement), SQLAlchemy's BEGIN does: the whole upgrade is one transaction, all or nothing, one sync."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _upgrade(conn: Any) -> str | None:
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    before = MigrationContext.configure(conn).get_current_revision()  # read again under the lock
    if before == HEAD:
        return before
    config = _config(conn)
    if before is None and _has_tables(conn):
        _adopt_sqlite(conn)
        command.stamp(config, "0001")
        conn.commit()
        log.info("job store stamped at the pre-alembic schema", extra={"revision": "0001"})
    command.upgrade(config, "head")
    conn.commit()
    # A new store is no news; an upgrade is (said after the start succeeded would be better, but it is rare).
    (log.debug if before is None else log.info)("job store migrated",
                                                extra={"from_revision": before, "to_revision": HEAD})
    return before


def _config(conn: Any) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).resolve().parent))
    config.attributes["connection"] = conn
    return config


def _has_tables(conn: Any) -> bool:
    from sqlalchemy import inspect

    return bool({"jobs", "ledger", "outbox"} & set(inspect(conn).get_table_names()))


def _adopt_sqlite(conn: Any) -> None:
    """A store an earlier version made: create what it lacks (it created tables as it went, and added the ledger's
    ``life`` column later), then check every table has revision 1's columns before stamping it."""
    if conn.dialect.name != "sqlite":
        raise SchemaMismatch("tables without alembic_version on PostgreSQL: not a database this service made")
    raw = conn.connection.driver_connection
    for table, expected in V1_COLUMNS.items():
        have = {row[1] for row in raw.execute(f"PRAGMA table_info({table})")}
        missing = sorted(set(expected) - have - {"life"})  # life: added below, as the version after did
        if have and missing:
            raise SchemaMismatch(f"table {table} lacks {', '.join(missing)}")
    raw.executescript(SQLITE_SCHEMA)  # the tables and indexes it lacks
    columns = {row[1] for row in raw.execute("PRAGMA table_info(ledger)")}
    if "life" not in columns:
        raw.execute("ALTER TABLE ledger ADD COLUMN life TEXT NOT NULL DEFAULT '{}'")


@contextmanager
def file_lock(path: Path | None) -> Iterator[None]:
    """An exclusive flock on ``path`` (created empty), released on exit or when the process dies."""
    if path is None:
        yield
        return
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
