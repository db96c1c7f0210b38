"""AUTOFIX_COMMIT_VIA=api through `autofix handle` as a user runs it: authenticated as the GitHub App (a real RSA key,
the fake verifies the JWT and mints installation tokens), the fix's commit is created through the Git Data API of the
loopback GitHub fake, which writes it into the bare repository the bot clones; the PR is opened on that branch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES, ROOT
from tests.fakes.github_api import APP_SLUG, FakeApp, FakeGitHub
from tests.fakes.kube_api import KubeApiFake

pytestmark = pytest.mark.e2e


def git(bare: Path, *argv: str) -> str:
    return subprocess.run(["git", *argv], cwd=bare, check=True, capture_output=True, text=True, timeout=30).stdout


@pytest.mark.timeout(240)
def test_handle_commits_the_fix_through_the_api_as_the_app(tmp_path: Path, mlflow_uri: str) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    bare = tmp_path / "gitops.git"
    seed_bare_repo(EXAMPLES / "demo" / "repo", bare)
    base = git(bare, "rev-parse", "main").strip()
    app = FakeApp(app_id=123456, public_key_pem=public, installation_id=4242)
    with FakeGitHub("acme/gitops", token="not-the-app", app=app, git_dir=bare) as gh, \
            KubeApiFake.from_snapshot(EXAMPLES / "demo" / "cluster.json") as kube:
        env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
               "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops", "AUTOFIX_COMMIT_VIA": "api",
               "AUTOFIX_GITHUB_APP_ID": "123456", "AUTOFIX_GITHUB_APP_INSTALLATION_ID": "4242",
               "AUTOFIX_GITHUB_APP_PRIVATE_KEY": private, "AUTOFIX_GITHUB_API_URL": gh.api_url,
               "AUTOFIX_GITHUB_WRITE_SPACING": "0", "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
               "MLFLOW_TRACKING_URI": mlflow_uri}
        env.pop("GITHUB_TOKEN", None)
        proc = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(EXAMPLES / "demo" / "alert.json")],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        results = json.loads(proc.stdout)["results"]
        [opened] = [r for r in results if r["outcome"] == "pr_opened"]
        branch = opened["branch"]

        # Created through the API, as the App: the commit request carried no identity, the ref was created.
        [commit] = gh.requests_to("POST", "/repos/acme/gitops/git/commits")
        assert commit.body["parents"] == [base]
        assert not {"author", "committer", "signature"} & set(commit.body)
        assert [r.body["ref"] for r in gh.requests_to("POST", "/git/refs")] == [f"refs/heads/{branch}"]
        [tree] = gh.requests_to("POST", "/git/trees")
        assert [e["path"] for e in tree.body["tree"]] == ["apps/checkout/deployment.yaml"]

        # The branch on the bare repository is that commit, on top of the base, by the App, signed by GitHub.
        head = git(bare, "rev-parse", f"refs/heads/{branch}").strip()
        assert git(bare, "rev-parse", f"{head}^").strip() == base == git(bare, "rev-parse", "main").strip()
        assert gh.verifications[head]["verified"] is True
        assert git(bare, "log", "-1", "--format=%an|%ce", head).strip() == f"{APP_SLUG}[bot]|noreply@github.com"
        changed = [line for line in git(bare, "diff", base, head).splitlines()
                   if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        assert [line[0] + line[1:].strip() for line in changed] == ['-memory: "512Mi"', '+memory: "768Mi"']

        # And the PR is opened on it.
        [pr] = gh.requests_to("POST", "/repos/acme/gitops/pulls")
        assert pr.body["head"] == branch and pr.body["base"] == "main"
        assert gh.pulls[1]["head"]["ref"] == branch and opened["pr_url"].endswith("/pull/1")
