"""hpa_maxed_out: an HPA at its ceiling whose metrics want more pods gets a higher maxReplicas, within the
policy's cap and the namespace's ResourceQuota."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app.policies import HpaBounds, Policy
from tests.unit.detectors.support import DEFAULT, Items, check_case, item

MANIFEST = "apps/frontend/hpa.yaml"


def _no_quota(items: Items) -> None:
    items.remove(item(items, "ResourceQuota"))


def _quota_full(items: Items) -> None:
    item(items, "ResourceQuota")["status"]["used"]["requests.cpu"] = "2800m"


def _pinned(items: Items) -> None:
    item(items, "HorizontalPodAutoscaler")["spec"]["minReplicas"] = 10


CASES: list[Any] = [
    # id, mutate, git replace, policy, expected {path: new} | NoFix code | "no_fix:<text>"
    ("hpa-quota-limits-raise", None, None, DEFAULT, {"spec.maxReplicas": 14}),
    ("hpa-no-quota-step", _no_quota, None, DEFAULT, {"spec.maxReplicas": 15}),
    ("hpa-policy-cap", _no_quota, None, Policy(hpa=HpaBounds(max=12)), {"spec.maxReplicas": 12}),
    ("hpa-quota-full", _quota_full, None, DEFAULT, "no_fix:ResourceQuota has no room"),
    ("hpa-pinned", _pinned, None, DEFAULT, "no_fix:pinned on purpose"),
]


@pytest.mark.parametrize(("mutate", "replace", "policy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_detect_and_plan(mutate: Callable[[Items], None] | None, replace: tuple[str, str] | None, policy: Policy,
                         expected: Any) -> None:
    check_case("hpa-maxed-out", MANIFEST, mutate, replace, policy, expected)
