"""History (recorded as "ledger"): the bot's earlier PRs for a workload and cause decide, before any change is
built: go on, escalate a merged fix that did not help (one comment), or respect a PR a human closed."""

from __future__ import annotations

from dataclasses import replace

import pytest

from app.stages import history
from tests.stages.world import World

BRANCH = "autofix/shop/checkout/oom-killed"
LIMIT = "spec.template.spec.containers[name=checkout].resources.limits.memory"
HOUR = 3600.0


def _judge(world: World) -> history.History:
    ev = world.evidence()
    return history.judge(evidence=ev, diagnosis=world.diagnosis(ev), incident=world.incident(), forge=world.forge,
                         ledger=world.ledger, policy=world.policy, clock=world.now,
                         run_url="https://mlflow.example/#/runs/1")


def _earlier_pr(world: World) -> None:
    """PR #1 for shop/checkout's OOM, opened by the whole pipeline in process (as a first alert would)."""
    assert world.pipeline().handle(world.incident()).outcome == "pr_opened"


def test_no_history_goes_on(world: World) -> None:
    out = _judge(world)
    assert (out.action, dict(out.baseline), out.stop) == ("proceed", {}, None)
    assert out.decision == f"proceed: 0 earlier PR(s) for {BRANCH}"


def test_an_open_pr_goes_on_to_be_updated_or_found_duplicate(world: World) -> None:
    _earlier_pr(world)
    out = _judge(world)
    assert (out.action, out.stop) == ("proceed", None)
    assert out.decision == "proceed: PR #1 is open: update it, never a second one"


def test_a_merged_fix_that_did_not_help_is_escalated_once(world: World) -> None:
    _earlier_pr(world)
    world.forge.set_state(1, "merged")
    out = _judge(world)
    assert out.action == "escalate" and out.stop is not None
    assert (out.stop.kind, out.stop.code) == ("no_fix", "escalated")
    assert out.stop.reason.startswith("escalated: fix merged at ") and out.stop.reason.endswith("(PR #1)")
    assert out.decision == f"escalate: {out.stop.reason}"
    assert dict(out.baseline) == {LIMIT: "512Mi"}, "caps count from the value before the first merged fix"
    [pr] = world.opened()
    assert len(pr["comments"]) == 1
    comment = (world.prs / "1-autofix__shop__checkout__oom-killed" / "comment-1.md").read_text()
    assert comment.startswith("**Escalation**") and "https://mlflow.example/#/runs/1" in comment
    assert _judge(world).action == "escalate" and len(world.opened()[0]["comments"]) == 1, "one comment per fix"


@pytest.mark.parametrize(("images", "action"), [
    pytest.param(None, "cooldown", id="same-images"),
    pytest.param(("ghcr.io/acme/checkout:1.3.0",), "proceed", id="other-images-are-new-evidence"),
])
def test_a_closed_pr_is_a_no_unless_the_evidence_changed(world: World, images: tuple[str, ...] | None,
                                                         action: str) -> None:
    _earlier_pr(world)
    world.forge.set_state(1, "closed")
    if images is not None:  # the PR was opened when the workload ran other images
        [row] = world.ledger.entries(branch=BRANCH)
        world.ledger.record(replace(row, images=images))
    out = _judge(world)
    assert out.action == action
    if action == "cooldown":
        assert out.stop is not None and (out.stop.kind, out.stop.code) == ("no_fix", "cooldown")
        assert "PR #1 was closed unmerged" in out.stop.reason
    else:
        assert out.stop is None


def test_a_resolved_alert_is_said_on_its_open_pr(world: World) -> None:
    _earlier_pr(world)
    incident = world.incident().model_copy(update={"status": "resolved"})
    out = history.resolved(incident=incident, forge=world.forge, ledger=world.ledger, policy=world.policy,
                           clock=world.now)
    assert out.end.kind == "skipped" and out.end.reason.endswith("without the change: commented on PR #1")
    assert out.end.pr_url is not None and out.end.pr_url.endswith("1-autofix__shop__checkout__oom-killed")
    assert len(world.opened()[0]["comments"]) == 1 and world.opened()[0]["state"] == "open"
    again = history.resolved(incident=incident, forge=world.forge, ledger=world.ledger, policy=world.policy,
                             clock=world.now)
    assert (again.end.reason, again.decision) == ("alert resolved", "resolved alert: no open PR of ours to update")


def test_a_resolved_alert_closes_its_pr_when_the_policy_asks(world: World) -> None:
    _earlier_pr(world)
    closing = world.policy.model_copy(update={"limits": world.policy.limits.model_copy(
        update={"close_pr_on_resolve": True})})
    incident = world.incident().model_copy(update={"status": "resolved"})
    out = history.resolved(incident=incident, forge=world.forge, ledger=world.ledger, policy=closing, clock=world.now)
    assert "closed PR #1" in out.end.reason and world.opened()[0]["state"] == "closed"
