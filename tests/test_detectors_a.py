"""Detectors and fixers of issue 3 part A over realistic evidence: config references, probes, slow start,
wrong command, application crash.

Evidence is gathered from the scenario snapshots (statuses, events and logs as the kubelet writes them) by
the real evidence stage, then varied the way real incidents vary; plans are applied to the scenario's git
files with the round-trip editor and checked by the same validation the pipeline runs.
"""

from __future__ import annotations

import copy
import difflib
import json
from pathlib import Path
from typing import Any

import pytest

from app import evidence, fixers, policies, targets, validation
from app.adapters.snapshot import SnapshotCluster
from app.detectors import app_crash, commands, config_refs, names, probes
from app.errors import NoFix
from app.models.alertmanager import WebhookPayload
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.models.incident import Incident
from app.sources import yaml_rt
from tests.conftest import ROOT, SCENARIOS

POLICY = policies.load(ROOT / "policies")


def gathered(scenario: str) -> Evidence:
    root = SCENARIOS / scenario
    cluster = SnapshotCluster.from_file(root / "cluster.json")
    payload = WebhookPayload.model_validate_json((root / "alert.json").read_text())
    incident = Incident.from_alert(payload.alerts[0])
    return evidence.gather(cluster, targets.resolve(cluster, incident), incident)


_CACHE: dict[str, Evidence] = {}


def ev_of(scenario: str) -> Evidence:
    if scenario not in _CACHE:
        _CACHE[scenario] = gathered(scenario)
    return _CACHE[scenario]


def varied(scenario: str, change: Any) -> Evidence:
    """A copy of a scenario's evidence as plain JSON, changed by ``change(data)`` in place."""
    data = json.loads(ev_of(scenario).model_dump_json())
    change(data)
    return Evidence.model_validate(data)


def container(data: dict[str, Any]) -> dict[str, Any]:
    c: dict[str, Any] = data["object"]["spec"]["template"]["spec"]["containers"][0]
    return c


