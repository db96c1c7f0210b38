"""The value git had before the failing one (app/detectors/revisions.py, git history): the commit that set the
failing value, the value before it, how long git had it and how long Argo CD or Flux ran it.

Texts are podinfo's values-prod.yaml verbatim (tests/scenarios/real-rollback-git-history) and a Kustomize tree's
images transformer; commits are written by hand as Workspace.file_history returns them (newest first).
"""

from __future__ import annotations

from typing import Any

import pytest

from app.detectors import revisions
from app.ports import FileCommit
from tests.rollback_git import SCENARIO, VALUES, at, tagged

DAY = 86_400.0
IMPORT, ALPINE, TYPO = at("2026-10-20T08:40:12Z"), at("2026-11-23T11:56:10Z"), at("2026-11-23T11:59:58Z")
SINCE = at("2026-08-25T12:07:10Z")  # 90 days before the failing rollout


def commit(sha: str, when: float, text: str | None, previous: str | None, subject: str = "change") -> FileCommit:
    return FileCommit(sha=sha * 40, time=when, author="Dana Ops <dana@example.com>", authored=when, subject=subject,
                      text=text, previous=previous)


def where(text: str, failing: str = "8.8.0-alpne") -> revisions.GitField:
    return revisions.git_field(text, file=VALUES, document_index=0, prefix=(), path="redis.tag", failing=failing)


def argocd(*deployed: tuple[str, str]) -> dict[str, Any]:
    return {"kind": "Application", "metadata": {"name": "podinfo", "namespace": "argocd"},
            "status": {"history": [{"id": i, "revision": sha * 40, "deployedAt": when}
                                   for i, (sha, when) in enumerate(deployed)]}}


TYPO_TEXT, GOOD = tagged("8.8.0-alpne"), (SCENARIO / "repo" / VALUES).read_text()
WEEKS = [commit("b", TYPO, TYPO_TEXT, GOOD, "podinfo: redis 8.8.0-alpine"), commit("a", IMPORT, GOOD, None, "Import")]
SYNCED = argocd(("a", "2026-10-20T08:41:35Z"), ("b", "2026-11-23T12:00:50Z"), ("b", "2026-11-23T12:07:10Z"))


def test_the_value_before_the_failing_commit_ran_as_long_as_argo_cd_synced_it() -> None:
    found = revisions.from_git(WEEKS, where(TYPO_TEXT), gitops=[SYNCED], since=SINCE, truncated=False)
    assert isinstance(found, revisions.InGit)
    assert (found.value, found.seconds) == ("8.8.0", int(at("2026-11-23T12:00:50Z") - at("2026-10-20T08:41:35Z")))
    assert found.summary == f"git had redis.tag 8.8.0 for 34 d 3 h (deployed) until commit {'b' * 12} set 8.8.0-alpne"
    assert found.lines == (
        f"git history of {VALUES}: redis.tag was 8.8.0 from commit {'a' * 12} (2026-10-20T08:40:12Z, \"Import\") until "
        f"commit {'b' * 12} (2026-11-23T11:59:58Z, \"podinfo: redis 8.8.0-alpine\") set 8.8.0-alpne: 34 d 3 h in git",
        "Argo CD Application podinfo status.history: revision aaaaaaa deployed 2026-10-20T08:41:35Z while git had "
        "it, then revision bbbbbbb deployed 2026-11-23T12:00:50Z: it ran 34 d 3 h")


def test_without_a_gitops_history_the_time_in_git_stands() -> None:
    found = revisions.from_git(WEEKS, where(TYPO_TEXT), gitops=[], since=SINCE, truncated=False)
    assert isinstance(found, revisions.InGit)
    assert found.seconds == int(TYPO - IMPORT) and "(in git)" in found.summary and len(found.lines) == 1


@pytest.mark.parametrize(("truncated", "bound"), [(False, SINCE), (True, at("2026-11-20T09:00:00Z"))],
                         ids=["window", "commit-limit"])
def test_a_value_older_than_what_was_read_counts_from_the_bound_at_least(truncated: bool, bound: float) -> None:
    """The import is not in what was read: 8.8.0 was there before the window began (or the oldest commit read)."""
    other = tagged("8.8.0").replace("logLevel: info", "logLevel: debug")
    history = [WEEKS[0], commit("c", at("2026-11-20T09:00:00Z"), GOOD, other, "logLevel info")]
    found = revisions.from_git(history, where(TYPO_TEXT), gitops=[], since=SINCE, truncated=truncated)
    assert isinstance(found, revisions.InGit)
    assert found.seconds == int(TYPO - bound)
    assert found.summary.startswith("git had redis.tag 8.8.0 for at least ")
    assert "since before " in found.lines[0] and ": at least " in found.lines[0]


def test_a_value_git_had_for_minutes_is_measured_as_deployed() -> None:
    alpine = tagged("8.8.0-alpine")
    history = [commit("c", TYPO, TYPO_TEXT, alpine), commit("b", ALPINE, alpine, GOOD), WEEKS[1]]
    gitops = [argocd(("a", "2026-10-20T08:41:35Z"), ("b", "2026-11-23T11:56:40Z"), ("c", "2026-11-23T12:00:50Z"))]
    found = revisions.from_git(history, where(TYPO_TEXT), gitops=gitops, since=SINCE, truncated=False)
    assert isinstance(found, revisions.InGit)
    assert (found.value, found.seconds) == ("8.8.0-alpine", 250), "the newest earlier value decides, not 8.8.0"


