"""Two repositories and two clusters in one install (issue 17): each alert gets its PR in the right repository.

repositories.yaml names two GitOps repositories, ``shop`` on the loopback GitHub fake and ``billing`` on the
loopback GitLab fake (forge: gitlab), each with its own bare repository and token, and no AUTOFIX_GIT_URL.
clusters.yaml names two clusters, ``a`` and ``b``, each a loopback Kubernetes API server with its own kubeconfig.
Cluster a runs shop/checkout, deployed by its own Argo CD Application from the GitHub repository; cluster b runs
billing/checkout, deployed by its own Application from the GitLab one. One `autofix handle` run gets both OOMKilled
alerts, labelled cluster=a and cluster=b: GitHub got exactly cluster a's PR, GitLab exactly cluster b's MR, each
branch went to its own bare repository only, and each cluster's API server was asked only about its own alert.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from app.settings import DEFAULT_POLICY_DIR
from tests.conftest import EXAMPLES
from tests.e2e.test_e2e_clusters import autofix
from tests.e2e.test_e2e_handle import git
from tests.e2e.test_repositories import _moved, _repos
from tests.fakes.github_api import FakeGitHub
from tests.fakes.gitlab_api import FakeGitLab, project_path
from tests.fakes.kube_api import KubeApiFake

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

GITHUB_TOKEN = "ghs_fleet_shop_0123456789abcdefghijk"
GITLAB_TOKEN = "glpat-fleet-billing-0123456789ab"
BILLING_URL = "https://gitlab.example/acme/billing-gitops.git"  # as cluster b's Application names it
BILLING_MRS = project_path("acme/billing-gitops") + "/merge_requests"


def cluster_b() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The demo's cluster with its workload in namespace billing, deployed by Application billing-checkout from
    the GitLab repository."""
    doc = json.loads(_moved((EXAMPLES / "demo" / "cluster.json").read_text(), "billing", "billing-checkout"))
    for item in doc["items"]:
        if item["kind"] == "Application":
            item["metadata"]["name"] = "billing-checkout"
            item["spec"]["source"]["repoURL"] = BILLING_URL
    return doc["items"], doc.get("logs") or {}


def alerts(tmp_path: Path) -> Path:
    """The demo's first alert for shop in cluster a and for billing in cluster b."""
    doc = json.loads((EXAMPLES / "demo" / "alert.json").read_text())
    first = doc["alerts"][0]
    labelled = []
    for n, (cluster, namespace) in enumerate((("a", "shop"), ("b", "billing"))):
        alert = copy.deepcopy(first)
        alert["labels"].update(cluster=cluster, namespace=namespace)
        alert["annotations"]["description"] = alert["annotations"]["description"].replace("shop", namespace)
        alert["fingerprint"] = f"{n + 1:016x}"
        labelled.append(alert)
    path = tmp_path / "alerts.json"
    path.write_text(json.dumps({**doc, "alerts": labelled}), encoding="utf-8")
    return path


