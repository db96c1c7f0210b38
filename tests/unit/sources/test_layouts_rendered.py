"""The layouts with the real renderer behind the port (app/adapters/renderers.py: `kubectl kustomize` and
Helm in a sandboxed child): the renders the golden cases replay are what the tools print today, and the
render check refuses what the fake cannot show (a real tool's error, a real broken edit)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.adapters.renderers import SandboxedRenderer
from app.errors import PermanentError
from app.models.changes import FieldChange, Plan
from app.sources import deployers
from app.sources.layouts import Layouts, kustomize
from tests.conftest import ROOT, SCENARIOS
from tests.unit.sources import goldens
from tests.unit.sources.goldens import IDENTITY, DirRepo, evidence

pytestmark = pytest.mark.e2e  # the real kubectl and Helm renderers

MEMORY = "spec.template.spec.containers[name=checkout].resources.limits.memory"
RENDERED = [c for c in goldens.cases() if (c.dir / "renders.json").exists()]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", RENDERED, ids=lambda c: c.name)
def test_recorded_renders_are_what_the_renderer_prints(case: goldens.Case) -> None:
    """Today's kubectl and Helm print what renders.json holds, and the layout answers the same with them."""
    real = SandboxedRenderer()
    assert real.kustomize_installed() and real.helm_installed()
    assert goldens.dumps(goldens.record(case)) == (case.dir / "renders.json").read_text()
    result = goldens.run(case, real)
    assert result.texts == case.expected
    assert (result.rendered, result.checks) == (case.meta["rendered"], case.meta["checks"])


def test_kustomize_render_compare_refuses_a_change_elsewhere() -> None:
    ev, repo = evidence("layout-kustomize-base"), DirRepo(SCENARIOS / "layout-kustomize-base" / "repo")
    location = deployers.locate(ev, repo, IDENTITY)
    plan = Plan(cause="t", summary="t", changes=[FieldChange(path=MEMORY, old="512Mi", new="768Mi")])
    base = repo.read_text("apps/checkout/base/service.yaml").replace("port: 8080", "port: 8081")
    layout = Layouts(renderer=SandboxedRenderer()).of(location)
    assert SandboxedRenderer().kustomize_installed()
    with pytest.raises(PermanentError, match="Service/checkout changed too"):
        layout.verify(location, ev, repo=repo, plan=plan, new_texts={"apps/checkout/base/service.yaml": base})


def test_a_kustomize_too_old_for_the_repo_means_not_verified_but_a_broken_edit_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian bookworm's kubectl embeds kustomize v2: a modern overlay may not render with it at all. That is
    "render not verified" in the PR, not a failed job; an edit that breaks a tree which did render is refused."""
    ev, repo = evidence("layout-kustomize-patch"), DirRepo(SCENARIOS / "layout-kustomize-patch" / "repo")
    location = deployers.locate(ev, repo, IDENTITY)
    layout = Layouts(renderer=SandboxedRenderer()).of(location)
    plan = Plan(cause="t", summary="t", changes=[FieldChange(path=MEMORY, old="512Mi", new="768Mi")])
    edits = layout.edits(location, plan, evidence=ev, repo=repo, workload=layout.effective(location, ev, repo=repo))
    new_texts = {e.path: repo.read_text(e.path).replace('"512Mi"', '"768Mi"').replace("512Mi", "768Mi")
                 for e in edits}
    fake = tmp_path / "bin" / "kubectl"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Error: json: unknown field \"patches\"' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")

    verdict, checks = layout.verify(location, ev, repo=repo, plan=plan, new_texts=new_texts)

    assert verdict.startswith("not verified: kubectl kustomize cannot render") and checks == []
    assert "unknown field" in verdict
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the real kubectl: the unedited tree renders
    broken = {path: text + "\n  this: is not: yaml\n" for path, text in new_texts.items()}
    with pytest.raises(PermanentError, match="kustomize"):
        layout.verify(location, ev, repo=repo, plan=plan, new_texts=broken)


SPRINGBOOT = ROOT / "tests" / "fixtures" / "kustomize-springboot"
PROD = "overlays/production"
TRANSFORMER_DIR = "overlays/production/transformers"


def test_local_plugins_and_urls_in_data_are_rendered_not_refused(tmp_path: Path) -> None:
    """URLs that are data (a literal, an annotation) are not references; a local transformer and generator
    are read by the render (copied into its directory) and applied."""
    root = tmp_path / "repo"
    shutil.copytree(SPRINGBOOT, root)
    overlay = root / PROD / "kustomization.yaml"
    overlay.write_text(overlay.read_text() + "commonAnnotations:\n  docs: https://wiki.acme.example/sbdemo\n"
                       "transformers:\n- labels.yaml\ngenerators:\n- transformers\n"
                       "configMapGenerator:\n- name: links\n  literals:\n  - STATUS=https://status.acme.example\n")
    for rel, text in {f"{PROD}/labels.yaml": "apiVersion: builtin\nkind: LabelTransformer\nmetadata:\n"
                      "  name: team\nlabels:\n  team: payments\nfieldSpecs:\n- path: metadata/labels\n"
                      "  create: true\n",
                      f"{TRANSFORMER_DIR}/kustomization.yaml": "resources:\n- generator.yaml\n",
                      f"{TRANSFORMER_DIR}/generator.yaml": "apiVersion: builtin\nkind: ConfigMapGenerator\n"
                      "metadata:\n  name: feature-flags\nliterals:\n- CHECKOUT_V2=true\n"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    repo = DirRepo(root)
    tree = kustomize.walk(repo, PROD)
    assert {f"{PROD}/labels.yaml", f"{TRANSFORMER_DIR}/generator.yaml"} <= tree.files
    assert f"{TRANSFORMER_DIR}/generator.yaml" not in tree.resources
    renderer = SandboxedRenderer()
    assert renderer.kustomize_installed()
    objects = renderer.kustomize({f: repo.read_text(f) for f in tree.files}, PROD)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["metadata"]["name"] == "production-sbdemo"
    assert deployment["metadata"]["labels"]["team"] == "payments"
    assert any(o["metadata"]["name"].startswith("production-feature-flags") for o in objects)
