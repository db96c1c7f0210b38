"""Layout sources over the scenario repos, without git or a cluster: where each planned workload change lands
(patch, images transformer, values file, base), what it reaches, and the refusals (ambiguous, foreign)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from app import sources
from app.errors import NoFix
from app.models.changes import FieldChange, Plan
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.sources import kustomize, render
from app.sources.repo_urls import RepoIdentity
from tests.conftest import SCENARIOS

IDENTITY = RepoIdentity(git_url="https://github.com/acme/gitops.git", github_repo="acme/gitops")
MEMORY = "spec.template.spec.containers[name=checkout].resources.limits.memory"
IMAGE = "spec.template.spec.containers[name=checkout].image"


class DirRepo:
    def __init__(self, root: Path) -> None:
        self.root = root

    def list_files(self, *, suffixes: Any = (".yaml", ".yml")) -> list[str]:
        names = sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return [n for n in names if not suffixes or n.endswith(tuple(suffixes))]

    def read_text(self, path: str) -> str:
        return (self.root / path).read_text()


def _evidence(name: str) -> tuple[Evidence, DirRepo]:
    scenario = SCENARIOS / name
    items = json.loads((scenario / "cluster.json").read_text())["items"]
    dep = next(i for i in items if i["kind"] == "Deployment")
    gitops = [i for i in items if i["kind"] in ("Application", "Kustomization", "GitRepository", "HelmRelease")]
    incident = Incident.model_validate({"alertname": "KubePodCrashLooping", "fingerprint": "0" * 16,
                                        "status": "firing", "starts_at": "2026-11-23T15:15:16Z",
                                        "labels": {"namespace": "shop"}})
    ev = Evidence(incident=incident, workload=WorkloadRef(kind="Deployment", namespace="shop", name="checkout"),
                  object=dep, gitops=gitops)
    return ev, DirRepo(scenario / "repo")


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
    ev, repo = _evidence(scenario)
    location = sources.locate(ev, repo, IDENTITY)
    workload = sources.effective(location, ev, repo)
    plan = Plan(cause="test", summary="test", changes=[FieldChange(path=path, old=old, new=new)])
    [edit] = sources.edits(location, plan, ev, repo, workload)
    assert (edit.path, edit.prefix, [c.path for c in edit.changes]) == (file, prefix, [key])
    assert edit.changes[0].new == (new.rsplit(":", 1)[-1] if path == IMAGE else new)


def test_base_edit_names_every_environment_it_reaches() -> None:
    ev, repo = _evidence("layout-kustomize-base")
    location = sources.locate(ev, repo, IDENTITY)
    plan = Plan(cause="t", summary="t", changes=[FieldChange(path=MEMORY, old="512Mi", new="768Mi")])
    edits = sources.edits(location, plan, ev, repo, sources.effective(location, ev, repo))
    assert sources.environments(location, edits, repo) == ("apps/checkout/overlays/prod",
                                                           "apps/checkout/overlays/staging")


@pytest.mark.parametrize(("scenario", "needles"), [
    ("layout-argocd-ambiguous", ["apps/checkout/deploy/deployment.yaml", "apps/checkout/examples/deployment-local.yaml"]),
    ("layout-argocd-foreign-repo", ["https://github.com/platform-team/shop-manifests.git"]),
])
def test_refusals_name_the_candidates(scenario: str, needles: list[str]) -> None:
    ev, repo = _evidence(scenario)
    with pytest.raises(NoFix) as err:
        sources.locate(ev, repo, IDENTITY)
    for needle in needles:
        assert needle in err.value.message


def test_values_key_with_another_value_upstream_is_git_moved() -> None:
    ev, repo = _evidence("layout-helm-valuefiles")
    location = sources.locate(ev, repo, IDENTITY)
    plan = Plan(cause="t", summary="t", changes=[FieldChange(path=MEMORY, old="384Mi", new="576Mi")])
    with pytest.raises(NoFix) as err:  # the chart default holds 384Mi but values-prod.yaml overrides it
        sources.edits(location, plan, ev, repo, {})
    assert err.value.code == "git_moved"


def test_kustomize_render_compare_refuses_a_change_elsewhere() -> None:
    ev, repo = _evidence("layout-kustomize-base")
    location = sources.locate(ev, repo, IDENTITY)
    plan = Plan(cause="t", summary="t", changes=[FieldChange(path=MEMORY, old="512Mi", new="768Mi")])
    base = repo.read_text("apps/checkout/base/service.yaml").replace("port: 8080", "port: 8081")
    assert render.kubectl() is not None
    with pytest.raises(Exception, match="Service/checkout changed too"):
        sources.verify(location, ev, repo, plan, {"apps/checkout/base/service.yaml": base})


def test_application_kustomize_override_is_not_edited_around() -> None:
    ev, repo = _evidence("layout-kustomize-images")
    app = dict(ev.gitops[0])
    app["spec"] = {**app["spec"], "source": {**app["spec"]["source"],
                                             "kustomize": {"images": ["ghcr.io/acme/checkout:1.4.3"]}}}
    with pytest.raises(NoFix) as err:
        sources.locate(ev.model_copy(update={"gitops": [app]}), repo, IDENTITY)
    assert err.value.code == "unsupported_source" and "images" in err.value.message


def test_a_kustomize_too_old_for_the_repo_means_not_verified_but_a_broken_edit_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian bookworm's kubectl embeds kustomize v2: a modern overlay may not render with it at all. That is
    "render not verified" in the PR, not a failed job; an edit that breaks a tree which did render is refused."""
    ev, repo = _evidence("layout-kustomize-patch")
    location = sources.locate(ev, repo, IDENTITY)
    plan = Plan(cause="t", summary="t", changes=[FieldChange(path=MEMORY, old="512Mi", new="768Mi")])
    edits = sources.edits(location, plan, ev, repo, sources.effective(location, ev, repo))
    new_texts = {e.path: repo.read_text(e.path).replace('"512Mi"', '"768Mi"').replace("512Mi", "768Mi")
                 for e in edits}
    fake = tmp_path / "bin" / "kubectl"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'Error: json: unknown field \"patches\"' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")

    verdict, checks = sources.verify(location, ev, repo, plan, new_texts)

    assert verdict.startswith("not verified: kubectl kustomize cannot render") and checks == []
    assert "unknown field" in verdict
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # the real kubectl: the unedited tree renders
    broken = {path: text + "\n  this: is not: yaml\n" for path, text in new_texts.items()}
    with pytest.raises(Exception, match="kustomize"):
        sources.verify(location, ev, repo, plan, broken)


