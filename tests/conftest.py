"""Shared fixtures: realistic scenario directories and the world an `autofix handle` run talks to."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.postgres import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = ROOT.parent / "shared" / "reference"  # webhook bodies captured from a real Alertmanager (../shared)
SCENARIOS = ROOT / "tests" / "scenarios"
EXAMPLES = ROOT / "examples"


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never read the developer's git config, and the bot must work without one (as in a pod)."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GITHUB_TOKEN", "OPENAI_API_KEY", "KUBECONFIG", "MLFLOW_TRACKING_URI", "AUTOFIX_WEBHOOK_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A command run in process (``cli.main(["-v", ...])``) installs our root handler at DEBUG; left there, a server
    thread of a later test logs to the terminal between tests. Ours go, the level comes back (pytest's stay)."""
    from app import logs

    root = logging.getLogger()
    level = root.level
    yield
    for handler in [h for h in root.handlers if isinstance(h, logs._Handler)]:
        root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture(scope="session")
def key_pair() -> tuple[str, str]:
    """One GitHub App key for the session (tests/fakes/github_api.py app_key_pair): the bot's private key, the
    public key the fake App checks."""
    from tests.fakes.github_api import app_key_pair

    return app_key_pair()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One real PostgreSQL server for the session (tests/fakes/postgres.py); each test takes a database of its own."""
    with PostgresServer.start() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_template(postgres: PostgresServer) -> str:
    """A database at the newest schema, copied for each test (CREATE DATABASE ... TEMPLATE: no migration each)."""
    from app.adapters.store import JobStore

    JobStore(postgres.create_database("store_template")).close()
    return "store_template"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_location(request: pytest.FixtureRequest, tmp_path: Path) -> Path | str:
    """Where a JobStore lives, once per database: a SQLite file, or a fresh PostgreSQL database at the newest
    schema (``JobStore(store_location)``)."""
    if request.param == "sqlite":
        return tmp_path / "jobs.sqlite3"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database(template=request.getfixturevalue("postgres_template"))


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One real MLflow sqlite store for the session: creating one runs migrations, a few seconds."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def mlflow_run(tracking_uri: str, record_id: str | None) -> Any:
    """The MLflow run a handling's record was exported to, found by its tag as an auditor would."""
    from mlflow import MlflowClient

    assert record_id, "the result names its run record"
    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    [run] = client.search_runs(experiments, filter_string=f"tags.autofix_record = '{record_id}'")
    return run
