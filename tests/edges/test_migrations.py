"""Schema migrations (app/migrations, alembic) on SQLite and on a real PostgreSQL server: a store made by the
version before alembic is stamped and upgraded with its rows, replicas starting together migrate once, the ledger
is keyed per repository, and the publishing lock holds across processes (and is let go by a SIGKILLed one)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from app import migrations
from app.adapters.store import JobStore
from app.errors import StartupError
from app.models.alertmanager import WebhookPayload
from app.ports import Remediation
from tests.conftest import REFERENCE_DIR, ROOT
from tests.fakes.postgres import PostgresServer

REFERENCE = REFERENCE_DIR

# The schema exactly as app/adapters/store.py created it before alembic (its _SCHEMA, commit 4e16946): data here,
# not imported, so that changing the migrations can never change what "a store made before" is.
PREVIOUS_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    dedupe_key       TEXT    NOT NULL UNIQUE,
    fingerprint      TEXT    NOT NULL,
    alertname        TEXT    NOT NULL,
    alert_status     TEXT    NOT NULL,
    alert            TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at REAL,
    available_at     REAL    NOT NULL,
    result           TEXT,
    error            TEXT,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_queued ON jobs (state, available_at, id);
CREATE INDEX IF NOT EXISTS jobs_leases ON jobs (state, lease_expires_at);
CREATE INDEX IF NOT EXISTS jobs_fingerprint ON jobs (fingerprint, id);
CREATE INDEX IF NOT EXISTS jobs_retention ON jobs (state, updated_at);
CREATE TABLE IF NOT EXISTS ledger (
    pr_number   INTEGER PRIMARY KEY,
    workload    TEXT    NOT NULL,
    cause       TEXT    NOT NULL,
    branch      TEXT    NOT NULL,
    pr_url      TEXT    NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('open', 'merged', 'closed')),
    before      TEXT    NOT NULL,
    after       TEXT    NOT NULL,
    fingerprint TEXT    NOT NULL,
    images      TEXT    NOT NULL,
    opened_at   REAL    NOT NULL,
    merged_at   REAL,
    closed_at   REAL,
    resolved_at REAL,
    escalated_at REAL,
    life        TEXT    NOT NULL DEFAULT '{}',
    updated_at  REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_branch ON ledger (branch, opened_at);
CREATE TABLE IF NOT EXISTS outbox (
    key              TEXT    PRIMARY KEY,
    job_id           INTEGER,
    run              TEXT    NOT NULL,
    state            TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'linking', 'done', 'failed')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    available_at     REAL    NOT NULL,
    lease_owner      TEXT,
    lease_expires_at REAL,
    run_id           TEXT,
    run_url          TEXT,
    error            TEXT,
    created_at       REAL    NOT NULL,
    exported_at      REAL,
    updated_at       REAL    NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, available_at);
"""
ROWS = """
INSERT INTO jobs (dedupe_key, fingerprint, alertname, alert_status, alert, state, attempts, available_at, result,
                  created_at, updated_at)
VALUES ('6f4aeb6ae5c7fa92|2026-11-30T10:00:00+00:00|firing', '6f4aeb6ae5c7fa92', 'KubePodCrashLooping', 'firing',
        '{"alert": {}}', 'done', 1, 1.5, '{"outcome": "pr_opened"}', 1.5, 2.5);
INSERT INTO ledger VALUES (7, 'Deployment/shop/checkout', 'oom_killed', 'autofix/shop/checkout/oom-killed',
        'https://github.com/acme/gitops/pull/7', 'merged', '{}', '{}', 'd09fc39d073c7e73', '[]', 1.0, 2.0, NULL, NULL,
        NULL, '{"final": "effective"}', 2.0);
INSERT INTO outbox (key, job_id, run, available_at, created_at, updated_at)
VALUES ('0123456789abcdef0123456789abcdef', 1, '{}', 3.0, 3.0, 3.0);
"""


def test_head_is_the_newest_revision_script() -> None:
    from alembic.script import ScriptDirectory

    assert ScriptDirectory(str(Path(migrations.__file__).parent)).get_current_head() == migrations.HEAD


