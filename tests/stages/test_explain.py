"""Explain: the optional model writes the narrative of a rule's diagnosis; the rule's fix stands regardless."""

from __future__ import annotations

import pytest

from app import advice, causes, targets
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.policies import Policy
from app.stages import evidence, explain
from tests.conftest import EXAMPLES
from tests.stages.world import ScriptedAdvisor, incidents, snapshot

NARRATIVE = "The checkout container was OOMKilled at its 512Mi limit while building an invoice PDF batch."


@pytest.fixture(scope="module")
def demo() -> tuple[Evidence, Diagnosis]:
    incident = incidents(EXAMPLES / "demo")[0]
    cluster = snapshot()
    ev = evidence.collect(cluster=cluster, workload=targets.resolve(cluster, incident), incident=incident).evidence
    return ev, causes.diagnose(ev)[0]


@pytest.mark.parametrize(("with_advisor", "llm", "proposed_by", "wanted"), [
    pytest.param(True, {}, "rule", True, id="rule-with-model"),
    pytest.param(False, {}, "rule", False, id="no-model"),
    pytest.param(True, {"explain": False}, "rule", False, id="policy-says-no-explanations"),
    pytest.param(True, {"enabled": False}, "rule", False, id="policy-disables-the-model"),
    pytest.param(True, {}, "model:gpt-4o-mini", False, id="the-model-proposed-it-already"),
])
def test_wanted(policy: Policy, demo: tuple[Evidence, Diagnosis], with_advisor: bool, llm: dict[str, bool],
                proposed_by: str, wanted: bool) -> None:
    changed = policy.model_copy(update={"llm": policy.llm.model_copy(update=llm)})
    diagnosis = demo[1].model_copy(update={"proposed_by": proposed_by})
    advisor = ScriptedAdvisor() if with_advisor else None
    assert explain.wanted(advisor=advisor, diagnosis=diagnosis, policy=changed) is wanted


def test_the_models_narrative_is_kept_redacted(demo: tuple[Evidence, Diagnosis]) -> None:
    ev, diagnosis = demo
    advisor = ScriptedAdvisor(narrative=f"  {NARRATIVE} token=ghp_0123456789abcdefghijklmnopqrstuvwxyzAB \n")
    out = explain.explain(evidence=ev, diagnosis=diagnosis, advisor=advisor)
    assert out.narrative is not None and out.narrative.startswith(NARRATIVE)
    assert "ghp_0123456789" not in out.narrative
    assert out.decision == "model gpt-4o-mini consulted: wrote the explanation" == out.consultation.note
    (prompt,) = advisor.prompts
    assert prompt.purpose == "explain" and "OOMKilled" in prompt.user


def test_a_refusal_leaves_the_pr_without_a_narrative(demo: tuple[Evidence, Diagnosis]) -> None:
    ev, diagnosis = demo
    advisor = ScriptedAdvisor(error=advice.AdvisorError("the model refused to answer", code="llm_refused"))
    out = explain.explain(evidence=ev, diagnosis=diagnosis, advisor=advisor)
    assert out.narrative is None and out.stop is None, "the rule's fix stands"
    assert out.decision == "model gpt-4o-mini consulted: the model refused to answer; deterministic result kept"
    assert out.consultation.outcome == "llm_refused"