def test_a_value_argo_cd_never_synced_never_ran() -> None:
    alpine = tagged("8.8.0-alpine")
    history = [commit("c", TYPO, TYPO_TEXT, alpine), commit("b", ALPINE, alpine, GOOD), WEEKS[1]]
    gitops = [argocd(("a", "2026-10-20T08:41:35Z"), ("c", "2026-11-23T12:00:50Z"))]  # b was never synced
    found = revisions.from_git(history, where(TYPO_TEXT), gitops=gitops, since=SINCE, truncated=False)
    assert isinstance(found, revisions.NotInGit)
    assert found.reason == ("Argo CD Application podinfo status.history shows no sync between 2026-11-23T11:56:10Z "
                            "and 2026-11-23T11:59:58Z, while git had that value: it never ran")


@pytest.mark.parametrize(("history", "needle"), [
    ([commit("a", IMPORT, TYPO_TEXT, None)], "added the file with 8.8.0-alpne: git has no earlier value"),
    ([], "git does not show what charts/podinfo/values-prod.yaml redis.tag was before 8.8.0-alpne (0 commit(s)"),
    ([commit("b", TYPO, TYPO_TEXT, TYPO_TEXT.replace("logLevel: info", "logLevel: warn"))],
     "(1 commit(s) of charts/podinfo/values-prod.yaml read back to 2026-08-25T12:07:10Z, none set it)"),
    ([commit("b", TYPO, TYPO_TEXT, GOOD.replace("redis:\n  enabled: true\n  repository: redis\n  tag: 8.8.0\n", ""))],
     "set the field where it was not with 8.8.0-alpne"),
], ids=["file-added-with-it", "no-commit-read", "set-before-the-window", "field-new"])
def test_no_earlier_value_in_git_is_no_proof(history: list[FileCommit], needle: str) -> None:
    found = revisions.from_git(history, where(TYPO_TEXT), gitops=[SYNCED], since=SINCE, truncated=False)
    assert isinstance(found, revisions.NotInGit) and needle in found.reason, found


def test_flux_helmrelease_history_measures_a_superseded_release() -> None:
    release = {"kind": "HelmRelease", "metadata": {"name": "podinfo", "namespace": "podinfo"}, "status": {"history": [
        {"version": 9, "chartName": "podinfo", "chartVersion": "6.14.1", "status": "failed",
         "lastDeployed": "2026-11-23T12:01:30Z"},
        {"version": 8, "chartName": "podinfo", "chartVersion": "6.14.1", "status": "superseded",
         "lastDeployed": "2026-10-20T08:45:02Z"}]}}
    found = revisions.from_git(WEEKS, where(TYPO_TEXT), gitops=[release], since=SINCE, truncated=False)
    assert isinstance(found, revisions.InGit)
    assert found.seconds == int(at("2026-11-23T12:01:30Z") - at("2026-10-20T08:45:02Z"))
    assert found.lines[1].startswith("Flux HelmRelease podinfo/podinfo status.history: release 8 (chart podinfo "
                                      "6.14.1) deployed 2026-10-20T08:45:02Z while git had it, then release 9")


KUSTOMIZATION = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base
images:
  - name: redis
    newTag: {redis}
  - name: ghcr.io/stefanprodan/podinfo
    newTag: {podinfo}
"""


def test_an_images_entry_is_found_again_by_its_name_not_its_place() -> None:
    now = KUSTOMIZATION.format(redis="8.8.0-alpne", podinfo="6.14.1")
    before = KUSTOMIZATION.format(redis="8.8.0", podinfo="6.14.1")
    # An older version listed podinfo first: index 0 was another image's tag then.
    older = """apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../base
images:
  - name: ghcr.io/stefanprodan/podinfo
    newTag: 6.13.0
  - name: redis
    newTag: 8.8.0
"""
    field = revisions.git_field(now, file="kustomization.yaml", document_index=0, prefix=("images", 0),
                                path="newTag", failing="8.8.0-alpne")
    assert (field.kind, field.name) == (None, "redis")
    history = [commit("c", TYPO, now, before), commit("b", at("2026-11-01T10:00:00Z"), before, older),
               commit("a", IMPORT, older, None)]
    found = revisions.from_git(history, field, gitops=[], since=SINCE, truncated=False)
    assert isinstance(found, revisions.InGit)
    assert (found.value, found.seconds) == ("8.8.0", int(TYPO - IMPORT)), "8.8.0 since the import, reordered since"


def test_a_manifest_is_found_again_by_kind_and_name_in_a_multi_document_file() -> None:
    deployment = ("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: redis\nspec:\n  template:\n    spec:\n"
                  "      containers:\n        - name: redis\n          image: redis:{tag}\n")
    service = "apiVersion: v1\nkind: Service\nmetadata:\n  name: redis\nspec:\n  ports:\n    - port: 6379\n"
    now = service + "---\n" + deployment.format(tag="8.8.0-alpne")
    before = service + "---\n" + deployment.format(tag="8.8.0")
    older = deployment.format(tag="8.8.0")  # the Service was added in front of it later
    path = "spec.template.spec.containers[name=redis].image"
    field = revisions.git_field(now, file="redis.yaml", document_index=1, prefix=(), path=path,
                                failing="redis:8.8.0-alpne")
    history = [commit("c", TYPO, now, before), commit("b", at("2026-11-01T10:00:00Z"), before, older),
               commit("a", IMPORT, older, None)]
    found = revisions.from_git(history, field, gitops=[], since=SINCE, truncated=False)
    assert isinstance(found, revisions.InGit) and found.value == "redis:8.8.0"
    assert found.seconds == int(TYPO - IMPORT)


def test_a_tag_yaml_reads_as_a_number_is_the_same_tag() -> None:
    assert revisions.same(7.0, "7.0") and not revisions.same(None, "None") and not revisions.same({}, "{}")