def test_a_store_made_before_alembic_is_stamped_upgraded_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)
    old.executescript(PREVIOUS_SCHEMA + ROWS)
    old.close()

    store = JobStore(path)
    try:
        [job] = store.find("6f4aeb6ae5c7fa92")
        assert (job.state, job.result, job.created_at) == ("done", {"outcome": "pr_opened"}, 1.5)
        [row] = store.entries()
        assert (row.repo, row.pr_number, row.state, row.final) == ("", 7, "merged", "effective")
        assert store.backlog()["pending"] == 1
        # The new key: another repository's PR #7 is another row, this repository's PR #7 the same row.
        store.record(replace(row, repo="platform", state="open"))
        store.record(replace(row, final="ineffective"))
        assert [(e.repo, e.pr_number, e.final) for e in store.entries()] == [
            ("", 7, "ineffective"), ("platform", 7, "effective")]
        assert [e.repo for e in store.entries(repo="platform")] == ["platform"]
        assert [e.repo for e in store.entries(branch=row.branch, repo="")] == [""]
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrations.HEAD,)]
        with pytest.raises(sqlite3.IntegrityError):  # the ledger's CHECK survived the copy of the table
            conn.execute("UPDATE ledger SET state = 'lost'")
    conn.close()


def test_a_file_with_other_tables_of_those_names_is_refused_not_stamped(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, payload BLOB)")
    conn.close()
    with pytest.raises(StartupError) as caught:
        JobStore(path)
    assert "not one this service made" in str(caught.value) and "dedupe_key" in str(caught.value)
    with sqlite3.connect(path) as conn:
        assert not conn.execute("SELECT name FROM sqlite_master WHERE name = 'alembic_version'").fetchall()
    conn.close()


def test_the_ledger_is_keyed_per_repository(store_location: Path | str) -> None:
    store = JobStore(store_location)
    try:
        base = Remediation(workload="Deployment/shop/checkout", cause="oom_killed", branch="autofix/b", pr_number=1,
                           pr_url="https://example/pull/1", state="open", opened_at=10.0)
        store.record(base)
        store.record(replace(base, repo="team-a", pr_url="https://example/team-a/1", opened_at=11.0))
        store.record(replace(base, state="merged"))  # same repository and number: replaced, not added
        assert [(e.repo, e.state, e.pr_url) for e in store.entries()] == [
            ("", "merged", "https://example/pull/1"), ("team-a", "open", "https://example/team-a/1")]
        assert [e.repo for e in store.entries(repo="team-a", branch="autofix/b")] == ["team-a"]
        assert store.opened_since(0) == 2
    finally:
        store.close()


# Rows as revision 0002 left them (ledger keyed (repo, pr_number), no cluster yet): one PR of the env repository,
# one of another repository with the same number, a job and an outbox record.
ROWS_0002 = [
    "INSERT INTO ledger (repo, pr_number, workload, cause, branch, pr_url, state, before, after, fingerprint, images,"
    " opened_at, merged_at, life, updated_at) VALUES ('', 7, 'Deployment/shop/checkout', 'oom_killed',"
    " 'autofix/shop/checkout/oom-killed', 'https://github.com/acme/gitops/pull/7', 'merged', '{}',"
    " '{\"spec.template.spec.containers[name=app].resources.limits.memory\": \"768Mi\"}', 'd09fc39d073c7e73', '[]',"
    " 1.0, 2.0, '{\"record_id\": \"0123456789abcdef0123456789abcdef\"}', 2.0)",
    "INSERT INTO ledger (repo, pr_number, workload, cause, branch, pr_url, state, before, after, fingerprint, images,"
    " opened_at, life, updated_at) VALUES ('platform', 7, 'StatefulSet/db/postgres', 'oom_killed',"
    " 'autofix/db/postgres/oom-killed-statefulset', 'https://gitlab.example/platform/-/merge_requests/7', 'open',"
    " '{}', '{}', '5a1c9e3b7d2f4a60', '[]', 3.0, '{}', 3.0)",
    "INSERT INTO jobs (dedupe_key, fingerprint, alertname, alert_status, alert, state, attempts, available_at,"
    " result, created_at, updated_at) VALUES ('6f4aeb6ae5c7fa92|2026-11-30T10:00:00+00:00|firing',"
    " '6f4aeb6ae5c7fa92', 'KubePodCrashLooping', 'firing', '{\"alert\": {}}', 'done', 1, 1.5,"
    " '{\"outcome\": \"pr_opened\"}', 1.5, 2.5)",
    "INSERT INTO outbox (key, job_id, run, available_at, created_at, updated_at)"
    " VALUES ('0123456789abcdef0123456789abcdef', 1, '{}', 3.0, 3.0, 3.0)",
]


