"""File modes of the fix's commit, in both commit modes, on a base that has what GitOps repositories hold beside
manifests: an executable file (100755: a manifest committed with the bit, a kustomize exec plugin), a symlink
(120000) and a submodule (160000). git mode keeps modes through ``git add``; api mode (the Git Data API) must send
each entry's mode itself, and GitHub takes the mode sent: the same change made both ways must give the same tree,
and neither mode writes through a symlink or a submodule.

The base is built with git plumbing in the bare repository that both the real GitWorkspace clones and the loopback
GitHub fake's Git Data endpoints write to (tests/fakes/github_api.py: GET .../git/trees answers mode strings as
GitHub does, POST .../git/trees applies the entries on ``base_tree``)."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.adapters.workspace import GitWorkspace
from app.demo import seed_bare_repo
from app.errors import PermanentError
from app.forges.github import AppCredentials, GitHubForge
from app.forges.github_commits import ApiCommitWorkspace
from app.ports import Workspace
from tests.conftest import EXAMPLES
from tests.fakes.github_api import FakeApp, FakeGitHub

pytestmark = pytest.mark.timeout(120)

APP_ID, INSTALLATION = 123456, 4242
FAST = {"write_spacing": 0.0, "request_spacing": 0.0, "backoff": 0.01, "max_wait": 2.0}
AUTHOR = "gitops-autofix[bot] <gitops-autofix@users.noreply.github.com>"
OWNER = "0123456789abcdef"
MANIFEST = "apps/checkout/deployment.yaml"  # made executable in the base
NEW_FILE = "apps/checkout/poddisruptionbudget.yaml"
SYMLINK = "apps/checkout/current.yaml"  # -> deployment.yaml
LINKED_DIR = "apps/live"  # -> checkout
SUBMODULE = "vendor/platform-base"
PDB = """apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: checkout
  namespace: shop
spec:
  minAvailable: 1
  selector:
    matchLabels:
      app: checkout
