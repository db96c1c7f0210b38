"""Policies as files: validated at start with file, line and reason; namespaces, owners, opt-outs honoured.

An invalid policy is checked both ways a user meets it: `autofix policy check DIR` offline, and `autofix serve`
refusing to start. Namespace protection and the manifest's own opt-out run end to end (in-process
`autofix handle` against the loopback Kubernetes API and GitHub fake): skipped, no PR.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app import policies
from app.errors import ConfigError, NoFix
from app.settings import DEFAULT_POLICY_DIR
from app.stages import change
from tests.conftest import EXAMPLES, ROOT
from tests.e2e.test_never_loop import TOKEN, handle_in_process
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

BAD = {
    "step-too-small": ("version: 1\nmemory:\n  step: 0.5   # a \"raise\" that shrinks\n  max: 16Gi\n",
                       3, "memory.step: Input should be greater than 1"),
    "typo-in-a-key": ("version: 1\n\nnamespace:\n  deny: [kube-*]\n", 3, "namespace: Extra inputs are not permitted"),
    "owner-without-namespaces": ("owners:\n  - namespaces: [shop]\n    reviewers: [alice]\n  - reviewers: [bob]\n",
                                 4, "owners.1.namespaces: Field required"),
    "bad-quantity": ("memory:\n  max: lots\n", 2, "memory.max: Value error, invalid quantity 'lots'"),
    "typo-in-a-cause": ("causes:\n  oom_killed:\n    paths: [spec.replicas]\n  oom_kiled:\n    paths: [spec.x]\n",
                        4, "causes.oom_kiled: Input should be 'oom_killed', 'image_pull_after_rollout'"),
}


def _policy_dir(tmp_path: Path, text: str) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    shutil.copy(DEFAULT_POLICY_DIR / "default.yaml", directory / "default.yaml")
    (directory / "zz-team.yaml").write_text(text)
    return directory


def _autofix(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *argv], env={**os.environ, **(env or {})}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case", list(BAD))
def test_invalid_policy_names_file_line_and_reason(tmp_path: Path, case: str) -> None:
    text, line, reason = BAD[case]
    directory = _policy_dir(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        policies.load(directory)
    assert f"{directory / 'zz-team.yaml'}:{line}: {reason}" in str(err.value)


def test_policy_check_command(tmp_path: Path) -> None:
    ok = _autofix("policy", "check", str(DEFAULT_POLICY_DIR))
    assert ok.returncode == 0 and ok.stdout.startswith("policy OK:"), ok.stderr
    directory = _policy_dir(tmp_path, BAD["step-too-small"][0])
    bad = _autofix("policy", "check", str(directory))
    assert bad.returncode == 1
    assert f"{directory / 'zz-team.yaml'}:3: memory.step: Input should be greater than 1" in bad.stderr


def test_service_refuses_to_start_with_an_invalid_policy(tmp_path: Path) -> None:
    directory = _policy_dir(tmp_path, BAD["typo-in-a-key"][0])
    proc = _autofix("serve", "--port", "0", env={"AUTOFIX_POLICY_DIR": str(directory),
                                                  "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
                                                  "AUTOFIX_FORGE": "local", "AUTOFIX_GIT_URL": str(tmp_path)})
    assert proc.returncode == 1, proc.stdout
    assert f"{directory / 'zz-team.yaml'}:3: namespace: Extra inputs are not permitted" in proc.stderr


TEAM_ONLY = "# the one file a chart's values give\nowners:\n  - namespaces: [shop]\n    reviewers: [alice]\n"


def test_a_teams_one_file_is_layered_over_the_shipped_defaults(tmp_path: Path) -> None:
    """A chart's policies.files with the team's file alone: what it leaves out comes from policies/default.yaml,
    not from the model's bare defaults (no allowed paths for any cause, the bot's namespace not denied)."""
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "team.yaml").write_text(TEAM_ONLY)
    shipped = policies.load(DEFAULT_POLICY_DIR)

    layered = policies.load(directory, defaults=DEFAULT_POLICY_DIR / "default.yaml")
    assert [(o.namespaces, o.reviewers) for o in layered.owners] == [(["shop"], ["alice"])]
    assert layered.causes == shipped.causes and layered.namespaces.deny == ["kube-*", "gitops-autofix"]
    assert layered.kinds == shipped.kinds and layered.digest != shipped.digest

    bare = policies.load(directory)  # AUTOFIX_POLICY_DEFAULTS="": the model's defaults alone
    assert bare.namespaces.deny == ["kube-*"] and bare.causes != shipped.causes


def test_a_directory_with_its_own_default_yaml_replaces_the_shipped_one(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "default.yaml").write_text("version: 1\nnamespaces:\n  deny: [kube-*, legacy]\n")
    loaded = policies.load(directory, defaults=DEFAULT_POLICY_DIR / "default.yaml")
    assert loaded.namespaces.deny == ["kube-*", "legacy"] and loaded == policies.load(directory)


def test_the_defaults_setting(tmp_path: Path) -> None:
    from app import settings

    assert settings.load().policy_base() == DEFAULT_POLICY_DIR / "default.yaml", "a source tree: its shipped file"
    assert settings.load(policy_defaults="").policy_base() is None
    with pytest.raises(ConfigError) as err:
        settings.load(policy_defaults=str(tmp_path / "gone.yaml"))
    assert "AUTOFIX_POLICY_DEFAULTS" in str(err.value) and "gone.yaml is not a file" in str(err.value)


def test_policy_check_layers_a_teams_directory_as_the_service_does(tmp_path: Path) -> None:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "team.yaml").write_text(TEAM_ONLY)
    checked = _autofix("policy", "check", str(directory))
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.startswith(f"policy OK: {directory}, over {DEFAULT_POLICY_DIR / 'default.yaml'} ")


@pytest.mark.parametrize(("namespace", "labels", "own", "why"), [
    ("kube-system", {}, None, "denied by policy"),
    ("gitops-autofix", {}, None, "denied by policy"),
    ("autofix", {}, "autofix", "the bot's own namespace"),
    ("payments", {"autofix.io/protected": "true"}, None, "labelled autofix.io/protected=true"),
    ("shop", {"autofix.io/protected": "false"}, "autofix", None),
])
def test_namespace_denial(namespace: str, labels: dict[str, str], own: str | None, why: str | None) -> None:
    denial = policies.load(DEFAULT_POLICY_DIR).namespace_denial(namespace, labels=labels, own=own)
    assert (denial is None) if why is None else (why in str(denial))


def test_owners_per_namespace() -> None:
    policy = policies.Policy.model_validate({"owners": [
        {"namespaces": ["shop", "shop-*"], "labels": ["team-shop"], "reviewers": ["alice"], "teams": ["shop-sre"]},
        {"namespaces": ["*"], "teams": ["platform"]}]})
    assert policy.owners_for("shop-staging") == (["team-shop"], ["alice"], ["shop-sre", "platform"])
    assert policy.owners_for("payments") == ([], [], ["platform"])


@pytest.mark.parametrize(("annotations", "cause", "opted_out"), [
    ({"autofix.io/ignore": "true"}, "oom_killed", True),
    ({"autofix.io/ignore": "false"}, "oom_killed", False),
    ({"autofix.io/ignore-causes": "image_pull_after_rollout, oom_killed"}, "oom_killed", True),
    ({"autofix.io/ignore-causes": "image_pull_after_rollout"}, "oom_killed", False),
])
def test_opt_out_annotation(annotations: dict[str, str], cause: str, opted_out: bool) -> None:
    document = {"kind": "Deployment", "metadata": {"name": "checkout", "annotations": annotations}}
    if opted_out:
        with pytest.raises(NoFix, match="opts out"):
            change.check_opt_out(document, cause)
    else:
        change.check_opt_out(document, cause)


# ---------------------------------------------------------------- end to end: skipped, nothing pushed


@pytest.fixture
def gh() -> Any:
    with FakeGitHub("acme/gitops", token=TOKEN) as server:
        yield server


def _demo_payload(tmp_path: Path) -> Path:
    payload = json.loads((EXAMPLES / "demo" / "alert.json").read_text())
    payload["alerts"] = payload["alerts"][:1]
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(payload))
    return path


@pytest.mark.e2e  # a whole pipeline run
def test_manifest_opt_out_in_git_is_honoured(tmp_path: Path, gh: FakeGitHub, mlflow_uri: str) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(EXAMPLES / "demo" / "repo", repo)
    manifest = repo / "apps" / "checkout" / "deployment.yaml"
    manifest.write_text(manifest.read_text().replace(
        "  labels:\n    app.kubernetes.io/name: checkout\n",
        "  annotations:\n    autofix.io/ignore-causes: oom_killed\n  labels:\n    app.kubernetes.io/name: checkout\n", 1))
    with KubeApiFake.from_snapshot(EXAMPLES / "demo" / "cluster.json") as kube:
        result = handle_in_process(tmp_path, gh, kube, mlflow_uri, payload=_demo_payload(tmp_path), repo=repo)
    assert result["outcome"] == "no_fix" and "opts out of fixes for oom_killed" in result["reason"], result
    assert gh.requests_to("POST", "/pulls") == []


@pytest.mark.e2e  # a whole pipeline run
def test_protected_namespace_is_skipped(tmp_path: Path, gh: FakeGitHub, mlflow_uri: str) -> None:
    cluster = json.loads((EXAMPLES / "demo" / "cluster.json").read_text())
    cluster["items"].append({"apiVersion": "v1", "kind": "Namespace", "metadata": {
        "name": "shop", "uid": "6f1c2d7e-4f1a-4d0e-9a51-0c3b8e2f7d10", "creationTimestamp": "2026-03-02T09:12:44Z",
        "labels": {"kubernetes.io/metadata.name": "shop", "autofix.io/protected": "true", "environment": "prod"}},
        "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps(cluster))
    with KubeApiFake.from_snapshot(snapshot) as kube:
        result = handle_in_process(tmp_path, gh, kube, mlflow_uri, payload=_demo_payload(tmp_path))
    assert result["outcome"] == "skipped", result
    assert result["reason"] == "namespace shop is labelled autofix.io/protected=true"
    assert gh.requests == [], "a protected namespace costs no call to the forge"
