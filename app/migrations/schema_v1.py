"""Revision 1: the job store's schema before alembic (what app/adapters/store.py created with CREATE ... IF NOT
EXISTS, the ledger's ``life`` column included), kept as SQLite's text, and its PostgreSQL translation.

The only differences per dialect: timestamps are ``REAL`` on SQLite (8-byte floats) and must be ``DOUBLE
PRECISION`` on PostgreSQL (its ``REAL`` is 4 bytes: seconds since 1970 would lose their minutes), and the job id
is ``INTEGER PRIMARY KEY AUTOINCREMENT`` on SQLite, ``BIGSERIAL`` on PostgreSQL.
"""

from __future__ import annotations

SQLITE_SCHEMA = """
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

POSTGRES_SCHEMA = (SQLITE_SCHEMA
                   .replace("INTEGER PRIMARY KEY AUTOINCREMENT", "BIGSERIAL PRIMARY KEY")
                   .replace(" REAL", " DOUBLE PRECISION"))

V1_COLUMNS: dict[str, tuple[str, ...]] = {
    "jobs": ("id", "dedupe_key", "fingerprint", "alertname", "alert_status", "alert", "state", "attempts",
             "lease_owner", "lease_expires_at", "available_at", "result", "error", "created_at", "updated_at"),
    "ledger": ("pr_number", "workload", "cause", "branch", "pr_url", "state", "before", "after", "fingerprint",
               "images", "opened_at", "merged_at", "closed_at", "resolved_at", "escalated_at", "life", "updated_at"),
    "outbox": ("key", "job_id", "run", "state", "attempts", "available_at", "lease_owner", "lease_expires_at",
               "run_id", "run_url", "error", "created_at", "exported_at", "updated_at"),
}


def statements(schema: str) -> list[str]:
    """One statement each (the schema text has no semicolon inside a statement)."""
    return [s.strip() for s in schema.split(";") if s.strip()]
