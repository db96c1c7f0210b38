"""Outcomes through the service's front door: `autofix serve` (a subprocess, the real pipeline) receives the demo
alert from Alertmanager's webhook, opens the PR in the GitHub fake; alice merges it with a real merge commit, Argo
CD (an Application served by the Kubernetes fake) syncs it and the live Deployment runs the new limit. Then:

- the resolved notification arrives through the webhook, `autofix outcomes sync` (the CLI) follows the fix: once
  the policy's (shortened) quiet window has passed it is ``effective``, with its times to merge, sync and resolve;
- or the same alert fires again through the webhook: the merged PR gets the escalation comment and the fix ends
  ``ineffective``.

What users see is checked: the ledger rows, the forge's comments, the original MLflow run (real sqlite store)
and the table `autofix outcomes sync` prints.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app import fieldpaths
from app.adapters.store import JobStore
from app.demo import seed_bare_repo
from app.ports import Remediation
from app.settings import DEFAULT_POLICY_DIR
from tests.conftest import ROOT, mlflow_run
from tests.e2e.test_outbox import GH_TOKEN, WEBHOOK_TOKEN, post_and_wait
from tests.e2e.test_outcomes import BRANCH, DEMO, LIMIT, _git, _human
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake
from tests.serve import serving, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(400)]

QUIET_SECONDS = 2.0  # the policy's outcomes.quiet_hours, shortened so the test waits seconds, not a day
REVIEW_SECONDS = 2.0  # between the PR opening and alice's merge
SYNC_DELAY = 45.0  # Argo CD's history says it deployed the merge commit this long after the merge


def _policy(tmp_path: Path) -> Path:
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "default.yaml").write_text((DEFAULT_POLICY_DIR / "default.yaml").read_text())
    (folder / "zz-test.yaml").write_text(f"outcomes:\n  quiet_hours: {QUIET_SECONDS / 3600}\n  decision_hours: 1\n")
    return folder


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _alert(*, status: str, starts_at: str = "", ends_at: str = "") -> dict[str, Any]:
    """The demo's first alert alone (one pod of shop/checkout), as Alertmanager sends it."""
    payload: dict[str, Any] = json.loads((DEMO / "alert.json").read_text())
    alert = payload["alerts"][0]
    payload["alerts"] = [alert]
    payload["status"] = alert["status"] = status
    if starts_at:
        alert["startsAt"] = starts_at
    if ends_at:
        alert["endsAt"] = ends_at
    return payload


def _argo_synced(kube: KubeApiFake, *, commit: str, deployed: float) -> None:
    """What the cluster looks like once Argo CD synced ``commit``: the Application's status names it and the
    Deployment runs 768Mi (its controller has observed the new generation)."""
    for item in kube.objects:
        if item["kind"] == "Deployment" and item["metadata"]["name"] == "checkout":
            *parent, leaf = fieldpaths.resolve(item, LIMIT)
            fieldpaths.get(item, parent)[leaf] = "768Mi"
            item["metadata"]["generation"] = item["status"]["observedGeneration"] = 8
    kube.objects.append({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "shop", "namespace": "argocd"},
        "spec": {"project": "default", "destination": {"server": "https://kubernetes.default.svc", "namespace": "shop"},
                 "source": {"repoURL": "https://github.com/acme/gitops.git", "path": "apps/checkout",
                            "targetRevision": "main"}},
        "status": {"sync": {"status": "Synced", "revision": commit},
                   "health": {"status": "Healthy"},
                   "history": [{"id": 4, "revision": commit, "deployedAt": _iso(deployed),
                                "deployStartedAt": _iso(deployed - 5),
                                "source": {"repoURL": "https://github.com/acme/gitops.git", "path": "apps/checkout",
                                           "targetRevision": "main"}}]},
    })


