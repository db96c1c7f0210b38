"""Replicas on PostgreSQL without Helm: deploy/kustomize-overlays/replicas-postgres (the base plus the Component
deploy/kustomize/components/replicas-postgres) must render what the chart renders with `replicaCount: 3` and
`database.existingSecret`, every object valid against the Kubernetes schema, and the base must stay one replica
on SQLite.

Both are rendered as tests/edges/test_deploy.py renders them: `kubectl kustomize`, and the Helm library of
helm-python-sdk. Names and labels differ by design (the chart's `app.kubernetes.io/instance`, the generated
ConfigMap's hash), so selectors are compared with each rendering's own Deployment selector, and a generated
ConfigMap by its name without the hash."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.conftest import ROOT
from tests.edges.test_deploy import CRDS, DEPLOY, K8S_VERSION, by_kind, helm, kustomize

OVERLAY = DEPLOY / "kustomize-overlays" / "replicas-postgres"
COMPONENT = DEPLOY / "kustomize" / "components" / "replicas-postgres"
DATABASE_SECRET = "gitops-autofix-db"
DATABASE_CIDR = "10.20.0.0/24"  # the overlay's example address, as in the chart README's command
# The chart's values for the same install: the overlay's database Secret and address, and the base's policies
# (the kustomize tree mounts policies/default.yaml; the chart mounts nothing unless told).
CHART_VALUES: dict[str, Any] = {
    "replicaCount": 3,
    "database": {"existingSecret": DATABASE_SECRET},
    "networkPolicy": {"egress": {"destinations": {"database": {"cidrs": [DATABASE_CIDR]}}}},
    "policies": {"files": {"default.yaml": (ROOT / "policies" / "default.yaml").read_text()}},
}


def render_overlay() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed (.ci/run installs Debian's kubernetes-client)"
    out = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    return render_overlay()


@pytest.fixture(scope="module")
def chart() -> list[dict[str, Any]]:
    return helm(CHART_VALUES)


@pytest.fixture(scope="module")
def base() -> list[dict[str, Any]]:
    return kustomize()


def deployment_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(docs, "Deployment")["spec"]
    return spec


def pod(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment_spec(docs)["template"]["spec"]
    return spec


def app(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [container] = pod(docs)["containers"]
    return dict(container)


def env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in app(docs)["env"]}


def volumes(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pod's volumes by name, a generated ConfigMap's hash suffix dropped (gitops-autofix-policies-4gf77hc7f2)."""
    generated = {d["metadata"]["name"] for d in docs if d["kind"] == "ConfigMap"
                 and d["metadata"]["name"].startswith("gitops-autofix-policies-")}
    found = {}
    for volume in copy.deepcopy(pod(docs)["volumes"]):
        if volume.get("configMap", {}).get("name") in generated:
            volume["configMap"]["name"] = volume["configMap"]["name"].rsplit("-", 1)[0]
        found[volume["name"]] = volume
    return found


def selector_free(spec: dict[str, Any], docs: list[dict[str, Any]], *, key: str) -> dict[str, Any]:
    """``spec`` without its label selector, after asserting it selects exactly this rendering's pods."""
    spec = copy.deepcopy(spec)
    assert spec.pop(key) == {"matchLabels": deployment_spec(docs)["selector"]["matchLabels"]}
    return spec


def egress(docs: list[dict[str, Any]]) -> list[str]:
    """Egress rules in a canonical order: their order does not change what a NetworkPolicy allows."""
    return sorted(json.dumps(rule, sort_keys=True) for rule in by_kind(docs, "NetworkPolicy")["spec"]["egress"])


# -- the overlay renders what the chart renders ------------------------------------------------------------


