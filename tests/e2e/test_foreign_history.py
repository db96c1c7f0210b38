"""History the bot did not write (issue 13, class 5), through `autofix handle` against the loopback Kubernetes and
GitHub fakes: Online Boutique's checkoutservice (GoogleCloudPlatform/microservices-demo's manifests verbatim,
tests/fixtures/real-history-checkoutservice/README.md) is OOM-killed at 192Mi after someone else raised it from
128Mi. The repository gets a real history (tests/gitrepo.py) and the GitHub fake the PR it came from; the
fixture's times are shifted so that its alert fires now.

    (a) a merged PR labelled autofix in another format raised the limit 3 h ago: comment there, no_fix escalated
    (b) a plain commit raised it 3 h ago: no_fix escalated naming the commit
    (c) the raise was 5 days ago (outside the 24 h window): a normal PR
    (d) kills at regular intervals, ~2 h apart, with a cache growing in the log: a leak, no_fix, no raise
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_e2e_handle import TOKEN, branch_diff, changed_lines, git, run_handle
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake
from tests.gitrepo import Commit, seed_history

pytestmark = pytest.mark.e2e

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "real-history-checkoutservice"
ANCHOR = datetime(2026, 11, 23, 15, 20, 0, tzinfo=UTC)  # make_cluster.py: the fixture's "now"
FILE = "kubernetes-manifests/checkoutservice.yaml"
LIMIT = "spec.template.spec.containers[name=server].resources.limits.memory"
LINE = "              memory: 128Mi"  # the limit's line, verbatim (the request's is 64Mi)
HOUR = 3600.0
STAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?Z")
# GitHub's patch of the raise (GET .../pulls/N/files): the hunk without the file header.
PATCH = """@@ -72,4 +72,4 @@ spec:
               memory: 64Mi
             limits:
               cpu: 200m
