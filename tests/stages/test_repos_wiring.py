"""app/wiring.py with repositories.yaml: the repositories in the order they are matched (the AUTOFIX_GIT_URL one
last, named ''), each forge built by the one function on first use (GitLab and local here: no request is made
until a PR is), each checkout under data_dir/repos/<name>; without the file, the one-entry set of old."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app import settings as settings_mod
from app.adapters.snapshot import SnapshotCluster
from app.errors import ConfigError
from app.forges.gitlab import GitLabForge
from app.forges.local import LocalForge
from app.settings import DEFAULT_POLICY_DIR
from app.wiring import build_pipeline
from tests.stages.world import DEMO

REPOSITORIES = """\
- name: shop
  url: https://gitlab.example.com/shop/deploy.git
  forge: gitlab
  gitlab: {url: "https://gitlab.example.com"}
  credentials: {token_file: TOKEN_FILE}
- name: dry
  url: /srv/git/dry.git
  match: ["github.com/acme/dry-*"]
  forge: local
"""


def _policies(tmp_path: Path, text: str) -> Path:
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    (policies / "repositories.yaml").write_text(text)
    return policies


def test_each_repository_gets_its_forge_and_checkout(tmp_path: Path) -> None:
    token = tmp_path / "gitlab-token"
    token.write_text("glpat-0123456789abcdefghij\n")
    policies = _policies(tmp_path, REPOSITORIES.replace("TOKEN_FILE", str(token)))
    settings = settings_mod.load(AUTOFIX_GIT_URL=str(tmp_path / "gitops.git"), AUTOFIX_FORGE="local",
                                 AUTOFIX_DATA_DIR=tmp_path / "data", AUTOFIX_POLICY_DIR=policies)
    pipeline = build_pipeline(settings, cluster=SnapshotCluster.from_file(DEMO / "cluster.json"))
    repos = pipeline.repos
    assert repos.names == ["shop", "dry", ""] and repos.from_file
    assert repos.match("git@gitlab.example.com:shop/deploy.git") == repos.entry("shop")
    assert repos.match("https://github.com/acme/dry-run.git") == repos.entry("dry")
    assert repos.match(str(tmp_path / "gitops.git")) == repos.entry("")
    assert isinstance(pipeline.forge, LocalForge), "the AUTOFIX_GIT_URL repository stays the default"
    shop = repos.get("shop")
    assert isinstance(shop.forge, GitLabForge) and shop.forge.project == "shop/deploy"
    assert shop.workspace.root == tmp_path / "data" / "repos" / "shop"
    assert repos.get("shop") is shop, "built once"
    assert isinstance(repos.get("dry").forge, LocalForge)


def test_without_the_file_the_one_repository_is_named_empty(tmp_path: Path) -> None:
    settings = settings_mod.load(AUTOFIX_GIT_URL=str(tmp_path / "gitops.git"), AUTOFIX_FORGE="local",
                                 AUTOFIX_DATA_DIR=tmp_path / "data")
    pipeline = build_pipeline(settings, cluster=SnapshotCluster.from_file(DEMO / "cluster.json"))
    assert pipeline.repos.names == [""] and not pipeline.repos.from_file
    assert pipeline.ledger_of("") is pipeline.ledger, "one repository: the whole ledger, as before"


def test_the_file_alone_needs_no_git_url_and_its_credentials_are_checked_at_start(tmp_path: Path) -> None:
    policies = _policies(tmp_path, REPOSITORIES.replace("TOKEN_FILE", str(tmp_path / "missing")))
    settings = settings_mod.load(AUTOFIX_FORGE="local", AUTOFIX_DATA_DIR=tmp_path / "data",
                                 AUTOFIX_POLICY_DIR=policies)
    with pytest.raises(ConfigError, match=r"^repositories.yaml: entry 'shop': credentials.token_file: cannot read "):
        build_pipeline(settings, cluster=SnapshotCluster.from_file(DEMO / "cluster.json"))
    (tmp_path / "missing").write_text("glpat-0123456789abcdefghij")
    pipeline = build_pipeline(settings, cluster=SnapshotCluster.from_file(DEMO / "cluster.json"))
    assert pipeline.repos.names == ["shop", "dry"]
    assert pipeline.repos.default.name == "shop", "no AUTOFIX_GIT_URL: the file's first is the default"
