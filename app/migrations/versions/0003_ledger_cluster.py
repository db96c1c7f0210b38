"""The ledger per cluster: ``cluster`` (clusters.yaml's name of the cluster a fix was for; '' = the one cluster of an
install without clusters.yaml, and every row made before), so following a fix reads that cluster's workload.

A column with a constant default only: SQLite adds it in place (batch mode's ALTER, no copy of the table), so the
CHECK and the key 0002 made stay as they are.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    column = sa.Column("cluster", sa.Text(), nullable=False, server_default="")
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("ledger", column)
    else:
        with op.batch_alter_table("ledger") as batch:  # recreate="auto": ADD COLUMN needs no copy
            batch.add_column(column)
