"""`autofix handle` end to end over every GitOps layout (tests/scenarios/layout-*): Argo CD directory,
Kustomize, Helm, multi-source and ApplicationSet Applications, Flux Kustomizations and HelmReleases, the
ambiguous and the foreign-repo case. Each scenario holds the objects Argo CD or Flux would have created.

Assertions are on what users see: the one file the pushed branch changes (and that nothing else changed),
exactly the expected lines (so every comment, quote and indentation of the file survived), the PR body's
render verification and environments, or no branch and no PR with a reason naming the candidates.
"""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SCENARIOS
from tests.e2e.test_e2e_handle import TOKEN, branch_diff, changed_lines, git, run_handle
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

pytestmark = pytest.mark.e2e  # real servers, binaries or whole pipeline runs: the slow part

LAYOUTS = sorted(p for p in SCENARIOS.glob("layout-*") if (p / "expected.json").exists())


@dataclass
class Run:
    """What one scenario's `autofix handle` left behind, for its test to assert on."""

    results: list[dict[str, Any]]
    bare: Path
    pull_requests: list[dict[str, Any]]
    methods: set[str]


def _run(scenario: Path, tmp: Path, template_db: Path) -> Run:
    shutil.copy(template_db, tmp / "mlflow.db")  # a migrated store per run: concurrent runs never share a lock
    with FakeGitHub("acme/gitops", token=TOKEN) as gh, KubeApiFake.from_snapshot(scenario / "cluster.json") as kube:
        results = run_handle(scenario, tmp, f"sqlite:///{tmp / 'mlflow.db'}", gh, kube, export=False)
        return Run(results=results, bare=tmp / "gitops.git", methods=set(kube.methods),
                   pull_requests=[r.body for r in gh.requests_to("POST", "/pulls")])


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    """Every layout scenario through `autofix handle`, four at a time: each run mostly waits on its child
    process, git and the loopback servers, so the module costs about a quarter of running them in turn."""
    template = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()  # runs the migrations once
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {p.name: pool.submit(_run, p, tmp_path_factory.mktemp(p.name), template) for p in LAYOUTS}
        return {name: future.result(timeout=300) for name, future in futures.items()}


def test_every_layout_has_a_scenario() -> None:
    names = {p.name for p in LAYOUTS}
    assert {"layout-argocd-directory", "layout-kustomize-patch", "layout-kustomize-images", "layout-helm-valuefiles",
            "layout-helm-valuesobject", "layout-argocd-multisource", "layout-argocd-appset",
            "layout-argocd-foreign-repo", "layout-argocd-ambiguous", "layout-flux-kustomization",
            "layout-flux-helmrelease-inline", "layout-flux-helmrelease-configmap"} <= names


@pytest.mark.parametrize("scenario", LAYOUTS, ids=lambda p: p.name)
def test_layout(scenario: Path, runs: dict[str, Run]) -> None:
    expected = json.loads((scenario / "expected.json").read_text())
    run = runs[scenario.name]
    assert run.methods == {"GET"}, "the bot must only read the cluster"
    main = run.results[0]
    assert main["outcome"] == expected["outcome"], run.results
    bare = run.bare
    branches = [b.strip() for b in git("branch", "--format=%(refname:short)", cwd=bare).splitlines()]
    if expected["outcome"] == "no_fix":
        assert branches == ["main"], "no branch may be pushed when there is no fix"
        assert run.pull_requests == []
        for needle in expected["reason_contains"]:
            assert needle in main["reason"], main["reason"]
        return
    diff = branch_diff(bare, main["branch"])
    changed = git("diff", "--name-only", "main", main["branch"], cwd=bare).split()
    assert changed == [expected["changed_file"]], diff
    # Exactly the expected lines changed: comments, quoting, key order and indentation all survived.
    assert changed_lines(diff) == expected["diff_contains"], diff
    for path in expected.get("untouched", []):
        assert git("show", f"main:{path}", cwd=bare) == git("show", f"{main['branch']}:{path}", cwd=bare)
    [pr] = run.pull_requests
    body = pr["body"]
    assert expected["changed_file"] in body
    render = expected.get("render")
    if render == "verified":
        assert "Render verified" in body and "kubectl kustomize" in body, body
    elif render == "helm":
        assert "Render verified" in body and "chart charts/checkout" in body, body
    elif render == "not verified":
        assert "Render not verified" in body, body
    for env in expected.get("environments", []):
        assert env in body, body
