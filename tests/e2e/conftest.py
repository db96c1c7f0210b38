"""Everything under tests/e2e runs the whole pipeline, a real server or a real binary: the slow part of the suite
(`pytest -m "not e2e"` leaves it out)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.e2e)