def _env(tmp_path: Path, gh: FakeGitHub, kube: KubeApiFake, mlflow_uri: str) -> dict[str, str]:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(DEMO / "repo", bare)
    return {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops", "GITHUB_TOKEN": GH_TOKEN,
            "AUTOFIX_GITHUB_API_URL": gh.api_url, "AUTOFIX_GITHUB_WRITE_SPACING": "0",
            "AUTOFIX_DATA_DIR": str(tmp_path / "data"), "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "MLFLOW_TRACKING_URI": mlflow_uri, "AUTOFIX_POLICY_DIR": str(_policy(tmp_path))}


def _open_and_merge(tmp_path: Path, gh: FakeGitHub, kube: KubeApiFake, base: str) -> tuple[dict[str, Any], int, float]:
    """The firing alert through the webhook opens the PR; alice merges it, Argo CD syncs it. Returns the job's
    result, the PR number and the merge time the forge reports."""
    [job] = post_and_wait(base, _alert(status="firing"))
    opened = job["result"]
    assert opened["outcome"] == "pr_opened", job
    number = int(opened["pr_url"].rsplit("/", 1)[1])
    opened_at = _row(tmp_path).opened_at  # the forge keeps whole seconds: review it for a couple of them
    wait_for(lambda: time.time() >= opened_at + REVIEW_SECONDS, "the review", seconds=10)
    human = _human(tmp_path)
    _git(human, "merge", "-q", "--no-ff", "-m", f"Merge pull request #{number} from acme/{BRANCH}", f"origin/{BRANCH}")
    _git(human, "push", "-q", "origin", "main")
    merge = _git(human, "rev-parse", "HEAD")
    gh.merge(number, sha=merge, by="alice")
    merged_at = datetime.fromisoformat(str(gh.pulls[number]["merged_at"]).replace("Z", "+00:00")).timestamp()
    _argo_synced(kube, commit=merge, deployed=merged_at + SYNC_DELAY)
    return opened, number, merged_at


def _sync(env: dict[str, str]) -> list[list[str]]:
    """`autofix outcomes sync` once; its table's rows, split into cells."""
    proc = subprocess.run([sys.executable, "-m", "app.cli", "outcomes", "sync"], cwd=ROOT, env=env, timeout=120,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["PR", "WORKLOAD", "CAUSE", "STATE", "MERGED", "BY", "SYNCED", "ROLLED", "OUT",
                                "FINAL"], proc.stdout
    return [line.split() for line in lines[1:]]


def _row(tmp_path: Path) -> Remediation:
    store = JobStore(tmp_path / "data" / "jobs.sqlite3")
    try:
        [row] = store.entries(branch=BRANCH)
        return row
    finally:
        store.close()


def _exported(tmp_path: Path, record_id: str) -> bool:
    store = JobStore(tmp_path / "data" / "jobs.sqlite3")
    try:
        export = store.export_of(f"{record_id}.outcome")
        return export is not None and export.state == "done"
    finally:
        store.close()


def test_merged_synced_by_argo_resolved_through_the_webhook_is_effective(tmp_path: Path, mlflow_uri: str) -> None:
    with FakeGitHub("acme/gitops", token=GH_TOKEN) as gh, KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
        env = _env(tmp_path, gh, kube, mlflow_uri)
        with serving(env, out=tmp_path / "serve.log", verbose=True) as served:
            base = served.base
            opened, number, merged_at = _open_and_merge(tmp_path, gh, kube, base)
            resolved_at = float(int(time.time()))  # Alertmanager's endsAt: the alert resolved after the merge
            [job] = post_and_wait(base, _alert(status="resolved", ends_at=_iso(resolved_at)))
            assert job["result"]["outcome"] == "skipped", job
            row = _row(tmp_path)
            assert (row.state, row.resolved_at, row.final) == ("merged", resolved_at, None), "resolved after the merge"

            first = _sync(env)  # rolled out now: quiet from here on, not yet for the policy's window
            assert first == [[f"#{number}", "Deployment/shop/checkout", "oom_killed", "merged", "alice",
                              _iso(merged_at + SYNC_DELAY), first[0][6], "following"]], first
            rolled_out_at = _row(tmp_path).rolled_out_at
            assert rolled_out_at is not None and first[0][6] == _iso(rolled_out_at)
            wait_for(lambda: time.time() - rolled_out_at > QUIET_SECONDS, "the quiet window", seconds=10)
            [line] = _sync(env)
            assert line[3:5] == ["merged", "alice"] and line[-1] == "effective", line
            wait_for(lambda: _exported(tmp_path, opened["record_id"]), "the outcome to reach MLflow")

    row = _row(tmp_path)
    assert (row.final, row.final_at, row.fired_again_at) == ("effective", rolled_out_at + QUIET_SECONDS, None)
    assert row.synced_at == merged_at + SYNC_DELAY, "Argo CD's history says when the merge commit was deployed"
    assert not gh.comments[number], "no escalation, no resolved-comment on a merged PR"
    run = mlflow_run(mlflow_uri, opened["record_id"])
    assert run.data.tags["outcome"] == "pr_opened", "the run's own record is kept"
    assert (run.data.tags["outcome.final"], run.data.tags["outcome.merged_by"], run.data.tags["outcome.pr_state"]) \
        == ("effective", "alice", "merged")
    assert run.data.metrics["time_to_merge_s"] == merged_at - row.opened_at >= REVIEW_SECONDS - 1
    assert run.data.metrics["time_to_sync_s"] == SYNC_DELAY
    assert run.data.metrics["time_to_resolve_s"] == resolved_at - merged_at


def test_merged_fix_whose_alert_fires_again_through_the_webhook_is_ineffective(tmp_path: Path,
                                                                               mlflow_uri: str) -> None:
    with FakeGitHub("acme/gitops", token=GH_TOKEN) as gh, KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
        env = _env(tmp_path, gh, kube, mlflow_uri)
        with serving(env, out=tmp_path / "serve.log", verbose=True) as served:
            base = served.base
            opened, number, merged_at = _open_and_merge(tmp_path, gh, kube, base)
            # The pod crash-loops again after the rollout: a new firing (a later startsAt) of the same alert.
            [job] = post_and_wait(base, _alert(status="firing", starts_at=_iso(time.time())))
            again = job["result"]
            assert again["outcome"] == "no_fix" and again["reason"].startswith("escalated: fix merged at"), job
            assert "did not resolve" in again["reason"]
            [comment] = [str(c["body"]) for c in gh.comments[number]]
            assert "Escalation" in comment and "OOMKilled" in comment
            assert again["record_id"] in comment, "the comment names the run of the new evidence"
            fired_again_at = _row(tmp_path).fired_again_at
            assert fired_again_at is not None and fired_again_at >= merged_at

            [line] = _sync(env)
            assert line[:5] == [f"#{number}", "Deployment/shop/checkout", "oom_killed", "merged", "alice"], line
            assert line[5] == _iso(merged_at + SYNC_DELAY) and line[-1] == "ineffective", line
            wait_for(lambda: _exported(tmp_path, opened["record_id"]), "the outcome to reach MLflow")

    row = _row(tmp_path)
    assert (row.final, row.final_at, row.resolved_at) == ("ineffective", fired_again_at, None)
    assert row.escalated_at is not None
    run = mlflow_run(mlflow_uri, opened["record_id"])
    assert (run.data.tags["outcome.final"], run.data.tags["outcome.merged_by"]) == ("ineffective", "alice")
    assert run.data.tags["outcome.fired_again_at"] == _iso(fired_again_at)
    assert run.data.metrics["time_to_sync_s"] == SYNC_DELAY
    assert "time_to_resolve_s" not in run.data.metrics, "it never resolved"
    escalation = mlflow_run(mlflow_uri, again["record_id"])
    assert (escalation.data.tags["ledger"], escalation.data.tags["outcome"]) == ("escalate", "no_fix")
