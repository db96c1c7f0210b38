"""Rollback proven from git's history (issue 13, class 1), through `autofix handle` against the loopback Kubernetes
and GitHub fakes: tests/scenarios/real-rollback-git-history (podinfo's chart verbatim on Argo CD, README) with a
real dated history (tests/rollback_git.py). The Redis Deployment was deleted during the incident and recreated by
Argo CD's self-heal: no earlier ReplicaSet is left, so only git (and Argo CD's sync history) can say what ran.

    weeks    redis.tag 8.8.0 for 34 days, then the typo 8.8.0-alpne -> a PR setting 8.8.0 back in values-prod.yaml,
             naming the commits and the syncs it rests on
    minutes  the value before the typo (8.8.0-alpine) was in git, and deployed, for 4 minutes -> no_fix, no branch
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests import rollback_git
from tests.e2e.test_e2e_handle import TOKEN, branch_diff, changed_lines, git, run_handle
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

pytestmark = pytest.mark.e2e


@pytest.fixture
def gh() -> Any:
    with FakeGitHub("acme/gitops", token=TOKEN) as server:
        yield server


def handle(tmp_path: Path, mlflow_uri: str, gh: FakeGitHub, case: str) -> tuple[dict[str, Any], Path, list[str]]:
    bare = tmp_path / "gitops.git"
    shas = rollback_git.repository(bare, case)
    snapshot = rollback_git.write_cluster(tmp_path / "cluster.json", case, shas)
    with KubeApiFake.from_snapshot(snapshot) as kube:
        [result] = run_handle(rollback_git.SCENARIO, tmp_path, mlflow_uri, gh, kube, bare=bare, export=False)
        assert kube.methods == {"GET"}, "the bot must only read the cluster"
    return result, bare, shas


@pytest.mark.timeout(300)
def test_the_value_git_had_for_weeks_before_the_typo_is_rolled_back(tmp_path: Path, mlflow_uri: str,
                                                                    gh: FakeGitHub) -> None:
    result, bare, shas = handle(tmp_path, mlflow_uri, gh, "weeks")

    assert result["outcome"] == "pr_opened", result
    diff = branch_diff(bare, result["branch"])
    assert diff.count("+++ ") == 1 and f"+++ b/{rollback_git.VALUES}" in diff, diff
    assert changed_lines(diff) == ["-  tag: 8.8.0-alpne", "+  tag: 8.8.0"]
    [pr] = [r.body for r in gh.requests_to("POST", "/pulls")]
    body = pr["body"]
    imported, typo = shas[0][:12], shas[1][:12]
    assert ("cannot be pulled. No earlier ReplicaSet is left to show what worked: git had redis.tag 8.8.0 for 34 d 3 h "
            f"(deployed) until commit {typo} set 8.8.0-alpne.") in body
    assert (f"git history of {rollback_git.VALUES}: redis.tag was 8.8.0 from commit {imported} (2026-10-20T08:40:12Z, "
            f"\"Import podinfo chart 6.14.1 (stefanprodan/podinfo@eec06d1)\") until commit {typo} "
            "(2026-11-23T11:59:58Z, \"podinfo: redis 8.8.0-alpine\") set 8.8.0-alpne: 34 d 3 h in git") in body
    assert (f"Argo CD Application podinfo status.history: revision {shas[0][:7]} deployed 2026-10-20T08:41:35Z while "
            f"git had it, then revision {shas[1][:7]} deployed 2026-11-23T12:00:50Z: it ran 34 d 3 h") in body
    assert "revision None" not in body and "replicaset None" not in body


@pytest.mark.timeout(300)
def test_a_value_git_had_for_minutes_is_no_proof(tmp_path: Path, mlflow_uri: str, gh: FakeGitHub) -> None:
    result, bare, shas = handle(tmp_path, mlflow_uri, gh, "minutes")

    assert result["outcome"] == "no_fix", result
    assert result["reason"] == (
        f"git had redis.tag 8.8.0-alpine for 4 min 10 s (deployed) until commit {shas[2][:12]} set 8.8.0-alpne: "
        "less than the 10 min a revision must have run to count as having worked (policy "
        "rollback.min_available_seconds): no evidence it ever worked; fix the image reference by hand")
    assert git("branch", "--format=%(refname:short)", cwd=bare).split() == ["main"], "no branch"
    assert gh.requests_to("POST", "/pulls") == []
