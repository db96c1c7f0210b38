"""repositories.yaml (app/repos.py): URL normalisation and matching, the model's checks as one-line errors
naming the file, the line, the entry and the field, the choice of a repository from a workload's Argo CD / Flux
objects, and a repository's ledger rows (the PR budget stays the install's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import policies, repos
from app.adapters.store import JobStore
from app.errors import ConfigError, NoFix
from app.ports import Remediation
from app.sources.deployers.repo_urls import PatternIdentity, RepoIdentity, normalize, source_urls

SAME = [
    "https://github.com/acme/gitops.git",
    "https://github.com/acme/gitops",
    "https://github.com/acme/gitops/",
    "https://x-access-token:abc@github.com/acme/gitops.git",
    "ssh://git@github.com/acme/gitops.git",
    "ssh://git@github.com:22/acme/gitops.git",
    "git@github.com:acme/gitops.git",
    "git@GitHub.COM:acme/gitops",
    "HTTPS://GITHUB.COM/acme/gitops.git",
]


@pytest.mark.parametrize("url", SAME)
def test_every_spelling_of_one_repository_normalises_alike(url: str) -> None:
    assert normalize(url) == "github.com/acme/gitops"


@pytest.mark.parametrize("url", SAME)
def test_the_default_pattern_is_the_url_itself_in_any_spelling(url: str) -> None:
    assert PatternIdentity(("git@github.com:acme/gitops.git",)).matches(url)


@pytest.mark.parametrize(("pattern", "url", "expected"), [
    ("github.com/acme/*", "https://github.com/acme/platform.git", True),
    ("github.com/acme/*", "git@github.com:acme/shop-deploy.git", True),
    ("github.com/acme/*", "https://github.com/other/platform.git", False),
    ("github.com/acme/team-*", "https://github.com/Acme/Team-Shop.git", True),  # GitHub paths ignore case
    ("gitlab.example.com/shop/**", "ssh://git@gitlab.example.com:2222/shop/deploy/prod.git", True),
    ("https://github.com/acme/gitops.git", "https://github.com/acme/gitops-old.git", False),
    ("github.com/acme/gitops", "https://github.com/acme/gitops/extra", False),
    ("github.com/acme/*", "", False),
])
def test_patterns_match_normalised_urls(pattern: str, url: str, expected: bool) -> None:
    assert PatternIdentity((pattern,)).matches(url) is expected


def test_the_single_repository_keeps_its_identity_rules() -> None:
    identity = RepoIdentity(git_url="/srv/git/gitops.git", github_repo="acme/gitops")
    assert identity.matches("https://github.com/acme/gitops.git")  # a local mirror stands in for GitHub
    assert identity.matches("/srv/git/gitops")
    assert not identity.matches("https://github.com/acme/other.git")


def _write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "repositories.yaml").write_text(text)
    return tmp_path


GOOD = """\
- name: platform
  url: https://github.com/acme/platform-gitops.git
  credentials: {token_env: TOKEN_PLATFORM}
