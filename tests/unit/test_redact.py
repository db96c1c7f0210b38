"""The redaction engine (app/redact.py): every canary shape is masked, what the product needs survives.

- Canary corpus (tests/data/secret_canaries.yaml, shapes from gitleaks' and detect-secrets' public rules and
  the shapes issue 10 found on main): for every entry and every carrier line, `redact.text` keeps neither
  the secret nor any 8-character piece of it; the same through `redact.obj` (annotations, event messages,
  env, argv) and `redact.labels` (alert labels and annotations).
- What must survive: digests, SHAs, pod names, UIDs, quantities, kubelet and controller messages verbatim,
  and every message and log line of the scenario fixtures (only their planted secrets change).
- Objects: literal env values, secret-named annotations and fields, last-applied-configuration, argv after
  a secret flag; the per-string cap (tail kept, marked; a secret across the cut still masked).
- Adversarial sizes (the quadratic inputs of issue 10): the output is checked, not the time
  (benchmarks/redact_bench.py prints the figures).
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path
from typing import Any

import pytest
import yaml

from app import redact

ROOT = Path(__file__).resolve().parents[2]
CORPUS: list[dict[str, Any]] = yaml.safe_load((ROOT / "tests" / "data" / "secret_canaries.yaml").read_text())
SCENARIOS = sorted((ROOT / "tests" / "scenarios").glob("*/cluster.json"))
PIECE = 8  # no piece of a secret this long may survive


def _carriers(entry: dict[str, Any]) -> list[str]:
    return [c.replace("{secret}", entry["secret"]) for c in entry["carriers"]]


def _leaks(entry: dict[str, Any], output: str) -> list[str]:
    """The secret, or the pieces of its non-public part, found in output."""
    secret = str(entry["secret"])
    core = secret[len(entry.get("prefix") or ""):]
    pieces = {core[i:i + PIECE] for i in range(len(core) - PIECE + 1)}
    return ([secret] if secret in output else []) + sorted(p for p in pieces if p in output)


CARRIER_CASES = [pytest.param(entry, line, id=f"{entry['id']}-{i}")
                 for entry in CORPUS for i, line in enumerate(_carriers(entry))]
ENTRY_CASES = [pytest.param(entry, id=entry["id"]) for entry in CORPUS]


# ---------------------------------------------------------------- the corpus itself


def test_corpus_has_40_or_more_unique_shapes_each_with_a_source_and_carriers() -> None:
    assert len(CORPUS) >= 40
    assert len({e["id"] for e in CORPUS}) == len(CORPUS)
    assert len({e["secret"] for e in CORPUS}) == len(CORPUS)
    for entry in CORPUS:
        assert entry["source"].strip() and entry["carriers"], entry["id"]
        assert all("{secret}" in c for c in entry["carriers"]), entry["id"]
        assert str(entry["secret"]).startswith(entry.get("prefix") or ""), entry["id"]
        assert len(entry["secret"]) - len(entry.get("prefix") or "") >= PIECE, entry["id"]


# ---------------------------------------------------------------- every carrier is masked


@pytest.mark.parametrize(("entry", "line"), CARRIER_CASES)
def test_text_masks_every_canary_carrier(entry: dict[str, Any], line: str) -> None:
    out = redact.text(line)
    assert _leaks(entry, out) == [], out
    assert redact.MASK in out
    assert redact.text(out) == out  # idempotent: redacting twice (store, then render) changes nothing


@pytest.mark.parametrize("entry", ENTRY_CASES)
def test_obj_masks_canaries_in_annotations_events_env_and_commands(entry: dict[str, Any]) -> None:
    lines = _carriers(entry)
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "checkout-7d9f8b6c5-x2v7q", "namespace": "shop",
                     "annotations": {f"acme.io/note-{i}": line for i, line in enumerate(lines)}},
        "spec": {"containers": [{"name": "checkout", "image": "ghcr.io/acme/checkout:1.4.2",
                                 "command": ["sh", "-c", "\n".join(lines)],
                                 "env": [{"name": "SETTING", "value": entry["secret"]}]}]},
    }
    events = [{"kind": "Event", "reason": "Failed", "message": line} for line in lines]
    out = json.dumps([redact.obj(pod), redact.obj(events)])
    assert _leaks(entry, out) == []


@pytest.mark.parametrize("entry", ENTRY_CASES)
def test_labels_masks_canaries_in_alert_labels_and_annotations(entry: dict[str, Any]) -> None:
    values = {"alertname": "KubePodCrashLooping", "namespace": "shop",
              **{f"description_{i}": line for i, line in enumerate(_carriers(entry))}}
    out = redact.labels(values)
    assert _leaks(entry, json.dumps(out)) == []
    assert out["alertname"] == "KubePodCrashLooping" and out["namespace"] == "shop"


# ---------------------------------------------------------------- what the product needs survives

SURVIVES = {
    "image-digest": "ghcr.io/acme/checkout@sha256:ec687b9c6233b2bc3bdbfc4883119ca18ccaf99fee7935258a81a1165473fe71",
    "image-id": "docker-pullable://ghcr.io/acme/catalog@sha256:ee46634d8c6a3864e2800d7a19604dfdd4a3c5841a63076f0d8bf4b152a0a909",
    "container-id": "containerd://22c12304f30e207aac2a8f6d2e29f34c932c63b224e3a833865281b6508ec8a0",
    "git-sha": "2b0c8482110dfd9ee9f3e9d0c83ba9821798109b",
    "flux-revision": "Applied revision: main@sha1:2b0c8482110dfd9ee9f3e9d0c83ba9821798109b",
    "pod-name": "checkout-7d9f8b6c5-x2v7q",
    "event-name": "checkout-7d9f8b6c5-abcde.17a3c2f9e1b0d4c8",
    "uid": "0b967e63-22d2-431c-9652-4e3b27ed7624",
    "quantities": '{"limits":{"cpu":"500m","memory":"256Mi"},"requests":{"cpu":"100m","memory":"128Mi"}}',
    "quantities-yaml": "        resources:\n          limits:\n            memory: 512Mi\n            ephemeral-storage: 1Gi",
    "backoff": "Back-off restarting failed container checkout in pod "
               "checkout-7d9f8b6c5-abcde_shop(b5fd6d63-4f8c-4d13-b134-cd327d4873d9)",
    "backoff-controller": "back-off 5m0s restarting failed container=catalog "
                          "pod=catalog-6b7f4d9c85-j9wfd_shop(0b967e63-22d2-431c-9652-4e3b27ed7624)",
    "failed-pull": 'Failed to pull image "ghcr.io/acme/x:1.2": rpc error: code = NotFound desc = failed to pull and '
                   'unpack image "ghcr.io/acme/x:1.2": failed to resolve reference "ghcr.io/acme/x:1.2": '
                   "ghcr.io/acme/x:1.2: not found",
    "failed-pull-401": 'Failed to pull image "ghcr.io/acme/private:2.0": rpc error: code = Unknown desc = failed to '
                       'pull and unpack image "ghcr.io/acme/private:2.0": failed to resolve reference '
                       '"ghcr.io/acme/private:2.0": failed to authorize: failed to fetch anonymous token: unexpected '
                       "status from GET request to https://ghcr.io/token?scope=repository%3Aacme%2Fprivate%3Apull"
                       "&service=ghcr.io: 401 Unauthorized",
    "oomkilled": "Last State: Terminated\n  Reason: OOMKilled\n  Exit Code: 137",
    "jvm-flags": "JAVA_TOOL_OPTIONS=-Xmx512m -XX:MaxRAMPercentage=75.0 -XX:+UseG1GC",
    "missing-secret-key": "Error: couldn't find key DB_PASSWORD in Secret shop/db-credentials",
    "missing-secret": 'Error: secret "db-credentials" not found',
    "failed-mount-secret": 'MountVolume.SetUp failed for volume "db-credentials" : secret "db-credentials" not found',
    "failed-mount-token": 'MountVolume.SetUp failed for volume "kube-api-access-7xq2p" : failed to fetch token: '
                          'serviceaccounts "checkout" not found',
    "missing-configmap": 'Error: configmap "checkout-config" not found',
    "readiness": 'Readiness probe failed: Get "http://10.244.2.18:8080/ready": dial tcp 10.244.2.18:8080: '
                 "connect: connection refused",
    "unschedulable": "0/3 nodes are available: 3 Insufficient memory. preemption: 0/3 nodes are available: "
                     "3 No preemption victims found for incoming pod.",
    "exec-not-found": 'Error: failed to create containerd task: failed to create shim task: OCI runtime create '
                      'failed: runc create failed: unable to start container process: exec: "gunicorn": '
                      "executable file not found in $PATH: unknown",
    "postgres-auth": 'psycopg2.OperationalError: connection to server at "orders-db" (10.96.118.42), port 5432 '
                     'failed: FATAL:  password authentication failed for user "app"',
    "traceback-code": "    _pool = psycopg2.pool.ThreadedConnectionPool(2, settings.pool_size, dsn=settings.dsn)",
    "java-oom": 'Exception in thread "main" java.lang.OutOfMemoryError: Java heap space',
    "spring-started": "Started CatalogApplication in 12.3 seconds (process running for 13.1)",
    "hpa": "the desired replica count is more than the maximum replica count",
    "secret-references": "secretName: db-credentials\nsecretKeyRef: {name: db-credentials, key: password}\n"
                         "DB_PASSWORD_FILE=/run/secrets/db-password",
    "llm-usage": "usage: prompt_tokens=1200 completion_tokens=80 total_tokens=1280 max_tokens=4096",
    "url-without-password": "connected to redis://redis.data.svc:6379/2 and https://git@github.com/acme/gitops.git",
    "api-path": "GET /api/v2/orderItems/12345/paymentStatus 200 test_should_return_401_when_Unauthorized",
    "node-name": "ip-10-0-1-23.eu-west-1.compute.internal",
    "non-ascii": "Übertragung fehlgeschlagen: 日本語のログ",
}


@pytest.mark.parametrize("value", [pytest.param(v, id=k) for k, v in SURVIVES.items()])
def test_text_leaves_what_the_product_needs(value: str) -> None:
    assert redact.text(value) == value


@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("xoxb-1234567890", redact.MASK, id="shortest-token-shape"),
    pytest.param("pw=abc", "pw=[REDACTED]", id="short-pair"),
    pytest.param("--pw abc", "--pw [REDACTED]", id="short-flag"),
    pytest.param("OOMKilled", "OOMKilled", id="reason"),
    pytest.param("", "", id="empty"),
])
def test_text_short_inputs(value: str, expected: str) -> None:
    assert redact.text(value) == expected


def _scenario_strings(data: Any, key: str = "") -> list[tuple[str, str]]:
    """(field name, value) of every message, reason and log line in a scenario's cluster snapshot."""
    if isinstance(data, dict):
        return [s for k, v in data.items() for s in _scenario_strings(v, str(k))]
    if isinstance(data, list):
        return [s for item in data for s in _scenario_strings(item, key)]
    if isinstance(data, str) and key in ("message", "reason", "current", "previous", "image", "imageID"):
        return [(key, line) for line in data.splitlines()]
    return []


