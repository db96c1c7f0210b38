"""Durable job store on SQLite or PostgreSQL: one job per alert delivery, leased by workers.

Alertmanager re-sends the same notification many times (retries, group_interval, repeat_interval), so every
alert gets a dedupe key ``fingerprint|startsAt|status``: a repeated delivery maps to the job already stored.

A job moves queued -> running (leased) -> done | failed, or back to queued by ``retry``. A lease has an
expiry in wall-clock seconds (shared by every process on the machine): a job whose worker died, in this
process or in one that was SIGKILLed, is leased again once its lease expires. Every change to a running job
checks that the lease is still held by the caller, so a job completes exactly once even if two workers race.

All access goes through one connection guarded by a lock. On SQLite (a file, one replica) writes use ``BEGIN
IMMEDIATE`` so that a second process waits on ``busy_timeout`` instead of failing half-way through a
read-then-write. On PostgreSQL (``AUTOFIX_DATABASE_URL``, several replicas) a claim selects its rows ``FOR UPDATE
SKIP LOCKED``: two replicas never take the same job or record, nor wait for each other's claim. What differs per
database is in app/adapters/sql.py; the schema and its migrations in app/migrations/ (alembic, run at open).

``publishing`` is the lock held around the PR budget check, the push, the PR and its ledger row, across threads
and processes (a lock file beside SQLite's) or replicas (a PostgreSQL advisory lock).
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from app import migrations, redact
from app.adapters import sql
from app.errors import StartupError, TemporaryError
from app.models.alertmanager import Alert, AlertKey, WebhookPayload
from app.models.incident import Incident
from app.models.runs import PendingRun
from app.ports import Remediation

log = logging.getLogger(__name__)

JobState = Literal["queued", "running", "done", "failed"]
STATES: tuple[JobState, ...] = ("queued", "running", "done", "failed")
DEFAULT_MAX_ATTEMPTS = 8
BUSY_TIMEOUT_MS = sql.BUSY_TIMEOUT_MS
READ_TIMEOUT = 0.05  # seconds: the lock-free duplicate check (JobStore.known) never stalls a caller longer
PROBE_KEY = "readiness-probe"  # the dedupe key of the row readiness inserts and rolls back
PUBLISH_LOCK_KEY = migrations.ADVISORY_KEY + 1  # pg_advisory_lock key of publishing (not the migrations' key)
# pg_advisory_xact_lock key of intake: two replicas inserting the same new alerts in different orders would each
# wait on the other's row (a deadlock PostgreSQL breaks by failing one webhook); one intake transaction at a
# time across replicas, as SQLite's BEGIN IMMEDIATE already gives, and alerts stay queued in payload order.
INTAKE_LOCK_KEY = migrations.ADVISORY_KEY + 2
_COLUMNS = (
    "id, dedupe_key, fingerprint, alertname, alert_status, alert, state, attempts, lease_owner, "
    "lease_expires_at, available_at, result, error, created_at, updated_at"
)


def _one_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


class StoreUnavailable(TemporaryError):
    """The database cannot be used right now (locked, disk full, I/O error): the caller should retry."""

    code = "store_unavailable"


ExportState = Literal["pending", "linking", "done", "failed"]


@dataclass(frozen=True)
class Export:
    """One outbox row: a run record and how far its export got.

    pending -> (exported to MLflow) -> linking (the PR body still names the record, not the link) -> done;
    failed when MLflow refused the record itself (kept for `autofix explain`, never retried)."""

    run: PendingRun
    job_id: int | None
    state: ExportState
    attempts: int
    run_id: str | None
    run_url: str | None
    error: str | None
    created_at: float


@dataclass(frozen=True)
class EnqueueResult:
    job_id: int
    duplicate: bool


@dataclass(frozen=True)
class Job:
    id: int
    dedupe_key: str
    fingerprint: str
    alertname: str
    alert_status: str
    alert: dict[str, Any]  # {"alert": <the alert object, redacted>}
    state: JobState
    attempts: int
    lease_owner: str | None
    lease_expires_at: float | None
    available_at: float
    result: dict[str, Any] | None
    error: str | None
    created_at: float
    updated_at: float

    def incident(self) -> Incident:
        return Incident.from_alert(Alert.model_validate(self.alert["alert"]))


def dedupe_key(alert: AlertKey) -> str:
    """Same alert, same episode, same status: the same notification content, whatever delivery it came in."""
    return f"{alert.fingerprint}|{alert.startsAt.isoformat()}|{alert.status}"


def _alert_document(alert: Alert) -> str:
    """What replay needs and nothing more: the alert as the pipeline reads it (labels and annotations arrive
    redacted, see app/models/alertmanager.py), with its generatorURL (the PR links the graph). Not the receiver,
    group key or common labels."""
    return json.dumps({"alert": alert.model_dump(mode="json")}, sort_keys=True)


def _row_to_job(row: Any) -> Job:
    return Job(
        id=row["id"],
        dedupe_key=row["dedupe_key"],
        fingerprint=row["fingerprint"],
        alertname=row["alertname"],
        alert_status=row["alert_status"],
        alert=json.loads(row["alert"]),
        state=row["state"],
        attempts=row["attempts"],
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        available_at=row["available_at"],
        result=json.loads(row["result"]) if row["result"] is not None else None,
        error=row["error"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _row_to_export(row: Any) -> Export:
    return Export(run=PendingRun.from_json(row["run"]), job_id=row["job_id"], state=row["state"],
                  attempts=int(row["attempts"]), run_id=row["run_id"], run_url=row["run_url"], error=row["error"],
                  created_at=float(row["created_at"]))


# What happened to a fix after its PR (Remediation's last fields), one JSON column: added to stores made before.
_LIFE_FIELDS = ("record_id", "risk", "merged_by", "synced_at", "rolled_out_at", "fired_again_at", "final", "final_at",
                "cooldown_lifted_at")


_LEDGER_COLUMNS = ("repo, pr_number, workload, cause, branch, pr_url, state, before, after, fingerprint, images,"
                   " opened_at, merged_at, closed_at, resolved_at, escalated_at, life, updated_at, cluster")
_LEDGER_UPDATE = ", ".join(f"{c} = excluded.{c}" for c in _LEDGER_COLUMNS.replace(" ", "").split(",")[2:])


def _row_to_remediation(row: Any) -> Remediation:
    life = json.loads(row["life"] or "{}")
    return Remediation(
        repo=row["repo"], workload=row["workload"], cause=row["cause"], branch=row["branch"], pr_number=int(row["pr_number"]),
        pr_url=row["pr_url"], state=row["state"], before=json.loads(row["before"]), after=json.loads(row["after"]),
        fingerprint=row["fingerprint"], images=tuple(json.loads(row["images"])), opened_at=row["opened_at"],
        merged_at=row["merged_at"], closed_at=row["closed_at"], resolved_at=row["resolved_at"],
        escalated_at=row["escalated_at"], cluster=row["cluster"], **{k: life[k] for k in _LIFE_FIELDS if k in life},
    )


class JobStore:
    """Jobs in one SQLite file or one PostgreSQL database. Thread-safe; several processes (SQLite) or replicas
    (PostgreSQL) may share it.

    ``location``: the SQLite file's path, or a ``postgresql://`` URL (its password is never shown)."""

    def __init__(
        self,
        location: Path | str,
        *,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.max_attempts = max_attempts
        self._clock = clock
        self._lock = threading.RLock()
        self._reader_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._read_conn: Any = None
        self._publish_conn: sql.PgConnection | None = None
        self._corrupt: str | None = None  # the first sign of a damaged file, reported by readiness
        self._url: str | None = location if isinstance(location, str) and sql.is_postgres(location) else None
        self.path = Path(location) if self._url is None else None  # SQLite's file
        self.where = sql.redact_url(str(location)) if self._url is not None else str(location)
        self._dialect = sql.postgres_dialect() if self._url is not None else sql.SQLITE
        self._conn: sql.Connection = self._open()

    def _open(self) -> sql.Connection:
        if self._url is not None:
            try:
                conn = sql.PgConnection(self._url)
            except self._dialect.errors as err:  # at start: the one line on stderr, the URL without its password
                raise StartupError(f"cannot open job store {self.where}: {_one_line(err)}") from err
            self._conn = conn
            self._migrate()
            return conn
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        problem: str | None
        try:
            self._conn = sql.connect_sqlite(self.path)
            problem = self._integrity()
        except sqlite3.DatabaseError as err:
            if isinstance(err, sqlite3.OperationalError):
                raise StoreUnavailable(f"cannot open job store {self.path}: {err}") from err
            problem = str(err)
        if problem is not None:
            raise StartupError(self._corruption_message(problem))
        self._migrate()
        return self._conn

    def _migrate(self) -> None:
        """Bring the schema to the newest revision (app/migrations), unless it is there already: one read."""
        try:
            row = self._conn.execute("SELECT version_num FROM alembic_version").fetchone()
            current = row[0] if row is not None else None
        except self._dialect.errors:
            current = None  # no alembic_version yet (a new database, or one an earlier version made)
        if current == migrations.HEAD:
            return
        lock = self.path.with_name(self.path.name + ".lock") if self.path is not None else None
        try:
            migrations.upgrade(sql.alembic_url(self._url or self.path or ""), lock_file=lock)
        except migrations.SchemaMismatch as err:
            raise StartupError(f"job store {self.where} is not one this service made ({err}): point "
                               "AUTOFIX_DATABASE_URL or AUTOFIX_DATA_DIR elsewhere") from err
        except Exception as err:  # the driver's error, through SQLAlchemy: unreachable, refused, read-only
            if isinstance(err, StartupError):
                raise
            raise StoreUnavailable(f"cannot migrate job store {self.where}: {_one_line(err)}") from err

    def _integrity(self) -> str | None:
        """None when SQLite's quick_check finds the file sound, else its first complaint (bounded by retention,
        the file stays small enough for this to take milliseconds)."""
        row = self._conn.execute("PRAGMA quick_check(1)").fetchone()
        return None if row is None or row[0] == "ok" else str(row[0])

    def _corruption_message(self, problem: str) -> str:
        if self._url is not None:
            return (f"job store {self.where} reports damaged data ({problem.splitlines()[0][:200]}): the database "
                    "needs its administrator (the store is corrupt)")
        return (f"job store {self.path} is corrupt ({problem.splitlines()[0][:200]}): stop the service, move the "
                "file aside and start again (Alertmanager re-sends the alerts that still fire)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
        with self._reader_lock:
            if self._read_conn is not None:
                self._read_conn.close()
                self._read_conn = None
        with self._publish_lock:
            if self._publish_conn is not None:
                self._publish_conn.close()
                self._publish_conn = None

    def _connection(self) -> sql.Connection:
        """The connection, opened again when PostgreSQL dropped it (a restart, a failover): under self._lock."""
        if self._url is not None and isinstance(self._conn, sql.PgConnection) and not self._conn.usable:
            try:
                self._conn = sql.PgConnection(self._url)
            except self._dialect.errors as err:
                raise self._unavailable(err) from err
        return self._conn

    @contextmanager
    def _tx(self) -> Iterator[sql.Connection]:
        """One write transaction; the driver's errors become StoreUnavailable."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute(self._dialect.begin)
            except self._dialect.errors as err:
                raise self._unavailable(err) from err
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException as err:
                self._rollback()
                if isinstance(err, self._dialect.errors):
                    raise self._unavailable(err) from err
                raise

    def _unavailable(self, err: Exception) -> StoreUnavailable:
        """Our error for a driver's one; a damaged database (not merely busy or locked) is remembered for
        readiness."""
        if self._dialect.corrupt(err):
            if self._corrupt is None:
                log.error("job store is corrupt", extra={"path": self.where, "error": str(err)})
            self._corrupt = str(err)
        return StoreUnavailable(f"job store unavailable: {_one_line(err)}")

    def _rollback(self) -> None:
        try:
            self._conn.execute("ROLLBACK")
        except self._dialect.errors:
            log.warning("job store rollback failed", exc_info=True)

    def _read(self, query: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return list(self._connection().execute(query, params).fetchall())
            except self._dialect.errors as err:
                raise self._unavailable(err) from err

    # --- intake -------------------------------------------------------------------------------------

    def enqueue(self, payload: WebhookPayload) -> list[EnqueueResult]:
        """Store one job per alert in one transaction; a known dedupe key returns the existing job."""
        known = self.known(payload.alerts)
        if known is not None:
            return known
        now = self._clock()
        results: list[EnqueueResult] = []
        with self._tx() as conn:
            if self._dialect.name == "postgresql":
                conn.execute("SELECT pg_advisory_xact_lock(?)", (INTAKE_LOCK_KEY,))
            for alert in payload.alerts:
                key = dedupe_key(alert)
                cur = conn.execute(
                    "INSERT INTO jobs (dedupe_key, fingerprint, alertname, alert_status, alert, available_at,"
                    " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (dedupe_key) DO NOTHING RETURNING id",
                    (key, alert.fingerprint, alert.alertname, alert.status, _alert_document(alert),
                     now, now, now),
                )
                inserted = cur.fetchone()
                if inserted is not None:
                    results.append(EnqueueResult(job_id=int(inserted[0]), duplicate=False))
                else:
                    row = conn.execute("SELECT id FROM jobs WHERE dedupe_key = ?", (key,)).fetchone()
                    results.append(EnqueueResult(job_id=int(row["id"]), duplicate=True))
        return results

    def known(self, alerts: Sequence[AlertKey]) -> list[EnqueueResult] | None:
        """Every alert already stored (a repeated delivery, most of an alert storm): their jobs, found without
        the write lock; None when any is new. Rows seen here were committed (and synced) before, so answering
        202 stays durable. Short enough to call from the event loop: WAL readers do not wait for the writer,
        and a busy database gives up after READ_TIMEOUT (the caller then takes the write path); on PostgreSQL
        readers never wait for writers and the statement is cut at READ_TIMEOUT."""
        keys = [dedupe_key(alert) for alert in alerts]
        if not keys:
            return None
        marks = ",".join("?" * len(set(keys)))
        try:
            with self._reader_lock:
                rows = self._reader().execute(f"SELECT dedupe_key, id FROM jobs WHERE dedupe_key IN ({marks})",
                                              tuple(set(keys))).fetchall()
        except self._dialect.errors:
            self._drop_reader()
            return None  # the write path reports the store's trouble properly
        ids = {row[0]: int(row[1]) for row in rows}
        if len(ids) < len(set(keys)):
            return None
        return [EnqueueResult(job_id=ids[key], duplicate=True) for key in keys]

    def _reader(self) -> Any:
        """A second connection for lock-free reads: in WAL mode readers never wait for the writer."""
        if self._read_conn is None:
            if self._url is not None:
                self._read_conn = sql.PgConnection(self._url)
                self._read_conn.execute(f"SET statement_timeout = {int(READ_TIMEOUT * 1000)}")
            else:
                self._read_conn = sqlite3.connect(self.path or "", check_same_thread=False, timeout=READ_TIMEOUT)
                self._read_conn.execute("PRAGMA query_only = ON")
        return self._read_conn

    def _drop_reader(self) -> None:
        """A PostgreSQL reader that failed may be broken: the next call opens another."""
        if self._url is not None and self._read_conn is not None and not self._read_conn.usable:
            self._read_conn.close()
            self._read_conn = None

    # --- leases -------------------------------------------------------------------------------------

    def lease(self, worker: str, *, ttl: float) -> Job | None:
        """Take the oldest due queued job, or a running job whose lease expired; None when there is none."""
        with self._tx() as conn:
            while True:
                now = self._clock()
                row = conn.execute(
                    f"SELECT {_COLUMNS} FROM jobs"
                    " WHERE (state = 'queued' AND available_at <= ?)"
                    "    OR (state = 'running' AND lease_expires_at <= ?)"
                    " ORDER BY available_at, id LIMIT 1" + self._dialect.claim,
                    (now, now),
                ).fetchone()
                if row is None:
                    return None
                if row["state"] == "running" and row["attempts"] >= self.max_attempts:
                    # A job that kills its worker every time must not take the service down forever.
                    self._abandon(conn, row, now)
                    continue
                conn.execute(
                    "UPDATE jobs SET state = 'running', lease_owner = ?, lease_expires_at = ?,"
                    " attempts = attempts + 1, updated_at = ? WHERE id = ?",
                    (worker, now + ttl, now, row["id"]),
                )
                if row["state"] == "running":
                    log.warning("job lease expired, taking it over",
                                extra={"job_id": row["id"], "previous_owner": row["lease_owner"], "worker": worker})
                fresh = conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (row["id"],)).fetchone()
                return _row_to_job(fresh)

    def _abandon(self, conn: sql.Connection, row: Any, now: float) -> None:
        error = f"lease expired after {row['attempts']} attempts (worker lost each time)"
        conn.execute(
            "UPDATE jobs SET state = 'failed', error = ?, lease_owner = NULL, lease_expires_at = NULL,"
            " updated_at = ? WHERE id = ?",
            (error, now, row["id"]),
        )
        log.error("job failed: lease expired too often", extra={"job_id": row["id"], "attempts": row["attempts"]})

    def heartbeat(self, job_id: int, worker: str, ttl: float) -> bool:
        """Extend our lease; False when the lease is no longer ours (taken over, or the job finished)."""
        now = self._clock()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET lease_expires_at = ?, updated_at = ?"
                " WHERE id = ? AND state = 'running' AND lease_owner = ?",
                (now + ttl, now, job_id, worker),
            )
            return cur.rowcount == 1

    # --- endings ------------------------------------------------------------------------------------

    def complete(self, job_id: int, worker: str, result: dict[str, Any], *, run: PendingRun | None = None) -> bool:
        """Mark done with its result, only while we hold the lease: at most one caller ever gets True. The run
        record goes into the outbox in the same transaction: a result is never stored without its record."""
        return self._finish(job_id, worker, state="done", result=result, error=None, run=run)

    def fail(self, job_id: int, worker: str, *, error: str, result: dict[str, Any] | None = None,
             run: PendingRun | None = None) -> bool:
        return self._finish(job_id, worker, state="failed", result=result, error=error, run=run)

    def _finish(
        self, job_id: int, worker: str, *, state: JobState, result: dict[str, Any] | None, error: str | None,
        run: PendingRun | None = None,
    ) -> bool:
        now = self._clock()
        result_text = json.dumps(result, sort_keys=True) if result is not None else None
        error = redact.capped(error) if error is not None else None  # exception text can quote evidence
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = ?, result = ?, error = ?, lease_owner = NULL, lease_expires_at = NULL,"
                " updated_at = ? WHERE id = ? AND state = 'running' AND lease_owner = ?",
                (state, result_text, error, now, job_id, worker),
            )
            if cur.rowcount == 1 and run is not None:
                self._add_run(conn, run, job_id=job_id, now=now)
            return cur.rowcount == 1

    def retry(self, job_id: int, worker: str, *, delay: float, error: str, run: PendingRun | None = None) -> bool:
        """Queue the job again after ``delay`` seconds, or fail it once it has used ``max_attempts``."""
        now = self._clock()
        error = redact.capped(error)
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET"
                " state = CASE WHEN attempts >= ? THEN 'failed' ELSE 'queued' END,"
                " error = ?, available_at = ?, lease_owner = NULL, lease_expires_at = NULL, updated_at = ?"
                " WHERE id = ? AND state = 'running' AND lease_owner = ?",
                (self.max_attempts, error, now + max(delay, 0.0), now, job_id, worker),
            )
            if cur.rowcount == 1 and run is not None:
                self._add_run(conn, run, job_id=job_id, now=now)
            return cur.rowcount == 1

    # --- queries ------------------------------------------------------------------------------------

    def get(self, job_id: int) -> Job | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs WHERE id = ?", (job_id,))
        return _row_to_job(rows[0]) if rows else None

    def find(self, fingerprint: str) -> list[Job]:
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs WHERE fingerprint = ? ORDER BY id", (fingerprint,))
        return [_row_to_job(r) for r in rows]

    def finished(self, *, since: float, limit: int = 100) -> list[Job]:
        """Jobs done or failed at or after ``since`` (Unix seconds), the last finished first, at most ``limit``:
        the recent decisions the dashboard issue lists."""
        rows = self._read(f"SELECT {_COLUMNS} FROM jobs WHERE state IN ('done', 'failed') AND updated_at >= ?"
                          " ORDER BY updated_at DESC, id DESC LIMIT ?", (since, limit))
        return [_row_to_job(r) for r in rows]

    def requeue(self, job_id: int) -> bool:
        """Queue a finished job (done or failed) again, due now, with its attempts reset: a human asked for a
        retry (the dashboard issue). False when the job is unknown, queued or running already."""
        now = self._clock()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET state = 'queued', attempts = 0, result = NULL, error = NULL, available_at = ?,"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = ? WHERE id = ? AND state IN ('done', 'failed')",
                (now, now, job_id))
            return cur.rowcount == 1

    def counts(self) -> dict[str, int]:
        """Number of jobs in each state (every state present, zero included)."""
        counts: dict[str, int] = dict.fromkeys(STATES, 0)
        for row in self._read("SELECT state, COUNT(*) AS n FROM jobs GROUP BY state"):
            counts[row["state"]] = int(row["n"])
        return counts

    def ages(self) -> dict[str, float]:
        """Seconds the oldest job ready to run has waited for a worker since it became ready (``queued``; a job
        in its retry backoff is not ready yet), and since the oldest job not decided yet (queued or running)
        arrived (``undecided``); 0 when there is none."""
        now = self._clock()
        [row] = self._read(
            "SELECT MIN(CASE WHEN state = 'queued' AND available_at <= ? THEN available_at END) AS ready,"
            " MIN(created_at) AS undecided FROM jobs WHERE state IN ('queued', 'running')", (now,))
        return {name: max(0.0, now - float(row[column])) if row[column] is not None else 0.0
                for name, column in (("queued", "ready"), ("undecided", "undecided"))}

    # --- ledger: every remediation proposed (see app/ledger.py) -------------------------------------

    def record(self, entry: Remediation) -> None:
        """Insert or replace the ledger row of ``entry.pr_number`` in ``entry.repo``."""
        with self._tx() as conn:
            conn.execute(
                f"INSERT INTO ledger ({_LEDGER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                f" ON CONFLICT (repo, pr_number) DO UPDATE SET {_LEDGER_UPDATE}",
                (entry.repo, entry.pr_number, entry.workload, entry.cause, entry.branch, entry.pr_url, entry.state,
                 json.dumps(entry.before, sort_keys=True, default=str),
                 json.dumps(entry.after, sort_keys=True, default=str), entry.fingerprint,
                 json.dumps(list(entry.images)), entry.opened_at, entry.merged_at, entry.closed_at,
                 entry.resolved_at, entry.escalated_at,
                 json.dumps({k: getattr(entry, k) for k in _LIFE_FIELDS}, sort_keys=True), self._clock(),
                 entry.cluster),
            )

    def entries(self, *, branch: str | None = None, repo: str | None = None) -> list[Remediation]:
        """Ledger rows, oldest first, optionally only those of one branch (= one workload and cause) and of one
        repository ('' = the one AUTOFIX_GIT_URL names; None: every repository)."""
        where = [(column, value) for column, value in (("branch", branch), ("repo", repo)) if value is not None]
        condition = " AND ".join(f"{column} = ?" for column, _ in where) or "1 = 1"
        rows = self._read(f"SELECT * FROM ledger WHERE {condition} ORDER BY opened_at, repo, pr_number",
                          tuple(value for _, value in where))
        return [_row_to_remediation(r) for r in rows]

    def opened_since(self, since: float) -> int:
        rows = self._read("SELECT COUNT(*) AS n FROM ledger WHERE opened_at >= ?", (since,))
        return int(rows[0]["n"])

    def is_empty(self) -> bool:
        return not self._read("SELECT 1 FROM ledger LIMIT 1")

    def purge(self, *, older_than: float) -> int:
        """Delete finished jobs (done or failed) and exported records last changed more than ``older_than``
        seconds ago; returns how many jobs. The ledger is kept: it is what stops the bot from repeating a fix.
        A record not exported yet is kept whatever its age: it is the only copy of the audit trail."""
        cutoff = self._clock() - older_than
        with self._tx() as conn:
            cur = conn.execute("DELETE FROM jobs WHERE state IN ('done', 'failed') AND updated_at < ?", (cutoff,))
            conn.execute("DELETE FROM outbox WHERE state = 'done' AND updated_at < ?", (cutoff,))
            return int(cur.rowcount)

    # --- outbox: run records on their way to MLflow (see app/exporter.py) ---------------------------

    def add_run(self, run: PendingRun) -> None:
        """A record handled outside a job (`autofix handle`): into the outbox on its own."""
        with self._tx() as conn:
            self._add_run(conn, run, job_id=None, now=self._clock())

    @staticmethod
    def _add_run(conn: sql.Connection, run: PendingRun, *, job_id: int | None, now: float) -> None:
        # The key is made fresh for each handling: a conflict is the same record written twice (ignored).
        conn.execute(
            "INSERT INTO outbox (key, job_id, run, available_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO NOTHING",
            (run.key, job_id, run.to_json(), now, now, now),
        )

    def lease_exports(self, owner: str, *, ttl: float, limit: int = 10, due_only: bool = True) -> list[Export]:
        """Records due for export (or for their PR link), oldest first, leased to ``owner`` for ``ttl`` seconds:
        two exporters (the service and an `autofix handle`) never send the same record at once. ``due_only``
        False: also those still in their backoff (a new process tries everything once)."""
        now = self._clock()
        due = now if due_only else float("inf")
        with self._tx() as conn:
            rows = conn.execute(
                "SELECT key FROM outbox WHERE state IN ('pending', 'linking') AND available_at <= ?"
                " AND (lease_expires_at IS NULL OR lease_expires_at <= ?) ORDER BY created_at, key LIMIT ?"
                + self._dialect.claim,
                (due, now, limit)).fetchall()
            keys = [r["key"] for r in rows]
            for key in keys:
                conn.execute("UPDATE outbox SET lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1,"
                             " updated_at = ? WHERE key = ?", (owner, now + ttl, now, key))
            found = [conn.execute("SELECT * FROM outbox WHERE key = ?", (key,)).fetchone() for key in keys]
        return [_row_to_export(r) for r in found]

    def exported(self, key: str, owner: str, *, run_id: str, run_url: str, linked: bool) -> bool:
        """The record is in MLflow; ``linked``: nothing left to do (no PR to link, or linked already)."""
        now = self._clock()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE outbox SET state = ?, run_id = ?, run_url = ?, exported_at = COALESCE(exported_at, ?),"
                " error = NULL, lease_owner = NULL, lease_expires_at = NULL, available_at = ?, updated_at = ?"
                " WHERE key = ? AND lease_owner = ?",
                ("done" if linked else "linking", run_id, run_url, now, now, now, key, owner))
            return cur.rowcount == 1

    def export_failed(self, key: str, owner: str, *, error: str, delay: float, permanent: bool = False) -> bool:
        """Try again after ``delay`` seconds; ``permanent``: MLflow refused the record itself, stop trying."""
        now = self._clock()
        with self._tx() as conn:
            cur = conn.execute(
                "UPDATE outbox SET state = CASE WHEN ? THEN 'failed' ELSE state END, error = ?, available_at = ?,"
                " lease_owner = NULL, lease_expires_at = NULL, updated_at = ? WHERE key = ? AND lease_owner = ?",
                (permanent, redact.capped(error), now + max(delay, 0.0), now, key, owner))
            return cur.rowcount == 1

    def export_of(self, key: str) -> Export | None:
        rows = self._read("SELECT * FROM outbox WHERE key = ?", (key,))
        return _row_to_export(rows[0]) if rows else None

    def backlog(self) -> dict[str, float]:
        """What waits in the outbox: records not in MLflow yet (``pending``), exported but not linked in their PR
        (``linking``), refused (``failed``), and the age in seconds of the oldest one not exported."""
        counts: dict[str, float] = {"pending": 0, "linking": 0, "failed": 0, "oldest_seconds": 0.0}
        for row in self._read("SELECT state, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox"
                              " WHERE state != 'done' GROUP BY state"):
            counts[row["state"]] = int(row["n"])
            if row["state"] == "pending":
                counts["oldest_seconds"] = max(0.0, self._clock() - float(row["oldest"]))
        return counts

    def readiness(self) -> str | None:
        """None when the store can be read and written, else one line saying why not.

        A write transaction that inserts a probe job (through the same table and indexes as an alert) and reads
        the table back, then rolls back: `SELECT 1` answers on a file whose job pages are damaged."""
        if self._corrupt is not None:
            return self._corruption_message(self._corrupt)
        try:
            with self._lock:
                conn = self._connection()
                conn.execute(self._dialect.begin)
                try:
                    now = self._clock()
                    conn.execute(
                        "INSERT INTO jobs (dedupe_key, fingerprint, alertname, alert_status, alert, available_at,"
                        " created_at, updated_at) VALUES (?, '', '', 'firing', '{}', ?, ?, ?)",
                        (PROBE_KEY, now, now, now))
                    conn.execute("SELECT COUNT(*), MAX(updated_at) FROM jobs").fetchone()
                finally:
                    self._rollback()
        except StoreUnavailable as err:  # PostgreSQL unreachable
            return err.message
        except self._dialect.errors as err:
            self._unavailable(err)
            return (self._corruption_message(self._corrupt) if self._corrupt
                    else f"job store unavailable: {_one_line(err)}")
        return None

    # --- publishing: one PR decision at a time, across workers, processes and replicas ----------------------

    @contextmanager
    def publishing(self, *, spacing: float | Callable[[], float] = 0.0) -> Iterator[None]:
        """Held around the PR budget check, the forge's look for an open PR, the push, the PR and its ledger row
        (app/stages/publish.py), so that neither the budget nor one-PR-per-branch can be overshot by two workers.

        Threads of this process wait on a lock; other processes on SQLite on an exclusive ``flock`` of
        ``<store>.publish.lock`` beside the file; other replicas on PostgreSQL on ``pg_advisory_lock`` taken on a
        connection of its own (no statement timeout: the holder may be pushing). The advisory lock is released
        in ``finally``, and by the server when the connection drops (a replica SIGKILLed while publishing).

        ``spacing``: when another replica waits for the lock at release, it is released ``spacing`` seconds late,
        so that replica's first forge write comes at least that long after this one's last (GitHub asks one App to
        space its writes; each process spaces only its own). Nobody waiting: released at once."""
        with self._publish_lock:
            if self._url is None:
                with migrations.file_lock(self.path.with_name(self.path.name + ".publish.lock") if self.path else None):
                    yield
                return
            conn = self._advisory_lock()
            try:
                yield
            finally:
                try:
                    wait = spacing() if callable(spacing) else spacing
                    if wait > 0 and self._publish_waiters(conn):
                        time.sleep(wait)
                    conn.execute("SELECT pg_advisory_unlock(?)", (PUBLISH_LOCK_KEY,))
                except self._dialect.errors:  # the connection is gone, and the lock with it
                    log.warning("publishing lock: connection lost while held", exc_info=True)
                    self._drop_publish_conn()

    def _advisory_lock(self) -> sql.PgConnection:
        """Our publishing connection, holding the advisory lock (opened again when the server dropped it)."""
        assert self._url is not None
        try:
            if self._publish_conn is None or not self._publish_conn.usable:
                self._drop_publish_conn()
                self._publish_conn = sql.PgConnection(self._url, timeouts=False)
            self._publish_conn.execute("SELECT pg_advisory_lock(?)", (PUBLISH_LOCK_KEY,))
        except self._dialect.errors as err:
            self._drop_publish_conn()
            raise StoreUnavailable(f"publishing lock unavailable: {_one_line(err)}") from err
        return self._publish_conn

    @staticmethod
    def _publish_waiters(conn: sql.PgConnection) -> int:
        """Sessions waiting for the publishing lock (a bigint advisory key shows as classid/objid, objsubid 1)."""
        row = conn.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1"
            " AND ((classid::bigint << 32) | objid::bigint) = ?", (PUBLISH_LOCK_KEY,)).fetchone()
        return int(row[0])

    def _drop_publish_conn(self) -> None:
        if self._publish_conn is not None:
            self._publish_conn.close()
            self._publish_conn = None

