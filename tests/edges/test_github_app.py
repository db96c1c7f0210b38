"""GitHub App authentication: the real PyGithub signs a JWT with a real RSA key, the loopback GitHub fake
verifies it, mints installation tokens, and the bot uses them for the API and for git over https."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app import settings as settings_mod
from app.adapters.workspace import GitWorkspace
from app.errors import ConfigError, PermanentError
from app.forges.github import AppCredentials, GitHubForge
from app.wiring import build_forge
from tests.fakes.github_api import FakeApp, FakeGitHub

APP_ID = 123456
INSTALLATION = 4242
FAST = {"write_spacing": 0.0, "request_spacing": 0.0, "backoff": 0.01, "max_wait": 2.0}


@pytest.fixture
def fake(key_pair: tuple[str, str]) -> Iterator[FakeGitHub]:
    app = FakeApp(app_id=APP_ID, public_key_pem=key_pair[1], installation_id=INSTALLATION)
    with FakeGitHub("acme/gitops", token="not-this-one", app=app) as server:
        yield server


def app_forge(fake: FakeGitHub, private: str, installation: int | None = INSTALLATION) -> GitHubForge:
    creds = AppCredentials(app_id=APP_ID, private_key=private, installation_id=installation)
    return GitHubForge("acme/gitops", api_url=fake.api_url, app=creds, **FAST)  # type: ignore[arg-type]


def test_pr_is_opened_with_an_installation_token(fake: FakeGitHub, key_pair: tuple[str, str]) -> None:
    forge = app_forge(fake, key_pair[0])
    pr = forge.open_pr(branch="autofix/shop/checkout/oom-killed", base="main", title="Raise memory",
                       body="body", labels=["autofix"])

    assert pr.number == 1
    [mint] = fake.requests_to("POST", f"/app/installations/{INSTALLATION}/access_tokens")
    assert mint.headers["Authorization"].startswith("Bearer ey")  # the App's JWT, not a token
    [token] = fake.app.tokens if fake.app else []
    assert token.startswith("ghs_")
    [create] = fake.requests_to("POST", "/pulls")
    assert create.headers["Authorization"] == f"token {token}"


def test_installation_is_looked_up_when_not_configured(fake: FakeGitHub, key_pair: tuple[str, str]) -> None:
    forge = app_forge(fake, key_pair[0], installation=None)
    assert forge.repo_permissions()["push"] is True
    assert len(fake.requests_to("GET", "/repos/acme/gitops/installation")) == 1


def test_token_is_renewed_before_it_expires(fake: FakeGitHub, key_pair: tuple[str, str]) -> None:
    assert fake.app is not None
    forge = app_forge(fake, key_pair[0])
    first = forge.current_token()
    assert forge.current_token() == first  # an hour left: reused
    fake.app.token_ttl = 10.0  # PyGithub renews a token with less than 20 s left
    forge._auth._AppInstallationAuth__installation_authorization = None  # as if the hour had passed
    second = forge.current_token()
    third = forge.current_token()
    assert len({first, second, third}) == 3
    assert len(fake.requests_to("POST", "/access_tokens")) == 3


def test_git_over_https_sends_a_fresh_installation_token(fake: FakeGitHub, key_pair: tuple[str, str],
                                                         tmp_path: Path) -> None:
    forge = app_forge(fake, key_pair[0])
    workspace = GitWorkspace(f"{fake.api_url}/acme/gitops.git", base="main", checkout=tmp_path / "repo",
                             author="bot <bot@example.com>", auth_header=forge.auth_header)
    with pytest.raises(PermanentError):  # the fake serves no git: what matters is the header git sent
        workspace.sync()
    git_requests = [r for r in fake.requests if r.path.startswith("/acme/gitops.git/")]
    assert git_requests, "git never reached the server"
    [token] = fake.app.tokens if fake.app else []
    sent = git_requests[0].headers["Authorization"]
    assert base64.b64decode(sent.removeprefix("Basic ")).decode() == f"x-access-token:{token}"
    assert token not in (tmp_path / "repo" / ".git" / "config").read_text()


def test_wrong_key_is_refused(fake: FakeGitHub) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()).decode()
    with pytest.raises(ConfigError, match="not installed"):
        app_forge(fake, other, installation=None)


def test_settings_read_the_key_from_a_file(fake: FakeGitHub, key_pair: tuple[str, str], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    key_file = tmp_path / "private-key.pem"
    key_file.write_text(key_pair[0])
    for name, value in {"AUTOFIX_GITHUB_REPO": "acme/gitops", "AUTOFIX_GITHUB_API_URL": fake.api_url,
                        "AUTOFIX_GITHUB_APP_ID": str(APP_ID), "AUTOFIX_GITHUB_APP_INSTALLATION_ID": str(INSTALLATION),
                        "AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE": str(key_file), "AUTOFIX_DATA_DIR": str(tmp_path)}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    forge, header = build_forge(settings_mod.load())
    assert header().startswith("Authorization: Basic ")
    assert fake.app is not None and len(fake.app.tokens) == 1
    assert forge.find_open_pr("autofix/shop/checkout/oom-killed") is None


def test_missing_key_names_the_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOFIX_GITHUB_APP_ID", str(APP_ID))
    monkeypatch.setenv("AUTOFIX_GITHUB_REPO", "acme/gitops")
    monkeypatch.delenv("AUTOFIX_GITHUB_APP_PRIVATE_KEY", raising=False)
    monkeypatch.delenv("AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE", raising=False)
    with pytest.raises(ConfigError, match="AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE"):
        build_forge(settings_mod.load(AUTOFIX_DATA_DIR=str(tmp_path)))
