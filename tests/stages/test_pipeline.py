"""The pipeline in process: the order of the stages, the one place the handling ends, and the run record built
from the stage outputs, on the demo (snapshot cluster, bare repo, local forge, job store)."""

from __future__ import annotations

import json

import pytest

from app.errors import TemporaryError
from app.models.outcome import Outcome
from app.models.runs import run_of
from tests.stages.world import World

CHANGE = ["source", "plan", "validate", "history", "risk", "gates"]


def _names(outcome: Outcome) -> list[str]:
    return [s.stage for s in outcome.stages]


def test_an_alert_becomes_one_pr_and_one_record_that_agree(world: World) -> None:
    outcome = world.pipeline().handle(world.incident())
    assert (outcome.outcome, outcome.reason) == ("pr_opened", "Raise memory limit of shop/checkout to 768Mi after OOMKilled")
    assert _names(outcome) == ["intake", "target", "evidence", "diagnosis", "ledger", *CHANGE, "publish"]
    assert (outcome.workload, outcome.cause) == ("Deployment/shop/checkout", "oom_killed")
    assert outcome.stages[-1].decision == "PR #1 opened"
    [pr] = world.opened()
    assert pr["branch"] == outcome.branch == "autofix/shop/checkout/oom-killed"
    assert outcome.run is not None and outcome.run.key == outcome.record_id
    record, status = outcome.run.record, outcome.run.status
    assert status == "FINISHED" and outcome.run.branch == outcome.branch, "the exporter links this PR to the run"
    assert record.tags["autofix_record"] == outcome.record_id
    body = (world.prs / "1-autofix__shop__checkout__oom-killed" / "body.md").read_text()
    assert record.artifacts["pr_body.md"] == body, "the PR and the record are rendered from one change record"
    assert json.loads(record.artifacts["outcome.json"]) == outcome.model_dump(mode="json")
    assert {k: record.tags[k] for k in ("outcome", "cause", "ledger", "gate", "manifest", "workload")} == {
        "outcome": "pr_opened", "cause": "oom_killed", "ledger": "proceed", "gate": "passed",
        "manifest": "apps/checkout/deployment.yaml", "workload": "checkout"}
    assert {f"seconds_{s.stage}" for s in outcome.stages} <= set(record.metrics)
    assert record.params == {"detector": "oom", "model": "none", "policy_version": world.policy.digest or "builtin"}


def test_the_same_alert_again_is_a_duplicate_of_the_open_pr(world: World) -> None:
    first = world.pipeline().handle(world.incident(0))
    again = world.pipeline().handle(world.incident(1))  # another pod of the same Deployment
    assert (again.outcome, again.reason, again.pr_url) == ("duplicate", "PR #1 already proposes this change",
                                                           first.pr_url)
    assert len(world.opened()) == 1


def test_history_decides_before_any_change_is_built(world: World) -> None:
    assert world.pipeline().handle(world.incident()).outcome == "pr_opened"
    world.forge.set_state(1, "merged")
    again = world.pipeline().handle(world.incident())
    assert again.outcome == "no_fix" and again.reason.startswith("escalated: fix merged at ")
    assert _names(again) == ["intake", "target", "evidence", "diagnosis", "ledger"], "no checkout, no edit"
    assert again.run is not None and again.run.branch is None, "no PR body names this record"
    record = again.run.record
    assert record.tags["ledger"] == "escalate" and "manifest" not in record.tags and "patch.diff" not in record.artifacts
    assert again.stages[-1].decision == f"escalate: {again.reason}"


def test_a_resolved_alert_ends_at_intake(world: World) -> None:
    world.pipeline().handle(world.incident())
    resolved = world.pipeline().handle(world.incident().model_copy(update={"status": "resolved"}))
    assert resolved.outcome == "skipped" and "commented on PR #1" in resolved.reason
    assert _names(resolved) == ["intake"] and resolved.workload is None


def test_a_denied_namespace_ends_at_intake_and_says_so(world: World) -> None:
    outcome = world.pipeline().handle(world.incident(namespace="kube-system"))
    assert (outcome.outcome, outcome.reason) == ("skipped", "namespace kube-system is denied by policy")
    assert [(s.stage, s.decision) for s in outcome.stages] == [("intake", outcome.reason)]


def test_an_exhausted_budget_is_retried_and_recorded_as_such(world: World) -> None:
    none_left = world.policy.model_copy(update={"limits": world.policy.limits.model_copy(update={"prs_per_hour": 0})})
    with pytest.raises(TemporaryError, match="PR budget exhausted") as caught:
        world.pipeline(policy=none_left).handle(world.incident())
    assert caught.value.code == "pr_budget"
    run = run_of(caught.value)
    assert run is not None
    record, status = run.record, run.status
    assert status == "FAILED" and record.tags["outcome"] == "retry"
    assert record.tags["reason"].startswith("PR budget exhausted") and "outcome.json" not in record.artifacts
    assert record.artifacts["pr_body.md"].startswith("## Root cause"), "what would have been proposed is kept"
    assert world.opened() == [] and "autofix/shop/checkout/oom-killed" not in world.remote_branches()
