"""Detectors and fixers for capacity causes (unschedulable, CPU throttling, HPA ceiling, StorageClass typo),
stuck rollouts and Job/init-container OOM kills, over realistic evidence.

Evidence is gathered by the real evidence stage from the scenarios' cluster snapshots (objects, events and
messages as the kubelet and controllers write them), with one field changed per case where a variant is
needed; the fixer gets the manifest from the scenario's git repo.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from app import detectors, evidence, fieldpaths, fixers, render, targets
from app.adapters.snapshot import SnapshotCluster
from app.errors import NoFix
from app.models.alertmanager import Alert
from app.models.changes import ChangeSet, Location, Plan, Risk
from app.models.evidence import Evidence
from app.models.incident import Incident
from app.policies import CpuBounds, HpaBounds, Policy, RequestBounds
from app.sources import yaml_rt
from tests.conftest import ROOT, SCENARIOS

Items = list[dict[str, Any]]


def _evidence(name: str, *, mutate: Callable[[Items], None] | None = None,
              labels: dict[str, str | None] | None = None) -> Evidence:
    data = json.loads((SCENARIOS / name / "cluster.json").read_text())
    items: Items = copy.deepcopy(data["items"])
    if mutate:
        mutate(items)
    cluster = SnapshotCluster(items, logs=data.get("logs"))
    raw = json.loads((SCENARIOS / name / "alert.json").read_text())["alerts"][0]
    for key, value in (labels or {}).items():
        if value is None:
            raw["labels"].pop(key, None)
        else:
            raw["labels"][key] = value
    incident = Incident.from_alert(Alert.model_validate(raw))
    return evidence.gather(cluster, targets.resolve(cluster, incident), incident)


def _git(name: str, path: str, *, replace: tuple[str, str] | None = None) -> dict[str, Any]:
    text = (SCENARIOS / name / "repo" / path).read_text()
    if replace:
        assert replace[0] in text
        text = text.replace(*replace)
    doc: dict[str, Any] = yaml_rt.documents(text)[0]
    return doc


def _item(items: Items, kind: str, name: str | None = None) -> dict[str, Any]:
    return next(i for i in items if i["kind"] == kind and (name is None or i["metadata"]["name"] == name))


def _container(obj: dict[str, Any], path: str = "spec.template.spec.containers[0]") -> dict[str, Any]:
    found: dict[str, Any] = fieldpaths.get(obj, path)
    return found


# ------------------------------------------------------------------------------------------------ mutations


def _request_memory(value: str) -> Callable[[Items], None]:
    def mutate(items: Items) -> None:
        _container(_item(items, "Deployment"))["resources"]["requests"]["memory"] = value
    return mutate


def _cordon_all(items: Items) -> None:
    for node in (i for i in items if i["kind"] == "Node"):
        node["spec"]["unschedulable"] = True
        node["spec"]["taints"] = [{"effect": "NoSchedule", "key": "node.kubernetes.io/unschedulable",
                                   "timeAdded": "2026-11-23T14:00:00Z"}]


def _cpu_short(items: Items) -> None:
    _container(_item(items, "Deployment"))["resources"]["requests"]["cpu"] = "6"
    msg = ("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption "
           "victims found for incoming pod.")
    _item(items, "Pod")["status"]["conditions"][0]["message"] = msg
    next(i for i in items if i["kind"] == "Event" and i["reason"] == "FailedScheduling")["message"] = msg


def _no_cpu_limit(items: Items) -> None:
    del _container(_item(items, "Deployment"))["resources"]["limits"]["cpu"]


def _no_quota(items: Items) -> None:
    items.remove(_item(items, "ResourceQuota"))


def _quota_full(items: Items) -> None:
    _item(items, "ResourceQuota")["status"]["used"]["requests.cpu"] = "2800m"


def _pinned(items: Items) -> None:
    _item(items, "HorizontalPodAutoscaler")["spec"]["minReplicas"] = 10


def _no_near_class(items: Items) -> None:
    items.remove(_item(items, "StorageClass", "fast-ssd"))


def _no_templates(items: Items) -> None:
    del _item(items, "StatefulSet")["spec"]["volumeClaimTemplates"]


# ------------------------------------------------------------------------------------------------ table

_shipped: dict[str, Any] = yaml.safe_load((ROOT / "policies" / "default.yaml").read_text())
DEFAULT = Policy.model_validate(_shipped)  # the policy a first install runs with
CASES: list[Any] = [
    # id, scenario, mutate, git replace, policy, expected {path: new} | NoFix code | "no_fix:<text>"
    ("unschedulable-memory-fits-90pct-of-largest-node", "unschedulable", None, None, DEFAULT,
     {"spec.template.spec.containers[name=report-builder].resources.requests.memory": "14318Mi"}),
    ("unschedulable-cpu", "unschedulable", _cpu_short, ('cpu: "2"', 'cpu: "6"'), DEFAULT,
     {"spec.template.spec.containers[name=report-builder].resources.requests.cpu": "3600m"}),
    ("unschedulable-request-fits-a-node-cluster-full", "unschedulable", _request_memory("12Gi"), None, DEFAULT,
     "no_fix:the cluster is full"),
    ("unschedulable-every-node-cordoned", "unschedulable", _cordon_all, None, DEFAULT, "no_fix:no node is eligible"),
    ("unschedulable-cut-below-floor", "unschedulable", None, None,
     Policy(requests=RequestBounds(min_ratio_to_git=0.7)), "cut_too_deep"),
    ("cpu-throttling-raise-by-step", "cpu-throttling", None, None, DEFAULT,
     {"spec.template.spec.containers[name=search-api].resources.limits.cpu": "750m"}),
    ("cpu-throttling-capped", "cpu-throttling", None, None, Policy(cpu=CpuBounds(max="600m")),
     {"spec.template.spec.containers[name=search-api].resources.limits.cpu": "600m"}),
    ("cpu-throttling-at-cap", "cpu-throttling", None, None, Policy(cpu=CpuBounds(max="500m")), "at_cap"),
    ("cpu-throttling-policy-removes-limits", "cpu-throttling", None, None, Policy(cpu=CpuBounds(remove_limit=True)),
     "remove_not_supported"),
    ("cpu-throttling-no-limit", "cpu-throttling", _no_cpu_limit, None, DEFAULT, "no_fix:no CPU limit"),
    ("hpa-quota-limits-raise", "hpa-maxed-out", None, None, DEFAULT, {"spec.maxReplicas": 14}),
    ("hpa-no-quota-step", "hpa-maxed-out", _no_quota, None, DEFAULT, {"spec.maxReplicas": 15}),
    ("hpa-policy-cap", "hpa-maxed-out", _no_quota, None, Policy(hpa=HpaBounds(max=12)), {"spec.maxReplicas": 12}),
    ("hpa-quota-full", "hpa-maxed-out", _quota_full, None, DEFAULT, "no_fix:ResourceQuota has no room"),
    ("hpa-pinned", "hpa-maxed-out", _pinned, None, DEFAULT, "no_fix:pinned on purpose"),
    ("pvc-typo-in-volume-claim-template", "pvc-storageclass-typo", None, None, DEFAULT,
     {"spec.volumeClaimTemplates[0].spec.storageClassName": "fast-ssd"}),
    ("pvc-no-near-class", "pvc-storageclass-typo", _no_near_class, None, DEFAULT, "no_fix:no StorageClass has a name"),
    ("pvc-standalone-claim", "pvc-storageclass-typo", _no_templates, None, DEFAULT,
     "no_fix:standalone PersistentVolumeClaim"),
    ("oom-cronjob-job-template", "oom-cronjob", None, None, DEFAULT,
     {"spec.jobTemplate.spec.template.spec.containers[name=exporter].resources.limits.memory": "1536Mi"}),
    ("rollout-stuck-new-replicaset-image", "rollout-stuck-bad-image", None, None, DEFAULT,
     {"spec.template.spec.containers[name=checkout].image": "ghcr.io/acme/checkout:1.4.2"}),
]
MANIFESTS = {"unschedulable": "apps/report-builder/deployment.yaml", "cpu-throttling": "apps/search-api/deployment.yaml",
             "hpa-maxed-out": "apps/frontend/hpa.yaml", "pvc-storageclass-typo": "apps/postgres/statefulset.yaml",
             "oom-cronjob": "apps/nightly-export/cronjob.yaml", "rollout-stuck-bad-image": "apps/checkout/deployment.yaml"}


@pytest.mark.parametrize(("scenario", "mutate", "replace", "policy", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_detect_and_plan(scenario: str, mutate: Callable[[Items], None] | None, replace: tuple[str, str] | None,
                         policy: Policy, expected: Any) -> None:
    found = detectors.diagnose(_evidence(scenario, mutate=mutate))
    assert found, "a detector must recognise the failure"
    diagnosis = found[0]
    if isinstance(expected, str) and expected.startswith("no_fix:"):
        assert not diagnosis.fixable, diagnosis
        assert expected.removeprefix("no_fix:") in str(diagnosis.no_fix_reason)
        return
    assert diagnosis.fixable, diagnosis.no_fix_reason
    document = _git(scenario, MANIFESTS[scenario], replace=replace)
    if isinstance(expected, str):
        with pytest.raises(NoFix) as err:
            fixers.plan(diagnosis, document, policy)
        assert err.value.code == expected
        return
    plan = fixers.plan(diagnosis, document, policy)
    assert {c.path: c.new for c in plan.changes} == expected
    assert all(any(fieldpaths.matches(c.path, g) for g in _default_policy()["causes"][plan.cause]["paths"])
               for c in plan.changes), "the shipped policy must allow the change"


def _default_policy() -> dict[str, Any]:
    return dict(_shipped)


# ------------------------------------------------------------------------------------------------ specific checks


def test_unschedulable_forces_high_risk_and_explains_the_limit() -> None:
    from app import risk

    diagnosis = detectors.diagnose(_evidence("unschedulable"))[0]
    document = _git("unschedulable", MANIFESTS["unschedulable"])
    plan = fixers.plan(diagnosis, document, DEFAULT)
    assessed = risk.assess(workload=document, namespace="analytics", plan=plan, policy=DEFAULT)
    assert assessed.level == "high" and assessed.score < 0.6, "the level is forced, not the score"
    assert "limit unchanged" in plan.changes[0].reason
    assert "largest eligible node k8s-worker-01 has allocatable 16290816Ki (15909Mi)" in diagnosis.finding.evidence[-1]


def test_stuck_rollout_focuses_on_the_new_replicaset_and_says_so() -> None:
    ev = _evidence("rollout-stuck-bad-image")
    newest = ev.replicasets[0]["metadata"]["uid"]
    assert ev.pods and all(p["metadata"]["ownerReferences"][0]["uid"] == newest for p in ev.pods)
    diagnosis = detectors.diagnose(ev)[0]
    assert diagnosis.cause == "image_pull_after_rollout"
    assert diagnosis.finding.root_cause.startswith("The rollout of shop/checkout is stuck: the pods of its new "
                                                   "ReplicaSet checkout-6f5d4c8b9 (revision 4) never became ready.")
    assert "ProgressDeadlineExceeded" in diagnosis.finding.evidence[0]


def test_stuck_rollout_without_a_recognised_cause_is_reported_without_fix() -> None:
    def healthy_pull(items: Items) -> None:  # the new pod is just not ready yet: nothing a rule knows
        pod = _item(items, "Pod", "checkout-6f5d4c8b9-t6rzb")
        pod["status"]["containerStatuses"][0]["state"] = {"running": {"startedAt": "2026-11-23T14:03:00Z"}}
        for event in [i for i in items if i["kind"] == "Event"]:
            items.remove(event)

    found = detectors.diagnose(_evidence("rollout-stuck-bad-image", mutate=healthy_pull))
    assert [d.cause for d in found] == ["rollout_stuck"]
    assert not found[0].fixable and "new ReplicaSet" in str(found[0].no_fix_reason)


def test_init_container_oom_raises_the_init_container_limit() -> None:
    init = {"name": "warm-cache", "image": "ghcr.io/acme/cache-warmer:0.4.1",
            "resources": {"requests": {"memory": "128Mi"}, "limits": {"memory": "256Mi"}}}

    def oom_in_init(items: Items) -> None:
        _item(items, "Deployment")["spec"]["template"]["spec"]["initContainers"] = [copy.deepcopy(init)]
        for pod in (i for i in items if i["kind"] == "Pod"):
            pod["spec"]["initContainers"] = [copy.deepcopy(init)]
            for cs in pod["status"].get("containerStatuses") or []:
                cs["lastState"] = {}
            pod["status"]["initContainerStatuses"] = [{
                "name": "warm-cache", "image": init["image"], "imageID": "", "ready": False, "restartCount": 4,
                "started": False, "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 1m20s"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": "2026-11-23T15:10:02Z",
                                             "finishedAt": "2026-11-23T15:10:31Z"}}}]

    ev = _evidence("oom-deployment", mutate=oom_in_init, labels={"container": "warm-cache"})
    diagnosis = detectors.diagnose(ev)[0]
    assert diagnosis.cause == "oom_killed" and diagnosis.finding.facts["init"] is True
    document = _git("oom-deployment", "apps/checkout/deployment.yaml")
    document["spec"]["template"]["spec"]["initContainers"] = [copy.deepcopy(init)]
    plan = fixers.plan(diagnosis, document, DEFAULT)
    assert {c.path: c.new for c in plan.changes} == {
        "spec.template.spec.initContainers[name=warm-cache].resources.limits.memory": "384Mi"}
    paths = _default_policy()["causes"]["oom_killed"]["paths"]
    assert any(fieldpaths.matches(plan.changes[0].path, g) for g in paths)
    job_init = "spec.jobTemplate.spec.template.spec.initContainers[name=x].resources.limits.memory"
    assert any(fieldpaths.matches(job_init, g) for g in paths), "CronJob init containers too"


def test_workload_alert_without_pod_picks_the_failing_pods_and_reports_every_cause() -> None:
    """KubeDeploymentReplicasMismatch names no pod; a second cause seen at once is reported, not fixed."""
    def second_cause(items: Items) -> None:
        pod = next(i for i in items if i["kind"] == "Pod")
        pod["status"]["containerStatuses"].append({
            "name": "envoy", "image": "envoyproxy/envoy:v1.99.0", "imageID": "", "ready": False, "restartCount": 0,
            "started": False, "lastState": {},
            "state": {"waiting": {"reason": "ImagePullBackOff",
                                  "message": 'Back-off pulling image "envoyproxy/envoy:v1.99.0"'}}})

    labels: dict[str, str | None] = {"alertname": "KubeDeploymentReplicasMismatch", "deployment": "checkout",
                                     "pod": None, "container": None, "reason": None, "uid": None}
    ev = _evidence("oom-deployment", mutate=second_cause, labels=labels)
    assert ev.incident.pod is None and ev.pods, "the workload's pods are found without a pod label"
    found = detectors.diagnose(ev)
    assert [d.cause for d in found][:2] == ["oom_killed", "image_pull_after_rollout"]
    first = found[0].model_copy(update={"others": [d.finding for d in found[1:]]})
    plan = Plan(cause=first.cause, summary="Raise memory limit", changes=[])
    changeset = ChangeSet(location=Location(path="apps/checkout/deployment.yaml", source="argocd"), plan=plan,
                          files=[], risk=Risk(score=0.2, level="low", factors=[]))
    body = render.pr_body(workload=ev.workload, diagnosis=first, changeset=changeset, run_url="https://mlflow/x",
                          alert=ev.incident.alertname)
    assert "Also seen (not fixed here): Image envoyproxy/envoy:v1.99.0 of container envoy" in body


def test_alert_specific_detectors_win_over_history() -> None:
    """CPUThrottlingHigh on a container that was also OOM-killed once: the alert is about throttling."""
    def old_oom(items: Items) -> None:
        pod = _item(items, "Pod", "search-api-9c6d5b8f7-b7lzg")
        pod["status"]["containerStatuses"][0]["lastState"] = {"terminated": {
            "exitCode": 137, "reason": "OOMKilled", "startedAt": "2026-11-20T10:00:00Z",
            "finishedAt": "2026-11-21T03:12:44Z"}}
        pod["status"]["containerStatuses"][0]["restartCount"] = 1

    found = detectors.diagnose(_evidence("cpu-throttling", mutate=old_oom))
    assert [d.cause for d in found] == ["cpu_throttling", "oom_killed"]


def test_no_detector_claims_an_unrelated_scenario() -> None:
    causes = {d.cause for d in detectors.diagnose(_evidence("oom-statefulset"))}
    assert not causes & {"unschedulable", "cpu_throttling", "hpa_maxed_out", "pvc_storage_class", "rollout_stuck"}


def test_alert_reason_picks_the_finding_that_explains_it() -> None:
    """A KubeContainerWaiting ImagePullBackOff alert on a pod that was also OOM-killed gets the image fix."""
    from app.detectors import rank
    from app.models.diagnosis import Diagnosis, Finding
    from app.models.evidence import Evidence
    from app.models.incident import Incident, WorkloadRef

    incident = Incident(alertname="KubeContainerWaiting", fingerprint="0123456789abcdef", status="firing",
                        starts_at="2026-11-23T15:00:00Z",
                        labels={"namespace": "shop", "pod": "checkout-6f5d4c8b9-x2v7q", "container": "checkout",
                                "reason": "ImagePullBackOff"})
    ev = Evidence(incident=incident, workload=WorkloadRef(kind="Deployment", namespace="shop", name="checkout"),
                  object={"kind": "Deployment"})

    def diag(cause: str, container: str) -> Diagnosis:
        return Diagnosis(detector=cause, finding=Finding(cause=cause, confidence=0.9, root_cause=cause,
                                                         container=container))

    oom, pull, other = diag("oom_killed", "checkout"), diag("image_pull_after_rollout", "checkout"), \
        diag("oom_killed", "sidecar")
    assert [d.cause for d in rank(ev, [oom, pull])] == ["image_pull_after_rollout", "oom_killed"]
    crash = ev.model_copy(update={"incident": incident.model_copy(update={"labels": {
        "namespace": "shop", "container": "checkout", "reason": "CrashLoopBackOff"}})})
    # No cause named by the reason: registry order stands, but the alert's container wins.
    assert [d.finding.container for d in rank(crash, [other, oom])] == ["checkout", "sidecar"]
