"""Several GitOps repositories in one install (repositories.yaml), through `autofix handle` as a user runs it: the
real kubernetes client against a loopback API server, git pushing to two bare repositories, PyGithub against two
loopback GitHub fakes (one per repository, each with its own token: one from a variable, one from a mounted file).

Three checkout Deployments OOM-killed in three namespaces, each deployed by its own Argo CD Application: ``shop``
from acme/gitops, ``billing`` from acme/billing-gitops (both configured), ``legacy`` from a repository that is not.
Each PR lands in its own repository (the branch pushed to that bare repository, the PR asked of that GitHub repo,
the run's link written into that PR), the ledger rows carry the repository's name, and the third alert ends no_fix
naming the repository it is deployed from.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.adapters.store import JobStore
from app.demo import seed_bare_repo
from app.settings import DEFAULT_POLICY_DIR
from tests.conftest import EXAMPLES, ROOT
from tests.e2e.test_e2e_handle import git
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

pytestmark = pytest.mark.e2e

SHOP_TOKEN = "ghs_shop_token_0123456789abcdefghijk"
BILLING_TOKEN = "ghs_billing_token_0123456789abcdefgh"
BRANCH = "autofix/{ns}/checkout/oom-killed"
LEGACY_URL = "https://github.com/other/legacy-gitops.git"


def _moved(text: str, namespace: str, app: str) -> str:
    """The demo's objects (or files) in another namespace, deployed by another Application."""
    text = text.replace('"checkout:apps/Deployment:shop/checkout"', f'"{app}:apps/Deployment:{namespace}/checkout"')
    text = text.replace("checkout:apps/Deployment:shop/checkout", f"{app}:apps/Deployment:{namespace}/checkout")
    text = text.replace('"app.kubernetes.io/instance": "checkout"', f'"app.kubernetes.io/instance": "{app}"')
    text = text.replace("app.kubernetes.io/instance: checkout", f"app.kubernetes.io/instance: {app}")
    return text.replace("shop", namespace)


def _cluster(tmp_path: Path) -> Path:
    """The demo's cluster three times over: shop (as shipped), billing and legacy (moved), one Application each."""
    demo = (EXAMPLES / "demo" / "cluster.json").read_text()
    doc = json.loads(demo)
    for namespace, app, url in (("billing", "billing-checkout", "https://github.com/acme/billing-gitops.git"),
                                ("legacy", "legacy-checkout", LEGACY_URL)):
        moved = json.loads(_moved(demo, namespace, app))
        for item in moved["items"]:
            if item["kind"] == "Node":
                continue
            if item["kind"] == "Application":
                item["metadata"]["name"] = app
                item["spec"]["source"]["repoURL"] = url
            doc["items"].append(item)
        doc["logs"].update(moved["logs"])
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(doc))
    return path


def _payload(tmp_path: Path) -> Path:
    """The demo's first alert, once per namespace (its own fingerprint each)."""
    doc = json.loads((EXAMPLES / "demo" / "alert.json").read_text())
    first = doc["alerts"][0]
    alerts = []
    for n, namespace in enumerate(("shop", "billing", "legacy")):
        alert = copy.deepcopy(first)
        alert["labels"]["namespace"] = namespace
        alert["annotations"]["description"] = alert["annotations"]["description"].replace("shop", namespace)
        alert["fingerprint"] = f"{n + 1:016x}"
        alerts.append(alert)
    doc["alerts"] = alerts
    path = tmp_path / "alert.json"
    path.write_text(json.dumps(doc))
    return path


def _repos(tmp_path: Path) -> tuple[Path, Path]:
    shop = tmp_path / "shop.git"
    seed_bare_repo(EXAMPLES / "demo" / "repo", shop)
    billing_src = tmp_path / "billing-src"
    shutil.copytree(EXAMPLES / "demo" / "repo", billing_src)
    for file in billing_src.rglob("*.yaml"):
        file.write_text(_moved(file.read_text(), "billing", "billing-checkout"))
    billing = tmp_path / "billing.git"
    seed_bare_repo(billing_src, billing)
    return shop, billing


def _policy_dir(tmp_path: Path, *, shop: Path, billing: Path, gh_shop: FakeGitHub, gh_billing: FakeGitHub) -> Path:
    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    token_file = tmp_path / "secrets" / "billing-token"
    token_file.parent.mkdir()
    token_file.write_text(BILLING_TOKEN + "\n")
    (policies / "repositories.yaml").write_text(f"""\
# the shop team's repository: Applications name it by its GitHub URL
- name: shop
  url: {shop}
  match: ["github.com/acme/gitops"]
  forge: github
  github: {{repo: acme/gitops, api_url: "{gh_shop.api_url}"}}
  credentials: {{token_env: AUTOFIX_TEST_SHOP_TOKEN}}
- name: billing
  url: {billing}
  match: ["github.com/acme/billing-*"]
  forge: github
  github: {{repo: acme/billing-gitops, api_url: "{gh_billing.api_url}"}}
  credentials: {{token_file: {token_file}}}
""")
    return policies