-              memory: 128Mi
+              memory: 192Mi
"""


def shifted(source: Path, target: Path, now: float) -> Path:
    """The fixture with every timestamp moved so that its anchor is ``now`` (sub-seconds kept)."""
    delta = timedelta(seconds=int(now - ANCHOR.timestamp()))

    def move(match: re.Match[str]) -> str:
        text = match.group()
        if text.startswith("0001-"):  # Alertmanager's "no end yet"
            return text
        whole, dot, fraction = text.rstrip("Z").partition(".")
        moved = datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC) + delta
        return moved.strftime("%Y-%m-%dT%H:%M:%S") + (dot + fraction) + "Z"

    target.write_text(STAMP.sub(move, source.read_text()))
    return target


def raised() -> str:
    text = (FIXTURE / "repo" / FILE).read_text()
    assert text.count(LINE) == 1
    return text.replace(LINE, "              memory: 192Mi")


def bare_with(tmp_path: Path, now: float, change: Commit) -> Path:
    bare = tmp_path / "gitops.git"
    seed_history(FIXTURE / "repo", bare, first_at=now - 41 * 24 * HOUR, commits=[change])
    return bare


def handle(tmp_path: Path, mlflow_uri: str, gh: FakeGitHub, *, cluster: str, now: float,
           bare: Path) -> dict[str, Any]:
    snapshot = shifted(FIXTURE / cluster, tmp_path / "cluster.json", now)
    payload = shifted(FIXTURE / "alert.json", tmp_path / "alert.json", now)
    with KubeApiFake.from_snapshot(snapshot) as kube:
        [result] = run_handle(FIXTURE, tmp_path, mlflow_uri, gh, kube, payload=payload, bare=bare, export=False)
        assert kube.methods == {"GET"}
    return result


def branches(bare: Path) -> list[str]:
    return sorted(git("branch", "--format=%(refname:short)", cwd=bare).split())


@pytest.fixture
def gh() -> Any:
    with FakeGitHub("acme/gitops", token=TOKEN) as server:
        yield server


def _comments(gh: FakeGitHub, number: int) -> list[str]:
    return [str(c["body"]) for c in gh.comments[number]]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("branch", "title", "tied_by_sha"), [
    pytest.param("autofix-old/checkoutservice", "fix(checkoutservice): bump memory", True, id="squash-merged"),
    pytest.param("renovate/checkoutservice-memory", "chore(deps): more memory for the checkout service", False,
                 id="tied-by-changed-files"),
])
def test_a_raise_merged_from_a_pr_in_another_format_is_escalated_on_that_pr(
        tmp_path: Path, mlflow_uri: str, gh: FakeGitHub, branch: str, title: str, tied_by_sha: bool) -> None:
    now = time.time()
    merged_at = now - 3 * HOUR - 300
    # Squash-merged: the commit on main is the PR's title and number; the other PR's commit names no PR at all
    # (a rebase merge) and GitHub's merge_commit_sha is not a commit of main: only its changed files tie it.
    subject = f"{title} (#1)" if tied_by_sha else "Raise checkoutservice memory limit to 192Mi"
    change = Commit(subject=subject, files={FILE: raised()}, at=merged_at, author="Old Autofix <bot@acme.example>")
    bare = bare_with(tmp_path, now, change)
    gh.create_pull(head=branch, title=title, labels=("autofix",), files={FILE: PATCH},
                   body="checkoutservice was OOMKilled at 128Mi: raising the limit to 192Mi.",
                   at=datetime.fromtimestamp(merged_at - 1800, UTC))
    gh.merge(1, sha=change.shas[0] if tied_by_sha else None, at=datetime.fromtimestamp(merged_at, UTC))

    result = handle(tmp_path, mlflow_uri, gh, cluster="cluster-raised-3h.json", now=now, bare=bare)

    assert result["outcome"] == "no_fix", result
    assert result["reason"].startswith(f"escalated: PR #1 (branch {branch}) raised {LIMIT} in {FILE} from 128Mi "
                                       "to 192Mi, merged at "), result["reason"]
    assert result["reason"].endswith("not raising it again, it needs a human (commented on PR #1)")
    assert branches(bare) == ["main"] and not gh.requests_to("POST", "/pulls"), "no branch, no second PR"
    (comment,) = _comments(gh, 1)
    assert comment.startswith(f"**Escalation**: this change raised `{LIMIT}` from `128Mi` to `192Mi`")
    assert "`KubernetesContainerOomKiller` fired again" in comment and "OOMKilled" in comment
    assert "memory limit=192Mi" in comment, "the new evidence: the cluster runs the raised limit"

    again = handle(tmp_path, mlflow_uri, gh, cluster="cluster-raised-3h.json", now=now, bare=bare)
    assert again["outcome"] == "no_fix" and len(_comments(gh, 1)) == 1, "one comment per merged raise"


@pytest.mark.timeout(300)
def test_a_plain_commit_that_raised_the_limit_is_named_in_the_reason(tmp_path: Path, mlflow_uri: str,
                                                                    gh: FakeGitHub) -> None:
    now = time.time()
    change = Commit(subject="checkoutservice: memory limit 192Mi, OOM kills at checkout peak", files={FILE: raised()},
                    at=now - 3 * HOUR - 300, author="Priya Natarajan <priya@example.com>")
    bare = bare_with(tmp_path, now, change)

    result = handle(tmp_path, mlflow_uri, gh, cluster="cluster-raised-3h.json", now=now, bare=bare)

    assert result["outcome"] == "no_fix", result
    when = datetime.fromtimestamp(int(change.at), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert result["reason"] == (
        f"escalated: commit {change.shas[0][:12]} by Priya Natarajan <priya@example.com> at {when} "
        f"(\"checkoutservice: memory limit 192Mi, OOM kills at checkout peak\") raised {LIMIT} in {FILE} from 128Mi "
        "to 192Mi, and the same failure is back within 24 h: not raising it again, it needs a human")
    assert branches(bare) == ["main"] and not gh.requests_to("POST", "/pulls")
    assert not any(gh.comments.values())


@pytest.mark.timeout(300)
def test_a_raise_outside_the_window_is_raised_again_in_a_normal_pr(tmp_path: Path, mlflow_uri: str,
                                                                    gh: FakeGitHub) -> None:
    now = time.time()
    merged_at = now - 5 * 24 * HOUR
    change = Commit(subject="fix(checkoutservice): bump memory (#1)", files={FILE: raised()}, at=merged_at,
                    author="Old Autofix <bot@acme.example>")
    bare = bare_with(tmp_path, now, change)
    gh.create_pull(head="autofix-old/checkoutservice", title="fix(checkoutservice): bump memory", labels=("autofix",),
                   files={FILE: PATCH}, at=datetime.fromtimestamp(merged_at - 1800, UTC))
    gh.merge(1, sha=change.shas[0], at=datetime.fromtimestamp(merged_at, UTC))

    result = handle(tmp_path, mlflow_uri, gh, cluster="cluster-raised-5d.json", now=now, bare=bare)

    assert result["outcome"] == "pr_opened", result
    assert result["branch"] == "autofix/onlineboutique/checkoutservice/oom-killed"
    diff = branch_diff(bare, result["branch"])
    assert changed_lines(diff) == ["-              memory: 192Mi", "+              memory: 288Mi"], diff
    assert "# Copyright 2018 Google LLC" in git("show", f"{result['branch']}:{FILE}", cwd=bare), "comments kept"
    assert [pr["head"]["ref"] for pr in gh.pulls.values()] == ["autofix-old/checkoutservice", result["branch"]]
    assert not _comments(gh, 1)


@pytest.mark.timeout(300)
def test_oom_kills_at_regular_intervals_with_a_growing_cache_are_a_leak(tmp_path: Path, mlflow_uri: str,
                                                                       gh: FakeGitHub) -> None:
    now = time.time()
    change = Commit(subject="checkoutservice: memory limit 192Mi", files={FILE: raised()}, at=now - 10 * 24 * HOUR)
    bare = bare_with(tmp_path, now, change)

    result = handle(tmp_path, mlflow_uri, gh, cluster="cluster-leak.json", now=now, bare=bare)

    assert result["outcome"] == "no_fix", result
    assert result["reason"] == (
        "escalated: memory grows steadily until the kernel kills the container, a leak: 5 OOM kills at regular "
        "intervals (runs of 1 h 59 min to 2 h 00 min, median 2 h 00 min, across 1 pod(s)) and the log of pod "
        "checkoutservice-7c9f6d8b54-h2xkq shows \"shipping quote cache: # entries\" growing from 1843 to 12925 over "
        "7 lines without shrinking; a higher limit would only delay the next kill: it needs a human")
    assert branches(bare) == ["main"] and not gh.requests_to("POST", "/pulls")
    record = json.loads((tmp_path / "cluster.json").read_text())
    assert record["items"][3]["status"]["containerStatuses"][0]["restartCount"] == 5
