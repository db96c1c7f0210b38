"""`autofix dashboard sync` with only repositories.yaml (no AUTOFIX_GIT_URL): the dashboard issue is kept in the
entry marked ``dashboard: true``, else in the file's first entry. Two repositories on the loopback GitHub and GitLab
fakes; the issue must reach the one chosen and nothing the other."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app import cli, repos
from app.errors import ConfigError
from app.settings import DEFAULT_POLICY_DIR
from tests.fakes.github_api import FakeGitHub
from tests.fakes.gitlab_api import FakeGitLab

pytestmark = pytest.mark.timeout(60)

GH_TOKEN = "ghs_dashboard_0123456789abcdefghijklm"
GL_TOKEN = "glpat-dashboard-0123456789abc"


def _setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gh: FakeGitHub, gl: FakeGitLab, *,
           flag: str | None) -> None:
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    (policies / "repositories.yaml").write_text(f"""\
- name: platform
  url: {tmp_path / 'platform.git'}
  forge: github
  github: {{repo: acme/platform-gitops, api_url: "{gh.api_url}"}}
  credentials: {{token_env: AUTOFIX_TEST_PLATFORM_TOKEN}}
{'  dashboard: true' if flag == 'platform' else ''}
- name: shop
  url: {tmp_path / 'shop.git'}
  forge: gitlab
  gitlab: {{url: "{gl.url}", project: shop/deploy}}
  credentials: {{token_env: AUTOFIX_TEST_SHOP_TOKEN}}
{'  dashboard: true' if flag == 'shop' else ''}
""", encoding="utf-8")
    for key in ("AUTOFIX_GIT_URL", "AUTOFIX_GITHUB_REPO", "AUTOFIX_FORGE", "GITHUB_TOKEN", "GITLAB_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    for key, value in {"AUTOFIX_POLICY_DIR": str(policies), "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
                       "AUTOFIX_TEST_PLATFORM_TOKEN": GH_TOKEN, "AUTOFIX_TEST_SHOP_TOKEN": GL_TOKEN,
                       "AUTOFIX_GITHUB_WRITE_SPACING": "0", "AUTOFIX_GITLAB_WRITE_SPACING": "0"}.items():
        monkeypatch.setenv(key, value)


def test_dashboard_issue_goes_to_the_entry_marked_dashboard(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    with FakeGitHub("acme/platform-gitops", token=GH_TOKEN) as gh, FakeGitLab("shop/deploy", token=GL_TOKEN) as gl:
        _setup(monkeypatch, tmp_path, gh, gl, flag="shop")
        assert cli.main(["dashboard", "sync"]) == 0
        out = capsys.readouterr().out
        assert list(gl.issues) == [1], out
        assert gl.issues[1]["title"] == "GitOps Autofix Dashboard"
        assert "https://gitlab.example/shop/deploy/-/issues/1" in out and "created" in out
        assert not gh.issues and not [r for r in gh.requests if "/issues" in r.path]


def test_dashboard_issue_goes_to_the_first_entry_without_a_flag(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    with FakeGitHub("acme/platform-gitops", token=GH_TOKEN) as gh, FakeGitLab("shop/deploy", token=GL_TOKEN) as gl:
        _setup(monkeypatch, tmp_path, gh, gl, flag=None)
        assert cli.main(["dashboard", "sync"]) == 0
        assert "created" in capsys.readouterr().out
        assert [i["title"] for i in gh.issues.values()] == ["GitOps Autofix Dashboard"]
        assert not gl.issues and not gl.requests


def test_dashboard_on_two_entries_is_refused_naming_them(tmp_path: Path) -> None:
    (tmp_path / "repositories.yaml").write_text(
        "- name: a\n  url: /srv/a.git\n  forge: local\n  dashboard: true\n"
        "- name: b\n  url: /srv/b.git\n  forge: local\n  dashboard: true\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"dashboard: true on more than one entry \(a, b\)"):
        repos.load(tmp_path)


def test_repo_set_dashboard_prefers_the_flag_over_the_env_repository(tmp_path: Path) -> None:
    (tmp_path / "repositories.yaml").write_text(
        "- name: a\n  url: /srv/a.git\n  forge: local\n- name: b\n  url: /srv/b.git\n  forge: local\n"
        "  dashboard: true\n", encoding="utf-8")
    flagged = [repos.entry_of(c) for c in repos.load(tmp_path) or []]
    env = repos.env_entry("/srv/env.git", github_repo="acme/env", base="main")
    assert repos.RepoSet([*flagged, env], from_file=True).dashboard.name == "b"
    plain = [repos.entry_of(c.model_copy(update={"dashboard": False})) for c in repos.load(tmp_path) or []]
    assert repos.RepoSet([*plain, env], from_file=True).dashboard.name == repos.DEFAULT  # AUTOFIX_GIT_URL's
    assert repos.RepoSet(plain, from_file=True).dashboard.name == "a"  # the file's first


@pytest.mark.parametrize(("flag", "kind"), [("shop", "GitLabForge"), (None, "GitHubForge")])
def test_the_service_keeps_the_dashboard_where_dashboard_sync_does(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                   flag: str | None, kind: str) -> None:
    """`autofix serve`'s keeper gets the same board as `dashboard sync`: the flagged entry's forge, else the first."""
    from app import main, settings
    from app.adapters.snapshot import SnapshotCluster
    from app.wiring import build_handler

    with FakeGitHub("acme/platform-gitops", token=GH_TOKEN) as gh, FakeGitLab("shop/deploy", token=GL_TOKEN) as gl:
        _setup(monkeypatch, tmp_path, gh, gl, flag=flag)
        board = main._board_forge(build_handler(settings.load(), cluster=SnapshotCluster([])))
        assert type(board).__name__ == kind and hasattr(board, "find_issue")
