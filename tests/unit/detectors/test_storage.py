"""pvc_storage_class: a StatefulSet claim template naming a StorageClass that does not exist is corrected to
the unique class with a near name; a standalone claim or no near class is reported."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.policies import Policy
from tests.unit.detectors.support import DEFAULT, Items, check_case, item

MANIFEST = "apps/postgres/statefulset.yaml"


def _no_near_class(items: Items) -> None:
    items.remove(item(items, "StorageClass", "fast-ssd"))


def _no_templates(items: Items) -> None:
    del item(items, "StatefulSet")["spec"]["volumeClaimTemplates"]


CASES: list[Any] = [
    # id, mutate, git replace, policy, expected {path: new} | NoFix code | "no_fix:<text>"
    ("pvc-typo-in-volume-claim-template", None, None, DEFAULT,
     {"spec.volumeClaimTemplates[0].spec.storageClassName": "fast-ssd"}),
    ("pvc-no-near-class", _no_near_class, None, DEFAULT, "no_fix:no StorageClass has a name"),
    ("pvc-standalone-claim", _no_templates, None, DEFAULT, "no_fix:standalone PersistentVolumeClaim"),
]


@pytest.mark.parametrize(("mutate", "replace", "policy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_detect_and_plan(mutate: Callable[[Items], None] | None, replace: tuple[str, str] | None, policy: Policy,
                         expected: Any) -> None:
    check_case("pvc-storageclass-typo", MANIFEST, mutate, replace, policy, expected)