def apply(diagnosis: Diagnosis, repo_file: Path, text: str | None = None) -> tuple[str, str]:
    """The plan applied to a git file: (new text, unified changed lines), validated like the pipeline does."""
    text = text if text is not None else repo_file.read_text()
    document = yaml_rt.documents(text)[0]
    plan = fixers.plan(diagnosis, document, POLICY)
    new = yaml_rt.edit(text, document_index=0, changes=[(c.path, c.new) for c in plan.changes])
    validation.check(text, new, document_index=0, plan=plan)
    diff = difflib.unified_diff(text.splitlines(), new.splitlines(), lineterm="")
    return new, "\n".join(line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---")))


# ---------------------------------------------------------------- near names


@pytest.mark.parametrize(("name", "candidates", "expected"), [
    ("checkout-confg", ["checkout-config", "storefront-nginx", "kube-root-ca.crt"], "checkout-config"),
    ("checkout-cofnig", ["checkout-config"], "checkout-config"),  # a swap of neighbours is one edit
    ("db-credentials", ["smtp-relay", "ghcr-pull"], None),
    ("app-cfg", ["app-cfg1", "app-cfg2"], None),  # two equally near: a guess, not a fix
    ("api", ["app"], "app"),
    ("db", ["dc", "db"], "dc"),
    ("dbx", ["dcy"], None),  # short names tolerate one edit only
], ids=["typo", "transposition", "nothing-close", "ambiguous", "short-one-edit", "exact-excluded", "short-two-edits"])
def test_nearest(name: str, candidates: list[str], expected: str | None) -> None:
    assert names.nearest(name, candidates) == expected


# ---------------------------------------------------------------- config references


@pytest.mark.parametrize(("message", "parsed"), [
    ('configmap "checkout-confg" not found', ("ConfigMap", "checkout-confg", None)),
    ('secret "db-credentials" not found', ("Secret", "db-credentials", None)),
    ("couldn't find key CURRENCY_DEFAUL in ConfigMap shop/checkout-config",
     ("ConfigMap", "checkout-config", "CURRENCY_DEFAUL")),
    ("couldn't find key password in Secret billing/db-credentials", ("Secret", "db-credentials", "password")),
    ('MountVolume.SetUp failed for volume "config" : configmap "nginx-conf" not found',
     ("ConfigMap", "nginx-conf", None)),
    ("Error: ImagePullBackOff", None),
], ids=["configmap", "secret", "configmap-key", "secret-key", "failed-mount", "other"])
def test_parse_kubelet_messages(message: str, parsed: tuple[str, str, str | None] | None) -> None:
    assert config_refs.parse(message) == parsed


def test_configmap_name_typo_is_corrected_in_git() -> None:
    d = config_refs.detect(ev_of("config-reference-typo"))
    assert d is not None and d.fixable and d.cause == "config_reference"
    assert d.finding.facts["replacement"] == "checkout-config"
    assert "container checkout envFrom configMapRef" in d.finding.root_cause
    _, changed = apply(d, SCENARIOS / "config-reference-typo/repo/apps/checkout/deployment.yaml")
    assert changed == "-                name: checkout-confg\n+                name: checkout-config"


KEY_TYPO_YAML = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: checkout
  namespace: shop
spec:
  selector:
    matchLabels: {app: checkout}
  template:
    metadata:
      labels: {app: checkout}
    spec:
      containers:
        - name: checkout
          image: ghcr.io/acme/checkout:1.4.2
          env:
            - name: CURRENCY
              valueFrom:
                configMapKeyRef:
                  name: checkout-config
                  key: CURRENCY_DEFAUL  # typo
            - name: TAX_URL
              valueFrom:
                configMapKeyRef:
                  name: checkout-config
                  key: TAX_SERVICE_URL
"""


def _key_typo(data: dict[str, Any]) -> None:
    c = container(data)
    c.pop("envFrom", None)
    c["env"] = yaml_rt.documents(KEY_TYPO_YAML)[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    for pod in data["pods"]:
        for cs in pod["status"]["containerStatuses"]:
            if "waiting" in cs["state"]:
                cs["state"]["waiting"]["message"] = \
                    "couldn't find key CURRENCY_DEFAUL in ConfigMap shop/checkout-config"


def test_configmap_key_typo_is_corrected_and_nothing_else() -> None:
    d = config_refs.detect(varied("config-reference-typo", _key_typo))
    assert d is not None and d.fixable, d
    assert (d.finding.facts["key"], d.finding.facts["replacement"]) == ("CURRENCY_DEFAUL", "CURRENCY_DEFAULT")
    new, changed = apply(d, Path("unused"), KEY_TYPO_YAML)
    assert changed == ("-                  key: CURRENCY_DEFAUL  # typo\n"
                       "+                  key: CURRENCY_DEFAULT  # typo")


def _near_twice(data: dict[str, Any]) -> None:
    twin = copy.deepcopy(next(o for o in data["related"] if o["metadata"]["name"] == "checkout-config"))
    twin["metadata"]["name"] = "checkout-confog"
    data["related"].append(twin)


def _no_near(data: dict[str, Any]) -> None:
    data["related"] = [o for o in data["related"] if o["metadata"]["name"] != "checkout-config"]


@pytest.mark.parametrize(("change", "needle"), [
    (_near_twice, "no ConfigMap or key with a near name"),
    (_no_near, "no ConfigMap or key with a near name"),
], ids=["two-near-names", "nothing-near"])
def test_configmap_without_a_unique_near_name_is_reported(change: Any, needle: str) -> None:
    d = config_refs.detect(varied("config-reference-typo", change))
    assert d is not None and not d.fixable and d.cause == "missing_config"
    assert needle in str(d.no_fix_reason)
    assert "ConfigMap checkout-confg" in d.finding.root_cause


def test_missing_secret_names_the_secret_and_every_reference() -> None:
    d = config_refs.detect(ev_of("missing-secret"))
    assert d is not None and not d.fixable and d.cause == "missing_secret"
    assert "Secret db-credentials" in d.finding.root_cause
    assert "env DB_USER" in d.finding.root_cause and "env DB_PASSWORD" in d.finding.root_cause
    assert "smtp-relay" not in d.finding.root_cause  # another Secret, referenced fine


def test_fixer_refuses_when_git_moved_on() -> None:
    d = config_refs.detect(ev_of("config-reference-typo"))
    assert d is not None
    text = (SCENARIOS / "config-reference-typo/repo/apps/checkout/deployment.yaml").read_text()
    with pytest.raises(NoFix, match="no longer references"):
        apply(d, Path("unused"), text.replace("checkout-confg", "checkout-config"))


# ---------------------------------------------------------------- probes


def test_probe_on_undeclared_port_goes_to_named_port_http() -> None:
    d = probes.detect(ev_of("probe-wrong-port"))
    assert d is not None and d.fixable and d.cause == "probe_misconfigured"
    assert (d.finding.facts["probe"], d.finding.facts["old"], d.finding.facts["new"]) == ("livenessProbe", 8081, "http")
    _, changed = apply(d, SCENARIOS / "probe-wrong-port/repo/apps/catalog/deployment.yaml")
    assert changed == "-              port: 8081\n+              port: http"


def test_probe_fix_refuses_a_port_git_does_not_declare() -> None:
    d = probes.detect(ev_of("probe-wrong-port"))
    assert d is not None
    text = (SCENARIOS / "probe-wrong-port/repo/apps/catalog/deployment.yaml").read_text()
    with pytest.raises(NoFix, match="does not declare port http"):
        apply(d, Path("unused"), text.replace("- name: http", "- name: web"))


def _ports(ports: list[dict[str, Any]], *, liveness_port: Any = 8081, readiness_port: Any = "http") -> Any:
    def change(data: dict[str, Any]) -> None:
        c = container(data)
        c["ports"] = ports
        c["livenessProbe"]["httpGet"]["port"] = liveness_port
        c["readinessProbe"]["httpGet"]["port"] = readiness_port
    return change


@pytest.mark.parametrize(("change", "fixable", "new"), [
    (_ports([{"containerPort": 8080, "protocol": "TCP"}], readiness_port=8080), True, 8080),
    (_ports([{"name": "web", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
            readiness_port="web"), True, "web"),
    (_ports([{"name": "web", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}],
            readiness_port=None), False, None),
    (_ports([{"name": "http", "containerPort": 8080}], liveness_port="management"), True, "http"),
], ids=["single-unnamed-port", "port-of-passing-readiness", "ambiguous", "named-port-missing"])
def test_probe_port_choice(change: Any, fixable: bool, new: Any) -> None:
    d = probes.detect(varied("probe-wrong-port", change))
    assert d is not None and d.fixable is fixable, d
    assert d.finding.facts["new"] == new


def _status_404(*, readiness_path: str | None) -> Any:
    def change(data: dict[str, Any]) -> None:
        c = container(data)
        c["livenessProbe"]["httpGet"].update({"port": "http", "path": "/healthz"})
        if readiness_path is None:
            del c["readinessProbe"]
        else:
            c["readinessProbe"]["httpGet"]["path"] = readiness_path
        for e in data["events"]:
            if e["reason"] == "Unhealthy":
                e["message"] = "Liveness probe failed: HTTP probe failed with statuscode: 404"
    return change


def test_404_path_fixed_only_with_a_passing_probe_on_the_same_port() -> None:
    d = probes.detect(varied("probe-wrong-port", _status_404(readiness_path="/actuator/health/readiness")))
    assert d is not None and d.fixable and d.finding.facts["field"] == "path"
    assert d.finding.facts["new"] == "/actuator/health/readiness"
    alone = probes.detect(varied("probe-wrong-port", _status_404(readiness_path=None)))
    assert alone is not None and not alone.fixable and "404" in alone.finding.root_cause


def test_probe_on_declared_port_failing_is_not_a_probe_misconfiguration() -> None:
    assert probes.detect(ev_of("slow-start")) is None


# ---------------------------------------------------------------- slow start


@pytest.mark.parametrize(("log", "seconds"), [
    ("2026-11-23T15:08:20.000Z  INFO 1 --- [main] c.a.l.LedgerApplication : Started LedgerApplication in 94.3 "
     "seconds (process running for 95.1)\n", 94.3),
    ('2026-11-23 15:00:01,200 INFO booting\n2026-11-23 15:00:05,000 INFO loading model weights\n'
     "2026-11-23 15:01:23,700 INFO Uvicorn running, listening on 0.0.0.0:8000\n", 82.5),
    ("2026-11-23T15:00:01Z starting\n2026-11-23T15:00:59Z still warming caches\n", None),
    ("no timestamps here\nready\n", None),
], ids=["spring-boot", "timestamps-to-listening", "never-ready", "no-timestamps"])
def test_start_seconds(log: str, seconds: float | None) -> None:
    assert probes.start_seconds(log) == seconds


def test_slow_start_adds_a_startup_probe_covering_observed_start_with_margin() -> None:
    d = probes.detect_slow_start(ev_of("slow-start"))
    assert d is not None and d.fixable and d.cause == "slow_start"
    assert (d.finding.facts["observed_seconds"], d.finding.facts["allowed_seconds"]) == (71.6, 60.0)
    _, changed = apply(d, SCENARIOS / "slow-start/repo/apps/ledger/deployment.yaml")
    assert changed.splitlines() == [
        "+          startupProbe:", "+            httpGet:", "+              path: /actuator/health/liveness",
        "+              port: http", "+            periodSeconds: 10", "+            failureThreshold: 11"]


def test_slow_start_with_a_startup_probe_raises_its_failure_threshold() -> None:
    def change(data: dict[str, Any]) -> None:
        container(data)["startupProbe"] = {"httpGet": {"path": "/actuator/health/liveness", "port": "http"},
                                           "periodSeconds": 10, "failureThreshold": 5}
    d = probes.detect_slow_start(varied("slow-start", change))
    assert d is not None and d.finding.facts["allowed_seconds"] == 50.0
    text = (SCENARIOS / "slow-start/repo/apps/ledger/deployment.yaml").read_text() + (
        "          startupProbe:\n            httpGet:\n              path: /actuator/health/liveness\n"
        "              port: http\n            periodSeconds: 10\n            failureThreshold: 5\n")
    _, changed = apply(d, Path("unused"), text)
    assert changed == "-            failureThreshold: 5\n+            failureThreshold: 11"


@pytest.mark.parametrize("change", [
    lambda data: data["logs"].clear(),
    lambda data: container(data)["livenessProbe"].update({"initialDelaySeconds": 90}),
    lambda data: data.update(events=[e for e in data["events"] if e["reason"] != "Killing"]),
], ids=["no-logs", "probe-allows-enough", "no-liveness-kills"])
def test_slow_start_needs_kills_and_a_measured_start_beyond_the_probe(change: Any) -> None:
    assert probes.detect_slow_start(varied("slow-start", change)) is None


def test_fast_start_killed_by_a_wrong_port_is_not_slow_start() -> None:
    assert probes.detect_slow_start(ev_of("probe-wrong-port")) is None


# ---------------------------------------------------------------- wrong command


def test_wrong_command_restores_the_working_revisions_command() -> None:
    d = commands.detect(ev_of("wrong-command"))
    assert d is not None and d.fixable and d.cause == "bad_command"
    assert d.finding.facts["executable"] == "gunicron" and d.finding.facts["previous_revision"] == 8
    _, changed = apply(d, SCENARIOS / "wrong-command/repo/apps/notifications/deployment.yaml")
    assert changed == "-            - gunicron\n+            - gunicorn"


def _without_previous(data: dict[str, Any]) -> None:
    data["replicasets"] = data["replicasets"][:1]


def _entrypoint(data: dict[str, Any]) -> None:
    for pod in data["pods"]:
        for cs in pod["status"]["containerStatuses"]:
            term = cs["lastState"].get("terminated") or {}
            if term.get("reason") == "StartError":
                term["message"] = term["message"].replace('"gunicron"', '"/docker-entrypoint.sh"')


@pytest.mark.parametrize(("change", "needle"), [
    (_without_previous, "no previous working revision"),
    (_entrypoint, "image's own entrypoint"),
], ids=["no-working-revision", "image-entrypoint"])
def test_wrong_command_without_a_safe_fix_is_reported(change: Any, needle: str) -> None:
    d = commands.detect(varied("wrong-command", change))
    assert d is not None and not d.fixable and needle in str(d.no_fix_reason)


def test_wrong_command_with_a_reshaped_command_is_left_to_a_human() -> None:
    d = commands.detect(ev_of("wrong-command"))
    assert d is not None
    text = (SCENARIOS / "wrong-command/repo/apps/notifications/deployment.yaml").read_text()
    facts = {**d.finding.facts, "failing_command": [*d.finding.facts["failing_command"], "--preload"]}
    reshaped = d.model_copy(update={"finding": d.finding.model_copy(update={"facts": facts})})
    with pytest.raises(NoFix, match="restore it by hand"):
        apply(reshaped, Path("unused"), text.replace("notifications.wsgi:application",
                                                     "notifications.wsgi:application\n            - --preload"))


# ---------------------------------------------------------------- application crash


@pytest.mark.parametrize(("log", "quote"), [
    ('Traceback (most recent call last):\n  File "/app/main.py", line 3, in <module>\n    connect()\n'
     'psycopg2.OperationalError: connection to server at "db" failed\n',
     'psycopg2.OperationalError: connection to server at "db" failed'),
    ("panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation "
     "violation code=0x1 addr=0x0 pc=0x5c3a1f]\n\ngoroutine 1 [running]:\nmain.main()\n",
     "panic: runtime error: invalid memory address or nil pointer dereference"),
    ("2026-11-23T15:00:01.000Z ERROR 1 --- [main] o.s.boot.SpringApplication : Application run failed\n"
     "org.springframework.beans.factory.BeanCreationException: Error creating bean with name 'dataSource'\n"
     "\tat org.springframework.beans...\nCaused by: java.net.UnknownHostException: ledger-db\n",
     "java.net.UnknownHostException: ledger-db"),
    ("/app/server.js:12\n    throw new Error('PORT is not a number');\n    ^\n\nError: PORT is not a number\n"
     "    at Object.<anonymous> (/app/server.js:12:11)\n", "Error: PORT is not a number"),
    ('{"level":"fatal","ts":1763910000.1,"msg":"cannot load config: open /etc/app/config.yaml: no such file"}\n',
     '{"level":"fatal","ts":1763910000.1,"msg":"cannot load config: open /etc/app/config.yaml: no such file"}'),
    ("listening on :8080\nshutting down\n", None),
], ids=["python", "go-panic", "java-caused-by", "node", "json-fatal", "nothing"])
def test_read_crash(log: str, quote: str | None) -> None:
    assert app_crash.read_crash(log)[0] == quote


def test_application_crash_quotes_the_exception_and_the_revision() -> None:
    d = app_crash.detect(ev_of("application-crash"))
    assert d is not None and not d.fixable and d.cause == "application_error"
    assert "psycopg2.OperationalError" in d.finding.root_cause
    assert "Introduced by revision 5" in str(d.no_fix_reason)
    assert any("Traceback" in line for line in d.finding.evidence)


@pytest.mark.parametrize("scenario", ["probe-wrong-port", "slow-start", "wrong-command", "oom-deployment"])
def test_application_crash_does_not_claim_other_causes(scenario: str) -> None:
    assert app_crash.detect(ev_of(scenario)) is None


def test_application_crash_says_when_the_previous_revision_ran_fine() -> None:
    def change(data: dict[str, Any]) -> None:
        old = copy.deepcopy(data["replicasets"][0])
        old["metadata"].update(name="orders-api-6c9d8b7f5", uid="0b0e7c4e-2f43-4c1e-9d1c-3a3f1ce0aa11")
        old["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "4"
        old["spec"]["template"]["spec"]["containers"][0]["image"] = "ghcr.io/acme/orders-api:3.10.2"
        old["status"].update(readyReplicas=2, availableReplicas=2)
        data["replicasets"].append(old)
    d = app_crash.detect(varied("application-crash", change))
    assert d is not None
    assert "previous revision 4 ran fine with image ghcr.io/acme/orders-api:3.10.2" in str(d.no_fix_reason)
