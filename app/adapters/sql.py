"""The two databases the job store runs on, behind one small interface: SQLite (a file, the embedded default for
one replica) and PostgreSQL (``AUTOFIX_DATABASE_URL=postgresql://...``, for several replicas).

The store's SQL is written once with ``?`` placeholders and runs on both; what differs is named here and kept
small: how a write transaction begins (SQLite ``BEGIN IMMEDIATE`` takes the file's write lock up front, so a
second process waits on busy_timeout instead of failing half-way through a read-then-write; PostgreSQL
``BEGIN``), how a claim locks the rows it takes (PostgreSQL ``FOR UPDATE SKIP LOCKED``: two replicas never wait
for each other's claim, nor take the same row), the placeholder style, which errors mean "damaged" rather than
"busy", and the lock held around publishing (app/adapters/store.py ``publishing``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

BUSY_TIMEOUT_MS = 5000
PG_CONNECT_SECONDS = 5
PG_LOCK_TIMEOUT_MS = 5000  # a row lock held longer than this by another replica: StoreUnavailable, retried
PG_STATEMENT_TIMEOUT_MS = 30000
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


def is_postgres(location: Path | str) -> bool:
    return isinstance(location, str) and location.split(":", 1)[0] in POSTGRES_SCHEMES


def redact_url(url: str) -> str:
    """The URL to show or log: the password replaced by ``***`` (user, host, port and database stay)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "(an unparsable database URL)"
    if password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ..., /) -> Cursor: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Dialect:
    name: str  # "sqlite" or "postgresql"
    begin: str  # the statement that starts a write transaction
    claim: str  # appended to the SELECT that picks rows to lease
    errors: tuple[type[Exception], ...]  # the driver's errors: StoreUnavailable
    corrupt: Callable[[Exception], bool]  # a damaged database, not merely busy or unreachable


def _sqlite_corrupt(err: Exception) -> bool:
    return isinstance(err, sqlite3.DatabaseError) and not isinstance(err, sqlite3.OperationalError)


SQLITE = Dialect(name="sqlite", begin="BEGIN IMMEDIATE", claim="", errors=(sqlite3.Error,), corrupt=_sqlite_corrupt)


def postgres_dialect() -> Dialect:
    import psycopg

    def corrupt(err: Exception) -> bool:  # SQLSTATE XX001 data_corrupted, XX002 index_corrupted
        return isinstance(err, psycopg.Error) and (err.sqlstate or "").startswith("XX00")

    return Dialect(name="postgresql", begin="BEGIN", claim=" FOR UPDATE SKIP LOCKED", errors=(psycopg.Error,),
                   corrupt=corrupt)


def connect_sqlite(path: Path) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN ourselves, so no implicit transaction is left open.
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000)
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    # FULL: a commit is on disk before enqueue returns, so a 202 survives a power cut, not just a crash.
    conn.execute("PRAGMA synchronous = FULL")
    return conn


class Row:
    """A PostgreSQL row read like sqlite3.Row: by column name or by position."""

    __slots__ = ("_names", "_values")

    def __init__(self, values: Sequence[Any], names: dict[str, int]) -> None:
        self._values, self._names = values, names

    def __getitem__(self, key: str | int) -> Any:
        return self._values[self._names[key] if isinstance(key, str) else key]

    def keys(self) -> list[str]:
        return list(self._names)


class PgConnection:
    """A psycopg connection in autocommit mode (transactions are begun explicitly, as on SQLite) that takes the
    store's ``?`` placeholders and returns rows readable by name or position."""

    def __init__(self, url: str, *, timeouts: bool = True) -> None:
        import psycopg

        options = f"-c lock_timeout={PG_LOCK_TIMEOUT_MS} -c statement_timeout={PG_STATEMENT_TIMEOUT_MS}"
        self._conn = psycopg.connect(_libpq_url(url), autocommit=True, connect_timeout=PG_CONNECT_SECONDS,
                                     options=options if timeouts else "", application_name="gitops-autofix")

    def execute(self, sql: str, params: Sequence[Any] = (), /) -> Any:
        cursor = self._conn.cursor(row_factory=_row_factory)
        return cursor.execute(sql.replace("?", "%s"), tuple(params))

    @property
    def usable(self) -> bool:
        return not (self._conn.closed or self._conn.broken)

    def close(self) -> None:
        self._conn.close()


def _row_factory(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = {column.name: i for i, column in enumerate(cursor.description or ())}
    return lambda values: Row(values, names)


def _libpq_url(url: str) -> str:
    """libpq knows postgresql:// and postgres://; SQLAlchemy's driver suffix is dropped."""
    return "postgresql" + url[len("postgresql+psycopg"):] if url.startswith("postgresql+psycopg") else url


def alembic_url(location: Path | str) -> str:
    """The SQLAlchemy URL alembic connects with (psycopg 3 for PostgreSQL)."""
    if isinstance(location, Path):
        return f"sqlite:///{location}"
    scheme, rest = location.split(":", 1)
    return f"postgresql+psycopg:{rest}"
