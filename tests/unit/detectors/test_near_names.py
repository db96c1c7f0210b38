"""Near names (app/detectors/names.py): a typo and the one existing object it most likely meant."""

from __future__ import annotations

import pytest

from app.detectors import names


@pytest.mark.parametrize(("name", "candidates", "expected"), [
    ("checkout-confg", ["checkout-config", "storefront-nginx", "kube-root-ca.crt"], "checkout-config"),
    ("checkout-cofnig", ["checkout-config"], "checkout-config"),  # a swap of neighbours is one edit
    ("db-credentials", ["smtp-relay", "ghcr-pull"], None),
    ("app-cfg", ["app-cfg1", "app-cfg2"], None),  # two equally near: a guess, not a fix
    ("api", ["app"], "app"),
    ("db", ["dc", "db"], "dc"),
    ("dbx", ["dcy"], None),  # short names tolerate one edit only
], ids=["typo", "transposition", "nothing-close", "ambiguous", "short-one-edit", "exact-excluded", "short-two-edits"])
def test_nearest(name: str, candidates: list[str], expected: str | None) -> None:
    assert names.nearest(name, candidates) == expected
