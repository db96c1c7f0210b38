"""Several clusters in one install, through the installed command: three loopback Kubernetes API servers (an Argo
CD hub and two spokes), clusters.yaml in the policy directory with a kubeconfig file per cluster, `autofix
handle` and `autofix doctor` as subprocesses. Assertions on what users see: the PR's body (pod names only one
spoke has, the hub's Application), the results, the doctor's table; and on which server was asked what.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.adapters.store import JobStore
from app.demo import seed_bare_repo
from tests.conftest import ROOT, SCENARIOS
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

SCENARIO = SCENARIOS / "layout-argocd-directory"
SHIPPED_ROLE = ROOT / "deploy" / "kustomize" / "clusterrole.yaml"
TOKEN = "ghs_test_token_0123456789abcdefghij"
SPOKE_B_SERVER = "https://10.31.0.1:6443"
# spoke-b runs another rollout of the same Deployment: its ReplicaSet and pods carry another hash.
SPOKE_A_HASH, SPOKE_B_HASH = "7d9f8b6c5", "84c6f9d7b"


def scenario_cluster() -> dict[str, Any]:
    return json.loads((SCENARIO / "cluster.json").read_text(encoding="utf-8"))


def hub_objects() -> list[dict[str, Any]]:
    """The hub's Argo CD: the scenario's Application once per spoke (by destination name, by server URL)."""
    [application] = [o for o in scenario_cluster()["items"] if o["kind"] == "Application"]
    apps = []
    for name, destination in (("checkout-spoke-a", {"name": "spoke-a", "namespace": "shop"}),
                              ("checkout-spoke-b", {"server": SPOKE_B_SERVER, "namespace": "shop"})):
        app = copy.deepcopy(application)
        app["metadata"]["name"] = name
        app["spec"]["destination"] = destination
        apps.append(app)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "argocd"}}
    return [*apps, namespace]


def spoke(app_name: str, pod_hash: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A spoke: the scenario's workload, pods, events and logs (no Application: Argo CD runs in the hub), the
    workload tracked by the hub's Application ``app_name``."""
    text = json.dumps(scenario_cluster()).replace(SPOKE_A_HASH, pod_hash)
    doc = json.loads(text.replace("checkout:apps/Deployment:shop/checkout",
                                  f"{app_name}:apps/Deployment:shop/checkout"))
    items = [o for o in doc["items"] if o["kind"] != "Application"]
    for item in items:
        labels = item["metadata"].get("labels") or {}
        if labels.get("app.kubernetes.io/instance") == "checkout":
            labels["app.kubernetes.io/instance"] = app_name
    return items, doc.get("logs") or {}


def payload(*clusters: str | None) -> dict[str, Any]:
    """The scenario's alert once per cluster label (None: without one), each with its own fingerprint."""
    doc = json.loads((SCENARIO / "alert.json").read_text(encoding="utf-8"))
    [alert] = doc["alerts"]
    alerts = []
    for index, cluster in enumerate(clusters):
        one = copy.deepcopy(alert) if cluster != "spoke-b" else \
            json.loads(json.dumps(alert).replace(SPOKE_A_HASH, SPOKE_B_HASH))  # spoke-b's own pod
        if cluster is not None:
            one["labels"]["cluster"] = cluster
        one["fingerprint"] = f"{index:x}95bbc2666a0c0e3"
        alerts.append(one)
    return {**doc, "alerts": alerts}


