"""alembic revision scripts of the job store (loaded by alembic, by file)."""
