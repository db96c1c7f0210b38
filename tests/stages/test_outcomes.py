"""Outcomes (app/outcomes.py) in process: the demo's PR #1 (shop/checkout OOMKilled) opened by the pipeline,
then merged (by a named reviewer, as a real merge commit on the bare repo), closed or left open; the cluster a
snapshot whose Argo CD Application and Deployment say what synced and rolled out. Each final outcome once."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app import clusters, fieldpaths, outcomes, wiring
from app.adapters.snapshot import SnapshotCluster
from app.ports import Remediation
from app.settings import Settings
from app.stages import history
from tests.stages.world import DEMO, World

BRANCH = "autofix/shop/checkout/oom-killed"
HOUR = 3600.0
DEPLOYED = float(int(time.time()) + 120)  # when Argo CD says it synced the merge commit: after the merge


@pytest.fixture(autouse=True)
def _deployed_after_this_tests_merge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two minutes after each test starts, not after the module was imported: a long run (the whole suite)
    would otherwise put the sync before the merge."""
    monkeypatch.setattr(sys.modules[__name__], "DEPLOYED", float(int(time.time()) + 120))


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True, timeout=60,
                          env={"GIT_AUTHOR_NAME": "Alice", "GIT_AUTHOR_EMAIL": "alice@example.com",
                               "GIT_COMMITTER_NAME": "Alice", "GIT_COMMITTER_EMAIL": "alice@example.com",
                               "HOME": str(cwd), "PATH": "/usr/bin:/bin"}).stdout.strip()


def _open(world: World) -> Remediation:
    assert world.pipeline().handle(world.incident()).outcome == "pr_opened"
    [row] = world.ledger.entries(branch=BRANCH)
    assert row.record_id, "the publish stage records the run's key"
    return row


def _clone(world: World) -> Path:
    clone = world.bare.parent / "human"
    if not clone.exists():
        _git(world.bare.parent, "clone", "-q", str(world.bare), str(clone))
    _git(clone, "fetch", "-q", "origin")
    _git(clone, "checkout", "-q", "main")
    _git(clone, "reset", "-q", "--hard", "origin/main")
    return clone


def _merge(world: World, *, by: str = "alice", branch: str = BRANCH) -> str:
    """A reviewer merges PR #1 with a merge commit, as GitHub's merge button does."""
    clone = _clone(world)
    _git(clone, "merge", "-q", "--no-ff", "-m", f"Merge pull request #1 from acme/{branch}", f"origin/{branch}")
    _git(clone, "push", "-q", "origin", "main")
    sha = _git(clone, "rev-parse", "HEAD")
    world.forge.set_state(1, "merged", merged_by=by, merge_commit=sha)
    return sha


def _revert(world: World, sha: str) -> None:
    clone = _clone(world)
    _git(clone, "revert", "--no-edit", "-m", "1", sha)
    _git(clone, "push", "-q", "origin", "main")


def _cluster(row: Remediation, *, synced: str | None, rolled_out: bool) -> SnapshotCluster:
    """The demo's snapshot after Argo CD synced ``synced`` and the Deployment runs the PR's values."""
    data = json.loads((DEMO / "cluster.json").read_text())
    items: list[dict[str, Any]] = copy.deepcopy(data["items"])
    for item in items:
        if item["kind"] == "Application" and synced is not None:
            item["status"]["sync"] = {"status": "Synced", "revision": synced}
            item["status"]["history"].append({"id": 18, "revision": synced, "deployedAt": _iso(DEPLOYED),
                                              "deployStartedAt": _iso(DEPLOYED - 3)})
        if item["kind"] == "Deployment" and rolled_out:
            for path, value in row.after.items():
                *parent, leaf = fieldpaths.resolve(item, path)
                fieldpaths.get(item, parent)[leaf] = value
            item["status"]["observedGeneration"] = item["metadata"].get("generation", 1)
    return SnapshotCluster(items, logs=data.get("logs"))


def _follow(world: World, cluster: SnapshotCluster, *, later: float = 0.0) -> Remediation:
    world.workspace.sync()
    [row] = outcomes.follow(ledger=world.ledger, forge=world.forge, cluster=cluster, workspace=world.workspace,
                            windows=world.policy.outcomes, outbox=world.ledger.add_run,
                            clock=lambda: world.now() + later)
    assert world.ledger.entries(branch=BRANCH) == [row], "what follow returns is what the ledger keeps"
    return row


