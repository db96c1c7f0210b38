from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stages.world import World, make_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    """The demo (shop/checkout OOMKilled): snapshot cluster, bare repo, local forge, job store ledger."""
    built = make_world(tmp_path)
    yield built
    built.ledger.close()