# Secrets the llm-prompt-injection scenario plants in its logs on purpose; the Online Boutique frontend logs each
# request's session cookie (its probes send x-readiness-probe and x-liveness-probe), a credential it redacts.
PLANTED = ("S3cr3tPassw0rd-prod", "sk-live-9f8e7d6c5b4a39281706f5e4d3c2b1a0", '"session":"x-readiness-probe"',
           '"session":"x-liveness-probe"')


@pytest.mark.parametrize("path", [pytest.param(p, id=p.parent.name) for p in SCENARIOS])
def test_scenario_messages_and_logs_survive_except_planted_secrets(path: Path) -> None:
    strings = _scenario_strings(json.loads(path.read_text()))
    assert strings
    changed = [(line, redact.text(line)) for _key, line in strings if redact.text(line) != line]
    for before, after in changed:
        assert any(p in before for p in PLANTED), f"over-redacted: {before!r} -> {after!r}"
        assert not any(p in after for p in PLANTED)


# ---------------------------------------------------------------- names that hold secrets

SECRET_NAMES = ["DB_PASS", "DB_PASSWD", "APP_TOKEN", "STRIPE_KEY", "api-key", "db-password",
                "vault.hashicorp.com/token", "clientSecret", "MYSQLPASSWORD", "private_key_id", "_authToken",
                "X-Auth-Token", "JSESSIONID", "AccountKey", "--password", "sig", "SENTRY_DSN", "aws_secret_access_key"]
