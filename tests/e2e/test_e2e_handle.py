"""`autofix handle` end to end, as a user runs it: the real kubernetes client against a loopback API
server serving the scenario's cluster, real git pushing to a bare repository, PyGithub against a loopback
GitHub fake, and a real MLflow sqlite store. Assertions are on what users see: the pushed branch's diff,
the PR request, the MLflow run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES, ROOT, SCENARIOS, mlflow_run
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

pytestmark = pytest.mark.e2e  # real servers, binaries or whole pipeline runs: the slow part

TOKEN = "ghs_test_token_0123456789abcdefghij"


def git(*argv: str, cwd: Path) -> str:
    return subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True, text=True, timeout=30).stdout


def run_handle(scenario: Path, tmp_path: Path, mlflow_uri: str, gh: FakeGitHub, kube: KubeApiFake,
               *, payload: Path | None = None, bare: Path | None = None, export: bool = True) -> list[dict[str, Any]]:
    """`autofix handle` in a child process. ``export=False``: the run records stay in the data dir's outbox
    (AUTOFIX_EXPORT_WAIT_SECONDS=0, as a user may set it) for tests that read none: importing MLflow and logging
    a run is two thirds of a handle's CPU, and the suite is CPU-bound on two cores."""
    if bare is None:
        bare = tmp_path / "gitops.git"
        seed_bare_repo(scenario / "repo", bare)
    env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
           "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops", "GITHUB_TOKEN": TOKEN,
           "AUTOFIX_GITHUB_API_URL": gh.api_url, "AUTOFIX_GITHUB_WRITE_SPACING": "0",
           "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
           "MLFLOW_TRACKING_URI": mlflow_uri, "AUTOFIX_MLFLOW_UI_URL": "https://mlflow.example",
           **({} if export else {"AUTOFIX_EXPORT_WAIT_SECONDS": "0"})}
    proc = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(payload or scenario / "alert.json")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    # 0 when every alert was decided, 3 when one ended failed (README, exit statuses)
    assert proc.returncode == (3 if any(r["outcome"] == "failed" for r in results) else 0), proc.stderr
    return results


def branch_diff(bare: Path, branch: str) -> str:
    return git("diff", "main", branch, cwd=bare)


def changed_lines(diff: str) -> list[str]:
    return [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    with FakeGitHub("acme/gitops", token=TOKEN) as gh:
        yield gh


def test_oom_deployment_opens_one_pr_with_exact_diff(tmp_path: Path, mlflow_uri: str, world: FakeGitHub) -> None:
    scenario = EXAMPLES / "demo"
    with KubeApiFake.from_snapshot(scenario / "cluster.json") as kube:
        results = run_handle(scenario, tmp_path, mlflow_uri, world, kube)
        assert kube.methods == {"GET"}, "the bot must only read the cluster"
    outcomes = [r["outcome"] for r in results]
    # Two pods of one Deployment in one payload: one PR, the second alert collapses onto it.
    assert outcomes.count("pr_opened") == 1, results
    assert set(outcomes) <= {"pr_opened", "duplicate"}
    first = next(r for r in results if r["outcome"] == "pr_opened")
    assert first["branch"] == "autofix/shop/checkout/oom-killed"
    assert 0 < first["risk"] <= 1

    bare = tmp_path / "gitops.git"
    diff = branch_diff(bare, first["branch"])
    assert changed_lines(diff) == ['-              memory: "512Mi"', '+              memory: "768Mi"'] or \
        [line.strip() for line in changed_lines(diff)] == ['-memory: "512Mi"', '+memory: "768Mi"'], diff
    assert git("rev-parse", "main", cwd=bare).strip() == git("rev-list", "--max-parents=0", "main", cwd=bare).strip(), \
        "the base branch must never move"
    author = git("log", "-1", "--format=%an <%ae>", first["branch"], cwd=bare).strip()
    assert "gitops-autofix" in author

    posts = world.requests_to("POST", "/pulls")
    assert len(posts) == 1
    pr = posts[0].body
    assert pr["head"] == first["branch"] and pr["base"] == "main"
    assert pr["title"] == "Raise memory limit of shop/checkout to 768Mi after OOMKilled"
    assert "OOMKilled" in pr["body"] and "exitCode=137" in pr["body"]
    # Opened before MLflow has the run: the body names the record, then the exporter links it (one PATCH).
    assert f"autofix_record={first['record_id']}" in pr["body"]
    [linked] = world.requests_to("PATCH", "/pulls/1")
    assert set(linked.body) == {"body"} and "https://mlflow.example/#/experiments/" in linked.body["body"]
    assert '+              memory: "768Mi"' in pr["body"] or '+memory: "768Mi"' in pr["body"].replace(" ", "")
    labels = [r.body for r in world.requests_to("POST", "/labels")]
    assert any("autofix" in (b.get("labels") if isinstance(b, dict) else b) for b in labels), labels

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_uri)
    run = mlflow_run(mlflow_uri, first["record_id"])
    assert run.data.tags["outcome"] == "pr_opened"
    assert run.data.tags["cause"] == "oom_killed"
    assert run.data.tags["pr_url"] == first["pr_url"]
    assert run.data.params["detector"] == "oom"
    assert run.data.metrics["risk"] == pytest.approx(first["risk"])
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"evidence.json", "diagnosis.json", "patch.diff", "pr_body.md"} <= artifacts


