"""Layout sources over the scenario repos, without git or a cluster: where each planned workload change lands
(patch, images transformer, values file, base), what it reaches, and the refusals (ambiguous, foreign)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from app import sources
from app.errors import NoFix
from app.models.changes import FieldChange, Plan
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.sources import render
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