def policy_dir(tmp_path: Path, kubeconfigs: dict[str, Path], *, hub: str = "hub") -> Path:
    policies = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policies)
    lines = ["label: cluster", f"hub: {hub}", "clusters:"]
    for name, path in kubeconfigs.items():
        lines += [f"  - name: {name}", f"    kubeconfig: {path}"]
        if name == "spoke-b":
            lines.append(f"    argocd: {{server: '{SPOKE_B_SERVER}'}}")
    (policies / "clusters.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return policies


def autofix(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app.cli", *argv], env={**os.environ, **env}, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)


def test_alert_is_handled_in_the_cluster_its_label_names(tmp_path: Path) -> None:
    a_items, a_logs = spoke("checkout-spoke-a", SPOKE_A_HASH)
    b_items, b_logs = spoke("checkout-spoke-b", SPOKE_B_HASH)
    bare = tmp_path / "gitops.git"
    seed_bare_repo(SCENARIO / "repo", bare)
    with KubeApiFake(hub_objects()) as hub, KubeApiFake(a_items, logs=a_logs) as spoke_a, \
            KubeApiFake(b_items, logs=b_logs) as spoke_b, FakeGitHub("acme/gitops", token=TOKEN) as gh:
        kubeconfigs = {name: api.write_kubeconfig(tmp_path / f"kubeconfig-{name}")
                       for name, api in (("hub", hub), ("spoke-a", spoke_a), ("spoke-b", spoke_b))}
        alerts = tmp_path / "alerts.json"
        alerts.write_text(json.dumps(payload("spoke-a", "staging", None, "spoke-b")), encoding="utf-8")
        env = {"AUTOFIX_POLICY_DIR": str(policy_dir(tmp_path, kubeconfigs)), "AUTOFIX_GIT_URL": str(bare),
               "AUTOFIX_GITHUB_REPO": "acme/gitops", "GITHUB_TOKEN": TOKEN, "AUTOFIX_GITHUB_API_URL": gh.api_url,
               "AUTOFIX_GITHUB_WRITE_SPACING": "0", "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "AUTOFIX_EXPORT_WAIT_SECONDS": "0"}
        proc = autofix("handle", str(alerts), env=env)
        assert proc.returncode == 0, proc.stderr
        opened, unknown, unlabelled, twin = json.loads(proc.stdout)["results"]

        assert opened["outcome"] == "pr_opened", opened
        assert unknown["outcome"] == "skipped"
        assert unknown["reason"] == ("cluster 'staging' (label cluster) is not configured in clusters.yaml "
                                     "(configured: hub, spoke-a, spoke-b)")
        assert unlabelled["outcome"] == "skipped"
        assert "the alert has no 'cluster' label" in unlabelled["reason"]
        # Skipped by the router, recorded as a pipeline's skip is: a record key and a run record in the outbox.
        skips = {r["record_id"]: r for r in (unknown, unlabelled)}
        assert len(skips) == 2 and all(skips), (unknown, unlabelled)
        store = JobStore(tmp_path / "data" / "jobs.sqlite3")
        try:
            for key, skipped in skips.items():
                export = store.export_of(key)
                assert export is not None, key
                tags = export.run.record.tags
                assert (tags["outcome"], tags["reason"], tags["autofix_record"]) == ("skipped", skipped["reason"], key)
                assert tags["fingerprint"] == skipped["fingerprint"]
        finally:
            store.close()

        [pr] = [r.body for r in gh.requests_to("POST", "/pulls")]
        # Diagnosed from spoke-a's pods and events, the fix found through the hub's Application for spoke-a.
        assert f"checkout-{SPOKE_A_HASH}-abcde" in pr["body"] and SPOKE_B_HASH not in pr["body"]
        assert "checkout-spoke-a" in pr["body"] and "checkout-spoke-b" not in pr["body"]
        assert pr["title"] == "Raise memory limit of shop/checkout to 768Mi after OOMKilled"

        paths = {name: [r.path for r in api.requests] for name, api in
                 (("hub", hub), ("spoke-a", spoke_a), ("spoke-b", spoke_b))}
        assert paths["hub"] and all("/applications" in p for p in paths["hub"]), paths["hub"]
        assert any("/pods" in p for p in paths["spoke-a"])
        assert not any("/applications" in p for p in paths["spoke-a"]), "Argo CD is read from the hub only"
        assert {r.method for api in (hub, spoke_a, spoke_b) for r in api.requests} == {"GET"}
        # The cluster is part of the branch's identity: the same workload and cause in another cluster never
        # updates (and so replaces) spoke-a's fix. Both spokes deploy the one manifest here, so spoke-b's
        # identical change is the open PR's duplicate, not a second PR.
        assert opened["branch"] == "autofix/spoke-a.shop/checkout/oom-killed", opened["branch"]
        assert twin["outcome"] == "duplicate", twin
        assert twin["reason"] == f"PR #1 (branch {opened['branch']}) already proposes this change"
        assert any("/pods" in p for p in paths["spoke-b"]), "spoke-b's alert was read from spoke-b"


def test_doctor_checks_every_cluster_and_names_the_unreachable_one(tmp_path: Path) -> None:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(SCENARIO / "repo", bare)
    gone = KubeApiFake([]).start()
    kubeconfigs = {"spoke-b": gone.write_kubeconfig(tmp_path / "kubeconfig-spoke-b")}
    gone.stop()  # its port now refuses connections
    with KubeApiFake(hub_objects()) as hub, KubeApiFake(spoke("checkout-spoke-a", SPOKE_A_HASH)[0]) as spoke_a:
        for api in (hub, spoke_a):
            api.access_rules = yaml.safe_load(SHIPPED_ROLE.read_text(encoding="utf-8"))["rules"]
        kubeconfigs = {"hub": hub.write_kubeconfig(tmp_path / "kubeconfig-hub"),
                       "spoke-a": spoke_a.write_kubeconfig(tmp_path / "kubeconfig-spoke-a"), **kubeconfigs}
        env = {"AUTOFIX_POLICY_DIR": str(policy_dir(tmp_path, kubeconfigs)), "AUTOFIX_GIT_URL": str(bare),
               "AUTOFIX_FORGE": "local", "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
        proc = autofix("doctor", env=env)
    rows = {}  # check name -> (status, detail), from the printed table
    for line in proc.stdout.splitlines()[2:]:
        name, status, detail = re.split(r"\s{2,}", line.strip() + "  ", maxsplit=2)
        rows[name] = (status, detail.strip())
    assert proc.returncode == 1, proc.stdout  # a failed row
    assert [n for n in rows if n.startswith("cluster")] == [
        "cluster hub", "cluster hub permissions", "cluster spoke-a", "cluster spoke-a permissions",
        "cluster spoke-b", "cluster spoke-b permissions"], proc.stdout
    assert rows["cluster hub"] == ("OK", "reachable, 1 namespace(s) visible (Argo CD hub)")
    assert rows["cluster hub permissions"][0] == rows["cluster spoke-a permissions"][0] == "OK"
    assert rows["cluster spoke-a"][0] == "OK"
    status, detail = rows["cluster spoke-b"]
    assert status == "FAIL" and "cluster:" in detail, proc.stdout
    assert rows["cluster spoke-b permissions"] == ("SKIP", "cluster not reachable")
