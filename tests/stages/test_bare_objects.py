"""Objects GitOps manages but no controller owns: a bare Pod is its own workload, and a standalone claim it waits
for is fixed in the claim's own manifest, found through the claim's own Argo CD or Flux tracking.

In process on the real-bare-* scenarios (public manifests, see each scenario's README): snapshot cluster, bare
repo, local forge, job store.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.adapters.snapshot import SnapshotCluster
from app.errors import NoFix
from app.models.incident import WorkloadRef
from app.stages import evidence, target
from tests.conftest import SCENARIOS
from tests.stages.world import World, make_world

ARGOCD_PVC = SCENARIOS / "real-bare-argocd-pvc-typo"
FLUX_OOM = SCENARIOS / "real-bare-flux-oom"
UNTRACKED = SCENARIOS / "real-bare-untracked-oom"
POD = WorkloadRef(kind="Pod", namespace="default", name="volume-test")
CLAIM = WorkloadRef(kind="PersistentVolumeClaim", namespace="default", name="local-path-pvc")


@pytest.fixture
def bare(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """The scenario named by the test's parameter (default: the Argo CD bare Pod and its mistyped claim)."""
    built = make_world(tmp_path, getattr(request, "param", ARGOCD_PVC))
    yield built
    built.ledger.close()


def items(scenario: Path) -> list[dict[str, Any]]:
    loaded: list[dict[str, Any]] = json.loads((scenario / "cluster.json").read_text())["items"]
    return copy.deepcopy(loaded)


