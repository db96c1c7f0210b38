"""Outcomes end to end: the demo's PRs opened by the real pipeline against the GitHub fake (PyGithub), the cluster
served by the Kubernetes fake (the real client) with Argo CD and Flux status, real git, a real sqlite MLflow.

A human closes the first PR (rejected); the second is merged by alice as a real merge commit, Flux applies it
and the Deployment runs the new limit; then a later commit reverts it (reverted). `autofix outcomes sync` (the
CLI, a subprocess) prints the table; the ledger rows and the original MLflow runs' tags and metrics are checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app import fieldpaths, main, settings
from app.adapters.store import JobStore
from app.policies import OutcomesPolicy
from app.settings import DEFAULT_POLICY_DIR
from app.wiring import build_exporter, build_outcomes
from tests.conftest import ROOT, mlflow_run
from tests.e2e.test_never_loop import TOKEN, _payload, handle_in_process
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake
from tests.stages.world import make_world

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

DEMO = ROOT / "examples" / "demo"
BRANCH = "autofix/shop/checkout/oom-killed"
LIMIT = "spec.template.spec.containers[name=checkout].resources.limits.memory"


def _git(cwd: Path, *args: str) -> str:
    env = {"GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "alice@example.com", "GIT_COMMITTER_NAME": "Alice",
           "GIT_COMMITTER_EMAIL": "alice@example.com", "HOME": str(cwd), "PATH": os.environ["PATH"]}
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60,
                          env=env).stdout.strip()


def _human(tmp_path: Path) -> Path:
    clone = tmp_path / "human"
    if not clone.exists():
        _git(tmp_path, "clone", "-q", str(tmp_path / "gitops.git"), str(clone))
    _git(clone, "fetch", "-q", "origin")
    _git(clone, "checkout", "-q", "-B", "main", "origin/main")
    return clone


def _policy(tmp_path: Path) -> Path:
    """The shipped policy with no cooldown: a second PR for the same workload right after the first was closed."""
    folder = tmp_path / "policy"
    folder.mkdir()
    (folder / "default.yaml").write_text((DEFAULT_POLICY_DIR / "default.yaml").read_text())
    (folder / "zz-test.yaml").write_text("limits:\n  cooldown_hours_after_closed: 0\n")
    return folder


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _snapshot(tmp_path: Path, *, commit: str, applied: float, limit: str) -> Path:
    """The demo's cluster once Flux applied ``commit`` (Ready since ``applied``) and the Deployment rolled out."""
    data = json.loads((DEMO / "cluster.json").read_text())
    items: list[dict[str, Any]] = copy.deepcopy(data["items"])
    for item in items:
        if item["kind"] == "Deployment" and item["metadata"]["name"] == "checkout":
            *parent, leaf = fieldpaths.resolve(item, LIMIT)
            fieldpaths.get(item, parent)[leaf] = limit
            item["status"]["observedGeneration"] = item["metadata"]["generation"]
    items.append({
        "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "shop", "namespace": "flux-system"},
        "spec": {"interval": "5m", "path": "./apps/checkout", "prune": True,
                 "sourceRef": {"kind": "GitRepository", "name": "gitops"}},
        "status": {"lastAppliedRevision": f"main@sha1:{commit}", "lastAttemptedRevision": f"main@sha1:{commit}",
                   "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                                   "message": f"Applied revision: main@sha1:{commit}",
                                   "lastTransitionTime": _iso(applied)}]},
    })
    path = tmp_path / "cluster-after.json"
    path.write_text(json.dumps({**data, "items": items}))
    return path


def _settings(tmp_path: Path, gh: FakeGitHub, kube: KubeApiFake, mlflow_uri: str, policy: Path) -> dict[str, str]:
    return {"KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig-outcomes")),
            "AUTOFIX_GIT_URL": str(tmp_path / "gitops.git"), "AUTOFIX_GITHUB_REPO": "acme/gitops",
            "GITHUB_TOKEN": TOKEN, "AUTOFIX_GITHUB_API_URL": gh.api_url, "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
            "MLFLOW_TRACKING_URI": mlflow_uri, "AUTOFIX_MLFLOW_UI_URL": "https://mlflow.example",
            "AUTOFIX_POLICY_DIR": str(policy)}


def _follow(env: dict[str, str]) -> None:
    """One pass in process, as the service's scheduled task runs it, then the outbox to MLflow."""
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        loaded = settings.load()
    store = JobStore(loaded.store_path)
    build_outcomes(loaded, store)()
    build_exporter(loaded, store, forge=None).drain(seconds=60)
    store.close()


