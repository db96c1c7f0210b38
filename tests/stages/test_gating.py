"""Gating (recorded as "gates"): every change against the same gates; a refusal ends the handling, recorded."""

from __future__ import annotations

from typing import Any

import pytest

from app.models.changes import ChangeSet
from app.policies import Policy
from app.stages import change, gating
from tests.stages.world import World

LIMIT = "spec.template.spec.containers[name=checkout].resources.limits.memory"


def _demo_change(world: World) -> tuple[Any, Any, ChangeSet]:
    ev = world.evidence()
    diagnosis = world.diagnosis(ev)
    located = change.locate(evidence=ev, workspace=world.workspace, identity=world.pipeline().identity)
    planned = change.plan(located=located, evidence=ev, diagnosis=diagnosis, workspace=world.workspace,
                          policy=world.policy, layouts=world.layouts)
    edited = change.edit(located=located, planned=planned, evidence=ev, workspace=world.workspace,
                         layouts=world.layouts)
    return ev, diagnosis, change.assess(planned=planned, edited=edited, evidence=ev, policy=world.policy,
                                        namespace_labels={}).changeset


def _capped(policy: Policy, ratio: float) -> Policy:
    return policy.model_copy(update={"memory": policy.memory.model_copy(update={"max_ratio_to_git": ratio})})


def test_the_demo_change_passes_every_gate(world: World) -> None:
    ev, diagnosis, changeset = _demo_change(world)
    out = gating.check(evidence=ev, diagnosis=diagnosis, changeset=changeset, policy=world.policy, baseline={})
    assert out.passed and out.stop is None and out.lines
    assert out.decision == f"{len(out.lines)} gate(s) passed"


@pytest.mark.parametrize(("ratio", "baseline", "says"), [
    pytest.param(1.2, {}, "above x1.2 of the value in git", id="cap-from-git"),
    pytest.param(2.0, {LIMIT: "256Mi"}, "above x2 of the value before the first merged fix (256Mi)",
                 id="cap-from-the-first-merged-fix"),
])
def test_a_refusal_ends_the_handling_and_says_why(world: World, ratio: float, baseline: dict[str, Any],
                                                  says: str) -> None:
    ev, diagnosis, changeset = _demo_change(world)
    out = gating.check(evidence=ev, diagnosis=diagnosis, changeset=changeset, policy=_capped(world.policy, ratio),
                       baseline=baseline)
    assert not out.passed and out.stop is not None
    assert (out.stop.kind, out.stop.code) == ("no_fix", "gate_refused")
    assert says in out.stop.reason and out.lines == (out.stop.reason,)
    assert out.decision == f"stopped: {out.stop.reason}"
