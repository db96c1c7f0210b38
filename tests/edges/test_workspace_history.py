"""GitWorkspace.file_history against a real bare repository whose commits carry chosen dates."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from app.adapters.workspace import GitWorkspace
from app.errors import PermanentError

AUTHOR = "gitops-autofix[bot] <bot@example.com>"
PATH = "apps/web/deployment.yaml"
DAY = 86400
T0 = 1_790_000_000  # the seed's first commit


def git(cwd: Path, *args: str, at: int | None = None, who: str = "Human <human@example.com>") -> str:
    name, _, email = who.partition(" <")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">"),
           "GIT_COMMITTER_NAME": name, "GIT_COMMITTER_EMAIL": email.rstrip(">")}
    if at is not None:
        env.update(GIT_AUTHOR_DATE=f"@{at} +0000", GIT_COMMITTER_DATE=f"@{at} +0000")
    out = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, check=True, timeout=30)
    return out.stdout.decode()


def commit(seed: Path, files: dict[str, str | None], message: str, *, at: int, **kw: str) -> str:
    for path, text in files.items():
        target = seed / path
        if text is None:
            target.unlink()
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", message, at=at, **kw)
    return git(seed, "rev-parse", "HEAD").strip()


def limit(value: str) -> str:
    return f"kind: Deployment\nmetadata:\n  name: web\nspec:\n  memory: {value}\n"


@pytest.fixture
def history(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """main: add (T0), an unrelated file (T0+1d), a raise by Alice (T0+2d), a feature branch written at T0+3d
    merged with a merge commit at T0+5d, a rename of the file away (T0+6d) and back (T0+7d)."""
    bare = tmp_path / "gitops.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(bare), str(seed))
    shas = {"add": commit(seed, {PATH: limit("256Mi")}, "add web", at=T0),
            "other": commit(seed, {"README.md": "# gitops\n"}, "readme", at=T0 + DAY),
            "raise": commit(seed, {PATH: limit("384Mi")}, "fix(web): bump memory (#7)", at=T0 + 2 * DAY,
                            who="Alice Example <alice@example.com>")}
    git(seed, "checkout", "-q", "-b", "renovate/web")
    shas["feature"] = commit(seed, {PATH: limit("512Mi")}, "chore: more memory", at=T0 + 3 * DAY)
    git(seed, "checkout", "-q", "main")
    commit(seed, {"other.yaml": "o: 1\n"}, "other", at=T0 + 4 * DAY)
    git(seed, "merge", "-q", "--no-ff", "-m", "Merge pull request #9 from acme/renovate/web", "renovate/web",
        at=T0 + 5 * DAY)
    shas["merge"] = git(seed, "rev-parse", "HEAD").strip()
    shas["delete"] = commit(seed, {PATH: None}, "remove web", at=T0 + 6 * DAY)
    shas["back"] = commit(seed, {PATH: limit("512Mi")}, "web is back", at=T0 + 7 * DAY)
    git(seed, "push", "-q", "origin", "HEAD:refs/heads/main")
    return bare, shas


def workspace(tmp_path: Path, bare: Path) -> GitWorkspace:
    ws = GitWorkspace(str(bare), base="main", checkout=tmp_path / "work" / "clone", author=AUTHOR)
    ws.sync()
    return ws


def test_file_history_newest_first_with_both_sides(tmp_path: Path, history: tuple[Path, dict[str, str]]) -> None:
    bare, shas = history
    found = workspace(tmp_path, bare).file_history(PATH, since=T0)

    assert [c.sha for c in found] == [shas["back"], shas["delete"], shas["merge"], shas["raise"], shas["add"]]
    back, delete, merge, raised, added = found
    assert (added.previous, added.text) == (None, limit("256Mi"))
    assert (raised.previous, raised.text) == (limit("256Mi"), limit("384Mi"))
    assert (raised.author, raised.subject, raised.time) == ("Alice Example <alice@example.com>",
                                                            "fix(web): bump memory (#7)", T0 + 2 * DAY)
    # The feature branch's change shows as its merge, when it landed on main (not when it was written).
    assert (merge.subject, merge.time, merge.previous, merge.text) == (
        "Merge pull request #9 from acme/renovate/web", T0 + 5 * DAY, limit("384Mi"), limit("512Mi"))
    assert (delete.previous, delete.text) == (limit("512Mi"), None)
    assert (back.previous, back.text) == (None, limit("512Mi"))


def test_file_history_is_bounded_by_time_and_count(tmp_path: Path, history: tuple[Path, dict[str, str]]) -> None:
    bare, shas = history
    ws = workspace(tmp_path, bare)
    assert [c.sha for c in ws.file_history(PATH, since=T0 + 2 * DAY)] == [shas["back"], shas["delete"], shas["merge"],
                                                                      shas["raise"]]
    assert [c.sha for c in ws.file_history(PATH, since=T0, limit=2)] == [shas["back"], shas["delete"]]
    assert ws.file_history(PATH, since=T0 + 8 * DAY) == []
    assert ws.file_history("apps/none.yaml", since=T0) == []


def test_file_history_reads_this_threads_base(tmp_path: Path, history: tuple[Path, dict[str, str]]) -> None:
    bare, shas = history
    ws = workspace(tmp_path, bare)
    seed = tmp_path / "seed"
    commit(seed, {PATH: limit("1Gi")}, "later", at=T0 + 8 * DAY)
    git(seed, "push", "-q", "origin", "HEAD:refs/heads/main")
    assert ws.file_history(PATH, since=T0 + 7 * DAY)[0].sha == shas["back"]  # not synced yet
    ws.sync()
    assert ws.file_history(PATH, since=T0 + 7 * DAY)[0].text == limit("1Gi")


@pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", ".git/config", "apps/a\nHEAD:README.md"])
def test_file_history_refuses_unsafe_paths(tmp_path: Path, history: tuple[Path, dict[str, str]], path: str) -> None:
    bare, _ = history
    with pytest.raises(PermanentError):
        workspace(tmp_path, bare).file_history(path, since=T0)
