"""What the history stage asks GitHub (GitHubForge with the real PyGithub against the loopback fake): labelled PRs
updated since a time (the issues API's ``since``), a PR's changed files with their patches, and the commit a
merged PR landed as."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from app.forges.github import MAX_PR_FILES, GitHubForge
from app.ports import PrFile
from tests.fakes.github_api import FakeGitHub

TOKEN = "ghs_testtoken1234567890"
PATCH = "@@ -72,4 +72,4 @@ spec:\n             limits:\n               cpu: 200m\n-              memory: 128Mi\n" \
        "+              memory: 192Mi\n"
SHA = "4d9500ada3a2c1f0e9d8c7b6a5f4e3d2c1b0a9f8"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub("acme/gitops", token=TOKEN) as server:
        yield server


def forge(fake: FakeGitHub) -> GitHubForge:
    return GitHubForge("acme/gitops", api_url=fake.api_url, token=TOKEN, write_spacing=0, backoff=0.01, max_wait=2)


def test_labelled_prs_updated_since_a_time_and_the_commit_a_merged_one_landed_as(fake: FakeGitHub) -> None:
    now = datetime.now(UTC)
    fake.create_pull(head="autofix-old/checkoutservice", labels=("autofix",), at=now - timedelta(days=9))
    fake.merge(1, sha=SHA, at=now - timedelta(days=8))
    fake.create_pull(head="renovate/checkoutservice-memory", labels=("autofix",), at=now - timedelta(hours=5))
    fake.merge(2, sha=SHA.replace("4", "5"), at=now - timedelta(hours=3))
    fake.create_pull(head="autofix-old/cartservice", labels=("autofix",), at=now - timedelta(hours=2))

    since = (now - timedelta(days=3)).timestamp()
    recent = forge(fake).list_prs("autofix", "all", updated_since=since)

    assert [(pr.number, pr.state, pr.merge_commit) for pr in recent] == [(3, "open", None),
                                                                        (2, "merged", SHA.replace("4", "5"))]
    # One page of the pulls list, most recently updated first: no GET per PR (the history stage asks per alert).
    assert [r.path.rsplit("/", 1)[-1] for r in fake.requests if r.method == "GET"] == ["gitops", "pulls"]
    assert fake.requests_to("GET", "/pulls")[0].query == {"state": "all", "sort": "updated", "direction": "desc"}
    assert [pr.number for pr in forge(fake).list_prs("autofix", "open")] == [3]
    everything = forge(fake).list_prs("autofix", "all")  # the ledger's rebuild: every labelled PR, by issue
    assert [(pr.number, pr.merge_commit) for pr in everything][-1] == (1, SHA)


def test_a_prs_changed_files_with_their_patches(fake: FakeGitHub) -> None:
    files = {"kubernetes-manifests/checkoutservice.yaml": PATCH, "README.md": ""}
    fake.create_pull(head="renovate/checkoutservice-memory", labels=("autofix",), files=files)
    [pr] = forge(fake).list_prs("autofix", "open")

    assert forge(fake).pr_files(pr) == [PrFile(path="kubernetes-manifests/checkoutservice.yaml", patch=PATCH),
                                        PrFile(path="README.md", patch="")]
    assert fake.requests_to("GET", "/pulls/1/files")


def test_a_file_github_lists_without_its_patch_is_too_large_not_unchanged(fake: FakeGitHub) -> None:
    """GitHub drops ``patch`` from a diff too large to show but still counts its lines (``changes``); a renamed or
    binary file without a patch changes no line."""
    fake.create_pull(head="renovate/vendored-crds", labels=("autofix",), files={"charts/app/logo.png": ""},
                     too_large={"kubernetes-manifests/checkoutservice.yaml": 3400})
    [pr] = forge(fake).list_prs("autofix", "open")

    assert forge(fake).pr_files(pr) == [PrFile(path="charts/app/logo.png", patch=""),
                                        PrFile(path="kubernetes-manifests/checkoutservice.yaml", patch="",
                                               too_large=True)]


def test_pr_files_are_bounded(fake: FakeGitHub) -> None:
    fake.create_pull(head="bulk/rename", labels=("autofix",), files={f"apps/a{i}.yaml": "" for i in range(150)})
    [pr] = forge(fake).list_prs("autofix", "open")
    assert len(forge(fake).pr_files(pr)) == MAX_PR_FILES