def by_name(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


# ---------------------------------------------------------------- target


@pytest.mark.parametrize(("bare", "ref"), [
    pytest.param(ARGOCD_PVC, POD, id="argocd-pod"),
    pytest.param(FLUX_OOM, WorkloadRef(kind="Pod", namespace="mem-example", name="memory-demo-2"), id="flux-pod"),
    # Named like a ReplicaSet's pod, but it exists and has no owner: no ReplicaSet is made up for it.
    pytest.param(UNTRACKED, WorkloadRef(kind="Pod", namespace="app-02", name="giant-narwhal-6958c5bdd8-69gtn"),
                 id="untracked-pod-with-replicaset-like-name"),
], indirect=["bare"])
def test_a_pod_no_controller_owns_is_its_own_workload(bare: World, ref: WorkloadRef) -> None:
    out = target.resolve(cluster=bare.cluster, incident=bare.incident(), policy=bare.policy, own_namespace=None)
    assert (out.workload, out.decision, out.stop) == (ref, f"workload {ref}", None)


def test_a_policy_without_pods_skips_a_bare_pod(bare: World) -> None:
    policy = bare.policy.model_copy(update={"kinds": ["Deployment", "StatefulSet"]})
    out = target.resolve(cluster=bare.cluster, incident=bare.incident(), policy=policy, own_namespace=None)
    assert out.workload == POD
    assert out.stop is not None and (out.stop.kind, out.stop.reason) == ("skipped", "kind Pod is not allowed by policy")


def test_a_bare_pod_that_is_gone_is_still_no_fix(bare: World) -> None:
    gone = SnapshotCluster([o for o in items(ARGOCD_PVC) if o["kind"] != "Pod"])
    with pytest.raises(NoFix, match="pod default/volume-test no longer exists and its owner cannot be inferred"):
        target.resolve(cluster=gone, incident=bare.incident(), policy=bare.policy, own_namespace=None)


# ---------------------------------------------------------------- evidence and subject


def test_the_evidence_of_a_bare_pod_is_the_pod_its_claim_and_its_application(bare: World) -> None:
    ev = bare.evidence()
    assert [p["metadata"]["name"] for p in ev.pods] == ["volume-test"]
    assert {(o["kind"], o["metadata"]["name"]) for o in ev.related} >= {
        ("PersistentVolumeClaim", "local-path-pvc"), ("StorageClass", "local-path"), ("StorageClass", "longhorn")}
    assert [(g["kind"], g["metadata"]["name"]) for g in ev.gitops] == [("Application", "volume-test")]
    assert {e["reason"] for e in ev.events} == {"FailedScheduling", "ProvisioningFailed"}


def test_the_subject_is_read_with_its_own_gitops_owner(bare: World) -> None:
    """The claim is tracked by another Application than the Pod: its owner, not the Pod's, says where it lives."""
    objects = items(ARGOCD_PVC)
    claim = by_name(objects, "PersistentVolumeClaim", "local-path-pvc")
    claim["metadata"]["annotations"]["argocd.argoproj.io/tracking-id"] = "storage:/PersistentVolumeClaim:default/local-path-pvc"
    storage = copy.deepcopy(by_name(objects, "Application", "volume-test"))
    storage["metadata"]["name"] = "storage"
    storage["spec"]["source"]["path"] = "examples/pvc"
    cluster = SnapshotCluster([*objects, storage])
    out = evidence.subject(cluster=cluster, evidence=bare.evidence(), ref=CLAIM, policy=bare.policy)
    assert out.stop is None and out.evidence.workload == CLAIM
    assert out.evidence.object["spec"]["storageClassName"] == "local-paht"
    assert [(g["kind"], g["metadata"]["name"]) for g in out.evidence.gitops] == [("Application", "storage")]
    assert out.decision == "the fix goes in PersistentVolumeClaim/default/local-path-pvc (Application storage)"
    assert out.evidence.pods == bare.evidence().pods, "the rest of the evidence stays the workload's"


def test_a_subject_kind_the_policy_does_not_allow_is_skipped(bare: World) -> None:
    policy = bare.policy.model_copy(update={"kinds": ["Pod"]})
    out = evidence.subject(cluster=bare.cluster, evidence=bare.evidence(), ref=CLAIM, policy=policy)
    assert out.stop is not None
    assert (out.stop.kind, out.stop.reason) == ("skipped", "kind PersistentVolumeClaim is not allowed by policy")


def test_a_subject_missing_from_the_cluster_is_no_fix(bare: World) -> None:
    gone = CLAIM.model_copy(update={"name": "other-pvc"})
    with pytest.raises(NoFix, match="PersistentVolumeClaim/default/other-pvc, where the fix goes, was not found"):
        evidence.subject(cluster=bare.cluster, evidence=bare.evidence(), ref=gone, policy=bare.policy)


# ---------------------------------------------------------------- the whole handling


def test_the_claim_is_fixed_in_its_own_manifest(bare: World) -> None:
    outcome = bare.pipeline().handle(bare.incident())
    assert (outcome.outcome, outcome.cause, outcome.workload) == ("pr_opened", "pvc_storage_class", str(POD))
    stages = {s.stage: s.decision for s in outcome.stages}
    assert list(stages)[4:7] == ["ledger", "subject", "source"]
    assert stages["subject"] == f"the fix goes in {CLAIM} (Application volume-test)"
    assert stages["source"].startswith("examples/pvc/pvc.yaml#0 via argocd")
    [pr] = bare.opened()
    assert pr["branch"] == outcome.branch == "autofix/default/volume-test/pvc-storage-class-pod"
    body = bare.pr_body(1)
    assert "-  storageClassName: local-paht\n+  storageClassName: local-path" in body
    assert "delete the Pending claim local-path-pvc" in body
    assert outcome.run is not None and outcome.run.record.tags["manifest"] == "examples/pvc/pvc.yaml"


@pytest.mark.parametrize("bare", [FLUX_OOM], indirect=True)
def test_an_oom_killed_bare_pod_is_fixed_in_its_manifest(bare: World) -> None:
    outcome = bare.pipeline().handle(bare.incident())
    assert (outcome.outcome, outcome.reason) == (
        "pr_opened", "Raise memory limit of mem-example/memory-demo-2 to 150Mi after OOMKilled")
    assert "subject" not in [s.stage for s in outcome.stages], "the Pod itself is where the fix goes"
    body = bare.pr_body(1)
    assert '-          memory: "100Mi",\n+          memory: "150Mi",' in body, "KYAML quotes and commas kept"
    assert "Found by: Flux Kustomization flux-system/mem-example: path mem-example." in body
    assert "delete Pod memory-demo-2 so the sync recreates it" in body


@pytest.mark.parametrize("bare", [UNTRACKED], indirect=True)
def test_a_bare_pod_nothing_in_git_defines_is_no_fix_naming_what_was_looked_for(bare: World) -> None:
    outcome = bare.pipeline().handle(bare.incident())
    assert (outcome.outcome, outcome.cause) == ("no_fix", "oom_killed")
    assert outcome.reason == (
        "Pod app-02/giant-narwhal-6958c5bdd8-69gtn has no controller and no GitOps source defines it: it carries no "
        "GitOps tracking (looked for argocd.argoproj.io/tracking-id, app.kubernetes.io/instance, "
        "kustomize.toolkit.fluxcd.io/name, helm.toolkit.fluxcd.io/name), and no manifest in the GitOps repo defines "
        "Pod giant-narwhal-6958c5bdd8-69gtn in namespace app-02")
    assert bare.remote_branches() == ["main"] and bare.opened() == []


@pytest.mark.parametrize("bare", [UNTRACKED], indirect=True)
def test_a_bare_pod_whose_flux_owner_cannot_be_read_says_so(bare: World) -> None:
    objects = items(UNTRACKED)
    pod = by_name(objects, "Pod", "giant-narwhal-6958c5bdd8-69gtn")
    pod["metadata"]["labels"].update({"kustomize.toolkit.fluxcd.io/name": "apps",
                                      "kustomize.toolkit.fluxcd.io/namespace": "flux-system"})
    bare.cluster = SnapshotCluster(objects)  # no Kustomization apps: RBAC or a deleted object, it cannot be read
    outcome = bare.pipeline().handle(bare.incident())
    assert outcome.outcome == "no_fix"
    assert outcome.reason == (
        "Pod app-02/giant-narwhal-6958c5bdd8-69gtn has no controller and no GitOps source defines it: it carries "
        "kustomize.toolkit.fluxcd.io/name, but no Argo CD Application or Flux object that deploys it from the GitOps "
        "repo could be read, and no manifest in the GitOps repo defines Pod giant-narwhal-6958c5bdd8-69gtn in "
        "namespace app-02")


@pytest.mark.parametrize("bare", [FLUX_OOM], indirect=True)
def test_a_bare_pod_defined_in_plain_yaml_without_a_deployer_is_found_by_its_manifest(bare: World) -> None:
    """No Argo CD or Flux object readable and no tracking on the Pod: the one manifest defining it is still it."""
    objects = items(FLUX_OOM)
    pod = by_name(objects, "Pod", "memory-demo-2")
    pod["metadata"]["labels"] = {}
    bare.cluster = SnapshotCluster(objects, logs=json.loads((FLUX_OOM / "cluster.json").read_text())["logs"])
    outcome = bare.pipeline().handle(bare.incident())
    assert outcome.outcome == "pr_opened", outcome.reason
    assert next(s.decision for s in outcome.stages if s.stage == "source").startswith(
        "mem-example/memory-request-limit-2.yaml#0 via plain")