def test_replicas_and_rolling_update_match_the_chart(overlay: list[dict[str, Any]],
                                                     chart: list[dict[str, Any]]) -> None:
    assert deployment_spec(overlay)["replicas"] == deployment_spec(chart)["replicas"] == 3
    assert deployment_spec(overlay)["strategy"] == deployment_spec(chart)["strategy"] == {
        "type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}


def test_the_database_url_comes_from_the_secret_as_in_the_chart(overlay: list[dict[str, Any]],
                                                                chart: list[dict[str, Any]]) -> None:
    url = env(overlay)["AUTOFIX_DATABASE_URL"]
    assert url == env(chart)["AUTOFIX_DATABASE_URL"] == {"name": "AUTOFIX_DATABASE_URL", "valueFrom": {
        "secretKeyRef": {"name": DATABASE_SECRET, "key": "AUTOFIX_DATABASE_URL"}}}  # never a value
    settings = [d for d in overlay if d["kind"] == "ConfigMap"]
    assert not [d for d in settings if "AUTOFIX_DATABASE_URL" in d.get("data", {})]
    # The rest of the environment agrees too: the same variables, from the same places.
    assert env(overlay) == env(chart)


def test_the_data_dir_is_a_per_pod_empty_dir_and_no_claim_as_in_the_chart(overlay: list[dict[str, Any]],
                                                                         chart: list[dict[str, Any]]) -> None:
    for docs in (overlay, chart):
        assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
        assert volumes(docs)["data"] == {"name": "data", "emptyDir": {"sizeLimit": "5Gi"}}
    assert volumes(overlay) == volumes(chart)
    assert app(overlay)["volumeMounts"] == app(chart)["volumeMounts"]


def test_the_disruption_budget_and_spread_match_the_chart(overlay: list[dict[str, Any]],
                                                         chart: list[dict[str, Any]]) -> None:
    budgets = [selector_free(by_kind(docs, "PodDisruptionBudget")["spec"], docs, key="selector")
               for docs in (overlay, chart)]
    assert budgets[0] == budgets[1] == {"minAvailable": 1}  # maxUnavailable gone, not beside it
    spreads = []
    for docs in (overlay, chart):
        [spread] = pod(docs)["topologySpreadConstraints"]
        spreads.append(selector_free(spread, docs, key="labelSelector"))
    assert spreads[0] == spreads[1] == {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                        "whenUnsatisfiable": "ScheduleAnyway"}


def test_egress_to_the_database_matches_the_chart(overlay: list[dict[str, Any]],
                                                  chart: list[dict[str, Any]]) -> None:
    assert egress(overlay) == egress(chart)
    database = {"to": [{"ipBlock": {"cidr": DATABASE_CIDR}}], "ports": [{"port": 5432, "protocol": "TCP"}]}
    assert json.dumps(database, sort_keys=True) in egress(overlay)


# -- valid objects, the Secret outside the build -----------------------------------------------------------


def test_every_object_is_valid_against_the_kubernetes_schema(overlay: list[dict[str, Any]],
                                                             chart: list[dict[str, Any]]) -> None:
    for docs in (overlay, chart):
        kinds = set()
        for doc in docs:
            kinds.add(doc["kind"])
            if (doc["apiVersion"], doc["kind"]) in CRDS:
                continue
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises with the failing field
        assert {"Deployment", "PodDisruptionBudget", "NetworkPolicy", "Service", "ClusterRole"} <= kinds
    assert all(d["metadata"].get("namespace") == "gitops-autofix" for d in overlay
               if d["kind"] not in {"Namespace", "ClusterRole", "ClusterRoleBinding"})


def test_the_example_secret_is_valid_names_what_the_pod_reads_and_is_not_built(
        overlay: list[dict[str, Any]]) -> None:
    example = yaml.safe_load((OVERLAY / "secret.example.yaml").read_text())
    kubernetes_validate.validate(example, K8S_VERSION, strict=True)
    reference = env(overlay)["AUTOFIX_DATABASE_URL"]["valueFrom"]["secretKeyRef"]
    assert example["metadata"] == {"name": reference["name"], "namespace": "gitops-autofix"}
    assert list(example["stringData"]) == [reference["key"]]
    assert example["stringData"][reference["key"]].startswith("postgresql://")
    assert not [d for d in overlay if d["kind"] == "Secret"]  # never rendered: created by the installer
    built = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert "secret.example.yaml" not in json.dumps(built)


def test_the_component_is_not_part_of_the_base_build() -> None:
    base_kustomization = yaml.safe_load((DEPLOY / "kustomize" / "kustomization.yaml").read_text())
    assert "components" not in base_kustomization
    assert not [r for r in base_kustomization["resources"] if "components" in r or "overlays" in r]
    assert yaml.safe_load((COMPONENT / "kustomization.yaml").read_text())["kind"] == "Component"


# -- the base stays one replica on SQLite --------------------------------------------------------------------


def test_the_base_stays_one_replica_on_sqlite_as_the_chart_defaults(base: list[dict[str, Any]]) -> None:
    defaults = helm()
    for docs in (base, defaults):
        assert deployment_spec(docs)["replicas"] == 1
        assert deployment_spec(docs)["strategy"] == {"type": "Recreate"}
        assert "AUTOFIX_DATABASE_URL" not in env(docs)
        assert by_kind(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert volumes(docs)["data"] == {"name": "data",
                                         "persistentVolumeClaim": {"claimName": "gitops-autofix-data"}}
        assert selector_free(by_kind(docs, "PodDisruptionBudget")["spec"], docs, key="selector") == {
            "maxUnavailable": 1}
        assert "topologySpreadConstraints" not in pod(docs)
    assert egress(base) == egress(defaults)


def test_the_overlay_changes_nothing_else_of_the_base(overlay: list[dict[str, Any]],
                                                      base: list[dict[str, Any]]) -> None:
    """Undo exactly the documented changes on the overlay's objects: what is left is the base, byte for byte."""
    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    by_key = {key(d): copy.deepcopy(d) for d in overlay}
    deployment = by_key[("Deployment", "gitops-autofix")]["spec"]
    deployment["replicas"], deployment["strategy"] = 1, {"type": "Recreate"}
    template = deployment["template"]["spec"]
    del template["topologySpreadConstraints"]
    [container] = template["containers"]
    container["env"] = [e for e in container["env"] if e["name"] != "AUTOFIX_DATABASE_URL"]
    [data] = [v for v in template["volumes"] if v["name"] == "data"]
    data.pop("emptyDir")
    data["persistentVolumeClaim"] = {"claimName": "gitops-autofix-data"}
    by_key[("PodDisruptionBudget", "gitops-autofix")]["spec"] = {
        "maxUnavailable": 1, "selector": by_key[("PodDisruptionBudget", "gitops-autofix")]["spec"]["selector"]}
    by_key[("NetworkPolicy", "gitops-autofix")]["spec"]["egress"].pop()  # the database rule, appended last
    undone = {**by_key, ("PersistentVolumeClaim", "gitops-autofix-data"): by_kind(base, "PersistentVolumeClaim")}
    assert undone == {key(d): d for d in base}