"""
GIT_ENV = {"GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "Dana Ops",
           "GIT_AUTHOR_EMAIL": "dana@example.com", "GIT_COMMITTER_NAME": "Dana Ops",
           "GIT_COMMITTER_EMAIL": "dana@example.com"}


def git(repo: Path, *argv: str, data: bytes | None = None, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(["git", *argv], cwd=repo, input=data, env={**os.environ, **GIT_ENV, **(env or {})},
                         check=True, capture_output=True, timeout=30)
    return out.stdout.decode()


def commit_to_main(bare: Path, entries: list[tuple[str, str, str]], message: str) -> str:
    """One commit on main that sets (mode, path, blob text or, for 160000, a commit id) entries."""
    with tempfile.TemporaryDirectory() as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(bare, "read-tree", "main", env=index)
        for mode, path, value in entries:
            sha = value if mode == "160000" else git(bare, "hash-object", "-w", "--stdin", data=value.encode()).strip()
            git(bare, "update-index", "--add", "--cacheinfo", f"{mode},{sha},{path}", env=index)
        tree = git(bare, "write-tree", env=index).strip()
    commit = git(bare, "commit-tree", tree, "-p", "main", "-m", message).strip()
    git(bare, "update-ref", "refs/heads/main", commit)
    return commit


def modes(bare: Path, rev: str, *paths: str) -> dict[str, str]:
    listed = git(bare, "ls-tree", "-r", rev, "--", *paths).splitlines()
    return {line.split("\t", 1)[1]: line.split()[0] for line in listed}


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    path = tmp_path / "gitops.git"
    seed_bare_repo(EXAMPLES / "demo" / "repo", path)
    text = git(path, "cat-file", "blob", f"main:{MANIFEST}")
    commit_to_main(path, [("100755", MANIFEST, text), ("120000", SYMLINK, "deployment.yaml"),
                          ("120000", LINKED_DIR, "checkout"),
                          ("160000", SUBMODULE, git(path, "rev-parse", "main").strip())],
                   "Checkout: exec bit from the Windows import, a 'current' link, platform base as a submodule")
    assert modes(path, "main", MANIFEST, SYMLINK, SUBMODULE) == {MANIFEST: "100755", SYMLINK: "120000",
                                                                  SUBMODULE: "160000"}
    return path


@pytest.fixture
def fake(bare: Path, key_pair: tuple[str, str]) -> Iterator[FakeGitHub]:
    app = FakeApp(app_id=APP_ID, public_key_pem=key_pair[1], installation_id=INSTALLATION)
    with FakeGitHub("acme/gitops", token="a-static-token", app=app, git_dir=bare) as server:
        yield server


def api_workspace(fake: FakeGitHub, bare: Path, tmp_path: Path, private: str) -> ApiCommitWorkspace:
    creds = AppCredentials(app_id=APP_ID, private_key=private, installation_id=INSTALLATION)
    forge = GitHubForge("acme/gitops", api_url=fake.api_url, app=creds, **FAST)  # type: ignore[arg-type]
    inner = GitWorkspace(str(bare), base="main", checkout=tmp_path / "api-checkout", author=AUTHOR)
    return ApiCommitWorkspace(inner, forge, author=AUTHOR)


def git_workspace(bare: Path, tmp_path: Path) -> GitWorkspace:
    return GitWorkspace(str(bare), base="main", checkout=tmp_path / "git-checkout", author=AUTHOR)


def the_fix(workspace: Workspace) -> dict[str, str]:
    text = workspace.read_text(MANIFEST)
    assert 'memory: "512Mi"' in text
    return {MANIFEST: text.replace('memory: "512Mi"', 'memory: "768Mi"'), NEW_FILE: PDB}


def writes(fake: FakeGitHub) -> list[str]:
    return [r.path for r in fake.requests if r.method != "GET" and "/git/" in r.path]


def test_both_commit_modes_keep_the_executable_bit_and_add_new_files_as_regular(
        fake: FakeGitHub, bare: Path, tmp_path: Path, key_pair: tuple[str, str]) -> None:
    api, plain = api_workspace(fake, bare, tmp_path, key_pair[0]), git_workspace(bare, tmp_path)
    base = api.sync()
    assert plain.sync() == base

    by_api = api.push_branch("autofix/shop/checkout/oom-killed", the_fix(api), message="Raise memory\n", owner=OWNER)
    by_git = plain.push_branch("autofix/shop/checkout/oom-killed-git", the_fix(plain), message="Raise memory\n",
                               owner=OWNER)

    # The tree entries sent: the modified file with its base mode, the new one as a regular file.
    [tree] = fake.requests_to("POST", "/git/trees")
    assert {e["path"]: e["mode"] for e in tree.body["tree"]} == {MANIFEST: "100755", NEW_FILE: "100644"}
    # On the remote, both commits have the same modes and, being the same change on the same base, the same tree.
    expected = {MANIFEST: "100755", NEW_FILE: "100644", SYMLINK: "120000", SUBMODULE: "160000"}
    assert modes(bare, by_api.commit, *expected) == expected == modes(bare, by_git.commit, *expected)
    assert git(bare, "rev-parse", f"{by_api.commit}^{{tree}}") == git(bare, "rev-parse", f"{by_git.commit}^{{tree}}")
    assert git(bare, "diff", "--summary", base, by_api.commit).split("\n")[0].strip() == \
        f"create mode 100644 {NEW_FILE}"  # no "mode change 100755 => 100644" for the manifest


@pytest.mark.parametrize("path", [SYMLINK], ids=["symlink"])
def test_neither_mode_writes_through_a_symlink(fake: FakeGitHub, bare: Path, tmp_path: Path,
                                               key_pair: tuple[str, str], path: str) -> None:
    api, plain = api_workspace(fake, bare, tmp_path, key_pair[0]), git_workspace(bare, tmp_path)
    for workspace in (api, plain):
        workspace.sync()
        with pytest.raises(PermanentError) as err:
            workspace.push_branch("autofix/shop/checkout/oom-killed", {path: PDB}, message="m\n", owner=OWNER)
        assert err.value.code == "unsafe_path" and repr(path) in str(err.value)
    assert "symlink" in str(err.value)
    assert writes(fake) == []  # api mode refused before any blob, tree, commit or ref
    assert git(bare, "for-each-ref", "refs/heads/autofix").strip() == ""


@pytest.mark.parametrize(("path", "message"), [
    (SYMLINK, f"refused to write through a symlink '{SYMLINK}': it is a symlink (120000) in the base tree"),
    (f"{LINKED_DIR}/deployment.yaml", f"refused path '{LINKED_DIR}/deployment.yaml': {LINKED_DIR} is a symlink "
                                      "(120000) in the base tree"),
    (SUBMODULE, f"refused to write through a submodule '{SUBMODULE}': it is a submodule (160000) in the base tree"),
    (f"{SUBMODULE}/kustomization.yaml", f"refused path '{SUBMODULE}/kustomization.yaml': {SUBMODULE} is a "
                                        "submodule (160000) in the base tree"),
    ("apps/checkout", "refused path 'apps/checkout': apps/checkout is a directory in the base tree"),
    (f"{MANIFEST}/x.yaml", f"refused path '{MANIFEST}/x.yaml': {MANIFEST} is a file (100755) in the base tree"),
], ids=["symlink", "under-a-symlinked-dir", "submodule", "inside-a-submodule", "a-directory", "under-a-file"])
def test_api_mode_refuses_what_is_not_a_regular_file_in_the_base_before_writing(
        fake: FakeGitHub, bare: Path, tmp_path: Path, key_pair: tuple[str, str], path: str, message: str) -> None:
    api = api_workspace(fake, bare, tmp_path, key_pair[0])
    api.sync()
    with pytest.raises(PermanentError) as err:
        api.push_branch("autofix/shop/checkout/oom-killed", {**the_fix(api), path: PDB}, message="m\n", owner=OWNER)
    assert (err.value.code, str(err.value)) == ("unsafe_path", message)
    assert writes(fake) == []  # refused before any blob, tree, commit or ref
