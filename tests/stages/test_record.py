"""Record: the run record is a pure function of the stage outputs (and the outcome or failure)."""

from __future__ import annotations

from app.models.outcome import Outcome, StageRecord
from app.stages import diagnosis, evidence, explain, record, target
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
