"""Evidence: the workload's pods, events, logs and related objects, read from the snapshot cluster."""

from __future__ import annotations

import pytest

from app import causes, targets
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


def _flood(pod: str, uid: str, count: int) -> list[dict[str, object]]:
    """A crash-looping pod's own events, each newer than the rollout's: more than the evidence keeps."""
    return [{"apiVersion": "v1", "kind": "Event", "count": 1, "type": "Warning", "reason": "Failed",
             "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod, "namespace": "podinfo", "uid": uid,
                                "fieldPath": "spec.containers{redis}"},
             "message": "Error: ImagePullBackOff", "source": {"component": "kubelet", "host": "k8s-worker-02"},
             "firstTimestamp": f"2026-11-23T14:{10 + i // 60:02d}:{i % 60:02d}Z",
             "lastTimestamp": f"2026-11-23T14:{10 + i // 60:02d}:{i % 60:02d}Z",
             "metadata": {"name": f"{pod}.flood{i:03d}", "namespace": "podinfo"}} for i in range(count)]


def test_the_workloads_own_events_are_kept_first_when_there_are_too_many() -> None:
    """The ScalingReplicaSet events say when the previous revision was scaled down (rollback evidence): 150 newer
    pod events must not push them out of the 100 kept."""
    scenario = SCENARIOS / "real-rollback-recreate-redis"
    incident = Incident.from_alert(WebhookPayload.model_validate_json((scenario / "alert.json").read_bytes()).alerts[0])
    cluster = snapshot(scenario, extra=_flood("podinfo-redis-6b4f9d7c85-q7x2m", "2f86d13e-d2d2-5164-b459-7cf3fe22fb39",
                                              150))
    ev = evidence.collect(cluster=cluster, workload=targets.resolve(cluster, incident), incident=incident).evidence
    assert len(ev.events) == evidence.MAX_EVENTS
    scaling = [e["message"] for e in ev.events if e["reason"] == "ScalingReplicaSet"]
    assert scaling == ["Scaled up replica set podinfo-redis-6b4f9d7c85 to 1 from 0",
                       "Scaled down replica set podinfo-redis-5d8b7c9f64 to 0 from 1"], "newest first, as before"
    stamps = [str(e.get("lastTimestamp")) for e in ev.events]
    assert stamps == sorted(stamps, reverse=True)
    [diagnosis, *_] = causes.diagnose(ev)
    assert diagnosis.fixable and diagnosis.finding.facts.model_dump()["previous_ran_seconds"] == 2956834