def _amendment(world: World, row: Remediation) -> tuple[dict[str, str], dict[str, float]]:
    export = world.ledger.export_of(f"{row.record_id}.outcome")
    assert export is not None and export.run.amends == row.record_id and export.state == "pending"
    return export.run.record.tags, export.run.record.metrics


def test_a_merged_fix_that_rolled_out_and_stayed_quiet_is_effective(world: World) -> None:
    row = _open(world)
    sha = _merge(world, by="alice")
    cluster = _cluster(row, synced=sha, rolled_out=True)
    first = _follow(world, cluster)
    assert (first.state, first.merged_by, first.final) == ("merged", "alice", None), "quiet window not over"
    assert first.synced_at == DEPLOYED, "the Application's history entry for the merge commit says when"
    assert first.rolled_out_at is not None
    assert world.ledger.export_of(f"{row.record_id}.outcome") is None, "nothing for MLflow before the end"
    final = _follow(world, cluster, later=25 * HOUR)
    assert final.final == "effective" and final.final_at == (first.rolled_out_at or 0) + 24 * HOUR
    tags, metrics = _amendment(world, final)
    assert (tags["outcome.final"], tags["outcome.merged_by"], tags["outcome.pr_state"]) == ("effective", "alice",
                                                                                           "merged")
    assert set(metrics) == {"time_to_merge_s", "time_to_sync_s"}
    assert metrics["time_to_sync_s"] == DEPLOYED - (final.merged_at or 0)
    assert outcomes.follow(ledger=world.ledger, forge=world.forge, cluster=cluster, workspace=world.workspace,
                           windows=world.policy.outcomes, outbox=world.ledger.add_run, clock=world.now) == []


def test_a_decided_row_is_not_followed_again(world: World) -> None:
    _open(world)
    world.forge.set_state(1, "closed")
    world.workspace.sync()
    first = outcomes.follow(ledger=world.ledger, forge=world.forge, cluster=world.cluster, workspace=world.workspace,
                            windows=world.policy.outcomes, outbox=world.ledger.add_run, clock=world.now)
    again = outcomes.follow(ledger=world.ledger, forge=world.forge, cluster=world.cluster, workspace=world.workspace,
                            windows=world.policy.outcomes, outbox=world.ledger.add_run, clock=world.now)
    assert [r.final for r in first] == ["rejected"] and again == []


def test_a_pr_closed_unmerged_is_rejected(world: World) -> None:
    row = _open(world)
    world.forge.set_state(1, "closed")
    final = _follow(world, world.cluster)
    assert (final.state, final.final, final.merged_by) == ("closed", "rejected", None)
    assert final.final_at == final.closed_at
    tags, metrics = _amendment(world, final)
    assert tags["outcome.final"] == "rejected" and metrics == {}
    assert final.record_id == row.record_id


def test_a_merged_fix_whose_alert_fired_again_is_ineffective(world: World) -> None:
    row = _open(world)
    sha = _merge(world)
    cluster = _cluster(row, synced=sha, rolled_out=True)
    assert _follow(world, cluster).final is None
    ev = world.evidence()  # the same alert again: today's escalation on the merged PR
    out = history.judge(evidence=ev, diagnosis=world.diagnosis(ev), incident=world.incident(), forge=world.forge,
                        ledger=world.ledger, policy=world.policy, clock=world.now, run_url="autofix-record:x")
    assert out.action == "escalate"
    [escalated] = world.ledger.entries(branch=BRANCH)
    assert escalated.fired_again_at is not None
    final = _follow(world, cluster)
    assert (final.final, final.final_at) == ("ineffective", escalated.fired_again_at)
    assert _amendment(world, final)[0]["outcome.final"] == "ineffective"


def test_a_merged_fix_undone_by_a_later_commit_is_reverted(world: World) -> None:
    row = _open(world)
    sha = _merge(world)
    cluster = _cluster(row, synced=sha, rolled_out=True)
    assert _follow(world, cluster).final is None
    _revert(world, sha)
    final = _follow(world, cluster)
    assert final.final == "reverted"
    assert _amendment(world, final)[0]["outcome.final"] == "reverted"


def test_an_unrelated_later_commit_is_not_a_revert(world: World) -> None:
    row = _open(world)
    sha = _merge(world)
    clone = _clone(world)
    (clone / "apps/checkout/deployment.yaml").write_text(
        (clone / "apps/checkout/deployment.yaml").read_text() + "# reviewed\n")
    _git(clone, "commit", "-q", "-am", "Note the review")
    _git(clone, "push", "-q", "origin", "main")
    assert _follow(world, _cluster(row, synced=sha, rolled_out=True)).final is None