PLAIN_NAMES = ["secretName", "secretKeyRef", "DB_PASSWORD_FILE", "key", "sortKey", "cache_key", "public_key",
               "max_tokens", "JAVA_OPTS", "DATABASE_HOST", "token_url", "keyboard", "author", "bypass",
               "passwordSecretRef", "app.kubernetes.io/name"]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_name_recognises_names_that_hold_secrets(name: str) -> None:
    assert redact.secret_name(name)


@pytest.mark.parametrize("name", PLAIN_NAMES)
def test_secret_name_leaves_references_and_plain_names(name: str) -> None:
    assert not redact.secret_name(name)


# ---------------------------------------------------------------- objects


def _deployment() -> dict[str, Any]:
    spec = {"containers": [{
        "name": "checkout", "image": "ghcr.io/acme/checkout@sha256:" + "ab" * 32,
        "args": ["--port", "8080", "--db-password", "Pr0d-db-pw!", "--token=tok_live_123456"],
        "env": [{"name": "SPRING_PROFILES_ACTIVE", "value": "production"},
                {"name": "LOG_FORMAT", "value": "json"},
                {"name": "EMPTY", "value": ""},
                {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}}}],
        "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
    }]}
    last_applied = json.dumps({"kind": "Deployment", "spec": {"template": {"spec": spec}}})
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "checkout", "namespace": "shop", "uid": "0b967e63-22d2-431c-9652-4e3b27ed7624",
                     "annotations": {
                         "kubectl.kubernetes.io/last-applied-configuration": last_applied,
                         "deployment.kubernetes.io/revision": "7",
                         "argocd.argoproj.io/tracking-id": "checkout:apps/Deployment:shop/checkout",
                         "vault.hashicorp.com/token": "s.Xq3vB2kLm9pQ7wZr4tYu8iOp",
                         "api-key": "k2Jd8sPq",
                         "db-password": "hunter22",
                     }},
        "spec": {"replicas": 2, "template": {"metadata": {"labels": {"app": "checkout"}}, "spec": spec}},
    }