def _at_0002_with_rows(location: Path | str) -> None:
    """A database migrated to revision 0002 by alembic itself (as the version before 0003 did), with rows."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from app.adapters import sql

    engine = create_engine(sql.alembic_url(location), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            config = Config()
            config.set_main_option("script_location", str(Path(migrations.__file__).parent))
            config.attributes["connection"] = conn
            command.upgrade(config, "0002")
            for statement in ROWS_0002:
                conn.execute(text(statement))
            conn.commit()
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0002"
    finally:
        engine.dispose()


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_store_at_0002_is_upgraded_to_0003_and_keeps_its_rows(dialect: str, tmp_path: Path,
                                                                 request: pytest.FixtureRequest) -> None:
    location: Path | str = tmp_path / "jobs.sqlite3"
    if dialect == "postgresql":
        location = request.getfixturevalue("postgres").create_database()
    _at_0002_with_rows(location)

    store = JobStore(location)
    try:
        env, platform = store.entries()
        assert (env.repo, env.pr_number, env.state, env.cluster, env.record_id) == (
            "", 7, "merged", "", "0123456789abcdef0123456789abcdef")
        assert env.after == {"spec.template.spec.containers[name=app].resources.limits.memory": "768Mi"}
        assert (platform.repo, platform.pr_number, platform.workload, platform.cluster) == (
            "platform", 7, "StatefulSet/db/postgres", "")
        [job] = store.find("6f4aeb6ae5c7fa92")
        assert (job.state, job.result) == ("done", {"outcome": "pr_opened"})
        assert store.backlog()["pending"] == 1
        # The new column is written, read and replaced by the upsert like any other.
        store.record(replace(platform, cluster="prod-eu"))
        store.record(replace(platform, cluster="prod-us", state="merged"))
        assert [(e.repo, e.cluster, e.state) for e in store.entries()] == [
            ("", "", "merged"), ("platform", "prod-us", "merged")]
    finally:
        store.close()
    reopened = JobStore(location)  # at HEAD now: opened without alembic, the rows as they were left
    try:
        assert [(e.repo, e.cluster) for e in reopened.entries()] == [("", ""), ("platform", "prod-us")]
    finally:
        reopened.close()
    if dialect == "sqlite":
        with sqlite3.connect(location) as conn:
            assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003",)]
            with pytest.raises(sqlite3.IntegrityError):  # the ledger's CHECK and key untouched by the new column
                conn.execute("UPDATE ledger SET state = 'lost'")
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute("UPDATE ledger SET repo = ''")
        conn.close()


OPEN_STORE = "import sys; from app.adapters.store import JobStore; JobStore(sys.argv[1]).close(); print('ok')"


def _open_together(location: str, count: int) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_STORE, location], cwd=ROOT, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(count)]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * count, outputs
    assert [out.strip() for out, _ in outputs] == ["ok"] * count


@pytest.mark.e2e  # three Python processes
@pytest.mark.timeout(90)
def test_three_replicas_starting_together_on_a_new_postgres_database_migrate_once(postgres: PostgresServer) -> None:
    url = postgres.create_database()
    _open_together(url, 3)
    import psycopg

    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrations.HEAD,)]
        key = conn.execute("SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                           " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'ledger'::regclass AND i.indisprimary"
                           " ORDER BY a.attname").fetchall()
        assert key == [("pr_number",), ("repo",)]
        types = dict(conn.execute("SELECT column_name, data_type FROM information_schema.columns"
                                  " WHERE table_name = 'jobs'").fetchall())
        assert types["lease_expires_at"] == "double precision", "REAL would lose the seconds of a lease"


@pytest.mark.e2e  # three Python processes
@pytest.mark.timeout(90)
def test_three_processes_opening_a_new_sqlite_file_together_migrate_once(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    _open_together(str(path), 3)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [(migrations.HEAD,)]
    conn.close()


def test_a_postgres_url_password_never_shows(postgres: PostgresServer) -> None:
    url = postgres.url("no_such_database").replace("@", ":Tr0ub4dor-and-3@")
    with pytest.raises(StartupError) as caught:
        JobStore(url)
    message = str(caught.value)
    assert "Tr0ub4dor" not in message and ":***@127.0.0.1" in message and "\n" not in message


# --- the publishing lock across processes ---------------------------------------------------------------------

HOLD = """
import sys, time
from app.adapters.store import JobStore
store = JobStore(sys.argv[1])
with store.publishing():
    print("held", flush=True)
    sys.stdin.readline()  # until the test says so, or is killed
