"""clusters.yaml (app/clusters.py): the file's validation, the hub's Applications matched to each cluster by
``spec.destination``, and the router choosing a cluster's pipeline by the alert's label."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app import clusters
from app.adapters.snapshot import SnapshotCluster
from app.errors import ConfigError
from app.models.incident import Incident
from app.models.outcome import Outcome

HUB_SERVER = "https://kubernetes.default.svc"
EU_SERVER = "https://10.20.0.1:6443"


def write(directory: Path, text: str) -> Path:
    (directory / "kubeconfig-eu").write_text("apiVersion: v1\nkind: Config\n", encoding="utf-8")
    path = directory / "clusters.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_no_file_means_one_cluster(tmp_path: Path) -> None:
    assert clusters.load(tmp_path) is None


def test_file_is_read_with_defaults_and_relative_kubeconfig(tmp_path: Path) -> None:
    write(tmp_path, "hub: hub\nclusters:\n  - name: hub\n  - name: prod-eu\n    kubeconfig: kubeconfig-eu\n"
                    "    context: admin@prod-eu\n")
    config = clusters.load(tmp_path)
    assert config is not None
    assert config.label == "cluster" and config.default is None and config.names == ["hub", "prod-eu"]
    eu = config.entry("prod-eu")
    assert eu.kubeconfig == tmp_path / "kubeconfig-eu" and eu.context == "admin@prod-eu"
    assert config.entry("hub").kubeconfig is None  # KUBECONFIG or the pod's service account


@pytest.mark.parametrize(("text", "expected"), [
    ("clusters:\n  - name: eu\n    kubeconfig: kubeconfig-eu\n    contxt: admin\n",
     "clusters.yaml:4: clusters.0.contxt: Extra inputs are not permitted"),
    ("clusters:\n  - name: eu\n    argocd: {server: x, namespace: argocd}\n",
     "clusters.yaml:3: clusters.0.argocd.namespace: Extra inputs are not permitted"),
    ("hub: central\nclusters:\n  - name: eu\n",
     "hub: 'central' is not one of the clusters (eu)"),
    ("default: us\nclusters:\n  - name: eu\n",
     "default: 'us' is not one of the clusters (eu)"),
    ("clusters:\n  - name: eu\n  - name: eu\n", "cluster names must be unique: eu more than once"),
    ("clusters: []\n", "clusters.yaml:1: clusters: List should have at least 1 item"),
    ("label: 'k8s cluster'\nclusters:\n  - name: eu\n", "clusters.yaml:1: label: String should match pattern"),
    ("clusters:\n  - name: eu\n    kubeconfig: missing/kubeconfig\n",
     "clusters[0] (eu): kubeconfig {dir}/missing/kubeconfig is not a file"),
    ("clusters:\n  - name: [eu\n", "not valid YAML: while parsing a flow sequence (from line 2)"),
    ("- name: eu\n", "must be a mapping with a list of clusters"),
], ids=["unknown-key", "unknown-argocd-key", "unknown-hub", "unknown-default", "duplicate", "empty", "bad-label",
        "missing-kubeconfig", "not-yaml", "not-a-mapping"])
def test_invalid_file_names_file_line_and_field(tmp_path: Path, text: str, expected: str) -> None:
    write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        clusters.load(tmp_path)
    assert str(tmp_path / "clusters.yaml") in str(err.value)
    assert expected.format(dir=tmp_path) in str(err.value)


def app(name: str, namespace: str, *, server: str | None = None, dest_name: str | None = None) -> dict[str, Any]:
    destination: dict[str, str] = {"namespace": "shop"}
    if server:
        destination["server"] = server
    if dest_name:
        destination["name"] = dest_name
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"destination": destination, "project": "shop",
                     "source": {"repoURL": "https://github.com/acme/gitops.git", "path": "apps/checkout"}}}


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop"}}


@pytest.fixture
def fleet(tmp_path: Path) -> clusters.ClusterSet:
    """A hub whose Argo CD deploys checkout to itself, to prod-eu (by server URL) and to prod-us (by name),
    with Applications of the same name in two namespaces (apps in any namespace)."""
    write(tmp_path, f"hub: hub\nclusters:\n  - name: hub\n  - name: prod-eu\n    argocd: {{server: '{EU_SERVER}/'}}\n"
                    "  - name: prod-us\n")
    config = clusters.load(tmp_path)
    assert config is not None
    objects = {
        "hub": [app("checkout", "argocd", server=HUB_SERVER), app("checkout", "team-eu", server=EU_SERVER),
                app("checkout", "team-us", dest_name="prod-us"), app("cart", "argocd", dest_name="in-cluster"),
                pod("argocd-server-5d4f")],
        "prod-eu": [pod("checkout-eu-1"), app("local", "argocd", server=HUB_SERVER)],
        "prod-us": [pod("checkout-us-1")],
    }
    built: list[str] = []

    def factory(entry: clusters.ClusterEntry, where: str) -> SnapshotCluster:
        built.append(entry.name)
        return SnapshotCluster(objects[entry.name])

    readers = clusters.ClusterSet(config, source=tmp_path / "clusters.yaml", factory=factory)
    readers.built = built  # type: ignore[attr-defined]
    return readers


def names(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objects)


def test_spoke_reads_its_applications_from_the_hub_by_destination(fleet: clusters.ClusterSet) -> None:
    eu, us, hub = fleet.view("prod-eu"), fleet.view("prod-us"), fleet.view("hub")
    assert names(eu.list("Application", None)) == ["team-eu/checkout"]  # server, trailing slash or not
    assert names(us.list("Application", None)) == ["team-us/checkout"]  # destination.name
    assert names(hub.list("Application", None)) == ["argocd/cart", "argocd/checkout"]  # in-cluster, both ways
    assert eu.get("Application", "team-us", "checkout") is None  # deploys elsewhere: not this cluster's
    assert eu.get("Application", "team-eu", "checkout") is not None
    # Everything else from the cluster itself.
    assert names(eu.list("Pod", "shop")) == ["shop/checkout-eu-1"]
    assert names(hub.list("Pod", "shop")) == ["shop/argocd-server-5d4f"]


def test_readers_are_built_once_on_first_use(fleet: clusters.ClusterSet) -> None:
    view = fleet.view("prod-us")
    assert fleet.built == []  # type: ignore[attr-defined]
    view.list("Pod", "shop")
    view.list("Application", None)
    view.list("Pod", "shop")
    assert fleet.built == ["prod-us", "hub"]  # type: ignore[attr-defined]


def test_without_a_hub_each_cluster_keeps_its_own_applications(tmp_path: Path) -> None:
    write(tmp_path, "clusters:\n  - name: prod-eu\n  - name: prod-us\n")
    config = clusters.load(tmp_path)
    assert config is not None
    readers = clusters.ClusterSet(config, source=tmp_path / "clusters.yaml",
                                  factory=lambda entry, _: SnapshotCluster(
                                      [app("local", "argocd", server=HUB_SERVER)] if entry.name == "prod-eu" else []))
    assert names(readers.view("prod-eu").list("Application", None)) == ["argocd/local"]
    assert readers.view("prod-us").list("Application", None) == []


def test_fleet_view_reads_every_cluster_hub_first(fleet: clusters.ClusterSet) -> None:
    every = fleet.fleet()
    assert names(every.list("Pod", "shop")) == ["shop/argocd-server-5d4f", "shop/checkout-eu-1", "shop/checkout-us-1"]
    assert every.get("Pod", "shop", "checkout-us-1") is not None
    assert every.get("Pod", "shop", "nowhere") is None


class Recording:
    """A pipeline that records the alerts it is given (the Handler port)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.seen: list[str] = []

    def handle(self, incident: Incident) -> Outcome:
        self.seen.append(incident.fingerprint)
        return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome="no_fix",
                       reason=f"handled in {self.name}")


