"""clusters.yaml entries against loopback Kubernetes API servers: one kubeconfig file with a context per
cluster (the real kubernetes client choosing the context), and an entry that cannot be loaded named by the
error (file, entry, context)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import clusters
from app.errors import ConfigError
from tests.fakes.kube_api import KubeApiFake

pytestmark = pytest.mark.timeout(60)


def pod(name: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "shop"},
            "spec": {"containers": [{"name": "app", "image": "ghcr.io/acme/app:1"}]}}


def two_contexts(path: Path, eu: KubeApiFake, us: KubeApiFake) -> Path:
    """One kubeconfig, as `kubectl config` writes it for two clusters; its current context is neither's."""
    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "nowhere",
        "clusters": [{"name": "eu", "cluster": {"server": eu.url}}, {"name": "us", "cluster": {"server": us.url}},
                     {"name": "nowhere", "cluster": {"server": "http://127.0.0.1:9"}}],
        "users": [{"name": "eu", "user": {"token": eu.token}}, {"name": "us", "user": {"token": us.token}}],
        "contexts": [{"name": "admin@eu", "context": {"cluster": "eu", "user": "eu"}},
                     {"name": "admin@us", "context": {"cluster": "us", "user": "us"}},
                     {"name": "nowhere", "context": {"cluster": "nowhere", "user": "eu"}}],
    }
    path.write_text(json.dumps(config), encoding="utf-8")
    return path


def fleet(tmp_path: Path, body: str) -> clusters.ClusterSet:
    (tmp_path / "clusters.yaml").write_text(body, encoding="utf-8")
    config = clusters.load(tmp_path)
    assert config is not None
    return clusters.ClusterSet(config, source=tmp_path / "clusters.yaml", factory=clusters.kube_reader)


def test_each_entry_reads_the_cluster_of_its_context(tmp_path: Path) -> None:
    with KubeApiFake([pod("checkout-eu-1")], token="eu-token") as eu, \
            KubeApiFake([pod("checkout-us-1")], token="us-token") as us:
        two_contexts(tmp_path / "kubeconfig", eu, us)
        readers = fleet(tmp_path, "clusters:\n  - {name: prod-eu, kubeconfig: kubeconfig, context: admin@eu}\n"
                                  "  - {name: prod-us, kubeconfig: kubeconfig, context: admin@us}\n")
        readers.check()
        assert [p["metadata"]["name"] for p in readers.view("prod-us").list("Pod", "shop")] == ["checkout-us-1"]
        assert [p["metadata"]["name"] for p in readers.view("prod-eu").list("Pod", "shop")] == ["checkout-eu-1"]
        assert {r.headers.get("authorization") for r in us.requests} == {"Bearer us-token"}


def test_an_unknown_context_names_the_file_the_entry_and_the_context(tmp_path: Path) -> None:
    with KubeApiFake([], token="eu-token") as eu, KubeApiFake([], token="us-token") as us:
        two_contexts(tmp_path / "kubeconfig", eu, us)
        readers = fleet(tmp_path, "clusters:\n  - {name: prod-eu, kubeconfig: kubeconfig, context: admin@eu}\n"
                                  "  - {name: prod-ap, kubeconfig: kubeconfig, context: admin@ap}\n")
        readers.reader("prod-eu")  # one bad entry does not stop the others being read (doctor's rows)
        with pytest.raises(ConfigError) as err:
            readers.check()
    message = str(err.value)
    assert message.startswith(f"{tmp_path / 'clusters.yaml'}: clusters[1] (prod-ap): cannot load Kubernetes "
                              f"configuration from {tmp_path / 'kubeconfig'} (context admin@ap): "), message
    assert "admin@ap" in message.split(": ", 3)[-1]
