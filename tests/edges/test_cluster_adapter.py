"""KubeCluster with the real `kubernetes` client against the loopback API server in tests/fakes/kube_api.py."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from app.adapters.cluster import KubeCluster
from app.errors import ConfigError, PermanentError, TemporaryError
from tests.fakes.kube_api import POD_UID, KubeApiFake, shop_checkout_oomkilled

TEST_TIMEOUT = 20  # seconds: no test here may take longer


pytestmark = pytest.mark.timeout(TEST_TIMEOUT)  # no test here may take longer


@pytest.fixture
def api() -> Iterator[KubeApiFake]:
    objects, logs = shop_checkout_oomkilled()
    with KubeApiFake(objects, logs) as fake:
        yield fake


@pytest.fixture
def cluster(api: KubeApiFake, tmp_path: Path) -> Iterator[KubeCluster]:
    kube = KubeCluster.from_config(str(api.write_kubeconfig(tmp_path / "kubeconfig")), timeout=(2.0, 1.0))
    yield kube
    kube.close()


def names(objects: list[dict[str, Any]]) -> list[str]:
    return sorted(o["metadata"]["name"] for o in objects)


# --- reads ----------------------------------------------------------------------------------------

def test_get_pod_returns_api_json(cluster: KubeCluster, api: KubeApiFake) -> None:
    pod = cluster.get("Pod", "shop", "checkout-7d9f8b6c5-abcde")

    assert pod is not None
    assert pod["kind"] == "Pod" and pod["apiVersion"] == "v1"
    assert pod["metadata"]["ownerReferences"][0]["name"] == "checkout-7d9f8b6c5"
    last = pod["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert (last["reason"], last["exitCode"]) == ("OOMKilled", 137)
    assert "managedFields" not in pod["metadata"]  # hidden, as kubectl does
    assert api.requests[-1].path == "/api/v1/namespaces/shop/pods/checkout-7d9f8b6c5-abcde"
    assert api.requests[-1].headers["authorization"] == "Bearer fake-token"


def test_get_grouped_and_cluster_scoped_kinds(cluster: KubeCluster, api: KubeApiFake) -> None:
    deployment = cluster.get("Deployment", "shop", "checkout")
    node = cluster.get("Node", "shop", "node-a")  # namespace is ignored for cluster-scoped kinds

    assert deployment is not None and deployment["spec"]["replicas"] == 2
    assert node is not None and node["kind"] == "Node"
    assert [r.path for r in api.requests] == ["/apis/apps/v1/namespaces/shop/deployments/checkout",
                                              "/api/v1/nodes/node-a"]


def test_get_missing_object_is_none(cluster: KubeCluster) -> None:
    assert cluster.get("Pod", "shop", "checkout-gone") is None
    assert cluster.get("Deployment", "staging", "checkout") is None


def test_get_refuses_names_that_cannot_exist_without_a_request(cluster: KubeCluster, api: KubeApiFake) -> None:
    assert cluster.get("Pod", "shop", "../../secrets/checkout-db") is None
    assert api.requests == []


def test_list_fills_kind_and_api_version_on_items(cluster: KubeCluster, api: KubeApiFake) -> None:
    pods = cluster.list("Pod", "shop")

    assert names(pods) == ["checkout-7d9f8b6c5-abcde", "checkout-7d9f8b6c5-fghij"]
    assert all(p["kind"] == "Pod" and p["apiVersion"] == "v1" for p in pods)
    assert api.requests[0].path == "/api/v1/namespaces/shop/pods"


def test_list_all_namespaces(cluster: KubeCluster, api: KubeApiFake) -> None:
    pods = cluster.list("Pod", None)

    assert {p["metadata"]["namespace"] for p in pods} == {"shop", "staging"}
    assert api.requests[0].path == "/api/v1/pods"


def test_list_follows_continue_tokens(api: KubeApiFake, tmp_path: Path) -> None:
    kube = KubeCluster(KubeCluster.from_config(str(api.write_kubeconfig(tmp_path / "kc")))._api, page_size=1)

    pods = kube.list("Pod", "shop")
    kube.close()

    assert names(pods) == ["checkout-7d9f8b6c5-abcde", "checkout-7d9f8b6c5-fghij"]
    assert [r.query.get("continue") for r in api.requests] == [None, "1"]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("app.kubernetes.io/name=checkout,tier=web", ["checkout-7d9f8b6c5-abcde"]),
        ("tier!=web", ["checkout-7d9f8b6c5-fghij"]),
        ("tier in (batch,cron)", ["checkout-7d9f8b6c5-fghij"]),
        ("tier notin (batch)", ["checkout-7d9f8b6c5-abcde"]),
        ("pod-template-hash", ["checkout-7d9f8b6c5-abcde", "checkout-7d9f8b6c5-fghij"]),
        ("!pod-template-hash", []),
    ],
    ids=["equality", "inequality", "in", "notin", "exists", "not-exists"],
)
def test_list_label_selector_is_sent_to_the_server(
        cluster: KubeCluster, api: KubeApiFake, selector: str, expected: list[str]) -> None:
    assert names(cluster.list("Pod", "shop", label_selector=selector)) == expected
    assert api.requests[0].query["labelSelector"] == selector


def test_list_events_as_the_kubelet_writes_them(cluster: KubeCluster) -> None:
    events = cluster.list("Event", "shop")

    backoff = next(e for e in events if e["reason"] == "BackOff")
    assert backoff["kind"] == "Event"
    assert backoff["involvedObject"] == {
        "kind": "Pod", "namespace": "shop", "name": "checkout-7d9f8b6c5-abcde", "uid": POD_UID,
        "apiVersion": "v1", "fieldPath": "spec.containers{checkout}"}
    assert backoff["message"] == (
        f"Back-off restarting failed container checkout in pod checkout-7d9f8b6c5-abcde_shop({POD_UID})")


def test_list_of_crd_not_installed_is_empty(cluster: KubeCluster, api: KubeApiFake) -> None:
    assert cluster.list("Application", "argocd") == []
    assert cluster.list("HelmRelease", None) == []
    assert api.requests[0].path == "/apis/argoproj.io/v1alpha1/namespaces/argocd/applications"


def test_crd_objects_come_back_when_installed(tmp_path: Path) -> None:
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
           "metadata": {"name": "shop", "namespace": "argocd"},
           "spec": {"source": {"repoURL": "https://github.com/acme/gitops", "path": "apps/shop"}}}
    with KubeApiFake([app]) as fake:
        kube = KubeCluster.from_config(str(fake.write_kubeconfig(tmp_path / "kc")))
        assert cluster_get(kube, "Application", "argocd", "shop")["spec"]["source"]["path"] == "apps/shop"
        assert names(kube.list("Application", "argocd")) == ["shop"]
        kube.close()


def cluster_get(kube: KubeCluster, kind: str, namespace: str, name: str) -> dict[str, Any]:
    obj = kube.get(kind, namespace, name)
    assert obj is not None
    return obj


# --- what the bot must never read ----------------------------------------------------------------

def test_secrets_are_refused_before_any_request(cluster: KubeCluster, api: KubeApiFake) -> None:
    with pytest.raises(PermanentError) as err:
        cluster.get("Secret", "shop", "checkout-db")
    with pytest.raises(PermanentError):
        cluster.list("Secret", "shop")
    assert err.value.code == "forbidden_kind"
    assert api.requests == []


def test_unknown_kinds_are_refused(cluster: KubeCluster) -> None:
    with pytest.raises(PermanentError, match="ServiceAccount"):
        cluster.list("ServiceAccount", "shop")


def test_configmaps_keep_keys_not_values(cluster: KubeCluster) -> None:
    for cm in [cluster_get(cluster, "ConfigMap", "shop", "checkout-config"), *cluster.list("ConfigMap", "shop")]:
        assert cm["data"] == {"DATABASE_URL": "", "JAVA_OPTS": ""}
        assert cm["binaryData"] == {"truststore.jks": ""}
        assert cm["metadata"]["annotations"] == {"team": "payments"}  # last-applied held the values
        assert "hunter2" not in repr(cm)


# --- logs -----------------------------------------------------------------------------------------

def test_previous_log_tail(cluster: KubeCluster, api: KubeApiFake) -> None:
    text = cluster.logs("shop", "checkout-7d9f8b6c5-abcde", "checkout", previous=True, tail_lines=3)

    assert text.splitlines() == ["2026-11-03T10:01:29Z INFO cart cache warmed 29",
                                 "java.lang.OutOfMemoryError: Java heap space",
                                 "\tat com.acme.checkout.Cart.load"]
    request = api.requests[-1]
    assert request.path == "/api/v1/namespaces/shop/pods/checkout-7d9f8b6c5-abcde/log"
    assert request.query == {"container": "checkout", "previous": "true", "tailLines": "3",
                             "limitBytes": "65536"}


def test_current_log(cluster: KubeCluster) -> None:
    text = cluster.logs("shop", "checkout-7d9f8b6c5-abcde", "checkout", previous=False, tail_lines=50)
    assert text == "2026-11-03T10:02:41Z INFO starting checkout 1.42.0\n"


def test_missing_previous_log_is_empty(cluster: KubeCluster, api: KubeApiFake) -> None:
    assert cluster.logs("shop", "checkout-7d9f8b6c5-fghij", "checkout", previous=True, tail_lines=50) == ""
    assert len(api.requests) == 1  # the 400 was really answered, not short-circuited


def test_log_of_pod_gone_is_empty(cluster: KubeCluster) -> None:
    assert cluster.logs("shop", "checkout-gone", "checkout", previous=True, tail_lines=50) == ""


def test_log_of_unknown_container_is_an_error(cluster: KubeCluster) -> None:
    with pytest.raises(PermanentError, match="not valid for pod"):
        cluster.logs("shop", "checkout-7d9f8b6c5-abcde", "sidecar", previous=False, tail_lines=5)


# --- errors ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_temporary(cluster: KubeCluster, api: KubeApiFake, status: int) -> None:
    api.fail_next(1, status=status)

    with pytest.raises(TemporaryError) as err:
        cluster.get("Pod", "shop", "checkout-7d9f8b6c5-abcde")

    assert err.value.code == "cluster_unavailable"
    assert err.value.__cause__ is not None  # chained to the client's exception
    assert cluster.get("Pod", "shop", "checkout-7d9f8b6c5-abcde") is not None  # next try passes


def test_too_many_requests_honours_retry_after(cluster: KubeCluster, api: KubeApiFake) -> None:
    api.fail_next(1, status=429, retry_after="7")

    with pytest.raises(TemporaryError) as err:
        cluster.list("Pod", "shop")

    assert err.value.delay == 7.0


@pytest.mark.e2e  # waits out a real timeout or spacing: the slow part
def test_read_timeout_is_temporary(cluster: KubeCluster, api: KubeApiFake) -> None:
    api.delay_next(1, 3.0)  # read timeout in the fixture is 1 s
    started = time.monotonic()

    with pytest.raises(TemporaryError):
        cluster.get("Pod", "shop", "checkout-7d9f8b6c5-abcde")

    assert time.monotonic() - started < 3.0  # cut at the 1 s read timeout, not waiting for the 3 s answer
    assert len(api.requests) == 1


def test_connection_refused_is_temporary(tmp_path: Path) -> None:
    with KubeApiFake([]) as fake:
        kubeconfig = fake.write_kubeconfig(tmp_path / "kc")
    kube = KubeCluster.from_config(str(kubeconfig), timeout=(1.0, 1.0))  # the server is gone now

    with pytest.raises(TemporaryError, match="unreachable"):
        kube.list("Pod", "shop")


def test_forbidden_is_permanent_and_names_verb_and_resource(cluster: KubeCluster, api: KubeApiFake) -> None:
    api.fail_next(1, status=403)

    with pytest.raises(PermanentError) as err:
        cluster.list("Pod", "shop")

    assert err.value.code == "forbidden"
    assert "get pods in namespace shop" in err.value.message
    assert "cannot get resource" in err.value.message  # the server's own words


def test_wrong_token_is_permanent(api: KubeApiFake, tmp_path: Path) -> None:
    api.token = "rotated"
    kube = KubeCluster.from_config(str(api.write_kubeconfig(tmp_path / "kc")))
    api.token = "another"

    with pytest.raises(PermanentError) as err:
        kube.get("Deployment", "shop", "checkout")

    kube.close()
    assert err.value.code == "forbidden"


def test_bad_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError, match="nope"):
        KubeCluster.from_config(str(missing))


# --- read-only ------------------------------------------------------------------------------------

def test_only_get_requests_are_made(cluster: KubeCluster, api: KubeApiFake) -> None:
    cluster.get("Deployment", "shop", "checkout")
    cluster.list("ReplicaSet", "shop", label_selector="app.kubernetes.io/name=checkout")
    cluster.list("Event", "shop")
    cluster.list("Node", None)
    cluster.logs("shop", "checkout-7d9f8b6c5-abcde", "checkout", previous=True, tail_lines=20)
    api.fail_next(1, status=500)
    with pytest.raises(TemporaryError):
        cluster.get("Pod", "shop", "checkout-7d9f8b6c5-abcde")

    assert len(api.requests) == 6
    assert api.methods == {"GET"}


def test_fake_rejects_writes(api: KubeApiFake) -> None:
    """The fake itself answers writes with 405, so a write slipping in would surface as an error."""
    request = urllib.request.Request(f"{api.url}/api/v1/namespaces/shop/pods", method="POST", data=b"{}",
                                     headers={"Authorization": "Bearer fake-token"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=5)
    err.value.close()
    assert err.value.code == 405


def test_in_cluster_config_is_used_in_a_pod(monkeypatch: pytest.MonkeyPatch) -> None:
    """In a pod (KUBERNETES_SERVICE_HOST set) without a kubeconfig, the service account is read: here it is
    absent, which must be a ConfigError, not a fallback to some other cluster."""
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "1")

    with pytest.raises(ConfigError, match="cannot load Kubernetes configuration"):
        KubeCluster.from_config(None)


# --- the fake itself, for tests that query it directly -----------------------------------------------

def fetch(api: KubeApiFake, path: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(f"{api.url}{path}", headers={"Authorization": "Bearer fake-token"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def test_fake_field_selector_for_events(api: KubeApiFake) -> None:
    status, body = fetch(api, "/api/v1/namespaces/shop/events?fieldSelector="
                              "involvedObject.kind%3DPod%2CinvolvedObject.name%3Dcheckout-7d9f8b6c5-abcde")

    assert status == 200
    assert body["kind"] == "EventList" and body["metadata"]["resourceVersion"]
    assert [e["reason"] for e in body["items"]] == ["BackOff"]
    assert "kind" not in body["items"][0]  # like the real server: kind lives on the list


def test_fake_not_found_is_a_real_status(api: KubeApiFake) -> None:
    status, body = fetch(api, "/api/v1/namespaces/shop/pods/x")

    assert status == 404
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": 'pods "x" not found', "reason": "NotFound",
                    "details": {"name": "x", "kind": "pods"}, "code": 404}
