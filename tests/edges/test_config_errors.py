"""Configuration mistakes a new user makes: `autofix handle` exits 1 with one line on stderr that names the
variable (or the file) and what would be right, never a traceback; a decided run exits 0, a failed one 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES, ROOT

DEMO = EXAMPLES / "demo"


def handle(tmp_path: Path, payload: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "AUTOFIX_DATA_DIR": str(tmp_path / "data"), "AUTOFIX_FORGE": "local",
            "AUTOFIX_GIT_URL": str(tmp_path), "AUTOFIX_GITHUB_REPO": "acme/gitops"}
    return subprocess.run([sys.executable, "-m", "app.cli", "handle", str(payload)], env={**base, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("MLFLOW_TRACKING_URI", "bogus://nowhere", "not one MLflow stores runs in"),
    ("AUTOFIX_GIT_URL", "htps://github.com/acme/gitops.git", "'htps' is not a git transport"),
    ("KUBECONFIG", "/nonexistent/kubeconfig", "cannot read /nonexistent/kubeconfig"),
], ids=["tracking-uri-scheme", "git-url-scheme", "kubeconfig-missing"])
def test_a_wrong_variable_is_one_line_naming_it(tmp_path: Path, variable: str, value: str, says: str) -> None:
    line = one_line(handle(tmp_path, DEMO / "alert.json", **{variable: value}))
    assert line.startswith(f"autofix: invalid configuration: {variable}: ") and says in line, line


def test_a_kubeconfig_that_is_not_yaml_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nclusters: [\n  - name: {unclosed\n")
    line = one_line(handle(tmp_path, DEMO / "alert.json", KUBECONFIG=str(broken)))
    assert "KUBECONFIG" in line and "is not a kubeconfig" in line, line


@pytest.mark.parametrize(("content", "says"), [
    (None, "cannot read the payload: No such file or directory"),
    ("this is not json", "not a valid Alertmanager webhook payload"),
], ids=["missing-file", "not-json"])
def test_a_payload_file_that_is_missing_or_not_json_is_one_line(tmp_path: Path, content: str | None,
                                                                  says: str) -> None:
    payload = tmp_path / "nope.json"
    if content is not None:
        payload.write_text(content)
    line = one_line(handle(tmp_path, payload))
    assert str(payload) in line and says in line, line


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_exit_status_is_0_when_decided_and_3_when_a_result_failed(tmp_path: Path) -> None:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(DEMO / "repo", bare)
    argv = ["--snapshot", str(DEMO / "cluster.json")]
    env = {**os.environ, "AUTOFIX_DATA_DIR": str(tmp_path / "data"), "AUTOFIX_FORGE": "local",
           "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    decided = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(DEMO / "alert.json"), *argv], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert decided.returncode == 0, decided.stderr
    assert {r["outcome"] for r in json.loads(decided.stdout)["results"]} == {"pr_opened", "duplicate"}
    # The base branch is gone: the workspace cannot sync, so the job ends failed (not a configuration error).
    subprocess.run(["git", "branch", "-m", "main", "renamed"], cwd=bare, check=True, capture_output=True, timeout=30)
    (tmp_path / "data" / "prs").rename(tmp_path / "prs-before")
    failed = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(DEMO / "alert.json"), *argv],
                            env={**env, "AUTOFIX_DATA_DIR": str(tmp_path / "data2")}, cwd=ROOT, capture_output=True,
                            text=True, timeout=100)
    outcomes = {r["outcome"] for r in json.loads(failed.stdout)["results"]}
    assert "failed" in outcomes, failed.stdout
    assert failed.returncode == 3, (failed.returncode, failed.stderr)
