"""A Flux HelmRelease whose environment overlays its values with a patch (fluxcd/flux2-kustomize-helm-example:
apps/base/podinfo/release.yaml, apps/production/podinfo-values.yaml patched in by apps/production's
kustomization): a value the production patch sets is changed there, one only the base sets in the base."""

from __future__ import annotations

import json
from typing import Any

import pytest

from app.errors import NoFix
from app.models.changes import FieldChange, Plan
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.sources import deployers
from app.sources.layouts import Layouts
from app.sources.repos import Overlay
from tests.conftest import SCENARIOS
from tests.fakes.renderers import FakeRenderer
from tests.unit.sources.goldens import GITOPS_KINDS, IDENTITY, DirRepo

SCENARIO = SCENARIOS / "real-rollback-flux-production-values"
PATCH, BASE = "apps/production/podinfo-values.yaml", "apps/base/podinfo/release.yaml"
IMAGE = "spec.template.spec.containers[name=redis].image"


def _evidence() -> Evidence:
    items = json.loads((SCENARIO / "cluster.json").read_text())["items"]
    dep = next(i for i in items if i["kind"] == "Deployment")
    incident = Incident.model_validate({"alertname": "KubeContainerWaiting", "fingerprint": "0" * 16,
                                        "status": "firing", "starts_at": "2026-11-23T14:20:42Z",
                                        "labels": {"namespace": "podinfo"}})
    return Evidence(incident=incident, workload=WorkloadRef(kind="Deployment", namespace="podinfo", name="podinfo-redis"),
                    object=dep, gitops=[i for i in items if i["kind"] in GITOPS_KINDS])


def _edit(repo: Any, old: str, new: str) -> tuple[str, tuple[Any, ...], list[str], Any]:
    ev = _evidence()
    location = deployers.locate(ev, repo, IDENTITY)
    layout = Layouts(renderer=FakeRenderer([])).of(location)
    plan = Plan(cause="test", summary="test", changes=[FieldChange(path=IMAGE, old=old, new=new)])
    [edit] = layout.edits(location, plan, evidence=ev, repo=repo, workload=layout.effective(location, ev, repo=repo))
    return edit.path, edit.prefix, [c.path for c in edit.changes], edit.changes[0].new


def test_a_value_the_production_patch_sets_is_changed_in_the_patch() -> None:
    edit = _edit(DirRepo(SCENARIO / "repo"), "public.ecr.aws/docker/library/redis:7.0.16",
                 "public.ecr.aws/docker/library/redis:7.0.6")
    assert edit == (PATCH, ("spec", "values"), ["redis.tag"], "7.0.6")


def test_the_base_and_the_patch_are_both_values_sources_the_patch_last() -> None:
    location = deployers.locate(_evidence(), DirRepo(SCENARIO / "repo"), IDENTITY)
    values = location.layout_spec.values  # type: ignore[union-attr]
    assert [(v.path, v.prefix, v.label) for v in values] == [
        (BASE, ("spec", "values"), "HelmRelease spec.values"), (PATCH, ("spec", "values"), "HelmRelease values patch")]
    assert location.path == BASE and location.environments == (BASE, PATCH)


def _without_the_pin(repo: DirRepo) -> Overlay:
    """The production patch as the example ships it (no redis key): the tag comes from the base."""
    patch = repo.read_text(PATCH).replace("    redis:\n      tag: 7.0.16\n", "")
    base = repo.read_text(BASE).replace("tag: 7.0.6", "tag: 7.0.16")
    return Overlay(repo, {PATCH: patch, BASE: base})


def test_a_value_only_the_base_sets_is_changed_in_the_base() -> None:
    edit = _edit(_without_the_pin(DirRepo(SCENARIO / "repo")), "public.ecr.aws/docker/library/redis:7.0.16",
                 "public.ecr.aws/docker/library/redis:7.0.6")
    assert edit == (BASE, ("spec", "values"), ["redis.tag"], "7.0.6")


@pytest.mark.parametrize(("kustomization", "patch", "needle"), [
    ("patches:\n  - path: podinfo-values.yaml\n    target:\n      kind: HelmRelease\n",
     "- op: replace\n  path: /spec/values/redis/tag\n  value: 7.0.16\n", "JSON6902 patch"),
    ("patches:\n  - path: podinfo-values.yaml\n    target:\n      kind: HelmRelease\n      labelSelector: tier=cache\n",
     None, "target chosen by labels"),
], ids=["json6902-values", "label-selected-target"])
def test_values_patches_that_cannot_be_followed_are_refused(kustomization: str, patch: str | None,
                                                            needle: str) -> None:
    repo = DirRepo(SCENARIO / "repo")
    text = repo.read_text("apps/production/kustomization.yaml")
    start = text.index("patches:")
    files = {"apps/production/kustomization.yaml": text[:start] + kustomization}
    if patch is not None:
        files[PATCH] = patch
    with pytest.raises(NoFix, match=needle):
        deployers.locate(_evidence(), Overlay(repo, files), IDENTITY)
