"""The cause registry (app/causes.py): every cause on one line, detectors run in its order, findings ranked by
what the alert says, each detector's findings carry the facts its fixer takes, serialised as before."""

from __future__ import annotations

import json

import pytest

from app import causes, render
from app.models.causes import Cause, Facts
from app.models.changes import ChangeSet, Location, Plan, Risk
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from tests.conftest import SCENARIOS
from tests.unit.detectors.support import SHIPPED, Items, evidence, gathered, item

# Scenarios whose alert the detectors explain (the layout and LLM scenarios are about other stages).
SCENARIO_NAMES = sorted(p.name for p in SCENARIOS.iterdir()
                        if (p / "cluster.json").exists() and not p.name.startswith(("layout-", "llm-")))


# ---------------------------------------------------------------- the registry itself


def test_every_cause_is_on_exactly_one_line() -> None:
    assert [p.cause for p in causes.REGISTRY] == list(dict.fromkeys(p.cause for p in causes.REGISTRY))
    assert {p.cause for p in causes.REGISTRY} == set(Cause)


def test_every_fixable_cause_has_policy_paths() -> None:
    """Without paths in the shipped policy a rule's fix would be refused by the gates on every install."""
    for plugin in causes.REGISTRY:
        if plugin.fix is not None and plugin.cause != Cause.MODEL_PROPOSED:  # a model's: llm.paths instead
            assert SHIPPED["causes"][plugin.cause.value]["paths"], plugin.cause


def test_the_application_crash_runs_last() -> None:
    """It is what is left when no specific signal explains the crash."""
    from app.detectors import app_crash

    assert causes.DETECTORS[-1] is app_crash.detect


@pytest.mark.parametrize("scenario", SCENARIO_NAMES)
def test_findings_carry_the_facts_their_fixer_takes(scenario: str) -> None:
    """Each detector reports only causes registered for it; a fixable finding's facts are what the fixer takes."""
    ev = gathered(scenario)
    lines = {detect: {p.cause for p in causes.REGISTRY if p.detect is detect} for detect in causes.DETECTORS}
    found = 0
    for detect, registered in lines.items():
        diagnosis = detect(ev)
        if diagnosis is None:
            continue
        found += 1
        plugin = causes.BY_CAUSE[diagnosis.cause]
        assert diagnosis.cause in registered, (detect, diagnosis.cause)
        assert not diagnosis.fixable or (plugin.fix is not None and isinstance(diagnosis.finding.facts, plugin.facts))
    assert found, f"no detector recognises {scenario}"


# ---------------------------------------------------------------- diagnosis.json: the facts as the dicts were


ROLLBACK = ["container", "init", "failing_image", "pod", "previous_image", "previous_replicaset", "previous_revision"]


@pytest.mark.parametrize(("scenario", "cause", "keys"), [
    ("oom-deployment", "oom_killed", ["container", "init", "observed_limit", "observed_request", "restarts", "pod"]),
    ("image-pull-after-rollout", "image_pull_after_rollout", ROLLBACK),
    ("image-pull-no-working-revision", "image_pull_after_rollout", ["container", "init", "failing_image", "pod"]),
    ("config-reference-typo", "config_reference",
     ["kind", "missing", "key", "container", "pod", "references", "replacement"]),
    ("missing-secret", "missing_secret", ["kind", "missing", "key", "container", "pod", "references"]),
    ("unschedulable", "unschedulable", ["pod", "resources", "container"]),
    ("hpa-maxed-out", "hpa_maxed_out", ["max_replicas", "current_replicas", "quota_room"]),
    ("wrong-command", "bad_command",
     ["container", "init", "executable", "pod", "failing_command", "failing_args", "previous_command",
      "previous_args", "previous_replicaset", "previous_revision"]),
], ids=lambda v: v if isinstance(v, str) else None)
def test_facts_serialise_as_the_dicts_they_replaced(scenario: str, cause: str, keys: list[str]) -> None:
    """diagnosis.json (an MLflow artifact) keeps its keys, their order, and no key a dict did not have."""
    detect = causes.BY_CAUSE[Cause(cause)].detect
    assert detect is not None
    diagnosis = detect(gathered(scenario))
    assert diagnosis is not None
    data = json.loads(diagnosis.model_dump_json(indent=2))
    assert data["finding"]["cause"] == cause
    assert list(data["finding"]["facts"]) == keys


def test_a_stuck_rollout_is_the_last_fact() -> None:
    """app/detectors/rollout.py marks the finding it puts in context: the key comes last, as it did."""
    diagnosis = causes.diagnose(gathered("rollout-stuck-bad-image"))[0]
    facts = json.loads(diagnosis.model_dump_json(indent=2))["finding"]["facts"]
    assert list(facts) == [*ROLLBACK, "rollout_stuck"] and facts["rollout_stuck"] is True


def test_a_finding_without_facts_serialises_an_empty_object() -> None:
    finding = Finding(cause=Cause.OOM_KILLED, confidence=0.5, root_cause="r")
    assert finding.facts == Facts() and json.loads(finding.model_dump_json())["facts"] == {}