def policy_dir(tmp_path: Path, *, shop: Path, billing: Path, gh: FakeGitHub, gl: FakeGitLab,
               kubeconfigs: dict[str, Path]) -> Path:
    import shutil

    policies = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    (policies / "repositories.yaml").write_text(f"""\
- name: shop
  url: {shop}
  match: ["github.com/acme/gitops"]
  forge: github
  github: {{repo: acme/gitops, api_url: "{gh.api_url}"}}
  credentials: {{token_env: AUTOFIX_TEST_SHOP_TOKEN}}
- name: billing
  url: {billing}
  match: ["gitlab.example/acme/billing-gitops"]
  forge: gitlab
  gitlab: {{url: "{gl.url}", project: acme/billing-gitops}}
  credentials: {{token_env: AUTOFIX_TEST_BILLING_TOKEN}}
""", encoding="utf-8")
    lines = ["label: cluster", "clusters:"]
    for name, path in kubeconfigs.items():
        lines += [f"  - name: {name}", f"    kubeconfig: {path}"]
    (policies / "clusters.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return policies


def namespaces_asked(api: KubeApiFake) -> set[str]:
    """The namespaces whose objects a cluster's API server was asked about."""
    found = set()
    for request in api.requests:
        parts = request.path.split("/")
        if "namespaces" in parts and parts.index("namespaces") + 1 < len(parts):
            found.add(parts[parts.index("namespaces") + 1])
    return found


def test_two_repositories_and_two_clusters_each_get_their_pr_in_the_right_repository(tmp_path: Path) -> None:
    shop, billing = _repos(tmp_path)
    b_items, b_logs = cluster_b()
    with FakeGitHub("acme/gitops", token=GITHUB_TOKEN) as gh, \
            FakeGitLab("acme/billing-gitops", token=GITLAB_TOKEN) as gl, \
            KubeApiFake.from_snapshot(EXAMPLES / "demo" / "cluster.json") as kube_a, \
            KubeApiFake(b_items, logs=b_logs) as kube_b:
        kubeconfigs = {"a": kube_a.write_kubeconfig(tmp_path / "kubeconfig-a"),
                       "b": kube_b.write_kubeconfig(tmp_path / "kubeconfig-b")}
        env = {"AUTOFIX_POLICY_DIR": str(policy_dir(tmp_path, shop=shop, billing=billing, gh=gh, gl=gl,
                                                    kubeconfigs=kubeconfigs)),
               "AUTOFIX_GIT_URL": "", "AUTOFIX_GITHUB_REPO": "", "GITHUB_TOKEN": "", "GITLAB_TOKEN": "",
               "AUTOFIX_TEST_SHOP_TOKEN": GITHUB_TOKEN, "AUTOFIX_TEST_BILLING_TOKEN": GITLAB_TOKEN,
               "AUTOFIX_GITHUB_WRITE_SPACING": "0", "AUTOFIX_GITLAB_WRITE_SPACING": "0",
               "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "AUTOFIX_EXPORT_WAIT_SECONDS": "0"}
        proc = autofix("handle", str(alerts(tmp_path)), env=env)
        assert proc.returncode == 0, proc.stderr
        in_a, in_b = json.loads(proc.stdout)["results"]

        assert in_a["outcome"] == "pr_opened", in_a
        assert in_b["outcome"] == "pr_opened", in_b
        assert in_a["pr_url"] == "https://github.example/acme/gitops/pull/1"
        assert in_b["pr_url"] == "https://gitlab.example/acme/billing-gitops/-/merge_requests/1"

        # GitHub: exactly cluster a's PR, on acme/gitops only.
        [pr] = gh.requests_to("POST", "/pulls")
        assert pr.path == "/repos/acme/gitops/pulls"
        assert pr.body["head"] == in_a["branch"] and pr.body["base"] == "main"
        assert pr.body["title"] == "Raise memory limit of shop/checkout to 768Mi after OOMKilled"
        assert "billing" not in pr.body["body"]
        assert all(r.path.startswith("/repos/acme/gitops") for r in gh.requests if r.path.startswith("/repos/"))
        # GitLab: exactly cluster b's merge request, on acme/billing-gitops only.
        [mr] = gl.requests_to("POST", "/merge_requests")
        assert mr.path == BILLING_MRS
        assert mr.body["source_branch"] == in_b["branch"] and mr.body["target_branch"] == "main"
        assert mr.body["title"] == "Raise memory limit of billing/checkout to 768Mi after OOMKilled"
        assert "shop/checkout" not in mr.body["description"]
        assert {r.headers.get("PRIVATE-TOKEN") for r in gl.requests} == {GITLAB_TOKEN}
        assert list(gl.mrs) == [1]

        # Each cluster's API server was asked about its own alert's namespace only, and never written to.
        assert namespaces_asked(kube_a) == {"shop"}, namespaces_asked(kube_a)
        assert namespaces_asked(kube_b) == {"billing"}, namespaces_asked(kube_b)
        assert {r.method for api in (kube_a, kube_b) for r in api.requests} == {"GET"}

    # Each branch pushed to its own bare repository, and only there.
    assert in_a["branch"] != in_b["branch"]
    assert git("branch", "--list", "autofix/*", cwd=shop).split() == [in_a["branch"]]
    assert git("branch", "--list", "autofix/*", cwd=billing).split() == [in_b["branch"]]
    diff = git("diff", "main", in_b["branch"], cwd=billing)
    assert "-              memory: \"512Mi\"\n+              memory: \"768Mi\"" in diff
    assert GITHUB_TOKEN not in proc.stderr and GITLAB_TOKEN not in proc.stderr
