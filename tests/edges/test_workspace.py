"""GitWorkspace against real bare repositories in tmp_path (and a loopback HTTP remote for auth errors)."""

from __future__ import annotations

import http.server
import os
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.adapters.workspace import GitWorkspace
from app.errors import PermanentError, TemporaryError

AUTHOR = "gitops-autofix[bot] <bot@example.com>"
DEPLOY = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n"
BRANCH = "autofix/shop/web/oomkilled"


def git(cwd: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    out = subprocess.run(["git", "-c", "user.name=Human", "-c", "user.email=human@example.com", *args],
                         cwd=cwd, env=env, capture_output=True, check=True, timeout=30)
    return out.stdout.decode()


def commit_files(seed: Path, files: dict[str, str], message: str = "seed") -> str:
    for path, text in files.items():
        (seed / path).parent.mkdir(parents=True, exist_ok=True)
        (seed / path).write_bytes(text.encode())
    git(seed, "add", "-A")
    git(seed, "commit", "-q", "-m", message)
    git(seed, "push", "-q", "origin", "HEAD:refs/heads/main")
    return git(seed, "rev-parse", "HEAD").strip()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    bare = tmp_path / "gitops.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    seed = tmp_path / "seed"
    git(tmp_path, "clone", "-q", str(bare), str(seed))
    commit_files(seed, {
        "apps/web/deployment.yaml": DEPLOY,
        "apps/web/kustomization.yaml": "resources:\n  - deployment.yaml\n",
        "apps/crlf.yml": "a: 1\r\nb: 2\r\n",
        "README.md": "# gitops\n",
    })
    return bare


@pytest.fixture
def workspace(tmp_path: Path, remote: Path) -> GitWorkspace:
    return GitWorkspace(str(remote), base="main", checkout=tmp_path / "work" / "clone", author=AUTHOR)


def refs(bare: Path) -> dict[str, str]:
    lines = git(bare, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    return dict(line.split(" ", 1) for line in lines)


def test_sync_clones_and_lists_files(workspace: GitWorkspace, remote: Path) -> None:
    sha = workspace.sync()

    assert sha == refs(remote)["refs/heads/main"]
    assert workspace.list_files() == ["apps/crlf.yml", "apps/web/deployment.yaml", "apps/web/kustomization.yaml"]
    assert workspace.list_files(suffixes=(".md",)) == ["README.md"]
    assert workspace.read_text("apps/web/deployment.yaml") == DEPLOY
    assert workspace.read_text("apps/crlf.yml") == "a: 1\r\nb: 2\r\n"


@pytest.mark.parametrize("path", [
    pytest.param("/etc/passwd", id="absolute"),
    pytest.param("../seed/README.md", id="dotdot"),
    pytest.param("apps/../../x", id="inner-dotdot"),
    pytest.param(".git/config", id="git-dir"),
    pytest.param("apps/.GIT/hooks/x", id="git-dir-case"),
    pytest.param("", id="empty"),
])
def test_unsafe_paths_are_refused(workspace: GitWorkspace, path: str) -> None:
    workspace.sync()
    with pytest.raises(PermanentError) as info:
        workspace.read_text(path)
    assert info.value.code == "unsafe_path"


def test_symlink_out_of_checkout_is_refused(workspace: GitWorkspace, tmp_path: Path) -> None:
    workspace.sync()
    (tmp_path / "secret.yaml").write_text("token: x\n")
    (workspace.root / "apps" / "leak.yaml").symlink_to(tmp_path / "secret.yaml")
    with pytest.raises(PermanentError, match="outside the checkout"):
        workspace.read_text("apps/leak.yaml")


def test_push_branch_creates_exact_diff_and_keeps_base(workspace: GitWorkspace, remote: Path) -> None:
    base = workspace.sync()
    new = DEPLOY.replace("replicas: 1", "replicas: 2")

    result = workspace.push_branch(BRANCH, {"apps/web/deployment.yaml": new}, message="fix(web): replicas\n\n# kept")

    after = refs(remote)
    assert after["refs/heads/main"] == base  # the base is never written
    assert after[f"refs/heads/{BRANCH}"] == result.commit
    assert result.base_commit == base
    assert result.diff == git(remote, "diff", base, result.commit)
    assert "-  replicas: 1\n+  replicas: 2\n" in result.diff
    assert git(remote, "diff", "--name-only", base, result.commit) == "apps/web/deployment.yaml\n"
    log = git(remote, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%P|%B", result.commit)
    assert log.startswith(f"{AUTHOR}|{AUTHOR}|{base}|fix(web): replicas\n\n# kept")
    # the shared work tree is back at the base, clean
    assert workspace.read_text("apps/web/deployment.yaml") == DEPLOY
    assert git(workspace.root, "status", "--porcelain") == ""


def test_push_keeps_bytes_and_creates_new_files(workspace: GitWorkspace, remote: Path) -> None:
    base = workspace.sync()
    result = workspace.push_branch(BRANCH, {"apps/crlf.yml": "a: 1\r\nb: 3\r\n", "apps/new/x.yaml": "x: 1\n"},
                                   message="edit")
    assert git(remote, "show", f"{result.commit}:apps/crlf.yml") == "a: 1\r\nb: 3\r\n"
    assert git(remote, "show", f"{result.commit}:apps/new/x.yaml") == "x: 1\n"
    assert result.base_commit == base


def test_repush_force_updates_branch(workspace: GitWorkspace, remote: Path) -> None:
    workspace.sync()
    first = workspace.push_branch(BRANCH, {"apps/web/deployment.yaml": DEPLOY + "# one\n"}, message="one")
    workspace.sync()
    second = workspace.push_branch(BRANCH, {"apps/web/deployment.yaml": DEPLOY + "# two\n"}, message="two")

    assert first.commit != second.commit
    assert refs(remote)[f"refs/heads/{BRANCH}"] == second.commit
    # rebuilt from the base, not stacked on the previous fix
    assert git(remote, "rev-list", "--count", f"main..{second.commit}").strip() == "1"


@pytest.mark.parametrize("branch", ["main", "feature/x", "autofix/bad..name", "autofix/-x/../y"])
def test_refuses_non_autofix_branches(workspace: GitWorkspace, remote: Path, branch: str) -> None:
    workspace.sync()
    before = refs(remote)
    with pytest.raises(PermanentError) as info:
        workspace.push_branch(branch, {"apps/web/deployment.yaml": "x: 1\n"}, message="m")
    assert info.value.code == "unsafe_branch"
    assert refs(remote) == before


def test_unchanged_files_raise_no_change(workspace: GitWorkspace, remote: Path) -> None:
    workspace.sync()
    with pytest.raises(PermanentError) as info:
        workspace.push_branch(BRANCH, {"apps/web/deployment.yaml": DEPLOY}, message="noop")
    assert info.value.code == "no_change"
    assert f"refs/heads/{BRANCH}" not in refs(remote)


def test_write_path_traversal_is_refused(workspace: GitWorkspace, tmp_path: Path) -> None:
    workspace.sync()
    with pytest.raises(PermanentError):
        workspace.push_branch(BRANCH, {"../escape.yaml": "x\n"}, message="m")
    with pytest.raises(PermanentError):
        workspace.push_branch(BRANCH, {".git/hooks/pre-commit": "#!/bin/sh\n"}, message="m")
    assert not (tmp_path / "work" / "escape.yaml").exists()


def test_sync_follows_moved_base(workspace: GitWorkspace, remote: Path, tmp_path: Path) -> None:
    first = workspace.sync()
    workspace.push_branch(BRANCH, {"apps/web/deployment.yaml": DEPLOY + "# fix\n"}, message="fix")
    moved = commit_files(tmp_path / "seed", {"apps/web/extra.yaml": "e: 1\n"}, message="moved")

    second = workspace.sync()

    assert second == moved != first
    assert "apps/web/extra.yaml" in workspace.list_files()


def test_remote_branch_files_are_the_branchs_own_change_after_the_base_moves(
        workspace: GitWorkspace, remote: Path, tmp_path: Path) -> None:
    workspace.sync()
    assert workspace.remote_branch_files(BRANCH) is None

    workspace.push_branch(BRANCH, {"apps/web/deployment.yaml": DEPLOY + "# fix\n"}, message="fix")
    expected = {"apps/web/deployment.yaml": (DEPLOY, DEPLOY + "# fix\n")}
    assert workspace.remote_branch_files(BRANCH) == expected

    commit_files(tmp_path / "seed", {"apps/other.yaml": "o: 1\n"}, message="base moves on")
    workspace.sync()
    assert workspace.remote_branch_files(BRANCH) == expected  # only the branch's own change

    git(remote, "update-ref", "-d", f"refs/heads/{BRANCH}")
    assert workspace.remote_branch_files(BRANCH) is None


def test_thread_keeps_its_base_when_another_sync_moves_it(remote: Path, tmp_path: Path) -> None:
    checkout = tmp_path / "shared"
    ws = GitWorkspace(str(remote), base="main", checkout=checkout, author=AUTHOR)
    base = ws.sync()
    moved = commit_files(tmp_path / "seed", {"apps/web/deployment.yaml": DEPLOY + "# upstream\n"}, message="up")
    other: list[str] = []
    worker = threading.Thread(target=lambda: other.append(ws.sync()))
    worker.start()
    worker.join()

    assert other == [moved]
    assert ws.read_text("apps/web/deployment.yaml") == DEPLOY  # this thread still reads its own base
    result = ws.push_branch(BRANCH, {"apps/web/deployment.yaml": DEPLOY + "# fix\n"}, message="fix")
    assert result.base_commit == base


def test_missing_remote_is_permanent(tmp_path: Path) -> None:
    ws = GitWorkspace(str(tmp_path / "nope.git"), base="main", checkout=tmp_path / "c", author=AUTHOR)
    with pytest.raises(PermanentError) as info:
        ws.sync()
    assert info.value.code == "git_repo_not_found"


def test_missing_base_branch_is_permanent(remote: Path, tmp_path: Path) -> None:
    ws = GitWorkspace(str(remote), base="release", checkout=tmp_path / "c", author=AUTHOR)
    with pytest.raises(PermanentError) as info:
        ws.sync()
    assert info.value.code == "no_base"


# ---- https remote: the token travels as a header, never on disk; errors map by status ----------------


class _GitHTTP(http.server.BaseHTTPRequestHandler):
    status = 401
    seen: list[dict[str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).seen.append(dict(self.headers))
        self.send_response(self.status)
        if self.status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_remote() -> Iterator[tuple[str, type[_GitHTTP]]]:
    handler = type("Handler", (_GitHTTP,), {"seen": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/owner/gitops.git", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "error", "code"), [
    pytest.param(401, PermanentError, "git_auth", id="401-auth"),
    pytest.param(404, PermanentError, "git_repo_not_found", id="404-not-found"),
    pytest.param(503, TemporaryError, "git_network", id="503-temporary"),
])
def test_https_auth_header_and_error_mapping(http_remote: tuple[str, type[_GitHTTP]], tmp_path: Path,
                                             status: int, error: type[Exception], code: str) -> None:
    url, handler = http_remote
    handler.status = status
    token_header = "Authorization: Basic c2VjcmV0LXRva2VuLTEyMw=="
    ws = GitWorkspace(url, base="main", checkout=tmp_path / "c", author=AUTHOR, auth_header=lambda: token_header)

    with pytest.raises(error) as info:
        ws.sync()

    assert getattr(info.value, "code", None) == code
    assert handler.seen and handler.seen[0].get("Authorization") == "Basic c2VjcmV0LXRva2VuLTEyMw=="
    assert "c2VjcmV0" not in str(info.value)
    assert "c2VjcmV0" not in (tmp_path / "c" / ".git" / "config").read_text()
    assert "c2VjcmV0" not in url


def test_concurrent_workers_push_their_own_branches(remote: Path, tmp_path: Path) -> None:
    checkout = tmp_path / "shared"
    workers = [GitWorkspace(str(remote), base="main", checkout=checkout, author=AUTHOR) for _ in range(2)]
    workers[0].sync()  # create the clone once, then race
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            ws = workers[i]
            ws.sync()
            text = ws.read_text("apps/web/deployment.yaml") + f"# worker {i}\n"
            results[i] = ws.push_branch(f"autofix/shop/web/w{i}", {"apps/web/deployment.yaml": text},
                                        message=f"w{i}").commit
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    for i in range(2):
        shown = git(remote, "show", f"{results[i]}:apps/web/deployment.yaml")
        assert shown == DEPLOY + f"# worker {i}\n"


def test_missing_and_binary_files_are_permanent(workspace: GitWorkspace) -> None:
    workspace.sync()
    with pytest.raises(PermanentError) as missing:
        workspace.read_text("apps/none.yaml")
    assert missing.value.code == "not_found"
    (workspace.root / "apps" / "bin.yaml").write_bytes(b"\xff\xfe")
    with pytest.raises(PermanentError) as binary:
        workspace.read_text("apps/bin.yaml")
    assert binary.value.code == "not_text"


def test_a_persons_commit_on_the_bot_branch_is_never_overwritten(workspace: GitWorkspace, remote: Path,
                                                                  tmp_path: Path) -> None:
    """An SRE pushed a tweak onto the bot's PR branch: a newer fix must not force-push it away."""
    workspace.sync()
    workspace.push_branch(BRANCH, {"apps/web/deployment.yaml": DEPLOY + "# fix\n"}, message="fix")
    seed = tmp_path / "seed"
    git(seed, "fetch", "-q", "origin", f"{BRANCH}:{BRANCH}")
    git(seed, "checkout", "-q", BRANCH)
    (seed / "apps/web/deployment.yaml").write_text(DEPLOY + "# fix, reviewed: also pin the node pool\n")
    git(seed, "commit", "-q", "-am", "human tweak")
    git(seed, "push", "-q", "origin", f"HEAD:refs/heads/{BRANCH}")
    human = refs(remote)[f"refs/heads/{BRANCH}"]

    with pytest.raises(PermanentError) as err:
        workspace.push_branch(BRANCH, {"apps/web/deployment.yaml": DEPLOY + "# another fix\n"}, message="again")

    assert err.value.code == "branch_has_foreign_commits"
    assert "human@example.com" in str(err.value)
    assert refs(remote)[f"refs/heads/{BRANCH}"] == human