print("released", flush=True)
"""


def _holder(location: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, location], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def _acquire_in_thread(store: JobStore) -> tuple[threading.Thread, threading.Event]:
    acquired = threading.Event()

    def take() -> None:
        with store.publishing():
            acquired.set()

    thread = threading.Thread(target=take, daemon=True)
    thread.start()
    return thread, acquired


@pytest.mark.e2e  # slow: the fast part stays under a minute
@pytest.mark.timeout(60)
def test_publishing_waits_for_another_process_then_goes_on(store_location: Path | str) -> None:
    store = JobStore(store_location)
    holder = _holder(str(store_location))
    try:
        thread, acquired = _acquire_in_thread(store)
        assert not acquired.wait(1.0), "took the lock another process holds"
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.write("go\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "released"
        assert acquired.wait(20), "never got the lock once released"
        thread.join(5)
    finally:
        holder.kill()
        holder.wait(10)
        store.close()


@pytest.mark.e2e  # slow: the fast part stays under a minute
@pytest.mark.timeout(60)
def test_a_replica_killed_while_publishing_lets_the_lock_go(store_location: Path | str) -> None:
    store = JobStore(store_location)
    holder = _holder(str(store_location))
    try:
        thread, acquired = _acquire_in_thread(store)
        assert not acquired.wait(1.0), "took the lock another process holds"
        holder.kill()  # SIGKILL: no finally runs; the kernel closes the flock's file, PostgreSQL ends the session
        holder.wait(10)
        assert acquired.wait(30), "the lock died with its holder"
        thread.join(5)
    finally:
        store.close()


def test_the_same_payload_enqueued_by_two_stores_is_one_job(store_location: Path | str) -> None:
    """Two replicas receive the same webhook: one job, the second answer a duplicate of it."""
    payload = WebhookPayload.model_validate_json((REFERENCE / "alertmanager-0.25-webhook-firing.json").read_text())
    first, second = JobStore(store_location), JobStore(store_location)
    try:
        a = first.enqueue(payload)
        b = second.enqueue(payload)
        assert [r.job_id for r in a] == [r.job_id for r in b] and all(r.duplicate for r in b)
        assert first.counts()["queued"] == 2
    finally:
        first.close()
        second.close()


def _waiting_for_publishing(url: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted").fetchone()
    return int(row[0]) if row is not None else 0


@pytest.mark.timeout(60)
def test_a_replica_waiting_to_publish_starts_no_sooner_than_the_forge_spacing(
        postgres: PostgresServer, postgres_template: str) -> None:
    """Each process spaces only its own forge writes: the lock keeps that spacing between replicas, by releasing
    late when (and only when) another replica waits."""
    url = postgres.create_database(template=postgres_template)
    first, second = JobStore(url), JobStore(url)
    acquired_at: list[float] = []

    def take() -> None:
        with second.publishing(spacing=0.6):
            acquired_at.append(time.monotonic())

    try:
        started = time.monotonic()
        with first.publishing(spacing=30.0):  # alone: released at once, far sooner than 30 s
            pass
        assert time.monotonic() - started < 30.0
        with first.publishing(spacing=0.6):
            thread = threading.Thread(target=take, daemon=True)
            thread.start()
            deadline = time.monotonic() + 20
            while not _waiting_for_publishing(url):
                assert time.monotonic() < deadline, "the second replica never queued for the lock"
                time.sleep(0.02)
            last_write = time.monotonic()  # the holder's last forge write
        thread.join(20)
        assert acquired_at and acquired_at[0] - last_write >= 0.6
    finally:
        first.close()
        second.close()
