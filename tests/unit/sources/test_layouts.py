"""Layouts over the golden cases, in process with the fake renderer: the edited files byte for byte, and every
answer the change stage asks of a layout (edits, environments, render verdict, checks, shown path)."""

from __future__ import annotations

import json
import re

import pytest

from app.errors import PermanentError
from app.models.changes import LayoutSpec, Location
from app.sources import deployers
from app.sources.layouts import Layouts, helm, kustomize, plain
from app.sources.layouts.base import spec_of
from app.sources.layouts.kustomize import KustomizeSpec
from tests.conftest import ROOT, SCENARIOS
from tests.fakes.renderers import FakeRenderer, digest
from tests.unit.sources.goldens import IDENTITY, Case, apply, cases, files_under, run

CASES = cases()


def test_every_layout_and_deployer_has_golden_cases() -> None:
    seen = {(c.meta["deployer"], c.meta["layout"]) for c in CASES}
    assert seen == {("argocd", "plain"), ("argocd", "kustomize"), ("argocd", "helm"), ("flux", "kustomize"),
                    ("flux", "helm")}
    assert len(CASES) == 11


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_original_is_the_scenario_repo_verbatim(case: Case) -> None:
    assert files_under(case.dir / "original") == files_under(SCENARIOS / case.meta["scenario"] / "repo")


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_golden(case: Case) -> None:
    fake = case.fake()
    result = run(case, fake)
    meta = case.meta

    assert result.texts == case.expected  # the edited files, byte for byte, and no other file
    assert (result.location.layout, result.location.source, result.location.note) == \
        (meta["layout"], meta["deployer"], meta["note"])
    assert {"path": result.location.path, "document_index": result.location.document_index,
            "prefix": list(result.location.prefix), "app": result.location.app,
            "environments": list(result.location.environments)} == meta["location"]
    assert [{"path": e.path, "document_index": e.document_index, "prefix": list(e.prefix), "what": e.what,
             "changes": [{"path": c.path, "old": c.old, "new": c.new} for c in e.changes]}
            for e in result.edits] == meta["edits"]
    assert list(result.environments) == meta["environments"]
    assert (result.rendered, result.checks) == (meta["rendered"], meta["checks"])
    assert result.shown_path == meta["shown_path"]
    assert result.layout.layered is (meta["layout"] != "plain")
    # Every recorded render was asked for: the layout passed exactly the recorded inputs.
    asked = {digest(c.tool, c.files, c.directory, **c.params) for c in fake.calls}
    assert asked == set(fake.recordings)


@pytest.mark.parametrize(("spec", "layout"), [
    (LayoutSpec(), plain.Plain),
    (kustomize.KustomizeSpec(directory="apps/checkout/overlays/prod"), kustomize.Kustomize),
    (helm.HelmSpec(chart_dir="charts/checkout"), helm.Helm),
], ids=["plain", "kustomize", "helm"])
def test_one_lookup_by_the_specs_layout_name(spec: LayoutSpec, layout: type) -> None:
    fake = FakeRenderer()
    found = Layouts(renderer=fake).of(Location(path="x.yaml", source="plain", layout_spec=spec))
    assert isinstance(found, layout)
    assert getattr(found, "renderer", fake) is fake  # bound to the injected renderer


def test_a_spec_no_layout_registers_is_a_lookup_error() -> None:
    class Jsonnet(LayoutSpec):
        layout = "jsonnet"

    with pytest.raises(LookupError, match="jsonnet"):
        Layouts(renderer=FakeRenderer()).of(Location(path="x.jsonnet", source="argocd", layout_spec=Jsonnet()))


def test_a_layout_refuses_another_layouts_location() -> None:
    location = Location(path="charts/checkout/values.yaml", source="argocd", layout_spec=helm.HelmSpec())
    with pytest.raises(TypeError, match="has layout helm, not kustomize"):
        kustomize.Kustomize(FakeRenderer()).shown_path(location, [])


# ---------------------------------------------------------------- what a layout does when the renderer cannot


CASE = {c.name: c for c in CASES}


def test_kustomize_without_a_renderer_plans_on_the_live_object_and_says_not_verified() -> None:
    """No approximation of kustomize here: without a render the plan reads the live object (what Argo CD
    rendered and applied), the edit still lands where git sets the value, and the PR says "not verified"."""
    case = CASE["kustomize-patch"]
    missing = FakeRenderer(kustomize=False)
    result = run(case, missing)
    assert result.workload == {k: v for k, v in case.evidence.object.items() if k != "status"}
    assert result.texts == case.expected
    assert (result.rendered, result.checks) == ("not verified: no kustomize renderer installed (kustomize or "
                                                "kubectl); the fix was planned on the live object", [])
    assert missing.calls == []