def test_rejected_then_merged_by_alice_applied_by_flux_and_reverted(tmp_path: Path, mlflow_uri: str) -> None:
    policy = _policy(tmp_path)
    firing = _payload(tmp_path)
    with FakeGitHub("acme/gitops", token=TOKEN) as gh:
        with KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
            first = handle_in_process(tmp_path, gh, kube, mlflow_uri, payload=firing, policy_dir=policy)
            assert first["outcome"] == "pr_opened", first
            gh.close(1)
            second = handle_in_process(tmp_path, gh, kube, mlflow_uri, payload=firing, policy_dir=policy)
            assert second["outcome"] == "pr_opened" and second["pr_url"].endswith("/pull/2"), second

        human = _human(tmp_path)  # alice merges PR #2 with a merge commit; Flux applies it a minute later
        _git(human, "merge", "-q", "--no-ff", "-m", f"Merge pull request #2 from acme/{BRANCH}", f"origin/{BRANCH}")
        _git(human, "push", "-q", "origin", "main")
        merge = _git(human, "rev-parse", "HEAD")
        gh.merge(2, sha=merge, by="alice")
        merged_at = datetime.fromisoformat(str(gh.pulls[2]["merged_at"]).replace("Z", "+00:00")).timestamp()
        applied = merged_at + 60
        with KubeApiFake.from_snapshot(_snapshot(tmp_path, commit=merge, applied=applied, limit="768Mi")) as kube:
            env = _settings(tmp_path, gh, kube, mlflow_uri, policy)
            _follow(env)
            store = JobStore(tmp_path / "data" / "jobs.sqlite3")
            rejected, merged = store.entries(branch=BRANCH)
            store.close()
            assert (rejected.pr_number, rejected.state, rejected.final) == (1, "closed", "rejected")
            assert (merged.pr_number, merged.state, merged.merged_by, merged.final) == (2, "merged", "alice", None)
            assert merged.synced_at == applied, "Flux's Ready condition for the merge commit says when"
            assert merged.rolled_out_at is not None, "the live Deployment runs 768Mi"

            _git(human, "revert", "--no-edit", "-m", "1", merge)  # a later commit undoes it
            _git(human, "push", "-q", "origin", "main")
            proc = subprocess.run([sys.executable, "-m", "app.cli", "outcomes", "sync"], cwd=ROOT, timeout=120,
                                  env={**os.environ, **env}, capture_output=True, text=True)
            assert proc.returncode == 0, proc.stderr
            lines = proc.stdout.splitlines()
            assert lines[0].split() == ["PR", "WORKLOAD", "CAUSE", "STATE", "MERGED", "BY", "SYNCED", "ROLLED",
                                        "OUT", "FINAL"]
            assert lines[1].split()[:5] == ["#1", "Deployment/shop/checkout", "oom_killed", "closed", "-"]
            assert lines[1].split()[-1] == "rejected"
            assert lines[2].split()[:5] == ["#2", "Deployment/shop/checkout", "oom_killed", "merged", "alice"]
            assert lines[2].split()[-1] == "reverted"

    store = JobStore(tmp_path / "data" / "jobs.sqlite3")
    rejected, reverted = store.entries(branch=BRANCH)
    assert (reverted.final, reverted.merged_by, reverted.synced_at) == ("reverted", "alice", applied)
    assert rejected.record_id == first["record_id"] and reverted.record_id == second["record_id"]
    for row in (rejected, reverted):
        export = store.export_of(f"{row.record_id}.outcome")
        assert export is not None and export.state == "done", export
    store.close()

    run = mlflow_run(mlflow_uri, first["record_id"])
    assert (run.data.tags["outcome.final"], run.data.tags["outcome.pr_state"]) == ("rejected", "closed")
    assert run.data.tags["outcome"] == "pr_opened", "the run's own record is kept"
    assert not {"time_to_merge_s", "time_to_sync_s"} & set(run.data.metrics)
    run = mlflow_run(mlflow_uri, second["record_id"])
    assert (run.data.tags["outcome.final"], run.data.tags["outcome.merged_by"]) == ("reverted", "alice")
    assert run.data.metrics["time_to_sync_s"] == 60.0
    assert run.data.metrics["time_to_merge_s"] == merged_at - reverted.opened_at


def test_the_service_follows_outcomes_on_its_schedule(tmp_path: Path) -> None:
    """`autofix serve`'s task (app/main.py): after one interval, the closed PR is decided without any command."""
    world = make_world(tmp_path)
    policy = world.policy.model_copy(update={"outcomes": OutcomesPolicy(interval_seconds=10)})
    pipeline = world.pipeline(policy=policy)
    assert pipeline.handle(world.incident()).outcome == "pr_opened"
    world.forge.set_state(1, "closed")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AUTOFIX_DATA_DIR", str(tmp_path / "data"))
        loaded = settings.load()

    async def serve_a_while() -> None:
        task = asyncio.create_task(main._follow_outcomes(loaded, world.ledger, pipeline))
        for _ in range(300):  # up to 30 s: one interval (10 s) and one pass
            await asyncio.sleep(0.1)
            if world.ledger.entries()[0].final is not None:
                break
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(serve_a_while())
    [row] = world.ledger.entries()
    assert (row.state, row.final) == ("closed", "rejected")
    export = world.ledger.export_of(f"{row.record_id}.outcome")
    assert export is not None and export.state == "pending", "queued for MLflow by the service's exporter"
    world.ledger.close()
