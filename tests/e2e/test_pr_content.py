"""What the pull request carries, through `autofix handle` as a user runs it (the real kubernetes client against
the loopback API server, git to a bare repository, PyGithub against the loopback GitHub fake): the alert's
context, the last log lines, what happens next, the cause label beside the risk label, the namespace factor that
does not call a three-replica checkout service low risk, and reviewers from the GitOps repo's CODEOWNERS, one of
whom GitHub refuses (not a collaborator) without failing the PR."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES
from tests.e2e.test_e2e_handle import TOKEN, run_handle
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

pytestmark = pytest.mark.e2e

CODEOWNERS = Path(__file__).resolve().parents[1] / "fixtures" / "codeowners" / "gitops-CODEOWNERS"
RUNBOOK = "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"


@pytest.mark.timeout(240)
def test_the_pr_carries_context_labels_and_codeowners_reviewers(tmp_path: Path, mlflow_uri: str) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "demo" / "repo", repo)
    (repo / ".github").mkdir(exist_ok=True)
    # The fixture, plus a later, narrower pattern that wins for the edited file (GitHub: last match wins).
    (repo / ".github" / "CODEOWNERS").write_text(
        CODEOWNERS.read_text() + "/apps/checkout/deployment.yaml  @acme/shop-team @carol @mallory\n")
    bare = tmp_path / "gitops.git"
    seed_bare_repo(repo, bare)
    with FakeGitHub("acme/gitops", token=TOKEN) as gh, \
            KubeApiFake.from_snapshot(EXAMPLES / "demo" / "cluster.json") as kube:
        gh.collaborators = {"carol"}
        results = run_handle(EXAMPLES / "demo", tmp_path, mlflow_uri, gh, kube, bare=bare, export=False)
        assert [r["outcome"] for r in results].count("pr_opened") == 1, results

        [opened] = gh.requests_to("POST", "/pulls")
        body = opened.body["body"]
        assert ("`KubePodCrashLooping` firing since `2026-11-23T15:15:29Z` (for " in body
                and " when this was decided), severity `warning`." in body)
        assert "Fired by Prometheus `monitoring/k8s`." in body and f"[Runbook]({RUNBOOK})" in body
        assert "[Prometheus graph](http://prometheus-k8s.monitoring.svc:9090/graph?g0.expr=" in body
        assert "<details><summary>Last 19 log lines before the failure (checkout-7d9f8b6c5-fghij/checkout, " \
               "previous container)</summary>" in body and '"msg":"building invoice PDF batch"' in body
        assert "## What happens next" in body
        assert "- **Merge:** Argo CD Application `checkout` in namespace `argocd` syncs it automatically" in body
        assert "opens no new pull request for this workload and cause (`oom_killed`) for 72 h after the close" in body
        assert '`autofix.io/ignore: "true"`' in body
        assert "| namespace_scope | 0.70 | 1 | production-like: " in body and "## Risk: medium" in body

        labels = [name for r in gh.requests_to("POST", "/labels")
                  for name in (r.body.get("labels") if isinstance(r.body, dict) else r.body)]
        assert {"autofix", "risk:medium", "cause:oom-killed"} <= set(labels), labels

        asked = [r.body for r in gh.requests_to("POST", "/requested_reviewers")]
        assert asked[0] == {"reviewers": ["carol", "mallory"], "team_reviewers": ["shop-team"]}, asked
        assert [u["login"] for u in gh.pulls[1]["requested_reviewers"]] == ["carol"]
        assert [t["slug"] for t in gh.pulls[1]["requested_teams"]] == ["shop-team"]
        [said] = [c["body"] for c in gh.comments[1]]
        assert said.startswith("GitOps Autofix could not request a review from `mallory`: forge: GitHub 422 ")
        assert "not a collaborator" in said