# ---------------------------------------------------------------- remote references (issue: the repo reached
# the network). kubernetes-sigs/kustomize's springboot example, verbatim, with one remote entry added per case.

SPRINGBOOT = Path(__file__).parent / "fixtures" / "kustomize-springboot"
PROD = "overlays/production"
URL = "https://raw.githubusercontent.com/acme/platform/main/kustomize/{}"
TRANSFORMER_DIR = "overlays/production/transformers"


def _springboot(tmp_path: Path, extra: str, files: dict[str, str] | None = None) -> DirRepo:
    root = tmp_path / "repo"
    shutil.copytree(SPRINGBOOT, root)
    overlay = root / PROD / "kustomization.yaml"
    overlay.write_text(overlay.read_text() + extra)
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return DirRepo(root)


LOCAL_PATCH_TRANSFORMER = """apiVersion: builtin
kind: PatchTransformer
metadata:
  name: remote-patch
path: {url}
target:
  kind: Deployment
"""
INLINE_HELM = """  - |
    apiVersion: builtin
    kind: HelmChartInflationGenerator
    metadata:
      name: redis
    name: redis
    repo: https://charts.bitnami.com/bitnami
"""


@pytest.mark.parametrize(("extra", "files", "needle"), [
    (f"transformers:\n- {URL.format('labels.yaml')}\n", None, "labels.yaml"),
    ("generators:\n- github.com/acme/platform//generators?ref=v1.2.0\n", None, "github.com/acme"),
    (f"validators:\n- {URL.format('validator.yaml')}\n", None, "validator.yaml"),
    (f"configurations:\n- {URL.format('fieldspecs.yaml')}\n", None, "fieldspecs.yaml"),
    (f"crds:\n- {URL.format('crd.json')}\n", None, "crd.json"),
    (f"openapi:\n  path: {URL.format('schema.json')}\n", None, "schema.json"),
    (f"patchesStrategicMerge:\n- {URL.format('smp.yaml')}\n", None, "smp.yaml"),
    (f"patchesJson6902:\n- target: {{kind: Deployment, name: sbdemo}}\n  path: {URL.format('ops.yaml')}\n",
     None, "ops.yaml"),
    (f"replacements:\n- path: {URL.format('replacements.yaml')}\n", None, "replacements.yaml"),
    (f"configMapGenerator:\n- name: extra\n  files:\n  - app.yaml={URL.format('app.yaml')}\n", None, "app.yaml"),
    ("components:\n- git@github.com:acme/platform.git//components/otel?ref=main\n", None, "git@github.com"),
    ("helmCharts:\n- name: redis\n  repo: https://charts.bitnami.com/bitnami\n", None, "charts.bitnami.com"),
    ("helmChartInflationGenerator:\n- chartName: redis\n", None, "helmChartInflationGenerator"),
    # A local plugin config file that loads a URL, an inline one, and a plugin directory whose own
    # kustomization names a remote base: nested kustomizations are checked like the top one.
    ("transformers:\n- remote-patch.yaml\n",
     {f"{PROD}/remote-patch.yaml": LOCAL_PATCH_TRANSFORMER.format(url=URL.format("p.yaml"))}, "p.yaml"),
    ("generators:\n" + INLINE_HELM, None, "charts.bitnami.com"),
    ("transformers:\n- transformers\n",
     {f"{TRANSFORMER_DIR}/kustomization.yaml": "resources:\n- ssh://git@git.acme.internal/platform/t.git\n"},
     "ssh://git@git.acme.internal"),
    ("transformers:\n- transformers\n",
     {f"{TRANSFORMER_DIR}/kustomization.yaml": "resources:\n- patch.yaml\n",
      f"{TRANSFORMER_DIR}/patch.yaml": LOCAL_PATCH_TRANSFORMER.format(url="http://10.0.0.7/p.yaml")},
     "http://10.0.0.7"),
], ids=["transformers", "generators", "validators", "configurations", "crds", "openapi", "patchesStrategicMerge",
        "patchesJson6902", "replacements", "configMapGenerator-files", "components", "helmCharts",
        "helmChartInflationGenerator", "plugin-file-path", "inline-plugin", "plugin-dir-remote-base",
        "plugin-dir-config-path"])
