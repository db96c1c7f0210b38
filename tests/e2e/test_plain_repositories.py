"""Several GitOps repositories and a workload no Argo CD or Flux object deploys, through `autofix handle` and
`autofix outcomes sync` as a user runs them: the real kubernetes client against a loopback API server, git against
two bare repositories, PyGithub against one loopback GitHub fake per repository (each its own token).

The workload is Online Boutique's checkoutservice applied with ``kubectl apply`` (tests/fixtures/
real-history-checkoutservice: GoogleCloudPlatform/microservices-demo's manifests verbatim), OOM-killed at 192Mi.
``platform`` (matched first) holds argoproj/argocd-example-apps' guestbook verbatim, ``boutique`` the Online
Boutique's manifests: the PR lands in boutique, and the follower then fetches boutique only (its log line). When
both repositories define the workload: no PR, no branch, ``ambiguous_manifest`` naming both.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from app.settings import DEFAULT_POLICY_DIR
from tests.e2e.test_e2e_clusters import autofix
from tests.e2e.test_e2e_handle import git
from tests.e2e.test_foreign_history import FILE, FIXTURE, shifted
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake
from tests.stages.test_repository_search import BRANCH, GUESTBOOK, WORKLOAD, boutique, plain

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

PLATFORM_TOKEN = "ghs_platform_token_0123456789abcdefg"
BOUTIQUE_TOKEN = "ghs_boutique_token_0123456789abcdefg"


def _policy_dir(tmp_path: Path, bares: dict[str, Path], fakes: dict[str, FakeGitHub]) -> Path:
    import shutil

    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    entries = [f"""\
- name: {name}
  url: {bares[name]}
  forge: github
  github: {{repo: {fakes[name].repo}, api_url: "{fakes[name].api_url}"}}
  credentials: {{token_env: AUTOFIX_TEST_{name.upper()}_TOKEN}}
""" for name in bares]
    (policies / "repositories.yaml").write_text("".join(entries), encoding="utf-8")
    return policies


def _run(tmp_path: Path, bares: dict[str, Path], *argv: str) -> tuple[dict[str, FakeGitHub], Any]:
    """``autofix handle`` on the shifted alert (then ``argv``'s command, if any) with both fakes up."""
    now = time.time()
    snapshot = shifted(FIXTURE / "cluster-raised-5d.json", tmp_path / "cluster.json", now)
    payload = shifted(FIXTURE / "alert.json", tmp_path / "alert.json", now)
    with FakeGitHub("acme/platform-gitops", token=PLATFORM_TOKEN) as gh_platform, \
            FakeGitHub("acme/boutique-gitops", token=BOUTIQUE_TOKEN) as gh_boutique, \
            KubeApiFake.from_snapshot(snapshot) as kube:
        fakes = {"platform": gh_platform, "boutique": gh_boutique}
        env = {"AUTOFIX_POLICY_DIR": str(_policy_dir(tmp_path, bares, fakes)),
               "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
               "AUTOFIX_GIT_URL": "", "AUTOFIX_GITHUB_REPO": "", "GITHUB_TOKEN": "",
               "AUTOFIX_TEST_PLATFORM_TOKEN": PLATFORM_TOKEN, "AUTOFIX_TEST_BOUTIQUE_TOKEN": BOUTIQUE_TOKEN,
               "AUTOFIX_GITHUB_WRITE_SPACING": "0", "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "AUTOFIX_EXPORT_WAIT_SECONDS": "0",
               "LOG_FORMAT": "json"}
        proc = autofix("handle", str(payload), env=env)
        assert proc.returncode == 0, proc.stderr
        [result] = json.loads(proc.stdout)["results"]
        after = autofix("-v", *argv, env=env) if argv else None
        assert kube.methods == {"GET"}
    return fakes, (result, after)


def test_a_plain_yaml_workload_gets_its_pr_in_the_repository_defining_it_and_only_that_one_is_followed(
        tmp_path: Path) -> None:
    bares = {"platform": plain(GUESTBOOK, tmp_path / "platform.git"),
             "boutique": boutique(tmp_path / "boutique.git", time.time())}

    fakes, (result, synced) = _run(tmp_path, bares, "outcomes", "sync")

    assert result["outcome"] == "pr_opened", result
    assert result["pr_url"] == "https://github.example/acme/boutique-gitops/pull/1"
    [pr] = fakes["boutique"].requests_to("POST", "/pulls")
    assert pr.body["head"] == BRANCH and pr.body["base"] == "main"
    assert not fakes["platform"].requests_to("POST", "/pulls")
    assert git("branch", "--list", "autofix/*", cwd=bares["boutique"]).split() == [BRANCH]
    assert git("branch", "--list", "autofix/*", cwd=bares["platform"]).split() == []
    assert "+              memory: 288Mi" in git("diff", "main", BRANCH, "--", FILE, cwd=bares["boutique"])

    # `autofix outcomes sync`: boutique's PR is followed, its checkout fetched; platform has nothing to follow.
    assert synced.returncode == 0, synced.stderr
    [line] = [json.loads(x) for x in synced.stderr.splitlines()
              if x.startswith("{") and json.loads(x).get("message") == "outcomes pass"]
    assert (line["fetched"], line["not_fetched"], line["rows"]) == (["boutique"], ["platform"], 1), line


def test_a_plain_yaml_workload_two_repositories_define_is_no_fix_naming_both(tmp_path: Path) -> None:
    now = time.time()
    bares = {"platform": boutique(tmp_path / "platform.git", now), "boutique": boutique(tmp_path / "boutique.git", now)}

    fakes, (result, _) = _run(tmp_path, bares)

    assert result["outcome"] == "no_fix", result
    assert result["reason"] == (f"{WORKLOAD} is defined in more than one configured repository (platform: {FILE}#0, "
                                f"boutique: {FILE}#0) and no Argo CD or Flux object says which one is deployed: "
                                "not guessing")
    assert not any(f.requests_to("POST", "/pulls") for f in fakes.values())
    assert all(git("branch", "--list", "autofix/*", cwd=b).split() == [] for b in bares.values())
