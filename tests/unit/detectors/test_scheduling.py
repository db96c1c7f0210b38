"""unschedulable: requests larger than any eligible node's allocatable are lowered to fit the largest node;
a cluster that is merely full, or has no eligible node, is reported without a fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from app import causes, risk
from app.policies import Policy, RequestBounds
from tests.unit.detectors.support import DEFAULT, Items, check_case, container_at, evidence, git, item

MANIFEST = "apps/report-builder/deployment.yaml"


def _request_memory(value: str) -> Callable[[Items], None]:
    def mutate(items: Items) -> None:
        container_at(item(items, "Deployment"))["resources"]["requests"]["memory"] = value
    return mutate


def _cordon_all(items: Items) -> None:
    for node in (i for i in items if i["kind"] == "Node"):
        node["spec"]["unschedulable"] = True
        node["spec"]["taints"] = [{"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable",
                                   "timeAdded": "2026-11-23T14:00:00Z"}]


def _cpu_short(items: Items) -> None:
    container_at(item(items, "Deployment"))["resources"]["requests"]["cpu"] = "6"
    msg = ("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption "
           "victims found for incoming pod.")
    item(items, "Pod")["status"]["conditions"][0]["message"] = msg
    next(i for i in items if i["kind"] == "Event" and i["reason"] == "FailedScheduling")["message"] = msg


CASES: list[Any] = [
    # id, mutate, git replace, policy, expected {path: new} | NoFix code | "no_fix:<text>"
    ("unschedulable-memory-fits-90pct-of-largest-node", None, None, DEFAULT,
     {"spec.template.spec.containers[name=report-builder].resources.requests.memory": "14318Mi"}),
    ("unschedulable-cpu", _cpu_short, ('cpu: "2"', 'cpu: "6"'), DEFAULT,
     {"spec.template.spec.containers[name=report-builder].resources.requests.cpu": "3600m"}),
    ("unschedulable-request-fits-a-node-cluster-full", _request_memory("12Gi"), None, DEFAULT,
     "no_fix:the cluster is full"),
    ("unschedulable-every-node-cordoned", _cordon_all, None, DEFAULT, "no_fix:no node is eligible"),
    ("unschedulable-cut-below-floor", None, None, Policy(requests=RequestBounds(min_ratio_to_git=0.7)), "cut_too_deep"),
]


@pytest.mark.parametrize(("mutate", "replace", "policy", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_detect_and_plan(mutate: Callable[[Items], None] | None, replace: tuple[str, str] | None, policy: Policy,
                         expected: Any) -> None:
    check_case("unschedulable", MANIFEST, mutate, replace, policy, expected)


def test_unschedulable_forces_high_risk_and_explains_the_limit() -> None:
    diagnosis = causes.diagnose(evidence("unschedulable"))[0]
    document = git("unschedulable", MANIFEST)
    plan = causes.plan(diagnosis, document, DEFAULT)
    assessed = risk.assess(workload=document, namespace="analytics", plan=plan, policy=DEFAULT)
    assert assessed.level == "high" and assessed.score < 0.6, "the level is forced, not the score"
    assert "limit unchanged" in plan.changes[0].reason
    assert "largest eligible node k8s-worker-01 has allocatable 16290816Ki (15909Mi)" in diagnosis.finding.evidence[-1]
