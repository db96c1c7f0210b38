"""Commits through GitHub's Git Data API (AUTOFIX_COMMIT_VIA=api): the real PyGithub, as the App (a JWT signed with a
real RSA key, installation tokens), against the loopback GitHub fake, whose Git Data endpoints write with git plumbing
into the very bare repository the real GitWorkspace clones. What is checked: the requests (blobs, a tree with only the
changed files on top of the base's tree, a commit whose parent is the base, the ref created then force-updated), the
commit really on the remote and verified, the branch fetched into the checkout, and the branches never overwritten
(a person's commit, another workload's change)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import settings as settings_mod
from app.adapters.workspace import GitWorkspace
from app.demo import seed_bare_repo
from app.errors import ConfigError, NoFix, PermanentError
from app.forges.github import AppCredentials, GitHubForge
from app.forges.github_commits import ApiCommitWorkspace, commit_message, trailer_values
from app.forges.local import LocalForge
from app.wiring import commit_workspace
from tests.conftest import EXAMPLES
from tests.fakes.github_api import APP_SLUG, BOT_USER_ID, FakeApp, FakeGitHub

pytestmark = pytest.mark.timeout(120)

APP_ID = 123456
INSTALLATION = 4242
FAST = {"write_spacing": 0.0, "request_spacing": 0.0, "backoff": 0.01, "max_wait": 2.0}
AUTHOR = "gitops-autofix[bot] <gitops-autofix@users.noreply.github.com>"
BRANCH = "autofix/shop/checkout/oom-killed"
MANIFEST = "apps/checkout/deployment.yaml"
OWNER = "0123456789abcdef"
BOT_EMAIL = f"{BOT_USER_ID}+{APP_SLUG}[bot]@users.noreply.github.com"


def git(bare: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    full = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1", **(env or {})}
    return subprocess.run(["git", *argv], cwd=bare, env=full, check=True, capture_output=True, text=True,
                          timeout=30).stdout


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    path = tmp_path / "gitops.git"
    seed_bare_repo(EXAMPLES / "demo" / "repo", path)
    return path


@pytest.fixture
def fake(bare: Path, key_pair: tuple[str, str]) -> Iterator[FakeGitHub]:
    app = FakeApp(app_id=APP_ID, public_key_pem=key_pair[1], installation_id=INSTALLATION)
    with FakeGitHub("acme/gitops", token="a-static-token", app=app, git_dir=bare) as server:
        yield server


def git_workspace(bare: Path, tmp_path: Path, name: str = "checkout") -> GitWorkspace:
    return GitWorkspace(str(bare), base="main", checkout=tmp_path / name, author=AUTHOR)


def app_forge(fake: FakeGitHub, private: str) -> GitHubForge:
    creds = AppCredentials(app_id=APP_ID, private_key=private, installation_id=INSTALLATION)
    return GitHubForge("acme/gitops", api_url=fake.api_url, app=creds, **FAST)  # type: ignore[arg-type]


@pytest.fixture
def workspace(fake: FakeGitHub, bare: Path, tmp_path: Path, key_pair: tuple[str, str]) -> ApiCommitWorkspace:
    return ApiCommitWorkspace(git_workspace(bare, tmp_path), app_forge(fake, key_pair[0]), author=AUTHOR)


def raised(workspace: ApiCommitWorkspace, limit: str) -> dict[str, str]:
    text = workspace.read_text(MANIFEST)
    assert 'memory: "512Mi"' in text
    return {MANIFEST: text.replace('memory: "512Mi"', f'memory: "{limit}"')}


def git_data(fake: FakeGitHub) -> list[tuple[str, str]]:
    return [(r.method, r.path.removeprefix("/repos/acme/gitops/")) for r in fake.requests
            if r.path.startswith(("/repos/acme/gitops/git/", "/repos/acme/gitops/compare/"))]


def tree_reads(bare: Path, base: str, path: str) -> list[tuple[str, str]]:
    """The base tree's directories on the way to ``path``, each listed once to learn the file's mode."""
    dirs = ["", *("/".join(path.split("/")[:i]) for i in range(1, path.count("/") + 1))]
    return [("GET", "git/trees/" + git(bare, "rev-parse", f"{base}:{d}").strip()) for d in dirs]


def test_fix_commit_is_created_through_the_git_data_api_as_the_app(workspace: ApiCommitWorkspace, fake: FakeGitHub,
                                                                  bare: Path) -> None:
    base = workspace.sync()
    files = raised(workspace, "768Mi")
    files["apps/checkout/service.yaml"] = workspace.read_text("apps/checkout/service.yaml")  # unchanged: left out

    pushed = workspace.push_branch(BRANCH, files, message="Raise memory limit\n\nCause: oom_killed\n", owner=OWNER)

    assert git_data(fake) == [("GET", f"git/ref/heads/{BRANCH}"), ("GET", f"git/commits/{base}"),
                              *tree_reads(bare, base, MANIFEST), ("POST", "git/blobs"), ("POST", "git/trees"),
                              ("POST", "git/commits"), ("POST", "git/refs")]
    [tree] = fake.requests_to("POST", "/git/trees")
    [blob] = fake.requests_to("POST", "/git/blobs")
    base_tree = git(bare, "rev-parse", f"{base}^{{tree}}").strip()
    assert tree.body["base_tree"] == base_tree
    assert [(e["path"], e["mode"], e["type"]) for e in tree.body["tree"]] == [(MANIFEST, "100644", "blob")]
    [commit] = fake.requests_to("POST", "/git/commits")
    assert commit.body["parents"] == [base]
    assert not {"author", "committer", "signature"} & set(commit.body), "custom identity: GitHub would not sign"
    assert commit.headers["Authorization"].startswith("token ghs_")  # the App's installation token
    [ref] = fake.requests_to("POST", "/git/refs")
    assert ref.body == {"ref": f"refs/heads/{BRANCH}", "sha": pushed.commit}

    # The commit really is on the remote: the branch, its parent, its one changed file, the blob's exact bytes.
    assert git(bare, "rev-parse", f"refs/heads/{BRANCH}").strip() == pushed.commit
    assert git(bare, "rev-parse", f"{pushed.commit}^").strip() == base == pushed.base_commit
    assert git(bare, "diff", "--name-only", base, pushed.commit).split() == [MANIFEST]
    assert git(bare, "cat-file", "blob", f"{pushed.commit}:{MANIFEST}") == files[MANIFEST]
    assert git(bare, "rev-parse", f"{pushed.commit}:{MANIFEST}").strip() == tree.body["tree"][0]["sha"]
    assert blob.body["encoding"] == "base64"
    assert git(bare, "log", "-1", "--format=%an <%ae>|%cn <%ce>", pushed.commit).strip() == \
        f"{APP_SLUG}[bot] <{BOT_EMAIL}>|GitHub <noreply@github.com>"
    assert git(bare, "log", "-1", "--format=%(trailers:key=Autofix-Id,valueonly)", pushed.commit).strip() == OWNER
    assert fake.verifications[pushed.commit]["verified"] is True
    assert fake.verifications[pushed.commit]["reason"] == "valid"
    assert '-              memory: "512Mi"' in pushed.diff and '+              memory: "768Mi"' in pushed.diff

    # The checkout fetched the branch: the publish stage's later read sees the change.
    assert workspace.remote_branch_files(BRANCH) == {MANIFEST: (workspace.read_text(MANIFEST), files[MANIFEST])}


def test_second_fix_force_updates_the_bots_own_branch(workspace: ApiCommitWorkspace, fake: FakeGitHub,
                                                      bare: Path) -> None:
    base = workspace.sync()
    first = workspace.push_branch(BRANCH, raised(workspace, "768Mi"), message="Raise to 768Mi\n", owner=OWNER)
    fake.requests.clear()

    second = workspace.push_branch(BRANCH, raised(workspace, "1Gi"), message="Raise to 1Gi\n", owner=OWNER)

    assert git_data(fake) == [("GET", f"git/ref/heads/{BRANCH}"), ("GET", f"compare/{base}...{first.commit}"),
                              ("GET", f"git/commits/{base}"), *tree_reads(bare, base, MANIFEST), ("POST", "git/blobs"),
                              ("POST", "git/trees"), ("POST", "git/commits"), ("PATCH", f"git/refs/heads/{BRANCH}")]
    [patch] = fake.requests_to("PATCH", f"/git/refs/heads/{BRANCH}")
    assert patch.body == {"sha": second.commit, "force": True}  # not a fast forward: the new fix replaces the old
    assert git(bare, "rev-parse", f"refs/heads/{BRANCH}").strip() == second.commit
    assert git(bare, "rev-list", f"main..{BRANCH}").split() == [second.commit]  # parent: the base, not the 1st fix
    assert 'memory: "1Gi"' in workspace.remote_branch_files(BRANCH)[MANIFEST][1]  # type: ignore[index]


def test_branch_pushed_by_git_mode_is_taken_over_by_api_mode(workspace: ApiCommitWorkspace, fake: FakeGitHub,
                                                             bare: Path, tmp_path: Path) -> None:
    plain = git_workspace(bare, tmp_path, "git-mode")
    plain.sync()
    plain.push_branch(BRANCH, raised(workspace, "768Mi"), message="Raise\n", owner=OWNER)
    workspace.sync()

    pushed = workspace.push_branch(BRANCH, raised(workspace, "1Gi"), message="Raise\n", owner=OWNER)

    assert git(bare, "rev-parse", f"refs/heads/{BRANCH}").strip() == pushed.commit
    assert fake.requests_to("PATCH", f"/git/refs/heads/{BRANCH}")


def test_a_persons_commit_on_the_branch_is_never_overwritten(workspace: ApiCommitWorkspace, fake: FakeGitHub,
                                                             bare: Path) -> None:
    workspace.sync()
    first = workspace.push_branch(BRANCH, raised(workspace, "768Mi"), message="Raise\n", owner=OWNER)
    person = {"GIT_AUTHOR_NAME": "Dana Ops", "GIT_AUTHOR_EMAIL": "dana@example.com",
              "GIT_COMMITTER_NAME": "Dana Ops", "GIT_COMMITTER_EMAIL": "dana@example.com"}
    tree = git(bare, "rev-parse", f"{first.commit}^{{tree}}").strip()
    hers = git(bare, "commit-tree", tree, "-p", first.commit, "-m", "Keep 768Mi, add a comment", env=person).strip()
    git(bare, "update-ref", f"refs/heads/{BRANCH}", hers)

    with pytest.raises(NoFix) as err:
        workspace.push_branch(BRANCH, raised(workspace, "1Gi"), message="Raise\n", owner=OWNER)

    assert err.value.code == "branch_has_foreign_commits" and "dana@example.com" in err.value.message
    assert git(bare, "rev-parse", f"refs/heads/{BRANCH}").strip() == hers
    assert not fake.requests_to("PATCH") and not fake.requests_to("POST", "/git/commits")[1:]


def test_another_workloads_branch_is_refused(workspace: ApiCommitWorkspace, fake: FakeGitHub, bare: Path) -> None:
    workspace.sync()
    first = workspace.push_branch(BRANCH, raised(workspace, "768Mi"), message="Raise\n", owner="fedcba9876543210")

    with pytest.raises(PermanentError) as err:
        workspace.push_branch(BRANCH, raised(workspace, "1Gi"), message="Raise\n", owner=OWNER)

    assert err.value.code == "branch_taken" and "fedcba9876543210" in err.value.message
    assert git(bare, "rev-parse", f"refs/heads/{BRANCH}").strip() == first.commit
    assert not fake.requests_to("PATCH")


def test_an_unchanged_file_set_creates_nothing(workspace: ApiCommitWorkspace, fake: FakeGitHub) -> None:
    workspace.sync()
    with pytest.raises(PermanentError) as err:
        workspace.push_branch(BRANCH, {MANIFEST: workspace.read_text(MANIFEST)}, message="Nothing\n", owner=OWNER)
    assert err.value.code == "no_change"
    assert git_data(fake) == []


@pytest.mark.parametrize(("branch", "path"), [("main", MANIFEST), ("autofix/../main", MANIFEST),
                                              (BRANCH, "../outside.yaml"), (BRANCH, ".git/hooks/post-commit")],
                         ids=["base-branch", "dotdot-branch", "dotdot-path", "git-dir"])
def test_unsafe_branches_and_paths_are_refused_before_any_request(workspace: ApiCommitWorkspace, fake: FakeGitHub,
                                                                  branch: str, path: str) -> None:
    workspace.sync()
    with pytest.raises(PermanentError) as err:
        workspace.push_branch(branch, {path: "x: 1\n"}, message="m\n", owner=OWNER)
    assert err.value.code in ("unsafe_branch", "unsafe_path")
    assert git_data(fake) == []


def test_a_token_that_is_not_the_apps_gets_an_unsigned_commit(fake: FakeGitHub, bare: Path, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    forge = GitHubForge("acme/gitops", api_url=fake.api_url, token="a-static-token", **FAST)  # type: ignore[arg-type]
    workspace = ApiCommitWorkspace(git_workspace(bare, tmp_path), forge, author=AUTHOR)
    workspace.sync()
    with caplog.at_level("WARNING", logger="app.forges.github_commits"):
        pushed = workspace.push_branch(BRANCH, raised(workspace, "768Mi"), message="Raise\n", owner=OWNER)
    assert fake.verifications[pushed.commit]["verified"] is False
    assert [r.getMessage() for r in caplog.records] == ["github did not sign the commit"]


@pytest.mark.parametrize("message", [
    "Raise memory limit\n\nChanges 1 field(s):\n- limits: from 512Mi to 768Mi\n\nCause: oom_killed\nRisk: medium (0.57)\n",
    "Raise memory limit\n\nFound by the oom detector.  \n\n\n\nNo trailers here at all.\n",
    "One line only",
], ids=["trailer-block", "prose-last", "subject-only"])
def test_commit_message_is_what_git_commit_trailer_records(message: str, tmp_path: Path) -> None:
    """The API commit's message carries the owner exactly where `git commit --cleanup=whitespace --trailer` puts it,
    so git mode and api mode read each other's branches."""
    work = tmp_path / "w"
    work.mkdir()
    git(work, "init", "-q")
    ident = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@example.com", "GIT_COMMITTER_NAME": "a",
             "GIT_COMMITTER_EMAIL": "a@example.com"}
    git(work, "commit", "-q", "--allow-empty", "--cleanup=whitespace", "-m", message, "--trailer",
        f"Autofix-Id: {OWNER}", env=ident)
    expected = git(work, "log", "-1", "--format=%B").removesuffix("\n")  # %B adds one newline
    assert commit_message(message, OWNER) == expected
    assert trailer_values(commit_message(message, OWNER), "Autofix-Id") == [OWNER]


def test_api_commits_need_the_github_forge(tmp_path: Path, bare: Path) -> None:
    inner = git_workspace(bare, tmp_path)
    assert commit_workspace(inner, LocalForge(tmp_path / "prs"), via="git", author=AUTHOR) is inner
    with pytest.raises(ConfigError, match=r"^AUTOFIX_COMMIT_VIA: api needs the github forge"):
        commit_workspace(inner, LocalForge(tmp_path / "prs"), via="api", author=AUTHOR)
    with pytest.raises(ConfigError, match=r"repositories.yaml shop: api needs the github forge"):
        commit_workspace(inner, LocalForge(tmp_path / "prs"), via="api", author=AUTHOR,
                         setting="repositories.yaml shop")


def test_commit_via_setting_is_git_by_default_and_checked() -> None:
    assert settings_mod.load().commit_via == "git"
    assert settings_mod.load(AUTOFIX_COMMIT_VIA="api").commit_via == "api"
    with pytest.raises(ConfigError, match=r"AUTOFIX_COMMIT_VIA: Input should be 'git' or 'api'"):
        settings_mod.load(AUTOFIX_COMMIT_VIA="svn")
