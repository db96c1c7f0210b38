"""What each chart option does, as an operator relies on it: policies mounted where the app's own loader reads
them and a rollout on change, a schema that rejects mistakes before rendering, a grace period above the drain,
a `helm test` pod its NetworkPolicy lets in, alert rules promtool accepts (and that fire), a dashboard on the
service's metric names only, a values table that matches values.yaml, and the kustomize tree's equivalents.

Rendered offline with the Helm library of helm-python-sdk (tests/edges/test_deploy.py `helm()`); it validates
values against values.schema.json as the helm binary does (checked below, so no second validator is needed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from helm_python.errors import HelmValuesError
from prometheus_client import generate_latest

from app import main as app_main
from app import policies
from tests.conftest import ROOT
from tests.edges.test_deploy import CHART, DEPLOY, by_kind, helm, kustomize
from tests.edges.test_metrics_exposition import populated

TEAM_POLICY = """\
version: 1
namespaces:
  deny: ["kube-*", "payments"]
owners:
  - namespaces: ["shop-*"]
    reviewers: [alice]
limits:
  prs_per_hour: 3
"""


def pod_spec(docs: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = by_kind(docs, "Deployment")["spec"]["template"]["spec"]
    return spec


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = pod_spec(docs)["containers"]
    return dict(found)


def named(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def kubelet_layout(directory: Path, data: dict[str, str]) -> Path:
    """A ConfigMap volume as the kubelet writes it (atomic writer): the files in a timestamped dir, `..data`
    a symlink to it, and one symlink per key. The loader must see exactly the keys, nothing else."""
    stamped = directory / "..2026_12_01_10_00_00.123456789"
    stamped.mkdir(parents=True)
    for name, text in data.items():
        (stamped / name).write_text(text)
    (directory / "..data").symlink_to(stamped.name)
    for name in data:
        (directory / name).symlink_to(f"..data/{name}")
    return directory


# -- policies ---------------------------------------------------------------------------------------------


def test_policies_from_values_are_mounted_where_the_policy_loader_reads_them(tmp_path: Path) -> None:
    shipped = (ROOT / "policies" / "default.yaml").read_text()
    docs = helm({"policies": {"files": {"default.yaml": shipped, "zz-team.yaml": TEAM_POLICY}}})
    configmap = named(docs, "ConfigMap", "gitops-autofix-policies")
    assert configmap["data"] == {"default.yaml": shipped, "zz-team.yaml": TEAM_POLICY}  # byte for byte
    app = container(docs)
    env = {e["name"]: e for e in app["env"]}
    [mount] = [m for m in app["volumeMounts"] if m["name"] == "policies"]
    assert env["AUTOFIX_POLICY_DIR"] == {"name": "AUTOFIX_POLICY_DIR", "value": mount["mountPath"]}
    assert mount["readOnly"] is True
    [volume] = [v for v in pod_spec(docs)["volumes"] if v["name"] == "policies"]
    assert volume == {"name": "policies", "configMap": {"name": "gitops-autofix-policies"}}  # every key a file

    loaded = policies.load(kubelet_layout(tmp_path / "policies", configmap["data"]))
    assert loaded.limits.prs_per_hour == 3 and loaded.namespaces.deny == ["kube-*", "payments"]
    assert loaded.outcomes == policies.load(ROOT / "policies").outcomes  # the rest from the shipped default


def test_a_teams_file_alone_is_layered_over_the_images_shipped_defaults(tmp_path: Path) -> None:
    """The image names its copy of policies/default.yaml in AUTOFIX_POLICY_DEFAULTS: a chart user's one file
    changes what it names, and every cause keeps the shipped allowed paths."""
    docs = helm({"policies": {"files": {"team.yaml": TEAM_POLICY}}})
    configmap = named(docs, "ConfigMap", "gitops-autofix-policies")
    directory = kubelet_layout(tmp_path / "policies", configmap["data"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "COPY policies ./policies" in dockerfile and "cp -r policies /opt/autofix/policies" in dockerfile
    assert "AUTOFIX_POLICY_DEFAULTS=/opt/autofix/policies/default.yaml" in dockerfile
    assert "AUTOFIX_POLICY_DEFAULTS" not in {e["name"] for e in container(docs)["env"]}, "the image's stays"

    loaded = policies.load(directory, defaults=ROOT / "policies" / "default.yaml")  # /opt/autofix/policies here
    shipped = policies.load(ROOT / "policies")
    assert loaded.limits.prs_per_hour == 3 and loaded.namespaces.deny == ["kube-*", "payments"]
    assert loaded.causes == shipped.causes and loaded.kinds == shipped.kinds and loaded.llm == shipped.llm


def test_an_invalid_policy_in_values_is_what_the_service_would_refuse(tmp_path: Path) -> None:
    """The chart does not parse policies: the rendered files are what `autofix serve` loads, and rejects."""
    docs = helm({"policies": {"files": {"team.yaml": "limits:\n  prs_per_hour: -1\n"}}})
    data = named(docs, "ConfigMap", "gitops-autofix-policies")["data"]
    with pytest.raises(policies.ConfigError, match=r"team.yaml:2: limits.prs_per_hour"):
        policies.load(kubelet_layout(tmp_path / "policies", data))


def test_a_policy_change_rolls_the_pod_and_the_defaults_keep_the_image_policies() -> None:
    def annotations(values: dict[str, Any] | None) -> dict[str, str]:
        found: dict[str, str] = by_kind(helm(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return found

    one = annotations({"policies": {"files": {"team.yaml": TEAM_POLICY}}})
    two = annotations({"policies": {"files": {"team.yaml": TEAM_POLICY.replace("3", "4")}}})
    assert one["checksum/policies"] != two["checksum/policies"]
    assert one["checksum/config"] == two["checksum/config"]
    defaults = helm()
    assert "checksum/policies" not in annotations(None)
    assert not [d for d in defaults if d["metadata"]["name"].endswith("-policies")]
    assert "AUTOFIX_POLICY_DIR" not in {e["name"] for e in container(defaults)["env"]}  # the image's own


def test_an_existing_policies_configmap_is_mounted_instead() -> None:
    docs = helm({"policies": {"existingConfigMap": "team-policies", "files": {"team.yaml": TEAM_POLICY}}})
    assert not [d for d in docs if d["metadata"]["name"].endswith("-policies")]
    [volume] = [v for v in pod_spec(docs)["volumes"] if v["name"] == "policies"]
    assert volume["configMap"] == {"name": "team-policies"}
    assert "AUTOFIX_POLICY_DIR" in {e["name"] for e in container(docs)["env"]}


# -- values.schema.json -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("values", "where"), [
    ({"replicaCount": "two"}, "/replicaCount"),
    ({"service": {"port": "http"}}, "/service/port"),
    ({"servce": {"port": 8080}}, "servce"),
    ({"config": {"extraEnv": {"AUTOFIX_LEASE_SECONDS": "900"}}}, "/config/extraEnv"),  # the 0.1.x map
    ({"config": {"logFormat": "yaml"}}, "/config/logFormat"),
    ({"config": {"workers": 0}}, "/config/workers"),
    ({"policies": {"files": {"team.txt": "version: 1"}}}, "team.txt"),
    ({"networkPolicy": {"egress": {"destinations": {"forge": {"cidrs": ["github.com"]}}}}}, "/cidrs/0"),
    ({"prometheusRule": {"thresholds": {"undecidedMinutes": "30"}}}, "undecidedMinutes"),
    ({"terminationGracePeriodSeconds": -1}, "/terminationGracePeriodSeconds"),
])
def test_the_schema_rejects_unknown_and_mistyped_values(values: dict[str, Any], where: str) -> None:
    with pytest.raises(HelmValuesError, match=re.escape(where)):
        helm(values)


def test_the_schema_is_draft_07_and_accepts_the_defaults_and_the_argocd_example() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert list(jsonschema.Draft7Validator(schema).iter_errors(defaults)) == []
    assert set(schema["properties"]) - {"global"} == set(defaults)  # every value typed, none left over
    argocd = yaml.safe_load((DEPLOY / "argocd" / "application.yaml").read_text())
    assert helm(argocd["spec"]["source"]["helm"]["valuesObject"])


# -- pod options ------------------------------------------------------------------------------------------


def test_pod_options_reach_the_pod() -> None:
    docs = helm({
        "config": {"extraEnv": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                                {"name": "AUTOFIX_LEASE_SECONDS", "value": "900"}],
                   "extraEnvFrom": [{"secretRef": {"name": "more-settings"}}], "logLevel": "DEBUG"},
        "extraVolumes": [{"name": "ca", "configMap": {"name": "corporate-ca"}}],
        "extraVolumeMounts": [{"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True}],
        "podLabels": {"team": "platform"}, "podAnnotations": {"owner": "sre"},
        "priorityClassName": "platform-critical",
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 5},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "failureThreshold": 6},
        "service": {"annotations": {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}},
        "terminationGracePeriodSeconds": 90,
    })
    deployment = by_kind(docs, "Deployment")
    pod, app = pod_spec(docs), container(docs)
    env = {e["name"]: e for e in app["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["AUTOFIX_LEASE_SECONDS"]["value"] == "900"
    assert {"secretRef": {"name": "more-settings"}} in app["envFrom"]
    assert {"name": "ca", "configMap": {"name": "corporate-ca"}} in pod["volumes"]
    assert {"name": "ca", "mountPath": "/etc/ssl/corporate", "readOnly": True} in app["volumeMounts"]
    template = deployment["spec"]["template"]["metadata"]
    assert template["labels"]["team"] == "platform" and template["annotations"]["owner"] == "sre"
    assert "team" not in deployment["spec"]["selector"]["matchLabels"]  # labels never change the selector
    assert pod["priorityClassName"] == "platform-critical"
    assert pod["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    assert app["readinessProbe"]["periodSeconds"] == 5 and app["livenessProbe"]["failureThreshold"] == 6
    assert pod["terminationGracePeriodSeconds"] == 90
    service = by_kind(docs, "Service")
    assert service["metadata"]["annotations"] == {"service.beta.kubernetes.io/aws-load-balancer-internal": "true"}
    assert by_kind(docs, "ConfigMap")["data"]["LOG_LEVEL"] == "DEBUG"


def test_logs_default_to_json_lines_at_info() -> None:
    data = by_kind(helm(), "ConfigMap")["data"]
    assert (data["LOG_FORMAT"], data["LOG_LEVEL"]) == ("json", "INFO")


def test_the_grace_period_is_above_the_service_drain_time() -> None:
    """SIGTERM starts the drain (app/main.py): uvicorn's graceful shutdown, then the exporter's join, the
    workers' stop and a last export pass, one after the other. Kubernetes' default 30 s would cut it short."""
    drain = (app_main.GRACEFUL_SHUTDOWN_SECONDS + app_main.EXPORT_STOP_SECONDS + app_main.POOL_STOP_SECONDS
             + app_main.EXPORT_STOP_SECONDS)
    helm_grace = pod_spec(helm())["terminationGracePeriodSeconds"]
    kustomize_grace = pod_spec(kustomize())["terminationGracePeriodSeconds"]
    assert helm_grace == kustomize_grace > drain > 30


# -- helm test --------------------------------------------------------------------------------------------


class _Readyz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - the http.server interface
        body = json.dumps({"status": "ok" if self.status == 200 else "unavailable"}).encode()
        self.send_response(self.status if self.path == "/readyz" else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def readyz_server() -> Iterator[tuple[ThreadingHTTPServer, type[_Readyz]]]:
    handler = type("Readyz", (_Readyz,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


@pytest.mark.timeout(60)
def test_the_helm_test_pod_asks_readyz_and_the_network_policy_lets_it_in(
        readyz_server: tuple[ThreadingHTTPServer, type[_Readyz]]) -> None:
    docs = helm()
    [test_pod] = [d for d in docs if d["kind"] == "Pod"]
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    [probe] = test_pod["spec"]["containers"]
    assert probe["image"] == container(docs)["image"]  # the same image: no extra image to mirror
    context = probe["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]} and test_pod["spec"]["securityContext"]["runAsNonRoot"]
    labels = test_pod["metadata"]["labels"]
    selector = by_kind(docs, "Service")["spec"]["selector"]
    assert not selector.items() <= labels.items()  # the Service never routes webhooks to the test pod
    policy = by_kind(docs, "NetworkPolicy")["spec"]
    allowed = [peer["podSelector"]["matchLabels"] for rule in policy["ingress"] for peer in rule["from"]
               if "podSelector" in peer]
    assert any(match.items() <= labels.items() for match in allowed)
    # The pod's own script, run against a loopback /readyz: exit 0 when ready, 1 when not.
    command = probe["command"]
    assert command[:2] == ["python", "-c"]
    url = "http://gitops-autofix.gitops-autofix.svc:8080/readyz"
    assert url in command[2]
    server, handler = readyz_server
    script = command[2].replace(url, f"http://127.0.0.1:{server.server_port}/readyz")
    ready = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert ready.returncode == 0 and "200" in ready.stdout, ready.stderr
    handler.status = 503
    unready = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    assert unready.returncode != 0 and "503" in unready.stderr
    no_rule = by_kind(helm({"tests": {"enabled": False}}), "NetworkPolicy")["spec"]["ingress"]
    assert len(no_rule) == len(policy["ingress"]) - 1


# -- PrometheusRule ---------------------------------------------------------------------------------------

# The series the service really exposes (app/api/telemetry.py, populated as in test_metrics_exposition): the alerts
# and panels may query these only, so renaming a metric fails here, not on a silent dashboard.
def _exposed() -> set[str]:
    page = generate_latest(populated().registry).decode()
    names = {re.split(r"[{ ]", line, maxsplit=1)[0] for line in page.splitlines() if line and not line.startswith("#")}
    for name, kind in re.findall(r"^# TYPE (\S+) (\S+)$", page, flags=re.M):  # families with no sample yet
        names |= {f"{name}_count", f"{name}_bucket"} if kind == "histogram" else {name}
    return names


METRICS = _exposed()


def metric_names(expr: str) -> set[str]:
    """The series names a PromQL expression selects: label matchers, strings, `by (...)` lists and function
    names removed; what is left of the identifiers must be metric names."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    names = set(re.findall(r"\b[a-zA-Z_:][a-zA-Z0-9_:]*\b(?!\s*\()", expr))
    return names - {"and", "or", "unless", "bool", "offset"}


def allowed(name: str) -> bool:
    return name in METRICS or f"{name}_count" in METRICS  # a histogram's own name, as in histogram_quantile


def rule_spec(values: dict[str, Any] | None = None) -> dict[str, Any]:
    docs = helm({"prometheusRule": {"enabled": True, **(values or {})}})
    spec: dict[str, Any] = by_kind(docs, "PrometheusRule")["spec"]
    return spec


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool comes with Debian's prometheus package (.ci/run installs it)"
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.timeout(120)
def test_the_alert_rules_pass_promtool_and_name_only_the_service_metrics(tmp_path: Path) -> None:
    spec = rule_spec()
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(spec))  # a PrometheusRule's spec is a rule file
    result = promtool("check", "rules", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr
    [group] = spec["groups"]
    alerts = {rule["alert"]: rule for rule in group["rules"]}
    assert set(alerts) == {"AutofixJobQueuedTooLong", "AutofixJobsFailing", "AutofixDependencyErrors",
                           "AutofixDependencyDown", "AutofixAlertsUndecided", "AutofixExportBacklogOld"}
    readme = (CHART / "README.md").read_text()
    for name, rule in alerts.items():
        assert {"summary", "description", "runbook_url"} <= set(rule["annotations"]), name
        anchor = rule["annotations"]["runbook_url"].split("#")[1]
        assert f"### {name}\n" in readme and anchor == name.lower()  # GitHub's anchor of that heading
        assert all(allowed(m) for m in metric_names(rule["expr"])), rule["expr"]
        assert 'namespace="gitops-autofix"' in rule["expr"]  # one release's pod, not every install's


def test_the_alert_thresholds_and_labels_come_from_values() -> None:
    spec = rule_spec({"labels": {"release": "kube-prometheus-stack"}, "alertLabels": {"team": "platform"},
                      "thresholds": {"undecidedMinutes": 45, "oldestQueuedSeconds": 120}})
    alerts = {rule["alert"]: rule for rule in spec["groups"][0]["rules"]}
    assert alerts["AutofixAlertsUndecided"]["expr"].endswith("> 2700")
    assert alerts["AutofixJobQueuedTooLong"]["expr"].endswith("> 120")
    assert all(rule["labels"]["team"] == "platform" for rule in alerts.values())
    docs = helm({"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}})
    assert by_kind(docs, "PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert not [d for d in helm() if d["kind"] == "PrometheusRule"]  # off by default: needs the CRDs


@pytest.mark.timeout(120)
def test_the_alerts_fire_on_the_series_the_service_exposes(tmp_path: Path) -> None:
    """promtool's rule unit tests: an undecided job 40 minutes old, failed jobs, a dependency down, fire; a
    healthy series does not."""
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rule_spec()))
    series = 'namespace="gitops-autofix",pod="gitops-autofix-5d9c7b-x2k4q"'
    tests = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [
            {"series": f"autofix_jobs_oldest_undecided_seconds{{{series}}}", "values": "0+60x60"},
            {"series": f'autofix_jobs_finished_total{{{series},state="failed",outcome=""}}', "values": "0 0 1 1 2x60"},
            {"series": f'autofix_dependency_up{{{series},dependency="forge"}}', "values": "0x60"},
            {"series": f'autofix_dependency_up{{{series},dependency="cluster"}}', "values": "1x60"},
            {"series": f"autofix_jobs_oldest_queued_seconds{{{series}}}", "values": "0x60"},
        ],
        "alert_rule_test": [
            {"eval_time": "40m", "alertname": "AutofixAlertsUndecided", "exp_alerts": [{
                "exp_labels": {"severity": "warning"},
                "exp_annotations": {
                    "summary": "Alerts received 30 minutes ago have no decision yet.",
                    "description": "The oldest job queued or running is 40m 0s old: no PR, no skip, no failure "
                                   "for it.",
                    "runbook_url": "https://github.com/acme/gitops-autofix/blob/main/deploy/helm/gitops-autofix/"
                                   "README.md#autofixalertsundecided"}}]},
            {"eval_time": "20m", "alertname": "AutofixAlertsUndecided", "exp_alerts": []},
            {"eval_time": "10m", "alertname": "AutofixJobsFailing",
             "exp_alerts": [{"exp_labels": {"severity": "warning"}, "exp_annotations": {
                 "summary": "GitOps Autofix jobs are failing.",
                 "description": "2 jobs failed (retries exhausted) over the last 30 minutes: the pod's logs (one "
                                "line per decision) and `autofix explain FINGERPRINT` say why.",
                 "runbook_url": "https://github.com/acme/gitops-autofix/blob/main/deploy/helm/gitops-autofix/"
                                "README.md#autofixjobsfailing"}}]},
            {"eval_time": "15m", "alertname": "AutofixDependencyDown",
             "exp_alerts": [{"exp_labels": {"severity": "warning", "dependency": "forge"}, "exp_annotations": {
                 "summary": "GitOps Autofix cannot reach forge.",
                 "description": "The last call to forge failed and none succeeded for 10m: /readyz lists the "
                                "error; `autofix doctor` checks every edge.",
                 "runbook_url": "https://github.com/acme/gitops-autofix/blob/main/deploy/helm/gitops-autofix/"
                                "README.md#autofixdependencydown"}}]},
            {"eval_time": "30m", "alertname": "AutofixJobQueuedTooLong", "exp_alerts": []},
        ],
    }]}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(tests))
    result = promtool("test", "rules", str(tmp_path / "tests.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


# -- Grafana dashboard ------------------------------------------------------------------------------------


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((CHART / "dashboards" / "autofix.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


@pytest.mark.timeout(120)
def test_the_dashboard_is_valid_promql_on_the_service_metrics_only(tmp_path: Path) -> None:
    exprs = dashboard_exprs()
    titles = {p["title"] for p in json.loads((CHART / "dashboards" / "autofix.json").read_text())["panels"]}
    assert {"Alerts received", "Jobs by state", "Decisions by outcome", "Pull requests by cause",
            "Stage duration p95", "Dependency errors", "Oldest queued job", "Export backlog"} <= titles
    for expr in exprs:
        assert all(allowed(m) for m in metric_names(expr)), expr
        assert metric_names(expr), expr  # each panel reads a series of the service
    # Grafana's variables replaced, every expression checked by promtool as a recording rule.
    concrete = [e.replace("$__rate_interval", "5m").replace("$namespace", "gitops-autofix") for e in exprs]
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{i}", "expr": expr} for i, expr in enumerate(concrete)]}]}
    (tmp_path / "dashboard.yaml").write_text(yaml.safe_dump(rules))
    result = promtool("check", "rules", str(tmp_path / "dashboard.yaml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_metric_name_check_catches_an_unknown_metric() -> None:
    assert metric_names('sum by (le) (rate(autofix_stage_duration_seconds_bucket{stage="fix"}[5m]))') == {
        "autofix_stage_duration_seconds_bucket"}
    assert not allowed("autofix_jobs_total") and not allowed("autofix_jobs_bucket")
    assert allowed("autofix_stage_duration_seconds_bucket")


def test_the_dashboard_configmap_carries_the_sidecar_label_and_the_json() -> None:
    docs = helm({"dashboard": {"enabled": True, "labelName": "grafana_dashboard", "labelValue": "1",
                               "namespace": "monitoring", "annotations": {"grafana_folder": "Platform"}}})
    configmap = named(docs, "ConfigMap", "gitops-autofix-dashboard")
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert configmap["metadata"]["namespace"] == "monitoring"
    assert configmap["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    assert json.loads(configmap["data"]["gitops-autofix.json"]) == json.loads(
        (CHART / "dashboards" / "autofix.json").read_text())
    custom = helm({"dashboard": {"enabled": True, "labelName": "dashboards", "labelValue": "autofix"}})
    assert named(custom, "ConfigMap", "gitops-autofix-dashboard")["metadata"]["labels"]["dashboards"] == "autofix"
    assert not [d for d in helm() if d["metadata"]["name"].endswith("-dashboard")]


# -- Chart.yaml and its README ----------------------------------------------------------------------------


def test_chart_metadata_names_maintainers_sources_and_kube_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["maintainers"] and all(m["name"] for m in chart["maintainers"])
    assert chart["sources"] and all(s.startswith("https://") for s in chart["sources"])
    assert chart["kubeVersion"] and chart["home"].startswith("https://")
    assert chart["version"] == "0.2.0"  # the extraEnv change is breaking: a minor bump before 1.0
    assert "extraEnv" in (CHART / "README.md").read_text().split("## Upgrading")[1]


def test_the_readme_values_table_is_generated_from_values_yaml() -> None:
    from scripts import chart_docs

    readme = (CHART / "README.md").read_text()
    values_text = (CHART / "values.yaml").read_text()
    assert chart_docs.render(readme, values_text) == readme, "stale: run python scripts/chart_docs.py"
    keys = [row[0] for row in chart_docs.rows(values_text)]
    for key in ("config.extraEnv", "policies.files", "terminationGracePeriodSeconds", "readinessProbe",
                "prometheusRule.thresholds.undecidedMinutes", "dashboard.labelName", "service.annotations"):
        assert key in keys
    assert "readinessProbe.httpGet" not in keys  # documented as one value
    stale = chart_docs.render(readme, values_text.replace("# -- Service type.", "# -- The Service type."))
    assert stale != readme
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "chart_docs.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -- the kustomize tree -----------------------------------------------------------------------------------


def test_kustomize_mounts_generated_policies_and_logs_json(tmp_path: Path) -> None:
    docs = kustomize()
    [policy_map] = [d for d in docs if d["kind"] == "ConfigMap" and
                    d["metadata"]["name"].startswith("gitops-autofix-policies-")]  # the content's hash
    [volume] = [v for v in pod_spec(docs)["volumes"] if v["name"] == "policies"]
    assert volume["configMap"]["name"] == policy_map["metadata"]["name"]  # the pod rolls with the content
    app = container(docs)
    [mount] = [m for m in app["volumeMounts"] if m["name"] == "policies"]
    env = {e["name"]: e.get("value") for e in app["env"]}
    assert env["AUTOFIX_POLICY_DIR"] == mount["mountPath"]
    shipped = (ROOT / "policies" / "default.yaml").read_text()
    assert (DEPLOY / "kustomize" / "policies" / "default.yaml").read_text() == shipped, \
        "cp policies/default.yaml deploy/kustomize/policies/"
    assert policies.load(kubelet_layout(tmp_path / "p", policy_map["data"])) == policies.load(ROOT / "policies")
    settings = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "gitops-autofix")
    assert (settings["data"]["LOG_FORMAT"], settings["data"]["LOG_LEVEL"]) == ("json", "INFO")


# -- more than one replica (issue 17) ---------------------------------------------------------------------

EXTERNAL_DB = {"database": {"existingSecret": "gitops-autofix-db"}}


def test_more_than_one_replica_needs_an_external_database() -> None:
    with pytest.raises(HelmValuesError, match=re.escape("/database")):
        helm({"replicaCount": 3})
    with pytest.raises(HelmValuesError, match=re.escape("/database/existingSecret")):
        helm({"replicaCount": 3, "database": {"existingSecret": ""}})
    assert by_kind(helm({"replicaCount": 3, **EXTERNAL_DB}), "Deployment")["spec"]["replicas"] == 3
    schema = json.loads((CHART / "values.schema.json").read_text())
    validator = jsonschema.Draft7Validator(schema)  # the same rule for any draft-07 validator, not only Helm's
    assert [e.message for e in validator.iter_errors({"replicaCount": 3})] == ["'database' is a required property"]
    assert list(validator.iter_errors({"replicaCount": 3, **EXTERNAL_DB})) == []
    assert list(validator.iter_errors({"replicaCount": 1})) == []


def test_replicas_on_postgresql_roll_without_downtime_and_spread() -> None:
    docs = helm({"replicaCount": 3, **EXTERNAL_DB})
    deployment = by_kind(docs, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "RollingUpdate",
                                              "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    env = {e["name"]: e for e in container(docs)["env"]}
    assert env["AUTOFIX_DATABASE_URL"] == {"name": "AUTOFIX_DATABASE_URL", "valueFrom": {"secretKeyRef": {
        "name": "gitops-autofix-db", "key": "AUTOFIX_DATABASE_URL"}}}  # from the Secret, never a value
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    [data] = [v for v in pod_spec(docs)["volumes"] if v["name"] == "data"]
    assert data == {"name": "data", "emptyDir": {"sizeLimit": "5Gi"}}
    assert by_kind(docs, "PodDisruptionBudget")["spec"]["minAvailable"] == 1
    assert "maxUnavailable" not in by_kind(docs, "PodDisruptionBudget")["spec"]
    [spread] = pod_spec(docs)["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname" and spread["whenUnsatisfiable"] == "ScheduleAnyway"
    assert spread["labelSelector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    own = [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "gitops-autofix"}}}]
    assert pod_spec(helm({"replicaCount": 3, **EXTERNAL_DB, "topologySpreadConstraints": own}))[
        "topologySpreadConstraints"] == own


def test_one_replica_keeps_sqlite_recreate_and_its_volume() -> None:
    for values in ({}, EXTERNAL_DB):
        docs = helm(values)
        assert by_kind(docs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
        assert "topologySpreadConstraints" not in pod_spec(docs)
    docs = helm()
    assert by_kind(docs, "Deployment")["spec"]["strategy"] == {"type": "Recreate"}
    assert "AUTOFIX_DATABASE_URL" not in {e["name"] for e in container(docs)["env"]}
    assert by_kind(docs, "PersistentVolumeClaim")["spec"]["accessModes"] == ["ReadWriteOnce"]
    [data] = [v for v in pod_spec(docs)["volumes"] if v["name"] == "data"]
    assert data["persistentVolumeClaim"]["claimName"] == "gitops-autofix-data"
    # One replica on PostgreSQL rolls too: the store is not on the pod's volume.
    assert by_kind(helm(EXTERNAL_DB), "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"


def test_the_database_egress_rule_opens_only_its_port() -> None:
    values = {"replicaCount": 2, **EXTERNAL_DB,
              "networkPolicy": {"egress": {"destinations": {"database": {"cidrs": ["10.20.0.0/24"]}}}}}
    rules = by_kind(helm(values), "NetworkPolicy")["spec"]["egress"]
    [rule] = [r for r in rules if r.get("to") == [{"ipBlock": {"cidr": "10.20.0.0/24"}}]]
    assert rule["ports"] == [{"protocol": "TCP", "port": 5432}]
