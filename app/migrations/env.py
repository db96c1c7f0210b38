"""alembic's environment: the connection is the one app.migrations.upgrade opened (and locked); no alembic.ini.
Every pending revision runs in one transaction (PostgreSQL and SQLite both have transactional DDL)."""

from __future__ import annotations

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=None, transaction_per_migration=False)
with context.begin_transaction():
    context.run_migrations()
