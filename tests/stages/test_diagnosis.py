"""Diagnosis: the detectors first; when none matched, the optional model's proposal, or no_fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import advice, targets
from app.models.evidence import Evidence
from app.policies import Policy
from app.stages import diagnosis, evidence
from tests.conftest import EXAMPLES, SCENARIOS
from tests.stages.world import ScriptedAdvisor, incidents, snapshot

READINESS = SCENARIOS / "llm-readiness-timeout"  # a readiness probe too short: no detector knows it


def _evidence(scenario: Path) -> Evidence:
    incident = incidents(scenario)[0]
    cluster = snapshot(scenario)
    return evidence.collect(cluster=cluster, workload=targets.resolve(cluster, incident), incident=incident).evidence


def _proposal() -> advice.Proposal:
    return advice.Proposal.model_validate(json.loads((READINESS / "model_reply.json").read_text()))


@pytest.mark.parametrize(("scenario", "decision", "cause"), [
    pytest.param(EXAMPLES / "demo", "oom: oom_killed", "oom_killed", id="oom"),
    pytest.param(SCENARIOS / "image-pull-after-rollout", "image_pull: image_pull_after_rollout",
                 "image_pull_after_rollout", id="image-pull"),
])
def test_a_detector_that_matches_decides(policy: Policy, scenario: Path, decision: str, cause: str) -> None:
    out = diagnosis.diagnose(evidence=_evidence(scenario), policy=policy, advisor=ScriptedAdvisor())
    assert out.diagnosis is not None and out.diagnosis.cause == cause
    assert (out.decision, out.stop, out.consultation) == (decision, None, None), "the model is not asked"


def test_a_cause_with_no_fix_in_git_ends_with_its_root_cause(policy: Policy) -> None:
    out = diagnosis.diagnose(evidence=_evidence(SCENARIOS / "missing-secret"), policy=policy, advisor=None)
    assert out.diagnosis is not None and out.diagnosis.cause == "missing_secret"
    assert out.decision.endswith(": missing_secret (no fix)")
    assert out.stop is not None and out.stop.kind == "no_fix"
    assert "db-credentials" in out.stop.reason and " No fix: " in out.stop.reason


def test_nothing_recognised_and_no_model_is_no_fix(policy: Policy) -> None:
    out = diagnosis.diagnose(evidence=_evidence(READINESS), policy=policy, advisor=None)
    reason = ("no detector recognised the failure of Deployment/payments/ledger-api: see the evidence in MLflow")
    assert out.diagnosis is None and out.stop is not None
    assert (out.stop.kind, out.stop.code, out.stop.reason) == ("no_fix", "unknown_cause", reason)
    assert out.decision == f"stopped: {reason}"


def test_the_models_proposal_becomes_the_diagnosis(policy: Policy) -> None:
    advisor = ScriptedAdvisor(proposal=_proposal())
    out = diagnosis.diagnose(evidence=_evidence(READINESS), policy=policy, advisor=advisor)
    assert out.diagnosis is not None and out.stop is None
    assert (out.diagnosis.cause, out.diagnosis.proposed_by) == ("model_proposed", "model:gpt-4o-mini")
    assert out.decision == "model: model_proposed"
    asked = out.consultation
    assert asked is not None and asked.outcome == "answered"
    assert asked.note == "model gpt-4o-mini consulted: proposed 1 change(s), gated by policy"
    assert asked.usage is not None and asked.usage.tokens_in == 812
    assert json.loads(asked.answer_json or "")["changes"][0]["value"] == 3
    (prompt,) = advisor.prompts
    assert prompt.purpose == "propose" and "readinessProbe.timeoutSeconds" in prompt.user
    assert asked.prompt.startswith("# system\n\n") and "# user\n\n" in asked.prompt


def test_a_model_that_fails_leaves_the_deterministic_result(policy: Policy) -> None:
    usage = advice.Usage(model="gpt-4o-mini", tokens_in=900, tokens_out=0, seconds=20.0)
    advisor = ScriptedAdvisor(error=advice.AdvisorError("LLM timed out after 20 s", code="llm_timeout", usage=usage))
    out = diagnosis.diagnose(evidence=_evidence(READINESS), policy=policy, advisor=advisor)
    assert out.diagnosis is None and out.stop is not None and out.stop.code == "unknown_cause"
    asked = out.consultation
    assert asked is not None and (asked.outcome, asked.usage, asked.answer_json) == ("llm_timeout", usage, None)
    assert asked.note == "model gpt-4o-mini consulted: LLM timed out after 20 s; deterministic result kept"


def test_a_policy_that_lets_the_model_touch_nothing_does_not_ask_it(policy: Policy) -> None:
    off = policy.model_copy(update={"llm": policy.llm.model_copy(update={"propose": False})})
    advisor = ScriptedAdvisor(proposal=_proposal())
    out = diagnosis.diagnose(evidence=_evidence(READINESS), policy=off, advisor=advisor)
    assert out.stop is not None and out.stop.code == "unknown_cause" and out.consultation is None
    assert advisor.prompts == []
