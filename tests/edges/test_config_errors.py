"""Configuration mistakes a new user makes: `autofix handle` and `autofix serve` exit 1 with one line on stderr
that names the variable (or the file) and what would be right, never a traceback (serve before it binds its
port); a decided run exits 0, a failed one 3."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES, ROOT

# Each case starts `autofix` in a new process (what a user runs): the slow part, so every case is e2e.
pytestmark = pytest.mark.e2e
DEMO = EXAMPLES / "demo"


def handle(tmp_path: Path, payload: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {**os.environ, "AUTOFIX_DATA_DIR": str(tmp_path / "data"), "AUTOFIX_FORGE": "local",
            "AUTOFIX_GIT_URL": str(tmp_path), "AUTOFIX_GITHUB_REPO": "acme/gitops"}
    return subprocess.run([sys.executable, "-m", "app.cli", "handle", str(payload)], env={**base, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("MLFLOW_TRACKING_URI", "bogus://nowhere", "not one MLflow stores runs in"),
    ("AUTOFIX_GIT_URL", "htps://github.com/acme/gitops.git", "'htps' is not a git transport"),
    ("KUBECONFIG", "/nonexistent/kubeconfig", "cannot read /nonexistent/kubeconfig"),
], ids=["tracking-uri-scheme", "git-url-scheme", "kubeconfig-missing"])
def test_a_wrong_variable_is_one_line_naming_it(tmp_path: Path, variable: str, value: str, says: str) -> None:
    line = one_line(handle(tmp_path, DEMO / "alert.json", **{variable: value}))
    assert line.startswith(f"autofix: invalid configuration: {variable}: ") and says in line, line


def test_a_kubeconfig_that_is_not_yaml_is_one_line(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nclusters: [\n  - name: {unclosed\n")
    line = one_line(handle(tmp_path, DEMO / "alert.json", KUBECONFIG=str(broken)))
    assert "KUBECONFIG" in line and "is not a kubeconfig" in line, line


@pytest.mark.parametrize(("content", "says"), [
    (None, "cannot read the payload: No such file or directory"),
    ("this is not json", "not a valid Alertmanager webhook payload"),
], ids=["missing-file", "not-json"])
def test_a_payload_file_that_is_missing_or_not_json_is_one_line(tmp_path: Path, content: str | None,
                                                                  says: str) -> None:
    payload = tmp_path / "nope.json"
    if content is not None:
        payload.write_text(content)
    line = one_line(handle(tmp_path, payload))
    assert str(payload) in line and says in line, line


# ---- policy directory and forge settings, through both commands that start the pipeline --------------------

TEAM_POLICY_UTF16 = "memory:\n  max: 16Gi\n".encode("utf-16")  # saved by an editor as "Unicode": not UTF-8
# An unclosed flow sequence: PyYAML's own message spans five lines with a caret.
TEAM_POLICY_UNCLOSED = "namespaces:\n  deny: [kube-*, shop\nmemory:\n  max: 16Gi\n"


COMMANDS = [["handle", str(DEMO / "alert.json")],
            # serve gets port 0: had it accepted the configuration it would bind and serve until the timeout.
            pytest.param(["serve", "--port", "0"], marks=pytest.mark.e2e, id="serve")]


def start(tmp_path: Path, argv: list[str], **env: str | None) -> subprocess.CompletedProcess[str]:
    """`autofix <argv>` with a local forge and a missing cluster unless ``env`` says otherwise; None unsets."""
    base: dict[str, str | None] = {**os.environ, "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
                                   "AUTOFIX_FORGE": "local", "AUTOFIX_GIT_URL": str(tmp_path),
                                   "AUTOFIX_GITHUB_REPO": "acme/gitops", **env}
    environ = {k: v for k, v in base.items() if v is not None}
    return subprocess.run([sys.executable, "-m", "app.cli", *argv], env=environ, cwd=ROOT, capture_output=True,
                          text=True, timeout=60)


def policy_dir(tmp_path: Path, team: str | bytes) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    (directory / "default.yaml").write_text((ROOT / "policies" / "default.yaml").read_text())
    path = directory / "zz-team.yaml"
    path.write_bytes(team if isinstance(team, bytes) else team.encode())
    return directory


@pytest.mark.timeout(90)
@pytest.mark.parametrize("argv", COMMANDS, ids=["handle", "serve"])
@pytest.mark.parametrize(("setup", "says"), [
    (lambda d: d / "nope", ["AUTOFIX_POLICY_DIR: ", "/nope does not exist", "directory of policy *.yaml"]),
    (lambda d: (d / "policy.yaml").write_text("version: 1\n") and d / "policy.yaml",
     ["AUTOFIX_POLICY_DIR: ", "/policy.yaml is not a directory", "directory of policy *.yaml"]),
    (lambda d: policy_dir(d, TEAM_POLICY_UNCLOSED),
     ["AUTOFIX_POLICY_DIR: ", "zz-team.yaml:3: not valid YAML: while parsing a flow sequence (from line 2), "
      "expected ',' or ']'"]),
    (lambda d: policy_dir(d, "version: 1\nmemory:\n  step: 0.5\n"),
     ["AUTOFIX_POLICY_DIR: ", "zz-team.yaml:3: memory.step: Input should be greater than 1"]),
    (lambda d: policy_dir(d, TEAM_POLICY_UTF16), ["AUTOFIX_POLICY_DIR: ", "zz-team.yaml: not a policy file "
                                                  "(not UTF-8 text)"]),
], ids=["missing", "a-file", "invalid-yaml", "invalid-value", "not-utf8"])
def test_a_wrong_policy_directory_is_one_line_naming_it(tmp_path: Path, argv: list[str], setup: Any,
                                                        says: list[str]) -> None:
    line = one_line(start(tmp_path, argv, AUTOFIX_POLICY_DIR=str(setup(tmp_path))))
    assert line.startswith("autofix: AUTOFIX_POLICY_DIR: ") and all(s in line for s in says), line


def der_key(tmp_path: Path) -> Path:
    """A real RSA key in DER (binary), as `openssl rsa -outform der` writes it: not the PEM GitHub hands out."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "app.der"
    path.write_bytes(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    return path


GITHUB = {"AUTOFIX_FORGE": "github", "GITHUB_TOKEN": "ghp_0123456789abcdefghijklmnopqrstuvwxyz"}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("argv", COMMANDS, ids=["handle", "serve"])
@pytest.mark.parametrize(("env", "says"), [
    ({**GITHUB, "AUTOFIX_GITHUB_REPO": None}, ["AUTOFIX_GITHUB_REPO", "required with the github forge"]),
    ({**GITHUB, "GITHUB_TOKEN": None}, ["GITHUB_TOKEN", "AUTOFIX_GITHUB_APP_ID", "required with the github forge"]),
    ({**GITHUB, "GITHUB_TOKEN": ""}, ["GITHUB_TOKEN", "required with the github forge"]),
    ({**GITHUB, "AUTOFIX_GITHUB_REPO": "https://github.com/acme/gitops"},
     ["invalid configuration: AUTOFIX_GITHUB_REPO: must look like owner/name"]),
    ({**GITHUB, "GITHUB_TOKEN": None, "AUTOFIX_GITHUB_APP_ID": "123456"},
     ["AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE or AUTOFIX_GITHUB_APP_PRIVATE_KEY: required with AUTOFIX_GITHUB_APP_ID"]),
    ({**GITHUB, "AUTOFIX_GITHUB_APP_ID": "123456", "AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE": "/nonexistent/app.pem"},
     ["AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE: cannot read /nonexistent/app.pem: No such file or directory"]),
    ({**GITHUB, "AUTOFIX_GITHUB_APP_ID": "123456", "AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE": "{der}"},
     ["AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE: ", "app.der is not a PEM private key", "BEGIN RSA PRIVATE KEY"]),
], ids=["no-repo", "no-token", "empty-token", "repo-is-a-url", "app-without-key", "key-file-missing",
        "key-file-binary"])
def test_wrong_forge_settings_are_one_line_naming_the_variable(tmp_path: Path, argv: list[str],
                                                               env: dict[str, str | None], says: list[str]) -> None:
    if "{der}" in env.values():
        env = {k: str(der_key(tmp_path)) if v == "{der}" else v for k, v in env.items()}
    line = one_line(start(tmp_path, argv, **env))
    assert line.startswith("autofix: ") and all(s in line for s in says), line


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_exit_status_is_0_when_decided_and_3_when_a_result_failed(tmp_path: Path) -> None:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(DEMO / "repo", bare)
    argv = ["--snapshot", str(DEMO / "cluster.json")]
    env = {**os.environ, "AUTOFIX_DATA_DIR": str(tmp_path / "data"), "AUTOFIX_FORGE": "local",
           "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    decided = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(DEMO / "alert.json"), *argv], env=env,
                             cwd=ROOT, capture_output=True, text=True, timeout=100)
    assert decided.returncode == 0, decided.stderr
    assert {r["outcome"] for r in json.loads(decided.stdout)["results"]} == {"pr_opened", "duplicate"}
    # The base branch is gone: the workspace cannot sync, so the job ends failed (not a configuration error).
    subprocess.run(["git", "branch", "-m", "main", "renamed"], cwd=bare, check=True, capture_output=True, timeout=30)
    (tmp_path / "data" / "prs").rename(tmp_path / "prs-before")
    failed = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(DEMO / "alert.json"), *argv],
                            env={**env, "AUTOFIX_DATA_DIR": str(tmp_path / "data2")}, cwd=ROOT, capture_output=True,
                            text=True, timeout=100)
    outcomes = {r["outcome"] for r in json.loads(failed.stdout)["results"]}
    assert "failed" in outcomes, failed.stdout
    assert failed.returncode == 3, (failed.returncode, failed.stderr)