def test_every_field_that_can_fetch_is_refused(tmp_path: Path, extra: str, files: dict[str, str] | None,
                                               needle: str) -> None:
    repo = _springboot(tmp_path, extra, files)
    with pytest.raises(NoFix) as err:
        kustomize.walk(repo, PROD)
    assert err.value.code == "unsupported_source"
    assert needle in err.value.message


@pytest.mark.parametrize(("ref", "remote"), [
    ("https://github.com/acme/base//deploy?ref=v1", True), ("HTTP://example.com/x.yaml", True),
    ("github.com/acme/base/deploy?ref=v1", True), ("GitHub.com:acme/base", True), ("gh:acme/base", True),
    ("git::https://example.com/base", True), ("git@gitlab.com:acme/base.git", True),
    ("org-1@ssh.dev.azure.com:v3/acme/base", True), ("file:///etc/base", True), ("s3://bucket/x.yaml", True),
    ("../../base", False), ("patches/memory.yaml", False), ("deploy.yaml", False), ("base", False),
    ("github-com/app.yaml", False),
])
def test_remote_reference_forms(ref: str, remote: bool) -> None:
    """The forms kustomize's repospec and HTTP loader fetch (kustomize api/internal/git/repospec.go)."""
    assert kustomize.is_remote(ref) is remote


def test_local_plugins_and_urls_in_data_are_rendered_not_refused(tmp_path: Path) -> None:
    """URLs that are data (a literal, an annotation) are not references; a local transformer and generator
    are read by the render (copied into its directory) and applied."""
    repo = _springboot(tmp_path, "commonAnnotations:\n  docs: https://wiki.acme.example/sbdemo\n"
                       "transformers:\n- labels.yaml\ngenerators:\n- transformers\n"
                       "configMapGenerator:\n- name: links\n  literals:\n  - STATUS=https://status.acme.example\n",
                       {f"{PROD}/labels.yaml": "apiVersion: builtin\nkind: LabelTransformer\nmetadata:\n"
                        "  name: team\nlabels:\n  team: payments\nfieldSpecs:\n- path: metadata/labels\n"
                        "  create: true\n",
                        f"{TRANSFORMER_DIR}/kustomization.yaml": "resources:\n- generator.yaml\n",
                        f"{TRANSFORMER_DIR}/generator.yaml": "apiVersion: builtin\nkind: ConfigMapGenerator\n"
                        "metadata:\n  name: feature-flags\nliterals:\n- CHECKOUT_V2=true\n"})
    tree = kustomize.walk(repo, PROD)
    assert {f"{PROD}/labels.yaml", f"{TRANSFORMER_DIR}/generator.yaml"} <= tree.files
    assert f"{TRANSFORMER_DIR}/generator.yaml" not in tree.resources
    assert render.kubectl() is not None
    objects = render.kustomize({f: repo.read_text(f) for f in tree.files}, PROD)
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["metadata"]["name"] == "production-sbdemo"
    assert deployment["metadata"]["labels"]["team"] == "payments"
    assert any(o["metadata"]["name"].startswith("production-feature-flags") for o in objects)
