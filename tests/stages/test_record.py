"""Record: the run record is a pure function of the stage outputs (and the outcome or failure)."""

from __future__ import annotations

import json
import math

import pytest

from app.models.changes import ChangeSet, FieldChange, Location, Plan, Risk
from app.models.metrics import MEMORY, Curve, Metrics, Query, Series
from app.models.outcome import Outcome, StageRecord
from app.stages import diagnosis, evidence, explain, record, target
from app.stages.change import Change
from tests.stages.world import ScriptedAdvisor, World

STAGES = [StageRecord(stage="target", seconds=0.01, decision="workload Deployment/shop/checkout"),
          StageRecord(stage="evidence", seconds=0.02, decision="3 pod(s), 13 event(s), 3 log(s)")]


def _outputs(world: World) -> list[record.Recorded]:
    incident = world.incident()
    found = target.resolve(cluster=world.cluster, incident=incident, policy=world.policy, own_namespace=None)
    gathered = evidence.collect(cluster=world.cluster, workload=found.workload, incident=incident)
    advisor = ScriptedAdvisor(narrative="The container ran out of memory.")
    diagnosed = diagnosis.diagnose(evidence=gathered.evidence, policy=world.policy, advisor=advisor)
    assert diagnosed.diagnosis is not None
    explained = explain.explain(evidence=gathered.evidence, diagnosis=diagnosed.diagnosis, advisor=advisor)
    return [found, gathered, diagnosed, explained]


def test_the_same_outputs_give_the_same_record(world: World) -> None:
    outputs = _outputs(world)
    first = record.build(outputs=outputs, stages=STAGES, outcome=None, policy_version="v1")
    assert first == record.build(outputs=outputs, stages=STAGES, outcome=None, policy_version="v1")
    assert first.metrics["seconds_target"] == 0.01 and first.metrics["seconds_evidence"] == 0.02
    assert first.tags == {"namespace": "shop", "workload": "checkout", "kind": "Deployment", "cause": "oom_killed",
                          "llm_outcome": "answered"}
    assert sorted(first.artifacts) == ["diagnosis.json", "evidence.json", "llm/explain_answer.json",
                                       "llm/explain_prompt.md"]
    assert first.params == {"detector": "oom", "model": "gpt-4o-mini", "llm_model": "gpt-4o-mini-2024-07-18",
                            "policy_version": "v1"}
    assert (first.metrics["llm_tokens_in"], first.metrics["llm_tokens_out"]) == (812.0, 64.0)


def test_the_outcome_and_the_record_share_one_summary(world: World) -> None:
    outputs = _outputs(world)
    facts = record.summary(outputs)
    assert (str(facts.workload), facts.cause) == ("Deployment/shop/checkout", "oom_killed")
    assert facts.note == "model gpt-4o-mini consulted: wrote the explanation"
    outcome = Outcome(alertname="KubePodCrashLooping", fingerprint="d09fc39d073c7e73", outcome="no_fix",
                      reason=f"x ({facts.note})", cause=facts.cause)
    built = record.build(outputs=outputs, stages=STAGES, outcome=outcome, policy_version="v1")
    assert (built.tags["outcome"], built.tags["reason"]) == ("no_fix", outcome.reason)
    assert "outcome.json" in built.artifacts and "pr_url" not in built.tags


def test_a_retry_is_recorded_without_an_outcome(world: World) -> None:
    found = target.resolve(cluster=world.cluster, incident=world.incident(), policy=world.policy, own_namespace=None)
    built = record.build(outputs=[found], stages=STAGES[:1], outcome=None, policy_version="v1",
                         failure=record.Failure(outcome="retry", reason="cluster: 503 " + "x" * 600))
    assert built.tags["outcome"] == "retry" and len(built.tags["reason"]) == 500
    assert built.params == {"policy_version": "v1", "model": "none"} and built.artifacts == {}


# ---- metrics: what Prometheus was asked and said, the curve a sizing read ---------------------------------------

ALERT_AT = 1_795_965_329.0
QUERY = ('max by (pod) (container_memory_working_set_bytes{job="kubelet", metrics_path="/metrics/cadvisor", '
         'namespace="shop", pod=~"checkout-([bcdfghjklmnpqrstvwxz2456789]{1,10})-[a-z0-9]{5}", container="checkout", '
         'container!="POD"})')


def _read(status: str, reason: str = "") -> Metrics:
    points = [(ALERT_AT - 259_200 + i * 300, 2.1e8 + i * 1e5) for i in range(864)]
    series = [Series(name=MEMORY, pod="checkout-7d9f8b6c5-fghij", container="checkout", revision="7d9f8b6c5",
                     image="ghcr.io/acme/checkout:1.4.2", points=points)] if status == "ok" else []
    return Metrics(status=status, reason=reason, source="http://prometheus-k8s.monitoring.svc:9090",
                   start=ALERT_AT - 259_200, end=ALERT_AT, series=series,
                   queries=[Query(name=MEMORY, promql=QUERY, start=ALERT_AT - 259_200, end=ALERT_AT, step=300)])