def test_a_pr_left_open_past_the_decision_window_is_stale(world: World) -> None:
    _open(world)
    assert _follow(world, world.cluster, later=24 * HOUR).final is None
    final = _follow(world, world.cluster, later=169 * HOUR)
    assert (final.state, final.final) == ("open", "stale")


def test_a_merge_never_rolled_out_is_stale_not_effective(world: World) -> None:
    row = _open(world)
    _merge(world)
    cluster = _cluster(row, synced=None, rolled_out=False)  # Argo CD never synced it
    quiet = _follow(world, cluster, later=25 * HOUR)
    assert (quiet.final, quiet.synced_at, quiet.rolled_out_at) == (None, None, None)
    assert _follow(world, cluster, later=169 * HOUR).final == "stale"


def test_the_alert_resolving_after_the_merge_gives_the_time_to_resolve(world: World) -> None:
    row = _open(world)
    sha = _merge(world)
    ends = datetime.fromtimestamp(int(time.time()) + 600, UTC)  # Alertmanager's endsAt on the resolved alert
    resolved = world.incident().model_copy(update={"status": "resolved", "ends_at": ends})
    history.resolved(incident=resolved, forge=world.forge, ledger=world.ledger, policy=world.policy,
                     clock=world.now)
    cluster = _cluster(row, synced=sha, rolled_out=True)
    assert _follow(world, cluster).final is None
    final = _follow(world, cluster, later=25 * HOUR)
    assert final.final == "effective" and final.resolved_at is not None
    assert final.resolved_at == ends.timestamp()
    assert _amendment(world, final)[1]["time_to_resolve_s"] == final.resolved_at - (final.merged_at or 0)


def test_several_clusters_the_rows_cluster_decides_the_outcome(world: World, tmp_path: Path) -> None:
    """The same Deployment runs in two clusters: rolled out in prod-eu (the fix's cluster), not in prod-us, which
    every-cluster reading would ask first. Opened by prod-eu's pipeline, followed by the router's follower."""
    opener = world.pipeline()
    opener.cluster_name = "prod-eu"  # as app/wiring builds the pipeline of a cluster of clusters.yaml
    assert opener.handle(world.incident()).outcome == "pr_opened"
    [row] = world.ledger.entries()
    assert row.cluster == "prod-eu" and row.branch != BRANCH, "the cluster is part of the branch's identity"
    assert '"cluster": "prod-eu"' in world.pr_body(1), "the ledger marker keeps it for a rebuild from the forge"
    sha = _merge(world, branch=row.branch)
    snapshots = {"prod-us": _cluster(row, synced=sha, rolled_out=False),
                 "prod-eu": _cluster(row, synced=sha, rolled_out=True)}
    config = clusters.ClustersFile(clusters=[clusters.ClusterEntry(name="prod-us"),
                                             clusters.ClusterEntry(name="prod-eu")])
    readers = clusters.ClusterSet(config, source=tmp_path / "clusters.yaml",
                                  factory=lambda entry, _: snapshots[entry.name])
    follower = world.pipeline()
    follower.cluster = readers.fleet()  # the router's follower (app/wiring.build_handler): every cluster
    assert follower.cluster.get("Deployment", "shop", "checkout") == snapshots["prod-us"].get(
        "Deployment", "shop", "checkout"), "reading every cluster finds prod-us's Deployment first"

    def once(later: float) -> Remediation:
        [followed] = wiring.build_outcomes(Settings(data_dir=tmp_path), world.ledger, pipeline=follower,
                                           clock=lambda: world.now() + later)()
        return followed

    first = once(0.0)
    assert (first.state, first.final) == ("merged", None) and first.rolled_out_at is not None
    final = once(25 * HOUR)
    assert (final.final, final.cluster) == ("effective", "prod-eu")
    assert _amendment(world, final)[0]["outcome.final"] == "effective"
    # A row of prod-us would read prod-us's; a cluster no longer configured is read as empty, never another's.
    fleet = follower.cluster
    assert isinstance(fleet, clusters.FleetView)
    assert not outcomes.rolled_out(row, outcomes.reader_of(replace(row, cluster="prod-us"), every=fleet,
                                                           clusters=fleet.of))
    assert outcomes.reader_of(replace(row, cluster="staging"), every=fleet,
                              clusters=fleet.of).get("Deployment", "shop", "checkout") is None
