"""Revision stage (recorded as "revision"): a rollback the cluster cannot prove, proven or refused from git's history
of the field, in process on tests/scenarios/real-rollback-git-history (podinfo's chart on Argo CD; the Deployment
was recreated, no earlier ReplicaSet is left) with the dated repositories of tests/rollback_git.py."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.adapters.snapshot import SnapshotCluster
from app.detectors import revisions
from app.models.causes import ImagePullFacts, ImageRollbackFacts
from app.stages import change, revision
from app.stages.evidence import gather
from tests import rollback_git
from tests.conftest import SCENARIOS
from tests.gitrepo import seed_history
from tests.stages.world import World, make_world


@pytest.fixture
def git_world(tmp_path: Path) -> Iterator[World]:
    built = make_world(tmp_path, rollback_git.SCENARIO)
    yield built
    built.ledger.close()


def _with(world: World, case: str) -> list[str]:
    shas = rollback_git.repository(world.bare, case)
    world.cluster = SnapshotCluster(rollback_git.cluster(case, shas)["items"])
    return shas


def test_the_diagnosis_asks_git_and_the_stage_proves_the_rollback(git_world: World) -> None:
    shas = _with(git_world, "weeks")
    ev = git_world.evidence()
    diagnosis = git_world.diagnosis(ev)
    assert not diagnosis.fixable and revision.wanted(diagnosis), "no earlier ReplicaSet: unfixable, asks git"
    assert "ask_git" not in json.loads(diagnosis.model_dump_json())["finding"]["facts"], "diagnosis.json as before"
    located = change.locate(evidence=ev, workspace=git_world.workspace, identity=git_world.pipeline().identity)
    out = revision.prove(located=located, evidence=ev, diagnosis=diagnosis, workspace=git_world.workspace,
                         layouts=git_world.layouts)
    assert out.stop is None and out.diagnosis.fixable
    facts = out.diagnosis.finding.facts
    assert isinstance(facts, ImageRollbackFacts)
    assert (facts.previous_image, facts.previous_replicaset, facts.previous_revision) == ("redis:8.8.0", None, None)
    assert facts.previous_ran_seconds == int(rollback_git.at("2026-11-23T12:00:50Z") - rollback_git.at(
        "2026-10-20T08:41:35Z"))
    assert facts.in_git == f"git had redis.tag 8.8.0 for 34 d 3 h (deployed) until commit {shas[1][:12]} set 8.8.0-alpne"
    assert out.decision == f"git's history: {facts.in_git}"


def test_a_file_that_always_had_the_failing_value_proves_nothing(git_world: World, tmp_path: Path) -> None:
    """Imported with the typo: git has no earlier value; the cluster's reason and git's are both said."""
    source = tmp_path / "source"
    shutil.copytree(rollback_git.SCENARIO / "repo", source)
    (source / rollback_git.VALUES).write_text(rollback_git.tagged("8.8.0-alpne"))
    [sha] = seed_history(source, git_world.bare, first_at=rollback_git.at("2026-10-20T08:40:12Z"), commits=[],
                         first_subject="Import podinfo")
    git_world.cluster = SnapshotCluster(rollback_git.cluster("weeks", [sha, sha])["items"])
    outcome = git_world.pipeline().handle(git_world.incident())
    assert outcome.outcome == "no_fix"
    assert outcome.reason.startswith("The rollout of podinfo/podinfo-redis is stuck: the pods of its new ReplicaSet ")
    assert outcome.reason.endswith(
        "Image redis:8.8.0-alpne of container redis in podinfo/podinfo-redis cannot be pulled. No fix: no previous working "
        "revision of podinfo/podinfo-redis ran another image of container redis: fix the image reference by hand; "
        f"git's history does not prove an earlier image either: commit {sha[:12]} (2026-10-20T08:40:12Z, \"Import "
        "podinfo\") added the file with 8.8.0-alpne: git has no earlier value of charts/podinfo/values-prod.yaml "
        "redis.tag")
    assert git_world.remote_branches() == ["main"]


def test_git_moved_since_the_rollout_is_not_read_as_history(git_world: World) -> None:
    shas = rollback_git.repository(git_world.bare, "weeks")
    items = rollback_git.cluster("weeks", shas)["items"]
    for item in items:  # the cluster runs another typo than git has now
        if item["kind"] in ("Deployment", "ReplicaSet", "Pod"):
            text = json.dumps(item).replace("8.8.0-alpne", "8.8.0-alpen")
            item.clear()
            item.update(json.loads(text))
    git_world.cluster = SnapshotCluster(items)
    outcome = git_world.pipeline().handle(git_world.incident())
    assert outcome.outcome == "no_fix"
    assert outcome.reason.endswith("git's history does not prove an earlier image either: git has image "
                                   "redis:8.8.0-alpne for container redis, not the failing redis:8.8.0-alpen")


def test_a_replicaset_the_cluster_shows_must_agree_with_git(git_world: World) -> None:
    """real-rollback-recreate-redis with its scale-down events expired and the next ReplicaSet reused: the cluster
    shows revision 2 ran redis:8.8.0 but not when; git says 8.8.0 too, for 34 days: they agree, proven."""
    shas = rollback_git.repository(git_world.bare, "weeks")
    data = json.loads((SCENARIOS / "real-rollback-recreate-redis" / "cluster.json").read_text())
    items = [i for i in data["items"] if not (i["kind"] == "Event" and i["reason"] == "ScalingReplicaSet")]
    for item in items:
        if item["kind"] == "ReplicaSet" and item["metadata"]["name"] == "podinfo-redis-6b4f9d7c85":
            item["metadata"]["annotations"][revisions.REUSED] = "1"
        if item["kind"] == "Application":
            item["status"]["history"] = item["status"]["history"][-1:]
            item["status"]["history"][0]["revision"] = shas[1]
    git_world.cluster = SnapshotCluster(items, logs=data.get("logs"))
    incident = git_world.incident()
    ev = gather(git_world.cluster, git_world.evidence().workload, incident)
    diagnosis = git_world.diagnosis(ev)
    assert revision.wanted(diagnosis), diagnosis.no_fix_reason
    facts = diagnosis.finding.facts
    assert isinstance(facts, ImagePullFacts) and facts.ask_git is not None and facts.ask_git.image == "redis:8.8.0"
    located = change.locate(evidence=ev, workspace=git_world.workspace, identity=git_world.pipeline().identity)
    out = revision.prove(located=located, evidence=ev, diagnosis=diagnosis, workspace=git_world.workspace,
                         layouts=git_world.layouts)
    assert out.stop is None, out.stop
    proven = out.diagnosis.finding.facts
    assert isinstance(proven, ImageRollbackFacts)
    assert (proven.previous_replicaset, proven.previous_revision) == ("podinfo-redis-5d8b7c9f64", 2)