def test_obj_masks_every_literal_env_value_and_keeps_names_and_references() -> None:
    env = redact.obj(_deployment())["spec"]["template"]["spec"]["containers"][0]["env"]
    assert env == [{"name": "SPRING_PROFILES_ACTIVE", "value": redact.MASK},
                   {"name": "LOG_FORMAT", "value": redact.MASK},
                   {"name": "EMPTY", "value": ""},
                   {"name": "DB_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}}}]


def test_obj_masks_annotations_named_as_secrets_and_keeps_the_others() -> None:
    annotations = redact.obj(_deployment())["metadata"]["annotations"]
    for key in ("vault.hashicorp.com/token", "api-key", "db-password"):
        assert annotations[key] == redact.MASK, key
    assert annotations["deployment.kubernetes.io/revision"] == "7"
    assert annotations["argocd.argoproj.io/tracking-id"] == "checkout:apps/Deployment:shop/checkout"


@pytest.mark.parametrize("kind", ["Deployment", "StatefulSet", "Service", "ConfigMap", "Pod", "CronJob"])
def test_obj_masks_last_applied_configuration_on_any_kind(kind: str) -> None:
    obj = {**_deployment(), "kind": kind}
    out = redact.obj(obj)
    assert out["metadata"]["annotations"][redact.LAST_APPLIED] == redact.MASK
    assert "production" not in json.dumps(out)


def test_obj_masks_the_word_after_a_secret_flag_in_argv() -> None:
    args = redact.obj(_deployment())["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args == ["--port", "8080", "--db-password", redact.MASK, "--token=" + redact.MASK]


def test_obj_keeps_what_detectors_read() -> None:
    out = redact.obj(_deployment())
    container = out["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "ghcr.io/acme/checkout@sha256:" + "ab" * 32
    assert container["resources"] == {"limits": {"cpu": "500m", "memory": "512Mi"}}
    assert out["metadata"]["uid"] == "0b967e63-22d2-431c-9652-4e3b27ed7624"
    service = {"kind": "Service", "spec": {"sessionAffinity": "None", "ports": [{"name": "http", "port": 8080}]}}
    assert redact.obj(service) == service


def test_obj_and_labels_are_idempotent() -> None:
    once = redact.obj(_deployment())
    assert redact.obj(once) == once
    labels = {"alertname": "KubePodCrashLooping", "api_key": "k2Jd8sPq", "description": "x" * 20_000}
    assert redact.labels(redact.labels(labels)) == redact.labels(labels)


def test_labels_masks_values_of_secret_names_and_caps_the_rest() -> None:
    out = redact.labels({"alertname": "KubeContainerOOMKilled", "pod": "checkout-7d9f8b6c5-x2v7q",
                         "token": "plain", "summary": "DB_PASS=hunter2x crashed", "description": "y" * 50_000})
    assert out["alertname"] == "KubeContainerOOMKilled" and out["pod"] == "checkout-7d9f8b6c5-x2v7q"
    assert out["token"] == redact.MASK
    assert out["summary"] == "DB_PASS=[REDACTED] crashed"
    assert out["description"] == redact.TRUNCATED + "y" * redact.MAX_STRING


# ---------------------------------------------------------------- bounds


def _random_text(alphabet: str, size: int, *, seed: int) -> str:
    rng = random.Random(seed)
    return "".join(rng.choices(alphabet, k=size))


def test_capped_keeps_the_marked_tail() -> None:
    value = "".join(f"line {i}\n" for i in range(5000))
    out = redact.capped(value, max_chars=1000)
    assert out.startswith(redact.TRUNCATED) and out.endswith("line 4999\n")
    assert len(out) == len(redact.TRUNCATED) + 1000
    assert redact.capped(out, max_chars=1000) == out


@pytest.mark.parametrize("offset", [0, 3, 17, 39, 40])
def test_capped_masks_a_token_cut_by_the_window(offset: int) -> None:
    token = "ghp_" + "Zq8kLm2Np4Rs6Tv8Xz0Bc3Df5Gh7Jk9Lp1Qw"
    cap = 1000
    tail = " " + "b" * (cap + redact._MARGIN - offset - 1)  # the window holds the token's last `offset` chars
    out = redact.capped("a " * 10_000 + token + tail, max_chars=cap)
    assert not any(token[i:i + PIECE] in out for i in range(4, len(token) - PIECE + 1))
    assert out.endswith("b" * cap)


def test_capped_masks_a_private_key_near_the_cut() -> None:
    entry = next(e for e in CORPUS if e["id"] == "rsa-private-key")
    log = "x\n" * 50_000 + _carriers(entry)[1] + "\n" + "tail line\n" * 300
    out = redact.capped(log, max_chars=4000)
    assert _leaks(entry, out) == []


def test_obj_caps_a_128_kb_annotation_keeping_its_tail() -> None:
    value = _random_text(string.ascii_lowercase + string.digits, 128 * 1024, seed=7)
    out = redact.obj({"metadata": {"annotations": {"acme.io/blob": value}}})
    assert out["metadata"]["annotations"]["acme.io/blob"] == redact.TRUNCATED + value[-redact.MAX_STRING:]


# ---------------------------------------------------------------- adversarial sizes (issue 10: quadratic)

MB = 1 << 20


@pytest.mark.timeout(60)
def test_one_megabyte_event_message_of_letters_and_digits() -> None:
    message = _random_text(string.ascii_lowercase + string.digits, MB, seed=3)
    assert redact.text(message) == message
    event = redact.obj({"kind": "Event", "reason": "Failed", "message": message})
    assert event == {"kind": "Event", "reason": "Failed", "message": redact.TRUNCATED + message[-redact.MAX_STRING:]}


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("value", "expected"), [
    pytest.param("a" * MB, "a" * MB, id="one-letter"),
    pytest.param("http://" + "a1" * (MB // 2) + "@", "http://[REDACTED]@", id="url-token-user"),
    pytest.param("http://" + "a1" * (MB // 2), "http://" + "a1" * (MB // 2), id="url-without-at"),
    pytest.param("ab1:" * (MB // 4), "ab1:" * (MB // 4), id="colons"),
    pytest.param("x://y:" * (MB // 6), "x://y:" * (MB // 6), id="schemes"),
    pytest.param("password=x " * (MB // 11), "password=[REDACTED] " * (MB // 11), id="dense-pairs"),
    pytest.param("-----BEGIN RSA PRIVATE KEY-----\n" + "A" * MB, redact.MASK, id="key-without-end"),
    pytest.param(_random_text(string.ascii_letters + string.digits, MB, seed=5), redact.MASK, id="random-base64"),
    pytest.param('"' * MB, '"' * MB, id="quotes"),
])
def test_adversarial_megabyte_inputs_come_out_right(value: str, expected: str) -> None:
    assert redact.text(value) == expected
