"""`autofix handle` with AUTOFIX_FORGE=gitlab, end to end: the real kubernetes client against the loopback API
server, real git pushing to a bare repository, python-gitlab against the loopback GitLab fake. Assertions are on
the merge request GitLab received, on the second run updating it, and on the ledger rebuilt from the MRs once
the data directory is gone (a merged MR whose alert fires again: an escalation note on it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES, ROOT
from tests.fakes.gitlab_api import FakeGitLab, project_path
from tests.fakes.kube_api import KubeApiFake

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

TOKEN = "glpat-e2e0123456789abcdefgh"
BRANCH = "autofix/shop/checkout/oom-killed"
MRS = project_path("acme/gitops") + "/merge_requests"


def run_handle(tmp_path: Path, mlflow_uri: str, gitlab: FakeGitLab, kube: KubeApiFake) -> list[dict[str, Any]]:
    scenario = EXAMPLES / "demo"
    bare = tmp_path / "gitops.git"
    if not bare.exists():
        seed_bare_repo(scenario / "repo", bare)
    env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
           "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_FORGE": "gitlab", "AUTOFIX_GITLAB_URL": gitlab.url,
           "AUTOFIX_GITLAB_PROJECT": "acme/gitops", "GITLAB_TOKEN": TOKEN, "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
           "MLFLOW_TRACKING_URI": mlflow_uri, "AUTOFIX_MLFLOW_UI_URL": "https://mlflow.example"}
    env.pop("GITHUB_TOKEN", None)
    proc = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(scenario / "alert.json")], env=env,
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    return results


def test_gitlab_merge_request_opened_updated_and_ledger_rebuilt(tmp_path: Path, mlflow_uri: str) -> None:
    snapshot = EXAMPLES / "demo" / "cluster.json"
    with FakeGitLab("acme/gitops", token=TOKEN) as gitlab, KubeApiFake.from_snapshot(snapshot) as kube:
        first = run_handle(tmp_path, mlflow_uri, gitlab, kube)

        opened = next(r for r in first if r["outcome"] == "pr_opened")
        assert opened["branch"] == BRANCH
        assert opened["pr_url"] == "https://gitlab.example/acme/gitops/-/merge_requests/1"
        [create] = gitlab.requests_to("POST", MRS)
        mr = create.body
        assert mr["source_branch"] == BRANCH and mr["target_branch"] == "main"
        assert mr["title"] == "Raise memory limit of shop/checkout to 768Mi after OOMKilled"
        assert "OOMKilled" in mr["description"] and "exitCode=137" in mr["description"]
        assert "<!-- autofix-ledger: " in mr["description"]  # what the ledger is rebuilt from
        assert f"autofix_record={opened['record_id']}" in mr["description"]
        labels = mr["labels"].split(",")
        assert "autofix" in labels and any(name.startswith("risk:") for name in labels)
        assert "cause:oom-killed" in labels
        assert create.headers["PRIVATE-TOKEN"] == TOKEN
        # The exporter links the MLflow run into the description once it is recorded (a PUT of the description).
        assert any("https://mlflow.example/#/experiments/" in str(p.body.get("description", ""))
                   for p in gitlab.requests_to("PUT", f"{MRS}/1"))

        second = run_handle(tmp_path, mlflow_uri, gitlab, kube)
        assert {r["outcome"] for r in second} == {"duplicate"}, second
        assert len(gitlab.requests_to("POST", MRS)) == 1 and list(gitlab.mrs) == [1]

        # The data dir is lost while the MR was merged and the alert fires again: the ledger comes back from GitLab.
        gitlab.merge(1, by="alice")
        shutil.rmtree(tmp_path / "data")
        listed_before = len(gitlab.requests_to("GET", MRS))
        third = run_handle(tmp_path, mlflow_uri, gitlab, kube)

    rebuilt = [r.query for r in gitlab.requests_to("GET", MRS)[listed_before:]]
    assert {"labels": "autofix", "state": "all"}.items() <= rebuilt[0].items(), rebuilt
    assert len(gitlab.requests_to("POST", MRS)) == 1, "no second MR after the rebuild"
    assert any(r["outcome"] == "no_fix" and "escalated" in r["reason"] for r in third), third
    assert any("did not resolve" in n["body"] or "fired again" in n["body"].lower() for n in gitlab.notes[1]), \
        gitlab.notes[1]
