"""The job store as it was before alembic: jobs, ledger, outbox (app/migrations/schema_v1.py).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from app.migrations.schema_v1 import POSTGRES_SCHEMA, SQLITE_SCHEMA, statements

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = POSTGRES_SCHEMA if op.get_bind().dialect.name == "postgresql" else SQLITE_SCHEMA
    for statement in statements(schema):
        op.execute(statement)