def _handle(tmp_path: Path, policies: Path, kube: KubeApiFake, mlflow_uri: str) -> tuple[list[dict[str, Any]], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOFIX_", "GITHUB_"))}
    env.update({"KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
                "AUTOFIX_POLICY_DIR": str(policies), "AUTOFIX_TEST_SHOP_TOKEN": SHOP_TOKEN,
                "AUTOFIX_GITHUB_WRITE_SPACING": "0", "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
                "MLFLOW_TRACKING_URI": mlflow_uri, "AUTOFIX_MLFLOW_UI_URL": "https://mlflow.example"})
    proc = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(_payload(tmp_path))], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)["results"], proc.stderr


@pytest.mark.timeout(300)
def test_each_pr_lands_in_its_own_repository(tmp_path: Path, mlflow_uri: str) -> None:
    shop, billing = _repos(tmp_path)
    with FakeGitHub("acme/gitops", token=SHOP_TOKEN) as gh_shop, \
            FakeGitHub("acme/billing-gitops", token=BILLING_TOKEN) as gh_billing, \
            KubeApiFake.from_snapshot(_cluster(tmp_path)) as kube:
        policies = _policy_dir(tmp_path, shop=shop, billing=billing, gh_shop=gh_shop, gh_billing=gh_billing)
        results, stderr = _handle(tmp_path, policies, kube, mlflow_uri)
        by_ns = dict(zip(("shop", "billing", "legacy"), results, strict=True))
        assert by_ns["shop"]["outcome"] == "pr_opened", results
        assert by_ns["billing"]["outcome"] == "pr_opened", results
        assert by_ns["shop"]["pr_url"] == "https://github.example/acme/gitops/pull/1"
        assert by_ns["billing"]["pr_url"] == "https://github.example/acme/billing-gitops/pull/1"

        # Each PR asked of its own GitHub repository, with its own credentials, from its own branch.
        [shop_pr] = gh_shop.requests_to("POST", "/repos/acme/gitops/pulls")
        [billing_pr] = gh_billing.requests_to("POST", "/repos/acme/billing-gitops/pulls")
        assert shop_pr.body["head"] == BRANCH.format(ns="shop") and shop_pr.body["base"] == "main"
        assert billing_pr.body["head"] == BRANCH.format(ns="billing")
        assert "Raise memory limit of billing/checkout to 768Mi" in billing_pr.body["title"]
        assert all(r.path.startswith("/repos/acme/gitops") for r in gh_shop.requests if r.path.startswith("/repos/"))
        assert all(r.path.startswith("/repos/acme/billing-gitops") for r in gh_billing.requests
                   if r.path.startswith("/repos/"))
        # The exporter wrote each run's link into the PR of the right repository.
        assert "https://mlflow.example" in gh_shop.pulls[1]["body"]
        assert "https://mlflow.example" in gh_billing.pulls[1]["body"]

    # Each branch pushed to its own bare repository, and only there.
    assert git("branch", "--list", "autofix/*", cwd=shop).split() == [BRANCH.format(ns="shop")]
    assert git("branch", "--list", "autofix/*", cwd=billing).split() == [BRANCH.format(ns="billing")]
    diff = git("diff", "main", BRANCH.format(ns="billing"), cwd=billing)
    assert "-              memory: \"512Mi\"\n+              memory: \"768Mi\"" in diff
    assert (tmp_path / "data" / "repos" / "shop").is_dir() and (tmp_path / "data" / "repos" / "billing").is_dir()

    # The workload deployed from a repository no entry matches: no fix, naming it.
    legacy = by_ns["legacy"]
    assert legacy["outcome"] == "no_fix", results
    assert legacy["reason"] == (f"Deployment/legacy/checkout is deployed by Application legacy-checkout from another "
                                f"repository ({LEGACY_URL}), not a configured GitOps repo (repositories.yaml)")
    assert BILLING_TOKEN not in stderr and SHOP_TOKEN not in stderr

    # The ledger rows carry the repository they belong to.
    store = JobStore(tmp_path / "data" / "jobs.sqlite3")
    try:
        rows = sorted((r.repo, r.pr_number, r.branch) for r in store.entries())
    finally:
        store.close()
    assert rows == [("billing", 1, BRANCH.format(ns="billing")), ("shop", 1, BRANCH.format(ns="shop"))]
