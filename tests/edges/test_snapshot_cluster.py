"""SnapshotCluster: a cluster dump read from a file gives the same answers as the live API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.adapters.cluster import KubeCluster
from app.adapters.snapshot import (
    LOG_LIMIT_BYTES,
    SnapshotCluster,
    parse_label_selector,
    selector_matches,
)
from app.errors import ConfigError, PermanentError
from tests.fakes.kube_api import KubeApiFake, shop_checkout_oomkilled

TEST_TIMEOUT = 20


pytestmark = pytest.mark.timeout(TEST_TIMEOUT)  # no test here may take longer


def write_snapshot(path: Path, *, as_yaml: bool = False) -> Path:
    objects, logs = shop_checkout_oomkilled()
    doc = {"apiVersion": "v1", "kind": "List", "items": objects, "logs": logs}
    path.write_text(yaml.safe_dump(doc) if as_yaml else json.dumps(doc, indent=2), encoding="utf-8")
    return path


@pytest.fixture(params=["json", "yaml"])
def snapshot_file(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    return write_snapshot(tmp_path / f"cluster.{request.param}", as_yaml=request.param == "yaml")


@pytest.fixture
def snap(snapshot_file: Path) -> SnapshotCluster:
    return SnapshotCluster.from_file(snapshot_file)


def names(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objects)


# --- get / list -----------------------------------------------------------------------------------

def test_get_by_kind_namespace_and_name(snap: SnapshotCluster) -> None:
    pod = snap.get("Pod", "shop", "checkout-7d9f8b6c5-abcde")

    assert pod is not None
    assert pod["status"]["containerStatuses"][0]["lastState"]["terminated"]["reason"] == "OOMKilled"
    assert snap.get("Pod", "staging", "checkout-7d9f8b6c5-abcde") is None
    assert snap.get("Deployment", "shop", "checkout-7d9f8b6c5-abcde") is None  # a name of another kind


def test_cluster_scoped_kinds_ignore_namespace(snap: SnapshotCluster) -> None:
    assert snap.get("Node", "shop", "node-a") is not None
    assert snap.get("Node", None, "node-a") is not None
    assert names(snap.list("Namespace", "whatever")) == ["shop"]


def test_list_in_namespace_and_across_namespaces(snap: SnapshotCluster) -> None:
    assert names(snap.list("Pod", "shop")) == ["checkout-7d9f8b6c5-abcde", "checkout-7d9f8b6c5-fghij"]
    assert len(snap.list("Pod", None)) == 3
    assert snap.list("Application", "argocd") == []


def test_results_are_copies(snap: SnapshotCluster) -> None:
    pod = snap.get("Pod", "shop", "checkout-7d9f8b6c5-abcde")
    assert pod is not None
    pod["metadata"]["name"] = "mutated"
    assert snap.get("Pod", "shop", "checkout-7d9f8b6c5-abcde") is not None


def test_kind_is_matched_with_its_group(tmp_path: Path) -> None:
    """A `events.k8s.io` Event has another shape (regarding, note): it is not a core Event."""
    new_style = {"apiVersion": "events.k8s.io/v1", "kind": "Event",
                 "metadata": {"name": "e1", "namespace": "shop"}, "note": "x"}
    assert SnapshotCluster([new_style]).list("Event", "shop") == []


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app.kubernetes.io/name=checkout,tier=web", ["checkout-7d9f8b6c5-abcde"]),
        ("app.kubernetes.io/name==checkout", ["checkout-7d9f8b6c5-abcde", "checkout-7d9f8b6c5-fghij"]),
        ("tier!=web", ["checkout-7d9f8b6c5-fghij"]),
        ("tier in (batch, cron)", ["checkout-7d9f8b6c5-fghij"]),
        ("tier notin (batch),pod-template-hash", ["checkout-7d9f8b6c5-abcde"]),
        ("pod-template-hash", ["checkout-7d9f8b6c5-abcde", "checkout-7d9f8b6c5-fghij"]),
        ("!pod-template-hash", []),
        ("", ["checkout-7d9f8b6c5-abcde", "checkout-7d9f8b6c5-fghij"]),
    ],
    ids=["equality", "double-equals", "inequality", "in", "notin+exists", "exists", "not-exists", "empty"],
)
def test_label_selectors(snap: SnapshotCluster, selector: str, expected: list[str]) -> None:
    assert names(snap.list("Pod", "shop", label_selector=selector)) == expected


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a!=b", {}, True),  # inequality matches objects without the label, like the API server
        ("a notin (x)", {}, True),
        ("a in (x)", {}, False),
        ("a=", {"a": ""}, True),
        ("a=b", {"a": "c"}, False),
    ],
)
def test_selector_semantics(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(parse_label_selector(selector), labels) is expected


@pytest.mark.parametrize("selector", ["a in x", "a=b=c", "a,,b", "a in (x", "=b", "a in (x y)"])
def test_malformed_selectors_are_refused(selector: str) -> None:
    with pytest.raises(PermanentError, match="invalid label selector"):
        parse_label_selector(selector)


# --- what the bot must never read ----------------------------------------------------------------

def test_secrets_are_refused_and_not_held(snap: SnapshotCluster) -> None:
    with pytest.raises(PermanentError) as err:
        snap.get("Secret", "shop", "checkout-db")
    assert err.value.code == "forbidden_kind"
    with pytest.raises(PermanentError):
        snap.list("Secret", None)
    assert "aHVudGVyMg" not in repr(vars(snap))


def test_configmaps_keep_keys_not_values(snap: SnapshotCluster) -> None:
    cm = snap.get("ConfigMap", "shop", "checkout-config")

    assert cm is not None
    assert cm["data"] == {"DATABASE_URL": "", "JAVA_OPTS": ""}
    assert cm["binaryData"] == {"truststore.jks": ""}
    assert "hunter2" not in repr(vars(snap))


def test_managed_fields_are_dropped(snap: SnapshotCluster) -> None:
    assert all("managedFields" not in p["metadata"] for p in snap.list("Pod", None))


# --- logs -----------------------------------------------------------------------------------------

def test_logs_tail_previous_and_current(snap: SnapshotCluster) -> None:
    previous = snap.logs("shop", "checkout-7d9f8b6c5-abcde", "checkout", previous=True, tail_lines=2)
    current = snap.logs("shop", "checkout-7d9f8b6c5-abcde", "checkout", previous=False, tail_lines=2)

    assert previous == "java.lang.OutOfMemoryError: Java heap space\n\tat com.acme.checkout.Cart.load\n"
    assert current == "2026-11-03T10:02:41Z INFO starting checkout 1.42.0\n"
    assert snap.logs("shop", "checkout-7d9f8b6c5-fghij", "checkout", previous=True, tail_lines=2) == ""


def test_plain_string_log_is_previous_and_capped() -> None:
    line = "x" * 1023 + "\n"
    snap = SnapshotCluster([], logs={"shop/p/c": line * 100})

    text = snap.logs("shop", "p", "c", previous=True, tail_lines=1000)

    assert len(text.encode()) == LOG_LIMIT_BYTES
    assert snap.logs("shop", "p", "c", previous=False, tail_lines=10) == ""
    assert snap.logs("shop", "p", "c", previous=True, tail_lines=0) == ""


# --- malformed files ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.json", "{not json", "not valid JSON/YAML"),
        ("bad.yaml", "items: [\n", "not valid JSON/YAML"),
        ("list.yaml", "- a\n- b\n", "'items' list"),
        ("noname.json", '{"items": [{"kind": "Pod", "metadata": {}}]}', r"items\[0\] needs a kind"),
        ("logs.json", '{"items": [], "logs": {"shop/pod": "x"}}', "namespace/pod/container"),
        ("logs2.json", '{"items": [], "logs": {"a/b/c": {"previous": 3}}}', "previous"),
    ],
)
def test_malformed_file_names_the_file(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")

    with pytest.raises(ConfigError, match=message) as err:
        SnapshotCluster.from_file(path)

    assert str(path) in err.value.message


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing.json"):
        SnapshotCluster.from_file(tmp_path / "missing.json")


# --- the same dump served both ways ---------------------------------------------------------------

QUERIES = [
    ("get", "Pod", "shop", "checkout-7d9f8b6c5-abcde", None),
    ("get", "ConfigMap", "shop", "checkout-config", None),
    ("get", "Node", None, "node-a", None),
    ("get", "Deployment", "shop", "absent", None),
    ("list", "Pod", "shop", None, "tier in (web)"),
    ("list", "Pod", None, None, None),
    ("list", "Event", "shop", None, None),
    ("list", "ReplicaSet", "shop", None, "app.kubernetes.io/name=checkout"),
    ("list", "HelmRelease", "shop", None, None),
]


def test_snapshot_and_live_adapter_agree(tmp_path: Path) -> None:
    path = write_snapshot(tmp_path / "cluster.json")
    snap = SnapshotCluster.from_file(path)
    with KubeApiFake.from_snapshot(path) as api:
        live = KubeCluster.from_config(str(api.write_kubeconfig(tmp_path / "kc")))
        for verb, kind, namespace, name, selector in QUERIES:
            if verb == "get":
                assert live.get(kind, namespace, str(name)) == snap.get(kind, namespace, str(name)), kind
            else:
                assert live.list(kind, namespace, label_selector=selector) == \
                    snap.list(kind, namespace, label_selector=selector), (kind, selector)
        assert live.logs("shop", "checkout-7d9f8b6c5-abcde", "checkout", previous=True, tail_lines=5) == \
            snap.logs("shop", "checkout-7d9f8b6c5-abcde", "checkout", previous=True, tail_lines=5)
        assert api.methods == {"GET"}
