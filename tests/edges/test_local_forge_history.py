"""LocalForge answers the history stage's questions like GitHubForge: PRs updated since a time, a PR's files."""

from __future__ import annotations

import json
import time
from pathlib import Path

from app.forges.local import LocalForge


def test_updated_since_and_files(tmp_path: Path) -> None:
    forge = LocalForge(tmp_path / "prs")
    old = forge.open_pr(branch="autofix/shop/a/oom-killed", base="main", title="a", body="", labels=["autofix"])
    [folder] = (tmp_path / "prs").glob("1-*")
    meta = json.loads((folder / "pr.json").read_text())
    meta.update(created_at="2026-01-02T03:04:05Z", files=[{"path": "apps/a.yaml", "patch": "@@ -1 +1 @@\n-a\n+b\n"}])
    (folder / "pr.json").write_text(json.dumps(meta))
    forge.open_pr(branch="autofix/shop/b/oom-killed", base="main", title="b", body="", labels=["autofix"])

    assert [pr.number for pr in forge.list_prs("autofix", updated_since=time.time() - 60)] == [2]
    assert [pr.number for pr in forge.list_prs("autofix")] == [1, 2]
    [patched] = forge.pr_files(old)
    assert (patched.path, patched.patch) == ("apps/a.yaml", "@@ -1 +1 @@\n-a\n+b\n")
    assert forge.pr_files(forge.list_prs("autofix")[1]) == [], "the bot's own local PRs keep no file list"
