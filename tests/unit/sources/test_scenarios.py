"""Deployers and layouts over the scenario repos, without git or a cluster (renders replayed by the fake
renderer from the golden cases): where each planned workload change lands (patch, images transformer, values
file, base), what it reaches, and the refusals (ambiguous, foreign, overridden in the Application)."""

from __future__ import annotations

from typing import Any

import pytest

from app.errors import NoFix
from app.models.changes import FieldChange, Plan
from app.sources import deployers
from app.sources.layouts import Layouts
from tests.conftest import SCENARIOS
from tests.fakes.renderers import FakeRenderer
from tests.unit.sources.goldens import GOLDEN, IDENTITY, DirRepo, evidence

MEMORY = "spec.template.spec.containers[name=checkout].resources.limits.memory"
IMAGE = "spec.template.spec.containers[name=checkout].image"


def _scenario(name: str) -> tuple[Any, DirRepo, Layouts]:
    """The scenario's evidence and repo, and the layouts bound to the renders recorded for its golden case."""
    renderer = FakeRenderer.from_file(GOLDEN / name.removeprefix("layout-") / "renders.json")
    return evidence(name), DirRepo(SCENARIOS / name / "repo"), Layouts(renderer=renderer)


@pytest.mark.parametrize(("scenario", "path", "old", "new", "file", "prefix", "key"), [
    ("layout-kustomize-patch", MEMORY, "512Mi", "768Mi", "apps/checkout/overlays/prod/patches/memory.yaml",
     ("spec",), "template.spec.containers[name=checkout].resources.limits.memory"),
    ("layout-kustomize-images", IMAGE, "ghcr.io/acme/checkout:1.4.3", "ghcr.io/acme/checkout:1.4.2",
     "apps/checkout/overlays/prod/kustomization.yaml", ("images", 0), "newTag"),
    ("layout-kustomize-base", MEMORY, "512Mi", "768Mi", "apps/checkout/base/deployment.yaml", (), MEMORY),
    ("layout-flux-kustomization", MEMORY, "512Mi", "768Mi", "apps/checkout/overlays/prod/memory-limit.yaml",
     (0,), "value"),
    ("layout-helm-valuefiles", MEMORY, "512Mi", "768Mi", "charts/checkout/values-prod.yaml", (),
     "resources.limits.memory"),
    ("layout-helm-valuesobject", MEMORY, "512Mi", "768Mi", "argocd/checkout.yaml",
     ("spec", "source", "helm", "valuesObject"), "resources.limits.memory"),
    ("layout-argocd-multisource", IMAGE, "ghcr.io/acme/checkout:1.4.3", "ghcr.io/acme/checkout:1.4.2",
     "envs/prod/checkout/values.yaml", (), "image.tag"),
    ("layout-flux-helmrelease-inline", MEMORY, "512Mi", "768Mi", "clusters/prod/apps/checkout/helmrelease.yaml",
     ("spec", "values"), "resources.limits.memory"),
    ("layout-flux-helmrelease-configmap", IMAGE, "ghcr.io/acme/checkout:1.4.3", "ghcr.io/acme/checkout:1.4.2",
     "clusters/prod/apps/checkout/values-prod.yaml", (), "image.tag"),
], ids=lambda v: v if isinstance(v, str) and v.startswith("layout-") else "")
def test_change_lands_where_the_value_is_set(scenario: str, path: str, old: str, new: str, file: str,
                                             prefix: tuple[Any, ...], key: str) -> None:
    ev, repo, layouts = _scenario(scenario)
    location = deployers.locate(ev, repo, IDENTITY)
    layout = layouts.of(location)
    workload = layout.effective(location, ev, repo=repo)
    plan = Plan(cause="test", summary="test", changes=[FieldChange(path=path, old=old, new=new)])
    [edit] = layout.edits(location, plan, evidence=ev, repo=repo, workload=workload)
    assert (edit.path, edit.prefix, [c.path for c in edit.changes]) == (file, prefix, [key])
    assert edit.changes[0].new == (new.rsplit(":", 1)[-1] if path == IMAGE else new)


def test_base_edit_names_every_environment_it_reaches() -> None:
    ev, repo, layouts = _scenario("layout-kustomize-base")
    location = deployers.locate(ev, repo, IDENTITY)
    layout = layouts.of(location)
    plan = Plan(cause="t", summary="t", changes=[FieldChange(path=MEMORY, old="512Mi", new="768Mi")])
    edits = layout.edits(location, plan, evidence=ev, repo=repo, workload=layout.effective(location, ev, repo=repo))
    assert layout.environments(location, edits, repo=repo) == ("apps/checkout/overlays/prod",
                                                               "apps/checkout/overlays/staging")


@pytest.mark.parametrize(("scenario", "needles"), [
    ("layout-argocd-ambiguous", ["apps/checkout/deploy/deployment.yaml", "apps/checkout/examples/deployment-local.yaml"]),
    ("layout-argocd-foreign-repo", ["https://github.com/platform-team/shop-manifests.git"]),
])
def test_refusals_name_the_candidates(scenario: str, needles: list[str]) -> None:
    with pytest.raises(NoFix) as err:
        deployers.locate(evidence(scenario), DirRepo(SCENARIOS / scenario / "repo"), IDENTITY)
    for needle in needles:
        assert needle in err.value.message


def test_values_key_with_another_value_upstream_is_git_moved() -> None:
    ev, repo, layouts = _scenario("layout-helm-valuefiles")
    location = deployers.locate(ev, repo, IDENTITY)
    plan = Plan(cause="t", summary="t", changes=[FieldChange(path=MEMORY, old="384Mi", new="576Mi")])
    with pytest.raises(NoFix) as err:  # the chart default holds 384Mi but values-prod.yaml overrides it
        layouts.of(location).edits(location, plan, evidence=ev, repo=repo, workload={})
    assert err.value.code == "git_moved"


def test_application_kustomize_override_is_not_edited_around() -> None:
    ev, repo, _ = _scenario("layout-kustomize-images")
    app = dict(ev.gitops[0])
    app["spec"] = {**app["spec"], "source": {**app["spec"]["source"],
                                             "kustomize": {"images": ["ghcr.io/acme/checkout:1.4.3"]}}}
    with pytest.raises(NoFix) as err:
        deployers.locate(ev.model_copy(update={"gitops": [app]}), repo, IDENTITY)
    assert err.value.code == "unsupported_source" and "images" in err.value.message
