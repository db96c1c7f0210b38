"""Rollbacks to a revision that ran but no longer runs (app/detectors/revisions.py): a previous ReplicaSet
scaled to 0 (strategy Recreate, one replica) counts as having worked when the evidence shows it ran, available,
until this rollout replaced it; the fixers hold how long against the policy (rollback.min_available_seconds).

Evidence is the real-rollback-* scenarios' (podinfo's chart on Argo CD, fluxcd/flux2-kustomize-helm-example),
varied the way incidents vary: the scale-down event expired, the Deployment unavailable before the rollout, a
ReplicaSet reused by an earlier rollback, the older kubelet/controller wording.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from app import causes, policies
from app.detectors import revisions
from app.errors import NoFix
from app.models.causes import CommandRollbackFacts, ImageRollbackFacts
from tests.unit.detectors.support import DEFAULT, Items, check_case, evidence, item

REDIS = "real-rollback-recreate-redis"
SHORT = "real-rollback-short-lived-revision"
FLUX = "real-rollback-flux-production-values"
PREVIOUS = "podinfo-redis-5d8b7c9f64"


def _events(items: Items, reason: str) -> list[dict[str, Any]]:
    return [i for i in items if i["kind"] == "Event" and i["reason"] == reason]


def _no_scale_events(items: Items) -> None:  # older than the API server's event TTL (1 h): gone
    for event in _events(items, "ScalingReplicaSet"):
        items.remove(event)


def _unavailable_since_morning(items: Items) -> None:
    available = item(items, "Deployment")["status"]["conditions"][0]
    available["lastTransitionTime"] = available["lastUpdateTime"] = "2026-11-23T09:12:40Z"


def _reused(items: Items) -> None:  # revision 2 is an old ReplicaSet a rollback brought back
    rs = item(items, "ReplicaSet", PREVIOUS)
    rs["metadata"]["annotations"][revisions.REUSED] = "1"
    rs["metadata"]["creationTimestamp"] = "2026-03-02T10:00:00Z"


def _reused_without_history(items: Items) -> None:
    _reused(items)
    item(items, "Application")["status"]["history"] = item(items, "Application")["status"]["history"][-1:]


def _old_wording(items: Items) -> None:  # Kubernetes before 1.26: "... to 0", no "from N"
    for event in _events(items, "ScalingReplicaSet"):
        event["message"] = event["message"].split(" from ")[0]


def _facts(scenario: str, mutate: Any = None) -> ImageRollbackFacts:
    diagnosis = causes.diagnose(evidence(scenario, mutate=mutate))[0]
    assert diagnosis.fixable, diagnosis.no_fix_reason
    assert isinstance(diagnosis.finding.facts, ImageRollbackFacts)
    return diagnosis.finding.facts


# ---------------------------------------------------------------- which evidence counts


@pytest.mark.parametrize(("mutate", "ran", "line"), [
    (None, 2956834, "scaled down to 0 at 2026-11-23T14:02:11Z (event ScalingReplicaSet: Scaled down replica set "
                    "podinfo-redis-5d8b7c9f64 to 0 from 1); ran 34 d 5 h"),
    (_old_wording, 2956834, "(event ScalingReplicaSet: Scaled down replica set podinfo-redis-5d8b7c9f64 to 0)"),
    (_no_scale_events, 2956836, "replaced at 2026-11-23T14:02:13Z, when the next revision's ReplicaSet was created"),
    (_reused, 2956836, "deployed by the GitOps sync before the last one at 2026-10-20T08:41:35Z, scaled down"),
], ids=["scale-down-event", "older-wording", "event-expired", "reused-replicaset-argocd-history"])
def test_a_scaled_down_revision_worked_for_as_long_as_the_evidence_shows(mutate: Any, ran: int, line: str) -> None:
    diagnosis = causes.diagnose(evidence(REDIS, mutate=mutate))[0]
    facts = diagnosis.finding.facts
    assert diagnosis.fixable and isinstance(facts, ImageRollbackFacts)
    assert (facts.previous_image, facts.previous_revision, facts.previous_ran_seconds) == ("redis:8.8.0", 2, ran)
    assert any(line in e for e in diagnosis.finding.evidence), diagnosis.finding.evidence
    assert any(e.startswith("Argo CD Application podinfo status.history: revision 8d2e4f6 deployed "
                            "2026-10-20T08:41:35Z") for e in diagnosis.finding.evidence)


@pytest.mark.parametrize(("mutate", "needle"), [
    (_unavailable_since_morning, "condition Available=False MinimumReplicasUnavailable since 2026-11-23T09:12:40Z, "
                                 "before that revision was replaced at 2026-11-23T14:02:11Z: it was failing already"),
    (_reused_without_history, "neither its ReplicaSet nor the GitOps history shows when it last started"),
], ids=["unavailable-before-the-rollout", "reused-replicaset-no-history"])
def test_a_scaled_down_revision_without_evidence_that_it_worked_is_no_fix(mutate: Any, needle: str) -> None:
    diagnosis = causes.diagnose(evidence(REDIS, mutate=mutate))[0]
    assert not diagnosis.fixable
    assert needle in str(diagnosis.no_fix_reason) and "fix the image reference by hand" in str(diagnosis.no_fix_reason)


def test_a_replicaset_serving_now_needs_no_time_and_keeps_its_facts_as_they_were() -> None:
    diagnosis = causes.diagnose(evidence("image-pull-after-rollout"))[0]
    facts = json.loads(diagnosis.model_dump_json())["finding"]["facts"]
    assert "previous_ran_seconds" not in facts and facts["previous_image"] == "ghcr.io/acme/checkout:1.4.2"
    assert diagnosis.finding.evidence[-1].endswith("ran ghcr.io/acme/checkout:1.4.2 with 3 ready pod(s)")


def test_the_time_it_ran_is_written_to_the_facts_when_it_was_scaled_down() -> None:
    diagnosis = causes.diagnose(evidence(REDIS))[0]
    facts = json.loads(diagnosis.model_dump_json())["finding"]["facts"]
    assert list(facts)[-2:] == ["previous_ran_seconds", "rollout_stuck"] and facts["previous_ran_seconds"] == 2956834


def test_flux_helmrelease_history_is_quoted() -> None:
    diagnosis = causes.diagnose(evidence(FLUX))[0]
    assert ("Flux HelmRelease podinfo/podinfo status.history: release 8 (chart podinfo 6.14.1, values "
            "sha256:4e1c0f7d2b9a) deployed 2026-07-22T18:04:51Z, status deployed; then release 9 (chart podinfo "
            "6.14.1, values sha256:b7d3e9a1c5f2) deployed 2026-11-23T13:20:08Z, status failed") \
        in diagnosis.finding.evidence


# ---------------------------------------------------------------- the policy's minimum


def _rendered(facts: ImageRollbackFacts) -> dict[str, Any]:
    """The workload as the chart renders it from git (values-prod.yaml sets the tag the cluster runs)."""
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "podinfo-redis"},
            "spec": {"template": {"spec": {"containers": [{"name": facts.container, "image": facts.failing_image}]}}}}


def test_a_revision_that_ran_seconds_is_no_fix_and_the_older_one_is_not_taken() -> None:
    diagnosis = causes.diagnose(evidence(SHORT))[0]
    facts = _facts(SHORT)
    assert (facts.previous_image, facts.previous_ran_seconds) == ("redis:8.8.0", 21)  # not 8.6.3, which ran weeks
    with pytest.raises(NoFix, match=r"ran redis:8\.8\.0 for only 21 s before it was scaled down, less than the "
                                    r"10 min a revision must have run") as err:
        causes.plan(diagnosis, _rendered(facts), DEFAULT)
    assert err.value.code == "unproven_revision"


@pytest.mark.parametrize(("minimum", "fixable"), [(0, True), (21, True), (22, False)])
def test_the_minimum_is_policy(minimum: int, fixable: bool) -> None:
    policy = DEFAULT.model_copy(update={"rollback": policies.RollbackPolicy(min_available_seconds=minimum)})
    diagnosis = causes.diagnose(evidence(SHORT))[0]
    document = _rendered(_facts(SHORT))
    if fixable:
        plan = causes.plan(diagnosis, document, policy)
        assert [c.new for c in plan.changes] == ["redis:8.8.0"]
    else:
        with pytest.raises(NoFix) as err:
            causes.plan(diagnosis, document, policy)
        assert err.value.code == "unproven_revision"


# ---------------------------------------------------------------- the command rollback reads the same evidence


def _recreated(items: Items) -> None:
    """wrong-command with strategy Recreate: the working revision 8 was scaled to 0 before revision 9 started."""
    dep = item(items, "Deployment")
    dep["spec"]["strategy"] = {"type": "Recreate"}
    dep["status"]["conditions"][0].update({"lastTransitionTime": "2026-11-23T14:40:17Z", "status": "False",
                                           "reason": "MinimumReplicasUnavailable",
                                           "message": "Deployment does not have minimum availability."})
    rs = item(items, "ReplicaSet", "notifications-78d4b6c9f5")
    rs["spec"]["replicas"] = 0
    rs["status"] = {"observedGeneration": 3, "replicas": 0}
    items.append({"apiVersion": "v1", "kind": "Event", "count": 1, "type": "Normal", "reason": "ScalingReplicaSet",
                  "involvedObject": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "notifications",
                                     "namespace": dep["metadata"]["namespace"], "uid": dep["metadata"]["uid"]},
                  "message": "Scaled down replica set notifications-78d4b6c9f5 to 0 from 3",
                  "firstTimestamp": "2026-11-23T14:40:16Z", "lastTimestamp": "2026-11-23T14:40:16Z",
                  "metadata": {"name": "notifications.187a9c2d4e6f8a01", "namespace": dep["metadata"]["namespace"]},
                  "source": {"component": "deployment-controller"}})


def test_a_scaled_down_revisions_command_is_restored_with_the_time_it_ran() -> None:
    diagnosis = causes.diagnose(evidence("wrong-command", mutate=_recreated))[0]
    facts = diagnosis.finding.facts
    assert diagnosis.fixable and isinstance(facts, CommandRollbackFacts)
    assert facts.previous_revision == 8 and facts.previous_ran_seconds == 968912
    assert "for 11 d 5 h until this rollout scaled it down (strategy Recreate)" in diagnosis.finding.root_cause
    check_case("wrong-command", "apps/notifications/deployment.yaml", _recreated, None, DEFAULT,
               {"spec.template.spec.containers[name=notifications].command[0]": "gunicorn"})
