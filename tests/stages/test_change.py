"""Change: source (where git defines the workload), plan (the fix), validate (the edit, checked and rendered) and
risk, on real bare repositories of the demo and of a Kustomize overlay; the change record they hand on."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.errors import NoFix, PermanentError
from app.models.changes import FieldChange, Plan
from app.stages import change
from tests.conftest import SCENARIOS
from tests.stages.world import DEMO, World, make_world

LIMIT = "spec.template.spec.containers[name=checkout].resources.limits.memory"


def _through(world: World) -> tuple[change.Located, change.Planned, change.Edited,
                                                            change.Change]:
    ev = world.evidence()
    located = change.locate(evidence=ev, workspace=world.workspace, identity=world.pipeline().identity)
    planned = change.plan(located=located, evidence=ev, diagnosis=world.diagnosis(ev), workspace=world.workspace,
                          policy=world.policy, layouts=world.layouts)
    edited = change.edit(located=located, planned=planned, evidence=ev, workspace=world.workspace,
                         layouts=world.layouts)
    assessed = change.assess(planned=planned, edited=edited, evidence=ev, policy=world.policy, namespace_labels={})
    return located, planned, edited, assessed


def test_the_demo_manifest_is_edited_in_place(world: World) -> None:
    located, planned, edited, assessed = _through(world)
    assert (located.location.path, located.location.source) == ("apps/checkout/deployment.yaml", "argocd")
    assert located.decision == f"apps/checkout/deployment.yaml#0 via argocd at {located.base_commit[:12]}"
    assert located.index_metrics["index_files"] == 3.0
    assert planned.decision == planned.plan.summary == "Raise memory limit of container checkout to 768Mi"
    assert [(c.path, c.old, c.new) for c in planned.plan.changes] == [(LIMIT, "512Mi", "768Mi")]
    [f] = edited.files
    assert f.path == "apps/checkout/deployment.yaml" and '+              memory: "768Mi"' in f.diff
    assert edited.rendered == "not needed: the edited manifest is the workload itself"
    assert edited.decision.startswith(f"{len(edited.checks)} check(s) passed; apps/checkout/deployment.yaml; render ")
    changeset = assessed.changeset
    assert (changeset.risk.level, assessed.decision) == ("medium", "medium (0.34)")  # 3 replicas behind a Service
    assert changeset.workload_old is None and changeset.workload_new is None, "the manifest is the workload"
    assert world.workspace.read_text(f.path) == f.old_text, "the checkout is not modified: the push carries the edit"


def test_an_overlay_patch_is_edited_and_the_rendered_workload_judged(tmp_path: Path) -> None:
    world = make_world(tmp_path, SCENARIOS / "layout-kustomize-patch")
    try:
        _, planned, edited, assessed = _through(world)
    finally:
        world.ledger.close()
    assert [f.path for f in edited.files] == ["apps/checkout/overlays/prod/patches/memory.yaml"]
    assert edited.location.path == "apps/checkout/overlays/prod", "shown as the render root, not the patch"
    assert edited.rendered.startswith("verified")
    changeset = assessed.changeset
    assert changeset.workload_old == planned.document
    assert changeset.workload_new is not None and changeset.workload_new != planned.document


def test_the_teams_opt_out_in_git_wins(tmp_path: Path) -> None:
    scenario = tmp_path / "opted-out"
    shutil.copytree(DEMO, scenario)
    manifest = scenario / "repo" / "apps" / "checkout" / "deployment.yaml"
    manifest.write_text(manifest.read_text().replace(
        "metadata:\n", "metadata:\n  annotations:\n    autofix.io/ignore-causes: image_pull_after_rollout, oom_killed\n", 1))
    world = make_world(tmp_path / "world", scenario)
    ev = world.evidence()
    located = change.locate(evidence=ev, workspace=world.workspace, identity=world.pipeline().identity)
    with pytest.raises(NoFix, match="opts out of fixes for oom_killed") as caught:
        change.plan(located=located, evidence=ev, diagnosis=world.diagnosis(ev), workspace=world.workspace,
                    policy=world.policy, layouts=world.layouts)
    assert caught.value.code == "opted_out"
    world.ledger.close()


def test_a_change_outside_the_policys_paths_is_refused() -> None:
    plan = Plan(cause="oom_killed", summary="s", changes=[FieldChange(path="spec.template.spec.hostNetwork", new=True)],
                allowed_paths=["spec.template.spec.containers[*].resources.limits.memory"])
    with pytest.raises(PermanentError, match="change not allowed for oom_killed") as caught:
        change.check_allowed(plan)
    assert caught.value.code == "validation_failed"
