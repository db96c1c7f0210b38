from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app import policies
from app.settings import DEFAULT_POLICY_DIR
from tests.stages.world import World, make_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The demo (shop/checkout OOMKilled): snapshot cluster, bare repo, local forge, job store ledger."""
    built = make_world(tmp_path)
    yield built
    built.ledger.close()


@pytest.fixture(scope="session")
def policy() -> policies.Policy:
    return policies.load(DEFAULT_POLICY_DIR)
