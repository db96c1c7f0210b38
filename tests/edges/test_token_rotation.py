"""A repositories.yaml token named by ``token_file`` (a mounted Secret) is read at use: once the file is rotated the
next request to the forge, and the next git auth header, carry the new token, with no restart. The forges are built
as the service builds them (ForgeSpec.of_entry + make_forge) against the loopback GitHub and GitLab fakes, and the
file is rotated as the kubelet does it (a new file renamed over the old one)."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from app import repos
from app.wiring import ForgeSpec, make_forge
from tests.fakes.github_api import FakeGitHub
from tests.fakes.gitlab_api import FakeGitLab

pytestmark = pytest.mark.timeout(60)

OLD = "ghs_old_token_0123456789abcdefghijklm"
NEW = "ghs_new_token_9876543210zyxwvutsrqpon"


def rotate(path: Path, value: str) -> None:
    staged = path.with_name(f".{path.name}.new")
    staged.write_text(value + "\n", encoding="utf-8")
    os.replace(staged, path)  # atomic, as a Secret volume's update


def entry(tmp_path: Path, *, forge: str, api_url: str) -> tuple[repos.RepoConfig, Path]:
    secret = tmp_path / "secret" / "token"
    secret.parent.mkdir()
    secret.write_text(OLD + "\n", encoding="utf-8")
    section = {"github": {"repo": "acme/gitops", "api_url": api_url}} if forge == "github" else \
        {"gitlab": {"url": api_url, "project": "acme/gitops"}}
    config = repos.RepoConfig.model_validate({"name": "shop", "url": str(tmp_path / "gitops.git"), "forge": forge,
                                              "credentials": {"token_file": str(secret)}, **section})
    return config, secret


def basic_password(header: str | None) -> str:
    assert header is not None and header.startswith("Authorization: Basic ")
    return base64.b64decode(header.removeprefix("Authorization: Basic ")).decode().partition(":")[2]


def test_github_forge_sends_the_rotated_token_without_a_restart(tmp_path: Path) -> None:
    with FakeGitHub("acme/gitops", token=OLD) as gh:
        config, secret = entry(tmp_path, forge="github", api_url=gh.api_url)
        forge, auth_header = make_forge(ForgeSpec.of_entry(config), data_dir=tmp_path, write_spacing=0)
        assert auth_header is not None
        assert forge.find_open_pr("autofix/shop/checkout/oom-killed") is None
        assert basic_password(auth_header()) == OLD

        rotate(secret, NEW)
        gh.token = NEW  # GitHub now accepts the new token only
        assert forge.find_open_pr("autofix/shop/checkout/oom-killed") is None
        assert basic_password(auth_header()) == NEW

    sent = [r.headers.get("Authorization") or r.headers.get("authorization") for r in gh.requests]
    assert sent[0] == f"token {OLD}" and sent[-1] == f"token {NEW}", sent
    assert sent.count(f"token {NEW}") >= 1


def test_gitlab_forge_sends_the_rotated_token_without_a_restart(tmp_path: Path) -> None:
    with FakeGitLab("acme/gitops", token=OLD) as gl:
        config, secret = entry(tmp_path, forge="gitlab", api_url=gl.url)
        forge, auth_header = make_forge(ForgeSpec.of_entry(config), data_dir=tmp_path, write_spacing=0)
        assert auth_header is not None
        assert forge.find_open_pr("autofix/shop/checkout/oom-killed") is None
        assert basic_password(auth_header()) == OLD

        rotate(secret, NEW)
        gl.token = NEW
        assert forge.find_open_pr("autofix/shop/checkout/oom-killed") is None
        assert basic_password(auth_header()) == NEW

    sent = [{k.lower(): v for k, v in r.headers.items()}.get("private-token") for r in gl.requests]
    assert sent[0] == OLD and sent[-1] == NEW, sent


def test_secret_file_is_read_again_only_when_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(OLD, encoding="utf-8")
    read = repos.SecretFile(path, what="entry 'shop': credentials.token_file")
    assert read() == OLD
    # Rewritten in place with the same length and its mtime put back: to the cache the file did not change,
    # so it is not read again (what a rotation always changes is what the cache looks at).
    before = path.stat()
    assert len(NEW) == len(OLD)
    path.write_text(NEW, encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert read() == OLD
    rotate(path, NEW)
    assert read() == NEW
    path.unlink()  # gone after a good read: the last good value stays (the forge says if it still works)
    assert read() == NEW


def test_secret_file_unreadable_from_the_start_names_the_entry(tmp_path: Path) -> None:
    read = repos.SecretFile(tmp_path / "missing", what="entry 'shop': credentials.token_file")
    with pytest.raises(repos.ConfigError, match=r"entry 'shop': credentials.token_file: cannot read .*missing"):
        read()
