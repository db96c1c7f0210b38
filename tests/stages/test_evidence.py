"""Evidence: the workload's pods, events, logs and related objects, read from the snapshot cluster."""

from __future__ import annotations

import pytest

from app import targets
from app.errors import NoFix
from app.models.alertmanager import WebhookPayload
from app.models.incident import Incident, WorkloadRef
from app.stages import evidence
from tests.conftest import SCENARIOS
from tests.stages.world import World, snapshot

CHECKOUT = WorkloadRef(kind="Deployment", namespace="shop", name="checkout")


def test_the_demo_workload_is_read_with_the_alerted_pod_first(world: World) -> None:
    incident = world.incident()  # names pod checkout-7d9f8b6c5-fghij
    out = evidence.collect(cluster=world.cluster, workload=CHECKOUT, incident=incident)
    ev = out.evidence
    assert out.decision == "3 pod(s), 13 event(s), 3 log(s)"
    assert [p["metadata"]["name"] for p in ev.pods][0] == "checkout-7d9f8b6c5-fghij"
    assert sorted(ev.logs) == ["checkout-7d9f8b6c5-abcde/checkout", "checkout-7d9f8b6c5-fghij/checkout",
                               "checkout-7d9f8b6c5-x2v7q/checkout"]
    assert [o["kind"] for o in ev.related] == ["Service"] and [o["kind"] for o in ev.gitops] == ["Application"]
    assert ev.nodes == [], "nodes are read only when a pod cannot be scheduled"


def test_an_unschedulable_pod_brings_the_nodes() -> None:
    scenario = SCENARIOS / "unschedulable"
    incident = Incident.from_alert(WebhookPayload.model_validate_json((scenario / "alert.json").read_bytes()).alerts[0])
    cluster = snapshot(scenario)
    out = evidence.collect(cluster=cluster, workload=targets.resolve(cluster, incident), incident=incident)
    assert out.evidence.nodes, "a Pending pod: the nodes' allocatable and taints are evidence"
    assert out.decision.startswith(f"{len(out.evidence.pods)} pod(s), ")


def test_a_workload_gone_from_the_cluster_is_no_fix(world: World) -> None:
    gone = WorkloadRef(kind="Deployment", namespace="shop", name="payments")
    with pytest.raises(NoFix, match="Deployment/shop/payments was not found in the cluster"):
        evidence.collect(cluster=world.cluster, workload=gone, incident=world.incident())