- name: shop
  url: git@gitlab.example.com:shop/deploy.git
  match: ["gitlab.example.com/shop/*"]
  forge: gitlab
  base: production
  gitlab: {url: https://gitlab.example.com}
  credentials: {token_file: /var/run/secrets/gitlab/token}
- name: dry
  url: /srv/git/dry.git
  forge: local
"""


def test_a_valid_file_loads_with_its_defaults(tmp_path: Path) -> None:
    loaded = repos.load(_write(tmp_path, GOOD))
    assert loaded is not None
    platform, shop, dry = loaded
    assert (platform.forge, platform.base, platform.github_repo, platform.patterns) == (
        "github", "main", "acme/platform-gitops", ("https://github.com/acme/platform-gitops.git",))
    assert (shop.gitlab_project, shop.base, shop.commit) == ("shop/deploy", "production", "git")
    assert dry.credentials is None


def test_no_file_is_no_repositories(tmp_path: Path) -> None:
    assert repos.load(tmp_path) is None


@pytest.mark.parametrize(("text", "expected"), [
    ("- name: shop\n  url: https://github.com/acme/shop.git\n  credentials: {token_env: T}\n  branch: main\n",
     "repositories.yaml:4: entry 'shop': branch: Extra inputs are not permitted"),
    ("- name: shop\n  url: https://github.com/acme/shop.git\n",
     "repositories.yaml:1: entry 'shop': (entry): credentials: required with forge: github"),
    ("- name: shop\n  url: https://github.com/acme/shop.git\n  credentials:\n    token_env: T\n    token_file: /x\n",
     "repositories.yaml:3: entry 'shop': credentials: exactly one of token_env, token_file or app "
     "(got token_env, token_file)"),
    ("- name: shop\n  url: https://github.com/acme/shop.git\n  credentials: {token_env: 'not a name'}\n",
     "entry 'shop': credentials.token_env: String should match pattern"),
    ("- name: shop\n  url: https://github.com/acme/shop.git\n  forge: bitbucket\n",
     "repositories.yaml:3: entry 'shop': forge: Input should be 'github', 'gitlab' or 'local'"),
    ("- name: a\n  url: /srv/a.git\n  forge: local\n- name: a\n  url: /srv/b.git\n  forge: local\n",
     "name 'a' is used by more than one entry"),
    ("- name: Shop Repo\n  url: /srv/a.git\n  forge: local\n",
     "repositories.yaml:1: entry 'Shop Repo': name: String should match pattern"),
    ("- url: /srv/a.git\n  forge: local\n", "repositories.yaml:1: entry #1: name: Field required"),
    ("- name: a\n  url: htps://github.com/acme/a.git\n  forge: local\n",
     "entry 'a': (entry): url: scheme 'htps' is not a git transport"),
    ("- name: a\n  url: https://git.example.com/acme/a/b/c.git\n  credentials: {token_env: T}\n",
     "entry 'a': (entry): github.repo: required (owner/name)"),
    ("- name: a\n  url: /srv/a.git\n  forge: local\n  commit: api\n",
     "entry 'a': (entry): commit: api only with forge: github"),
    ("name: a\nurl: /srv/a.git\n", "repositories.yaml: must be a list of repositories"),
    ("- name: a\n  url: [unclosed\n", "repositories.yaml:3: not valid YAML"),
])
def test_an_invalid_file_is_one_line_naming_file_line_entry_and_field(tmp_path: Path, text: str,
                                                                     expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        repos.load(_write(tmp_path, text))
    message = str(err.value)
    assert message.startswith(f"AUTOFIX_POLICY_DIR: {tmp_path}/repositories.yaml"), message
    assert expected in message and "\n" not in message, message


def test_the_policy_loader_skips_repositories_and_clusters(tmp_path: Path) -> None:
    _write(tmp_path, GOOD)
    (tmp_path / "clusters.yaml").write_text("clusters:\n  - name: eu\n")
    (tmp_path / "team.yaml").write_text("limits:\n  prs_per_hour: 3\n")
    assert policies.load(tmp_path).limits.prs_per_hour == 3


def test_credentials_are_names_read_at_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("first\n")
    text = f"- name: a\n  url: https://github.com/acme/a.git\n  credentials: {{token_file: {token}}}\n" \
           "- name: b\n  url: https://github.com/acme/b.git\n  credentials: {token_env: AUTOFIX_TEST_TOKEN_B}\n"
    a, b = repos.load(_write(tmp_path, text)) or []
    assert a.token() == "first"
    token.write_text("rotated\n")  # a rotated Secret: the file is read again
    assert a.token() == "rotated"
    monkeypatch.delenv("AUTOFIX_TEST_TOKEN_B", raising=False)
    with pytest.raises(ConfigError, match=r"^repositories.yaml: entry 'b': credentials.token_env: variable "
                                          r"AUTOFIX_TEST_TOKEN_B is not set$"):
        b.check_credentials()
    monkeypatch.setenv("AUTOFIX_TEST_TOKEN_B", "value")
    assert b.token() == "value"
    token.unlink()
    with pytest.raises(ConfigError, match="entry 'a': credentials.token_file: cannot read"):
        a.check_credentials()


def _app(name: str, url: str) -> dict[str, object]:
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": name},
            "spec": {"source": {"repoURL": url, "path": "apps/x"}}}


def _set(tmp_path: Path) -> repos.RepoSet:
    text = ("- name: platform\n  url: https://github.com/acme/platform.git\n  forge: local\n"
            "- name: shop\n  url: git@github.com:acme/shop.git\n  match: ['github.com/acme/shop*']\n  forge: local\n")
    entries = [repos.entry_of(c) for c in repos.load(_write(tmp_path, text)) or []]
    return repos.RepoSet(entries, from_file=True)


def test_the_workloads_gitops_objects_choose_the_repository(tmp_path: Path) -> None:
    chosen = _set(tmp_path)
    assert chosen.select([_app("a", "git@github.com:acme/platform.git")], workload="Deployment/a/a").name == "platform"
    assert chosen.select([_app("b", "https://github.com/acme/shop-prod")], workload="Deployment/b/b").name == "shop"
    flux = [{"kind": "Kustomization", "metadata": {"name": "apps"}},
            {"kind": "GitRepository", "metadata": {"name": "shop"}, "spec": {"url": "ssh://git@github.com/acme/shop"}}]
    assert chosen.select(flux, workload="Deployment/c/c").name == "shop"
    assert chosen.select([], workload="Deployment/d/d").name == "platform", "no GitOps object: the default"


def test_a_foreign_repository_is_no_fix_naming_it(tmp_path: Path) -> None:
    with pytest.raises(NoFix) as err:
        _set(tmp_path).select([_app("legacy", "https://github.com/other/legacy.git")], workload="Deployment/l/legacy")
    assert err.value.code == "foreign_repo"
    assert err.value.message == ("Deployment/l/legacy is deployed by Application legacy from another repository "
                                 "(https://github.com/other/legacy.git), not a configured GitOps repo "
                                 "(repositories.yaml)")


def test_sources_from_two_configured_repositories_are_not_guessed(tmp_path: Path) -> None:
    app = {"kind": "Application", "metadata": {"name": "x"}, "spec": {"sources": [
        {"repoURL": "https://github.com/acme/platform.git", "path": "apps/x"},
        {"repoURL": "https://github.com/acme/shop.git", "ref": "values"},
        {"repoURL": "https://charts.example.com", "chart": "x"}]}}
    assert [u for _, u in source_urls([app])] == ["https://github.com/acme/platform.git",
                                                 "https://github.com/acme/shop.git"]
    with pytest.raises(NoFix, match="several configured repositories \\(platform, shop\\)"):
        _set(tmp_path).select([app], workload="Deployment/x/x")


def _row(number: int, *, at: float, branch: str = "autofix/shop/checkout/oom-killed") -> Remediation:
    return Remediation(workload="Deployment/shop/checkout", cause="oom_killed", branch=branch, pr_number=number,
                       pr_url=f"https://example/pull/{number}", state="open", opened_at=at)


def test_a_repositorys_ledger_reads_its_rows_and_the_budget_counts_all(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.db")
    try:
        platform, shop = repos.RepoLedger(store, "platform"), repos.RepoLedger(store, "shop")
        assert platform.is_empty() and shop.is_empty()
        platform.record(_row(1, at=1000.0))
        shop.record(_row(1, at=2000.0))  # the same number in another repository: another PR
        assert [(r.repo, r.pr_number) for r in store.entries()] == [("platform", 1), ("shop", 1)]
        assert [r.opened_at for r in shop.entries(branch="autofix/shop/checkout/oom-killed")] == [2000.0]
        assert not shop.is_empty()
        assert shop.opened_since(0.0) == 2, "the PR budget is the install's"
        assert repos.install_ledger(shop) is store
    finally:
        store.close()
