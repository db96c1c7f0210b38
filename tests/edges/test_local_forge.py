"""LocalForge: pull requests as folders on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.errors import PermanentError
from app.forges.local import LocalForge
from app.ports import PullRequest

BRANCH = "autofix/shop/web/oomkilled"


def open_pr(forge: LocalForge, branch: str = BRANCH) -> PullRequest:
    return forge.open_pr(branch=branch, base="main", title="fix(shop/web): memory", body="## Body\r\nline\n",
                         labels=["autofix", "risk:low"])


def test_open_pr_writes_folder(tmp_path: Path) -> None:
    forge = LocalForge(tmp_path / "prs")
    pr = forge.open_pr(branch=BRANCH, base="main", title="fix(shop/web): memory", body="## Body\r\nline\n",
                       labels=["autofix", "risk:low"])

    folder = tmp_path / "prs" / "1-autofix__shop__web__oomkilled"
    assert pr.number == 1 and pr.branch == BRANCH and pr.state == "open"
    assert pr.url == folder.resolve().as_uri() and pr.url.startswith("file://")
    assert pr.labels == ("autofix", "risk:low")
    meta = json.loads((folder / "pr.json").read_text())
    assert meta["number"] == 1 and meta["branch"] == BRANCH and meta["base"] == "main"
    assert meta["title"] == "fix(shop/web): memory" and meta["state"] == "open" and meta["comments"] == []
    assert meta["labels"] == ["autofix", "risk:low"] and meta["created_at"].endswith("Z")
    assert (folder / "body.md").read_bytes() == b"## Body\r\nline\n"


def test_find_and_reopen_return_the_same_pr(tmp_path: Path) -> None:
    forge = LocalForge(tmp_path)
    first = open_pr(forge)
    assert forge.find_open_pr(BRANCH) == first
    assert open_pr(forge) == first
    assert forge.find_open_pr("autofix/other/x/y") is None
    assert len([p for p in tmp_path.iterdir() if p.is_dir()]) == 1


def test_numbers_survive_restart(tmp_path: Path) -> None:
    open_pr(LocalForge(tmp_path), "autofix/a/b/c")
    open_pr(LocalForge(tmp_path), "autofix/a/b/d")
    third = LocalForge(tmp_path).open_pr(branch="autofix/a/b/e", base="main", title="t", body="b", labels=[])
    assert third.number == 3
    assert LocalForge(tmp_path).find_open_pr("autofix/a/b/d") is not None


def test_update_and_comment(tmp_path: Path) -> None:
    forge = LocalForge(tmp_path)
    pr = forge.open_pr(branch=BRANCH, base="main", title="t1", body="b1", labels=["autofix"])

    updated = forge.update_pr(pr, title="t2", body="b2", comment="updated: OOMKilled again")
    forge.comment(updated, "resolved")

    folder = Path(pr.url.removeprefix("file://"))
    meta = json.loads((folder / "pr.json").read_text())
    assert updated.title == "t2" and meta["title"] == "t2"
    assert (folder / "body.md").read_text() == "b2"
    assert [c["file"] for c in meta["comments"]] == ["comment-1.md", "comment-2.md"]
    assert (folder / "comment-1.md").read_text() == "updated: OOMKilled again"
    assert (folder / "comment-2.md").read_text() == "resolved"


def test_closed_pr_is_not_found_and_a_new_one_opens(tmp_path: Path) -> None:
    forge = LocalForge(tmp_path)
    first = open_pr(forge)
    forge.set_state(first.number, "merged")
    assert forge.find_open_pr(BRANCH) is None
    second = open_pr(forge)
    assert second.number == 2
    assert [p.state for p in forge.list_prs("autofix")] == ["merged", "open"]
    assert [p.number for p in forge.list_prs("autofix", state="merged")] == [1]


@pytest.mark.parametrize("branch", ["autofix/../../etc", "autofix/a b", "/abs"])
def test_unsafe_branch_names_are_refused(tmp_path: Path, branch: str) -> None:
    with pytest.raises(PermanentError):
        open_pr(LocalForge(tmp_path), branch)