def _with_metrics(world: World, read: Metrics | None) -> list[record.Recorded]:
    found, gathered, *rest = _outputs(world)
    assert isinstance(gathered, evidence.Gathered)
    ev = gathered.evidence.model_copy(update={"metrics": read})
    return [found, evidence.Gathered(evidence=ev, decision=gathered.decision), *rest]


def test_the_metrics_asked_and_answered_are_recorded_without_the_samples(world: World) -> None:
    built = record.build(outputs=_with_metrics(world, _read("ok")), stages=STAGES, outcome=None,
                         policy_version="v1")
    summary = json.loads(built.artifacts["metrics/summary.json"])
    assert (summary["status"], summary["window"]) == ("ok", {"start": ALERT_AT - 259_200, "end": ALERT_AT})
    assert summary["queries"] == [{"name": MEMORY, "promql": QUERY, "start": ALERT_AT - 259_200, "end": ALERT_AT,
                                   "step": 300.0}]
    assert summary["series"] == [{"name": MEMORY, "pod": "checkout-7d9f8b6c5-fghij", "container": "checkout",
                                  "revision": "7d9f8b6c5", "image": "ghcr.io/acme/checkout:1.4.2", "samples": 864,
                                  "first": ALERT_AT - 259_200, "last": ALERT_AT - 300}]
    kept = json.loads(built.artifacts["evidence.json"])["metrics"]
    assert kept["series"][0]["pod"] == "checkout-7d9f8b6c5-fghij" and "points" not in kept["series"][0]
    without = record.build(outputs=_with_metrics(world, None), stages=STAGES, outcome=None, policy_version="v1")
    grown = len(built.artifacts["evidence.json"]) - len(without.artifacts["evidence.json"])
    assert grown < 2000, f"{grown} characters: 864 samples would be about 80,000"


@pytest.mark.parametrize(("status", "reason", "summary"), [
    ("unavailable", "prometheus: connection refused", True), ("no_data", "no series for shop/checkout", True),
    ("not_configured", "AUTOFIX_PROMETHEUS_URL is not set", False), (None, "", False)])
def test_why_there_were_no_metrics_is_recorded_unless_none_were_configured(world: World, status: str | None,
                                                                             reason: str, summary: bool) -> None:
    read = _read(status, reason) if status else None
    built = record.build(outputs=_with_metrics(world, read), stages=STAGES, outcome=None, policy_version="v1")
    assert ("metrics/summary.json" in built.artifacts) is summary
    if summary:
        assert json.loads(built.artifacts["metrics/summary.json"])["reason"] == reason
    assert json.loads(built.artifacts["evidence.json"])["metrics"] == (read.model_dump(mode="json") if read else None)


def test_the_curve_a_sizing_read_is_an_artifact_and_its_statistics_metrics(world: World) -> None:
    shown = Curve(title="memory working set of checkout (all pods)", unit="MiB", end=ALERT_AT,
                  points=[(ALERT_AT - 3600 * h, 300.0 + h) for h in range(72, -1, -1)], threshold=512.0,
                  threshold_label="limit 512Mi", promql=QUERY, verdict="undersized: a plateau near the limit",
                  stats={"min": 300.0, "p95": 370.4, "max": 372.0, "growth_per_hour": -1.0, "a b": 1.0,
                         "hours_to_limit": math.inf})
    change = FieldChange(path="spec.template.spec.containers[name=checkout].resources.limits.memory", old="512Mi",
                         new="768Mi")
    changeset = ChangeSet(location=Location(path="apps/checkout/deployment.yaml", source="argocd"),
                          plan=Plan(cause="oom_killed", summary="Raise", changes=[change], curve=shown),
                          files=[], risk=Risk(score=0.29, level="low", factors=[]))
    outputs = [*_outputs(world), Change(changeset=changeset, decision="planned")]
    built = record.build(outputs=outputs, stages=STAGES, outcome=None, policy_version="v1")
    read_back = Curve.model_validate_json(built.artifacts["metrics/curve.json"])
    assert read_back == shown.model_copy(update={"stats": {k: v for k, v in shown.stats.items() if k != "hours_to_limit"}})
    assert {k: v for k, v in built.metrics.items() if k.startswith("curve_")} == {
        "curve_min": 300.0, "curve_p95": 370.4, "curve_max": 372.0, "curve_growth_per_hour": -1.0}
    without = changeset.model_copy(update={"plan": changeset.plan.model_copy(update={"curve": None})})
    plain = record.build(outputs=[*_outputs(world), Change(changeset=without, decision="planned")], stages=STAGES,
                         outcome=None, policy_version="v1")
    assert not [k for k in [*plain.artifacts, *plain.metrics] if "curve" in k]
