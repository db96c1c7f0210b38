"""`autofix doctor`'s job store row: the store the service would open (SQLite file or PostgreSQL), written and read
back; an unreachable PostgreSQL fails the row naming the URL without its password."""

from __future__ import annotations

from pathlib import Path

from app import doctor
from app import settings as settings_mod
from tests.edges.test_api import free_port


def test_the_store_row_passes_on_either_database(tmp_path: Path, store_location: Path | str) -> None:
    env: dict[str, object] = {"AUTOFIX_DATA_DIR": tmp_path / "data"}
    if isinstance(store_location, str):
        env["AUTOFIX_DATABASE_URL"] = store_location
    row = doctor.check_store(settings_mod.load(**env))
    assert (row.name, row.status) == ("job store", "ok"), row
    assert "schema revision" in row.detail and "read and write" in row.detail
    shown = str(tmp_path / "data" / "jobs.sqlite3") if isinstance(store_location, Path) else store_location
    assert row.detail.startswith(shown), row


def test_an_unreachable_postgres_fails_the_row_without_its_password() -> None:
    url = f"postgresql://autofix:Tr0ub4dor-and-3@127.0.0.1:{free_port()}/autofix"  # nothing listens there
    row = doctor.check_store(settings_mod.load(AUTOFIX_DATABASE_URL=url))
    assert row.status == "fail", row
    assert "Tr0ub4dor" not in row.detail and "postgresql://autofix:***@127.0.0.1" in row.detail, row
