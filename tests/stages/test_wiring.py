"""app/wiring.py: typed Settings -> the Pipeline, and the settings it reads (POD_NAMESPACE from the downward API)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import settings as settings_mod
from app.adapters.snapshot import SnapshotCluster
from app.errors import ConfigError
from app.forges.local import LocalForge
from app.wiring import build_advisor, build_forge, build_pipeline
from tests.stages.world import DEMO, World


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("gitops-autofix", "gitops-autofix", id="namespace"),
    pytest.param("", None, id="empty-is-unset"),
])
def test_pod_namespace_comes_from_the_downward_api_variable(monkeypatch: pytest.MonkeyPatch, value: str,
                                                           expected: str | None) -> None:
    monkeypatch.setenv("POD_NAMESPACE", value)
    assert settings_mod.load().pod_namespace == expected


@pytest.mark.parametrize("value", ["Gitops_Autofix", "-x", "a" * 64, "ns/../x"])
def test_a_pod_namespace_that_is_no_namespace_name_stops_the_start(monkeypatch: pytest.MonkeyPatch,
                                                                  value: str) -> None:
    monkeypatch.setenv("POD_NAMESPACE", value)
    with pytest.raises(ConfigError, match="POD_NAMESPACE: .*Kubernetes namespace name"):
        settings_mod.load()


def test_pipeline_is_wired_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "gitops-autofix")
    settings = settings_mod.load(AUTOFIX_GIT_URL=str(tmp_path / "gitops.git"), AUTOFIX_FORGE="local",
                                 AUTOFIX_DATA_DIR=tmp_path / "data")
    pipeline = build_pipeline(settings, cluster=SnapshotCluster.from_file(DEMO / "cluster.json"))
    assert pipeline.own_namespace == "gitops-autofix"
    assert isinstance(pipeline.forge, LocalForge)
    assert pipeline.advisor is None, "no OPENAI_API_KEY: deterministic only"
    assert (tmp_path / "data").is_dir()


def test_missing_git_url_and_forge_credentials_are_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AUTOFIX_GIT_URL: required"):
        build_pipeline(settings_mod.load(AUTOFIX_FORGE="local", AUTOFIX_DATA_DIR=tmp_path))
    with pytest.raises(ConfigError, match="AUTOFIX_GITHUB_REPO and GITHUB_TOKEN"):
        build_forge(settings_mod.load(AUTOFIX_GITHUB_REPO="acme/gitops", AUTOFIX_DATA_DIR=tmp_path))


def test_the_model_is_consulted_only_with_a_key_and_the_policys_consent(world: World) -> None:
    with_key = settings_mod.load(OPENAI_API_KEY="sk-test-0123456789abcdefghij", OPENAI_BASE_URL="http://127.0.0.1:9/v1")
    off = world.policy.model_copy(update={"llm": world.policy.llm.model_copy(update={"enabled": False})})
    assert build_advisor(settings_mod.load(), world.policy) is None
    assert build_advisor(with_key, off) is None
    advisor = build_advisor(with_key, world.policy)
    assert advisor is not None and advisor.model == "gpt-4o-mini"


def test_the_bot_never_touches_its_own_namespace(world: World) -> None:
    incident = world.incident(namespace="shop")
    outcome = world.pipeline(own_namespace="shop").handle(incident)
    assert (outcome.outcome, outcome.reason) == ("skipped", "namespace shop is the bot's own namespace")
    assert world.opened() == []
