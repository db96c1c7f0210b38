"""The ledger per repository: ``repo`` ('' = the one repository AUTOFIX_GIT_URL names), keyed by (repo, pr_number).

Two repositories each have a PR #1, so the PR number alone no longer names a row. SQLite cannot change a primary
key in place: batch mode copies the table into a new one with the new key (rows, CHECKs and the index kept).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.add_column("ledger", sa.Column("repo", sa.Text(), nullable=False, server_default=""))
        op.drop_constraint("ledger_pkey", "ledger", type_="primary")
        op.create_primary_key("ledger_pkey", "ledger", ["repo", "pr_number"])
    else:
        # The table as revision 1 made it, said rather than reflected: reflection drops the unnamed CHECK and
        # would keep pr_number as the key.
        with op.batch_alter_table("ledger", recreate="always", copy_from=_ledger_v1()) as batch:
            batch.add_column(sa.Column("repo", sa.Text(), nullable=False, server_default=""), insert_before="pr_number")
            batch.create_primary_key("ledger_pkey", ["repo", "pr_number"])
    op.create_index("ledger_repo_branch", "ledger", ["repo", "branch", "opened_at"])


def _ledger_v1() -> sa.Table:
    text, real = sa.Text(), sa.REAL[float]()
    return sa.Table(
        "ledger", sa.MetaData(),
        sa.Column("pr_number", sa.Integer(), nullable=False),
        *(sa.Column(name, text, nullable=False) for name in ("workload", "cause", "branch", "pr_url", "state", "before",
                                                             "after", "fingerprint", "images")),
        sa.Column("opened_at", real, nullable=False),
        *(sa.Column(name, real) for name in ("merged_at", "closed_at", "resolved_at", "escalated_at")),
        sa.Column("life", text, nullable=False, server_default="{}"),
        sa.Column("updated_at", real, nullable=False),
        sa.CheckConstraint("state IN ('open', 'merged', 'closed')", name="ledger_state"),
        sa.Index("ledger_branch", "branch", "opened_at"),
    )
