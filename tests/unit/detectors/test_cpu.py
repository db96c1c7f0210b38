"""cpu_throttling: CPUThrottlingHigh raises the container's CPU limit by the policy's step, within its caps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.policies import CpuBounds, Policy
from tests.unit.detectors.support import DEFAULT, Items, check_case, container_at, item

MANIFEST = "apps/search-api/deployment.yaml"
LIMIT = "spec.template.spec.containers[name=search-api].resources.limits.cpu"


def _no_cpu_limit(items: Items) -> None:
    del container_at(item(items, "Deployment"))["resources"]["limits"]["cpu"]


CASES: list[Any] = [
    # id, mutate, git replace, policy, expected {path: new} | NoFix code | "no_fix:<text>"
    ("cpu-throttling-raise-by-step", None, None, DEFAULT, {LIMIT: "750m"}),
    ("cpu-throttling-capped", None, None, Policy(cpu=CpuBounds(max="600m")), {LIMIT: "600m"}),
    ("cpu-throttling-at-cap", None, None, Policy(cpu=CpuBounds(max="500m")), "at_cap"),
    ("cpu-throttling-policy-removes-limits", None, None, Policy(cpu=CpuBounds(remove_limit=True)),
     "remove_not_supported"),
    ("cpu-throttling-no-limit", _no_cpu_limit, None, DEFAULT, "no_fix:no CPU limit"),
]


@pytest.mark.parametrize(("mutate", "replace", "policy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_detect_and_plan(mutate: Callable[[Items], None] | None, replace: tuple[str, str] | None, policy: Policy,
                         expected: Any) -> None:
    check_case("cpu-throttling", MANIFEST, mutate, replace, policy, expected)