def alert(fingerprint: str, **labels: str) -> Incident:
    return Incident(alertname="KubePodCrashLooping", fingerprint=fingerprint, status="firing",
                    starts_at=datetime(2026, 11, 23, 15, 15, tzinfo=UTC),
                    labels={"alertname": "KubePodCrashLooping", "namespace": "shop", **labels})


def test_router_sends_each_alert_to_its_clusters_pipeline() -> None:
    eu, us = Recording("prod-eu"), Recording("prod-us")
    router = clusters.ClusterRouter({"prod-eu": eu, "prod-us": us}, label="k8s_cluster")
    assert router.handle(alert("a1", k8s_cluster="prod-us")).reason == "handled in prod-us"
    assert router.handle(alert("a2", k8s_cluster="prod-eu")).reason == "handled in prod-eu"
    assert (eu.seen, us.seen) == (["a2"], ["a1"])


def test_unknown_cluster_is_skipped_naming_it_and_the_configured_ones() -> None:
    eu = Recording("prod-eu")
    router = clusters.ClusterRouter({"prod-eu": eu, "prod-us": Recording("prod-us")}, label="cluster")
    outcome = router.handle(alert("a1", cluster="staging"))
    assert outcome.outcome == "skipped" and outcome.code == "unknown_cluster"
    assert outcome.reason == ("cluster 'staging' (label cluster) is not configured in clusters.yaml "
                              "(configured: prod-eu, prod-us)")
    assert [s.stage for s in outcome.stages] == ["intake"] and eu.seen == []


def test_alert_without_the_label_is_skipped_unless_a_default_is_set() -> None:
    eu = Recording("prod-eu")
    skipped = clusters.ClusterRouter({"prod-eu": eu}, label="cluster").handle(alert("a1"))
    assert skipped.outcome == "skipped" and skipped.code == "no_cluster"
    assert "no 'cluster' label" in skipped.reason and "prod-eu" in skipped.reason
    routed = clusters.ClusterRouter({"prod-eu": eu}, label="cluster", default="prod-eu").handle(alert("a2"))
    assert routed.reason == "handled in prod-eu" and eu.seen == ["a2"]