def test_kustomize_that_cannot_render_the_unedited_tree_is_not_verified_with_its_reason() -> None:
    """An older kustomize (Debian bookworm's kubectl 1.20 embeds v2) may reject a modern overlay: that is
    "render not verified" in the PR, the plan on the live object, the edit still where the value is set."""
    case = CASE["kustomize-patch"]
    failing = FakeRenderer(error='json: unknown field "patches"')
    result = run(case, failing)
    assert result.texts == case.expected
    assert result.workload == {k: v for k, v in case.evidence.object.items() if k != "status"}
    assert result.rendered.startswith("not verified: kubectl kustomize cannot render apps/checkout/overlays/prod")
    assert 'unknown field "patches"' in result.rendered and result.checks == []
    assert [c.tool for c in failing.calls] == ["kustomize", "kustomize"]  # effective, then verify's before


@pytest.mark.parametrize("name", ["kustomize-base", "flux-kustomization"])
def test_kustomize_render_that_changes_another_object_is_refused(name: str) -> None:
    case = CASE[name]
    ev, repo, plan = case.evidence, case.repo, case.plan
    location = deployers.locate(ev, repo, IDENTITY)
    fake = case.fake()
    layout = Layouts(renderer=fake).of(location)
    texts = apply(layout.edits(location, plan, evidence=ev, repo=repo,
                               workload=layout.effective(location, ev, repo=repo)), repo)
    tree = kustomize.walk(repo, spec_of(location, KustomizeSpec).directory)
    before = {f: repo.read_text(f) for f in tree.files}
    [after_recording] = [r for r in fake.recordings.values() if r.inputs != digest("kustomize", before, tree.top)]
    service_moved = [dict(o, spec={**o["spec"], "ports": []}) if o["kind"] == "Service" else o
                     for o in after_recording.objects]
    fake.answer("kustomize", {**before, **texts}, tree.top, service_moved)
    with pytest.raises(PermanentError, match="Service/checkout changed too"):
        layout.verify(location, ev, repo=repo, plan=plan, new_texts=texts)


def test_kustomize_edit_outside_the_rendered_tree_is_refused() -> None:
    case = CASE["kustomize-patch"]
    ev, repo = case.evidence, case.repo
    location = deployers.locate(ev, repo, IDENTITY)
    layout = Layouts(renderer=case.fake()).of(location)
    with pytest.raises(PermanentError, match="argocd/checkout.yaml, which the kustomization"):
        layout.verify(location, ev, repo=repo, plan=case.plan, new_texts={"argocd/checkout.yaml": "x: 1\n"})


@pytest.mark.parametrize("name", ["helm-valuefiles", "helm-valuesobject"])
def test_helm_without_a_renderer_plans_on_the_live_object_and_says_not_verified(name: str) -> None:
    case = CASE[name]
    missing = FakeRenderer(helm=False)
    result = run(case, missing)
    assert result.workload == {k: v for k, v in case.evidence.object.items() if k != "status"}
    assert result.texts == case.expected
    assert (result.rendered, result.checks) == ("not verified: no Helm renderer installed (helm-python-sdk)", [])
    assert missing.calls == []


def test_helm_renders_the_chart_with_the_merged_values_as_the_release() -> None:
    case = CASE["helm-valuefiles"]
    fake = case.fake()
    run(case, fake)
    before, after = fake.calls[0], fake.calls[-1]
    assert (before.tool, before.directory, before.params["release"], before.params["namespace"]) == \
        ("helm", "charts/checkout", "checkout", "shop")
    assert all(path.startswith("charts/checkout/") for path in before.files)
    assert before.params["values"]["resources"]["limits"]["memory"] == "512Mi"  # values-prod.yaml over the defaults
    assert after.params["values"]["resources"]["limits"]["memory"] == "768Mi"


def test_helm_render_that_changes_another_object_is_refused() -> None:
    case = CASE["helm-valuefiles"]
    ev, repo, plan = case.evidence, case.repo, case.plan
    location = deployers.locate(ev, repo, IDENTITY)
    fake = case.fake()
    layout = Layouts(renderer=fake).of(location)
    texts = apply(layout.edits(location, plan, evidence=ev, repo=repo, workload={}), repo)
    layout.verify(location, ev, repo=repo, plan=plan, new_texts=texts)
    after = fake.calls[-1]
    objects = json.loads(json.dumps(fake.recordings[digest("helm", after.files, after.directory,
                                                           **after.params)].objects))
    for obj in objects:
        if obj["kind"] == "Service":
            obj["spec"]["type"] = "LoadBalancer"
    fake.answer("helm", after.files, after.directory, objects, **after.params)
    with pytest.raises(PermanentError, match="Service/checkout changed too"):
        layout.verify(location, ev, repo=repo, plan=plan, new_texts=texts)


LAYOUT_COMPARISON = re.compile(r"""\.layout\s*(?:==|!=|in\s*[(\[{])|(?:==|!=)\s*["'](?:plain|kustomize|helm)["']"""
                               r"""|["'](?:plain|kustomize|helm)["']\s*(?:==|!=)""")


def test_no_layout_name_is_compared_outside_the_registry() -> None:
    """A layout is chosen by one lookup (app/sources/layouts/__init__.py), never by comparing its name."""
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in sorted((ROOT / "app").rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if LAYOUT_COMPARISON.search(line)]
    assert found == []
