"""`autofix doctor` checks every repository of repositories.yaml: ``repo <name> git`` (the base branch asked of the
remote with git ls-remote and the entry's credentials) and ``repo <name> forge`` (the token's permissions there, as
the ``forge`` row checks AUTOFIX_GIT_URL's). Local bare repositories and the loopback GitHub and GitLab fakes; an
unreachable repository fails naming it, and the others still get their rows."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app import doctor
from app import settings as settings_mod
from app.demo import seed_bare_repo
from app.settings import DEFAULT_POLICY_DIR
from tests.conftest import EXAMPLES
from tests.e2e.test_e2e_handle import git
from tests.fakes.github_api import FakeGitHub
from tests.fakes.gitlab_api import FakeGitLab

pytestmark = pytest.mark.timeout(60)

GH_TOKEN = "ghs_doctor_repos_0123456789abcdefghij"
GL_TOKEN = "glpat-doctor-repos-0123456789"


def configure(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, gh: FakeGitHub, gl: FakeGitLab) -> dict[str, Path]:
    bares = {name: tmp_path / f"{name}.git" for name in ("shop", "billing")}
    for bare in bares.values():
        seed_bare_repo(EXAMPLES / "demo" / "repo", bare)
    bares["legacy"] = tmp_path / "gone" / "legacy.git"  # never created: nothing answers there
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    (policies / "repositories.yaml").write_text(f"""\
- name: shop
  url: {bares['shop']}
  forge: github
  github: {{repo: acme/gitops, api_url: "{gh.api_url}"}}
  credentials: {{token_env: AUTOFIX_TEST_SHOP_TOKEN}}
- name: billing
  url: {bares['billing']}
  forge: gitlab
  gitlab: {{url: "{gl.url}", project: acme/billing-gitops}}
  credentials: {{token_file: {tmp_path / 'billing-token'}}}
- name: legacy
  url: {bares['legacy']}
  forge: local
""", encoding="utf-8")
    (tmp_path / "billing-token").write_text(GL_TOKEN + "\n", encoding="utf-8")
    for key in ("AUTOFIX_GIT_URL", "AUTOFIX_GITHUB_REPO", "AUTOFIX_FORGE", "GITHUB_TOKEN", "GITLAB_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AUTOFIX_POLICY_DIR", str(policies))
    monkeypatch.setenv("AUTOFIX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AUTOFIX_TEST_SHOP_TOKEN", GH_TOKEN)
    return bares


def by_name(checks: list[doctor.Check]) -> dict[str, tuple[str, str]]:
    return {c.name: (c.status, c.detail) for c in checks}


def test_every_repository_gets_a_git_and_a_forge_row(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with FakeGitHub("acme/gitops", token=GH_TOKEN) as gh, FakeGitLab("acme/billing-gitops", token=GL_TOKEN) as gl:
        bares = configure(monkeypatch, tmp_path, gh, gl)
        gitlab_url = gl.url
        configured, checks = doctor.repository_rows(settings_mod.load())
    assert configured is not None and [c.name for c in configured] == ["shop", "billing", "legacy"]
    rows = by_name(checks)
    assert list(rows) == ["repo shop git", "repo shop forge", "repo billing git", "repo billing forge",
                          "repo legacy git", "repo legacy forge"]
    main = git("rev-parse", "main", cwd=bares["shop"]).strip()
    assert rows["repo shop git"] == ("ok", f"{bares['shop']}: main at {main[:12]} (ls-remote)")
    assert rows["repo shop forge"] == ("ok", "token can push to acme/gitops")
    assert rows["repo billing git"][0] == "ok"
    assert rows["repo billing forge"] == ("ok", "GitLab token can push and open merge requests on "
                                                f"acme/billing-gitops at {gitlab_url}")
    # The unreachable repository fails, naming itself; its local forge has nothing to check.
    status, detail = rows["repo legacy git"]
    assert status == "fail" and detail.startswith(f"repository 'legacy' unreachable at {bares['legacy']}: git: "), \
        detail
    assert rows["repo legacy forge"][0] == "skip"
    # The forges were asked with each entry's own token.
    assert {r.headers.get("PRIVATE-TOKEN") for r in gl.requests} == {GL_TOKEN}
    assert {r.headers.get("Authorization") for r in gh.requests} == {f"token {GH_TOKEN}"}


def test_forge_without_push_and_a_missing_base_fail_naming_the_repository(monkeypatch: pytest.MonkeyPatch,
                                                                          tmp_path: Path) -> None:
    with FakeGitHub("acme/gitops", token=GH_TOKEN) as gh, \
            FakeGitLab("acme/billing-gitops", token=GL_TOKEN, access_level=20) as gl:  # Reporter: no push
        bares = configure(monkeypatch, tmp_path, gh, gl)
        gh.push_allowed = False
        git("branch", "-m", "main", "trunk", cwd=bares["shop"])  # the base branch is gone
        _, checks = doctor.repository_rows(settings_mod.load())
    rows = by_name(checks)
    assert rows["repo shop git"] == ("fail", f"repository 'shop': {bares['shop']} has no branch main (base)")
    status, detail = rows["repo shop forge"]
    assert status == "fail" and detail.startswith("repository 'shop': token cannot push to acme/gitops"), detail
    status, detail = rows["repo billing forge"]
    assert status == "fail" and detail.startswith("repository 'billing': GitLab token cannot push"), detail


def test_without_git_url_only_the_repositories_are_checked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with FakeGitHub("acme/gitops", token=GH_TOKEN) as gh, FakeGitLab("acme/billing-gitops", token=GL_TOKEN) as gl:
        configure(monkeypatch, tmp_path, gh, gl)
        names = [c.name for c in doctor.run(settings_mod.load())]
    assert "forge" not in names and "git clone and push" not in names, names  # no AUTOFIX_GIT_URL to fail on
    assert names.index("repo shop git") < names.index("mlflow")