def test_repeated_alert_does_not_open_a_second_pr(tmp_path: Path, mlflow_uri: str, world: FakeGitHub) -> None:
    scenario = EXAMPLES / "demo"
    with KubeApiFake.from_snapshot(scenario / "cluster.json") as kube:
        run_handle(scenario, tmp_path, mlflow_uri, world, kube)
        again = run_handle(scenario, tmp_path, mlflow_uri, world, kube, bare=tmp_path / "gitops.git")
    assert {r["outcome"] for r in again} == {"duplicate"}
    assert len(world.requests_to("POST", "/pulls")) == 1


def _scenarios() -> list[Path]:
    return sorted(p for p in SCENARIOS.glob("*") if (p / "expected.json").exists()) if SCENARIOS.exists() else []


# Causes whose scenarios run end to end; each engineer adds the causes their detectors and fixers handle.
SUPPORTED_CAUSES: set[str] = {"oom_killed", "image_pull_after_rollout"}
SUPPORTED_CAUSES |= {"unschedulable", "cpu_throttling", "hpa_maxed_out", "pvc_storage_class"}
SUPPORTED_CAUSES |= {"config_reference", "missing_secret", "missing_config", "probe_misconfigured", "slow_start",
                     "bad_command", "application_error"}


def _supported(path: Path) -> bool:
    if path.name.startswith("layout-"):
        return False  # GitOps layout scenarios run (with more checks) in tests/e2e/test_e2e_layouts.py
    expected = json.loads((path / "expected.json").read_text())
    return expected.get("cause") in SUPPORTED_CAUSES


@pytest.mark.parametrize("scenario", [p for p in _scenarios() if _supported(p)], ids=lambda p: p.name)
def test_scenario(scenario: Path, tmp_path: Path, mlflow_uri: str, world: FakeGitHub) -> None:
    expected = json.loads((scenario / "expected.json").read_text())
    with KubeApiFake.from_snapshot(scenario / "cluster.json") as kube:
        results = run_handle(scenario, tmp_path, mlflow_uri, world, kube, export=bool(expected.get("check_cause")))
    main = results[0]
    assert main["outcome"] == expected["outcome"], results
    if expected.get("check_cause"):  # the cause the run recorded, as the MLflow UI shows it
        run = mlflow_run(mlflow_uri, main["record_id"])
        assert run.data.tags["cause"] == expected["cause"], run.data.tags
    bare = tmp_path / "gitops.git"
    branches = [b.strip() for b in git("branch", "--format=%(refname:short)", cwd=bare).splitlines()]
    if expected["outcome"] == "no_fix":
        assert branches == ["main"], "no branch may be pushed when there is no fix"
        assert world.requests_to("POST", "/pulls") == []
        for needle in expected.get("reason_contains", []):
            assert needle.lower() in main["reason"].lower(), main["reason"]
        return
    diff = branch_diff(bare, main["branch"])
    assert f"+++ b/{expected['changed_file']}" in diff
    assert diff.count("+++ ") == 1, "exactly one file changes"
    lines = changed_lines(diff)
    for needle in expected.get("diff_contains", []):
        assert needle in lines, f"{needle!r} not in {lines}"
    prs = [r.body for r in world.requests_to("POST", "/pulls")]
    assert len(prs) == 1, prs
    for needle in expected.get("pr_contains", []):
        assert needle in prs[0]["title"] + "\n" + prs[0]["body"], f"{needle!r} not in the PR"