def test_unknown_causes_are_refused() -> None:
    with pytest.raises(ValueError, match="cause"):
        Finding(cause="oom_kiled", confidence=0.5, root_cause="r")  # type: ignore[arg-type]


# ---------------------------------------------------------------- ranking


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
    ev = evidence("oom-deployment", mutate=second_cause, labels=labels)
    assert ev.incident.pod is None and ev.pods, "the workload's pods are found without a pod label"
    found = causes.diagnose(ev)
    assert [d.cause for d in found][:2] == [Cause.OOM_KILLED, Cause.IMAGE_PULL_AFTER_ROLLOUT]
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
        pod = item(items, "Pod", "search-api-9c6d5b8f7-b7lzg")
        pod["status"]["containerStatuses"][0]["lastState"] = {"terminated": {
            "exitCode": 137, "reason": "OOMKilled", "startedAt": "2026-11-20T10:00:00Z",
            "finishedAt": "2026-11-21T03:12:44Z"}}
        pod["status"]["containerStatuses"][0]["restartCount"] = 1

    found = causes.diagnose(evidence("cpu-throttling", mutate=old_oom))
    assert [d.cause for d in found] == [Cause.CPU_THROTTLING, Cause.OOM_KILLED]


def test_no_detector_claims_an_unrelated_scenario() -> None:
    found = {d.cause for d in causes.diagnose(evidence("oom-statefulset"))}
    assert not found & {Cause.UNSCHEDULABLE, Cause.CPU_THROTTLING, Cause.HPA_MAXED_OUT, Cause.PVC_STORAGE_CLASS,
                        Cause.ROLLOUT_STUCK}


def _diag(cause: Cause, container: str) -> Diagnosis:
    return Diagnosis(detector=cause.value, finding=Finding(cause=cause, confidence=0.9, root_cause=cause.value,
                                                           container=container))


def _alert(alertname: str, labels: dict[str, str]) -> Evidence:
    incident = Incident(alertname=alertname, fingerprint="0123456789abcdef", status="firing",
                        starts_at="2026-11-23T15:00:00Z", labels={"namespace": "shop", **labels})
    return Evidence(incident=incident, workload=WorkloadRef(kind="Deployment", namespace="shop", name="checkout"),
                    object={"kind": "Deployment"})


def test_alert_reason_picks_the_finding_that_explains_it() -> None:
    """A KubeContainerWaiting ImagePullBackOff alert on a pod that was also OOM-killed gets the image fix."""
    ev = _alert("KubeContainerWaiting", {"pod": "checkout-6f5d4c8b9-x2v7q", "container": "checkout",
                                         "reason": "ImagePullBackOff"})
    oom, pull, other = (_diag(Cause.OOM_KILLED, "checkout"), _diag(Cause.IMAGE_PULL_AFTER_ROLLOUT, "checkout"),
                        _diag(Cause.OOM_KILLED, "sidecar"))
    assert [d.cause for d in causes.rank(ev, [oom, pull])] == [Cause.IMAGE_PULL_AFTER_ROLLOUT, Cause.OOM_KILLED]
    crash = _alert("KubeContainerWaiting", {"container": "checkout", "reason": "CrashLoopBackOff"})
    # No cause named by the reason: registry order stands, but the alert's container wins.
    assert [d.finding.container for d in causes.rank(crash, [other, oom])] == ["checkout", "sidecar"]


@pytest.mark.parametrize(("alertname", "reason", "wanted"), [
    ("KubeContainerWaiting", "ErrImagePull", Cause.IMAGE_PULL_AFTER_ROLLOUT),
    ("KubeContainerWaiting", "CreateContainerConfigError", Cause.MISSING_SECRET),
    ("KubePodCrashLooping", "OOMKilled", Cause.OOM_KILLED),
    ("KubeContainerWaiting", "RunContainerError", Cause.BAD_COMMAND),
    ("KubePodNotReady", "StartError", Cause.BAD_COMMAND),
    ("KubePodNotReady", "ContainerCannotRun", Cause.BAD_COMMAND),
    ("CPUThrottlingHigh", "", Cause.CPU_THROTTLING),
    ("KubeHpaMaxedOut", "", Cause.HPA_MAXED_OUT),
    ("KubernetesContainerOomKiller", "", Cause.OOM_KILLED),
    ("KubeJobFailed", "", Cause.APPLICATION_ERROR),
], ids=lambda v: v if isinstance(v, str) and v else None)
def test_what_the_alert_names_ranks_first(alertname: str, reason: str, wanted: Cause) -> None:
    """The alert's reason label (kube-state-metrics) or its name puts the finding it is about first."""
    ev = _alert(alertname, {"reason": reason} if reason else {})
    others = [_diag(c, "app") for c in (Cause.CPU_THROTTLING, Cause.PROBE_MISCONFIGURED) if c != wanted]
    assert causes.rank(ev, [*others, _diag(wanted, "app")])[0].cause == wanted
