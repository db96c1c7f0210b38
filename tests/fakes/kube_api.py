"""A loopback Kubernetes API server for tests: answers GETs like the real kube-apiserver.

Deliberately independent of app/ (own selector matching, own path parsing), so tests of the adapters compare
our code against a second implementation of the API's behaviour, not against itself.

    with KubeApiFake(objects, logs={"shop/pod/container": {"previous": "..."}}) as api:
        cluster = KubeCluster.from_config(str(api.write_kubeconfig(tmp_path / "kubeconfig")))
        ...
        assert {r.method for r in api.requests} == {"GET"}

Served: object and list paths for core (/api/v1) and grouped (/apis/G/V) resources, namespaced and cluster
scoped, list across all namespaces, labelSelector, fieldSelector, limit/continue, the pod log subresource.
Unknown resources (a CRD that is not installed) answer 404 like the real server. Only GET is allowed, plus the
POST of a SelfSubjectAccessReview (answered from ``access_rules``).
Fault injection: ``fail_next(n, status=500)``, ``delay_next(n, seconds)``.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

from tests.fakes.holds import Hold, Holds

SSAR_PATH = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
MAX_DELAY = 30.0  # no injected delay outlives this, whatever a test asks

CLUSTER_SCOPED = {"Node", "Namespace", "StorageClass", "PersistentVolume", "ClusterRole", "ClusterRoleBinding",
                  "CustomResourceDefinition", "PriorityClass"}

# Resources the server knows even when it holds no object of them (built into every cluster).
BUILTIN = {
    ("", "v1"): {"pods", "events", "nodes", "namespaces", "configmaps", "secrets", "services",
                 "persistentvolumeclaims", "persistentvolumes", "resourcequotas", "serviceaccounts"},
    ("apps", "v1"): {"deployments", "replicasets", "statefulsets", "daemonsets"},
    ("batch", "v1"): {"jobs", "cronjobs"},
    ("autoscaling", "v2"): {"horizontalpodautoscalers"},
    ("storage.k8s.io", "v1"): {"storageclasses"},
    ("policy", "v1"): {"poddisruptionbudgets"},
}


_BUILTIN_KINDS = {"pods": "Pod", "events": "Event", "nodes": "Node", "namespaces": "Namespace",
                  "configmaps": "ConfigMap", "secrets": "Secret", "services": "Service",
                  "persistentvolumeclaims": "PersistentVolumeClaim", "resourcequotas": "ResourceQuota",
                  "deployments": "Deployment", "replicasets": "ReplicaSet", "statefulsets": "StatefulSet",
                  "daemonsets": "DaemonSet", "jobs": "Job", "cronjobs": "CronJob",
                  "horizontalpodautoscalers": "HorizontalPodAutoscaler", "storageclasses": "StorageClass",
                  "poddisruptionbudgets": "PodDisruptionBudget"}


def plural_of(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"
    if lower.endswith("s"):
        return lower + "es"
    return lower + "s"


def status_body(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if details is not None:
        body["details"] = dict(details)
    return body


_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 405: "MethodNotAllowed",
            408: "Timeout", 410: "Expired", 429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
            504: "Timeout"}


# --- selectors (a second, independent implementation) ----------------------------------------------

_SET_TERM = re.compile(r"^\s*([^\s!=()]+)\s+(in|notin)\s*\(([^()]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([^\s!=()]+)\s*(==|!=|=)\s*([^\s!=(),]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)\s*([^\s!=(),]+)\s*$")


def _terms(selector: str) -> list[str]:
    out, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += 1 if ch == "(" else -1 if ch == ")" else 0
        cur += ch
    out.append(cur)
    return out


def label_selector_matches(selector: str, labels: Mapping[str, str]) -> bool:
    """Raises ValueError on a malformed selector (the server answers 400)."""
    for term in _terms(selector):
        if m := _SET_TERM.match(term):
            values = {v.strip() for v in m[3].split(",")}
            ok = labels.get(m[1]) in values if m[2] == "in" else labels.get(m[1]) not in values
        elif m := _EQ_TERM.match(term):
            ok = labels.get(m[1]) == m[3] if m[2] != "!=" else labels.get(m[1]) != m[3]
        elif m := _EXISTS_TERM.match(term):
            ok = (m[2] in labels) != bool(m[1])
        else:
            raise ValueError(f"unable to parse requirement: {term!r}")
        if not ok:
            return False
    return True


def field_selector_matches(selector: str, obj: Mapping[str, Any]) -> bool:
    for term in selector.split(","):
        m = re.match(r"^\s*([A-Za-z.]+)\s*(==|!=|=)\s*(.*?)\s*$", term)
        if not m:
            raise ValueError(f"invalid field selector: {term!r}")
        value: Any = obj
        for part in m[1].split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        actual = "" if value is None else str(value)
        if (actual == m[3]) != (m[2] != "!="):
            return False
    return True


# --- the server -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


class _Reply(Exception):
    """Raised inside routing to answer with a Status body."""

    def __init__(self, code: int, message: str, details: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.body = status_body(code, _REASONS.get(code, "Unknown"), message, details)
        self.headers = dict(headers or {})


class KubeApiFake:
    """Threaded loopback API server holding ``objects`` (as `kubectl get -o json` prints them) and logs.

    ``logs`` maps "namespace/pod/container" to {"previous": text, "current": text} (a str means previous).
    """

    def __init__(self, objects: Iterable[Mapping[str, Any]], logs: Mapping[str, Any] | None = None,
                 *, token: str = "fake-token") -> None:
        self.token = token
        # RBAC PolicyRules the SelfSubjectAccessReview answers from; None: get/list/watch on everything
        self.access_rules: list[dict[str, Any]] | None = None
        self.objects = [copy.deepcopy(dict(o)) for o in objects]
        self.logs = {k: ({"previous": v} if isinstance(v, str) else dict(v)) for k, v in (logs or {}).items()}
        self.requests: list[RecordedRequest] = []
        self.resource_version = "48213"
        self._lock = threading.Lock()
        self._faults: list[tuple[int, str | None]] = []  # (status, Retry-After) per upcoming request
        self._delays: list[float] = []
        self.holds = Holds()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def from_snapshot(cls, path: str | Path) -> KubeApiFake:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return cls(doc.get("items") or [], logs=doc.get("logs") or {})

    # lifecycle -----------------------------------------------------------------------------------
    def start(self) -> KubeApiFake:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="kube-api-fake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers sleeping in an injected delay
        self.holds.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> KubeApiFake:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start the fake first"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def write_kubeconfig(self, path: str | Path) -> Path:
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "autofix", "user": {"token": self.token}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "autofix", "namespace": "default"}}],
        }
        target = Path(path)
        target.write_text(json.dumps(config, indent=2), encoding="utf-8")
        return target

    # fault injection -----------------------------------------------------------------------------
    def fail_next(self, n: int, status: int = 500, *, retry_after: str | None = None) -> None:
        with self._lock:
            self._faults.extend([(status, retry_after)] * n)

    def hold(self, method: str, path_suffix: str) -> Hold:
        """Block the next ``method`` request whose path ends with ``path_suffix`` (see tests.fakes.holds)."""
        return self.holds.add(method, path_suffix)

    def delay_next(self, n: int, seconds: float) -> None:
        with self._lock:
            self._delays.extend([min(seconds, MAX_DELAY)] * n)

    @property
    def methods(self) -> set[str]:
        with self._lock:
            return {r.method for r in self.requests}

    # request handling (called on server threads) -------------------------------------------------
    def _record(self, method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> tuple[
            float, tuple[int, str | None] | None]:
        with self._lock:
            self.requests.append(RecordedRequest(method, path, query, headers))
            delay = self._delays.pop(0) if self._delays else 0.0
            fault = self._faults.pop(0) if self._faults else None
        return delay, fault

    def handle(self, method: str, raw_path: str, headers: dict[str, str],
               body: bytes = b"") -> tuple[int, str, bytes, dict[str, str]]:
        """(status, content type, body, extra headers) for one request."""
        split = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        if not self.holds.wait_if_held(method, split.path):
            return 503, "application/json", json.dumps(status_body(503, "ServiceUnavailable", "held")).encode(), {}
        delay, fault = self._record(method, split.path, query, headers)
        if delay:
            self._stopping.wait(delay)
        try:
            if fault is not None:
                raise _Reply(fault[0], _fault_message(fault[0]),
                             headers={"Retry-After": fault[1]} if fault[1] else None)
            if headers.get("authorization") != f"Bearer {self.token}":
                raise _Reply(401, "Unauthorized")
            if method == "POST" and split.path == SSAR_PATH:
                return self._json_created(self._access_review(body))
            if method != "GET":
                raise _Reply(405, f"the server does not allow this method on the requested resource ({method})")
            return self._route([unquote(p) for p in split.path.strip("/").split("/")], query)
        except _Reply as reply:
            return reply.code, "application/json", json.dumps(reply.body).encode(), reply.headers

    def _route(self, parts: list[str], query: dict[str, str]) -> tuple[int, str, bytes, dict[str, str]]:
        if parts[:1] == ["api"] and len(parts) >= 2:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _Reply(404, "the server could not find the requested resource")
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3 or not self._knows(group, version, rest[0]):
            raise _Reply(404, "the server could not find the requested resource")
        plural = rest[0]
        if len(rest) == 1:
            return self._json(self._list(group, version, plural, namespace, query))
        obj = self._find(group, version, plural, namespace, rest[1])
        if len(rest) == 3:
            if (group, plural, rest[2]) != ("", "pods", "log"):
                raise _Reply(404, "the server could not find the requested resource")
            return 200, "text/plain", self._log(obj, query).encode(), {}
        return self._json(obj)

    def _access_review(self, body: bytes) -> dict[str, Any]:
        """SelfSubjectAccessReview: allowed per ``access_rules`` (RBAC PolicyRules; None = read-only on all)."""
        try:
            review = json.loads(body or b"{}")
            attrs = review["spec"]["resourceAttributes"]
        except (ValueError, KeyError, TypeError) as err:
            raise _Reply(400, "SelfSubjectAccessReview: spec.resourceAttributes is required") from err
        rules = self.access_rules if self.access_rules is not None else [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]
        resource = attrs.get("resource", "") + (f"/{attrs['subresource']}" if attrs.get("subresource") else "")
        allowed = any(_rule_allows(rule, attrs.get("group", ""), resource, attrs.get("verb", ""))
                      for rule in rules)
        status: dict[str, Any] = {"allowed": allowed}
        if allowed:
            status["reason"] = 'RBAC: allowed by ClusterRoleBinding "gitops-autofix"'
        return {"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                "metadata": {"creationTimestamp": None}, "spec": review["spec"], "status": status}

    @staticmethod
    def _json_created(body: Any) -> tuple[int, str, bytes, dict[str, str]]:
        return 201, "application/json", json.dumps(body).encode(), {}

    @staticmethod
    def _json(body: Any) -> tuple[int, str, bytes, dict[str, str]]:
        return 200, "application/json", json.dumps(body).encode(), {}

    def _matches_type(self, obj: Mapping[str, Any], group: str, version: str, plural: str) -> bool:
        return obj.get("apiVersion") == (f"{group}/{version}" if group else version) \
            and plural_of(str(obj.get("kind"))) == plural

    def _knows(self, group: str, version: str, plural: str) -> bool:
        return plural in BUILTIN.get((group, version), set()) or any(
            self._matches_type(o, group, version, plural) for o in self.objects)

    def _find(self, group: str, version: str, plural: str, namespace: str | None, name: str) -> dict[str, Any]:
        for obj in self.objects:
            meta = obj.get("metadata", {})
            if self._matches_type(obj, group, version, plural) and meta.get("name") == name \
                    and meta.get("namespace") == namespace:
                return copy.deepcopy(obj)
        raise _Reply(404, f'{plural} "{name}" not found', {"name": name, "kind": plural})

    def _list(self, group: str, version: str, plural: str, namespace: str | None,
              query: dict[str, str]) -> dict[str, Any]:
        try:
            items = [copy.deepcopy(o) for o in self.objects
                     if self._matches_type(o, group, version, plural) and _selected(o, namespace, query)]
        except ValueError as err:
            raise _Reply(400, str(err)) from err
        kind = next((o["kind"] for o in self.objects if self._matches_type(o, group, version, plural)),
                    _BUILTIN_KINDS.get(plural, plural))
        if group in ("", "apps", "batch", "autoscaling", "storage.k8s.io", "policy"):
            for item in items:  # built-in lists carry kind/apiVersion on the list, not on each item
                item.pop("kind", None)
                item.pop("apiVersion", None)
        start = int(query.get("continue") or 0)
        limit = int(query.get("limit") or 0) or len(items)
        page, more = items[start:start + limit], start + limit < len(items)
        metadata: dict[str, Any] = {"resourceVersion": self.resource_version}
        if more:
            metadata["continue"] = str(start + limit)
        return {"kind": f"{kind}List", "apiVersion": f"{group}/{version}" if group else version,
                "metadata": metadata, "items": page}

    def _log(self, pod: Mapping[str, Any], query: dict[str, str]) -> str:
        name, namespace = pod["metadata"]["name"], pod["metadata"].get("namespace")
        containers = [c["name"] for c in pod.get("spec", {}).get("containers", [])]
        container = query.get("container") or (containers[0] if len(containers) == 1 else "")
        if container not in containers:
            raise _Reply(400, f"container {container} is not valid for pod {name}")
        entry = self.logs.get(f"{namespace}/{name}/{container}", {})
        if query.get("previous") == "true":
            if "previous" not in entry:
                raise _Reply(400, f'previous terminated container "{container}" in pod "{name}" not found')
            text = entry["previous"]
        else:
            text = entry.get("current", "")
        if "tailLines" in query:
            tail = int(query["tailLines"])
            text = "".join(text.splitlines(keepends=True)[-tail:]) if tail > 0 else ""
        if "limitBytes" in query:
            text = text.encode()[: int(query["limitBytes"])].decode(errors="ignore")
        return text


def _selected(obj: Mapping[str, Any], namespace: str | None, query: Mapping[str, str]) -> bool:
    meta = obj.get("metadata", {})
    if namespace is not None and meta.get("namespace") != namespace:
        return False
    labels = query.get("labelSelector", "")
    if labels.strip() and not label_selector_matches(labels, meta.get("labels") or {}):
        return False
    fields = query.get("fieldSelector", "")
    return not fields.strip() or field_selector_matches(fields, obj)


def _rule_allows(rule: Mapping[str, Any], group: str, resource: str, verb: str) -> bool:
    def has(key: str, value: str) -> bool:
        values = rule.get(key) or []
        return "*" in values or value in values

    return has("apiGroups", group) and has("resources", resource) and has("verbs", verb)


def _fault_message(status: int) -> str:
    if status == 403:
        return ('pods is forbidden: User "system:serviceaccount:autofix:autofix" cannot get resource "pods" '
                'in API group "" in the namespace "shop"')
    if status == 429:
        return "Too many requests, please try again later."
    return "Internal error occurred: injected fault"


def _make_handler(fake: KubeApiFake) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10  # an idle keep-alive connection never pins a thread for long
        disable_nagle_algorithm = True  # headers and body go out in two writes: avoid 40 ms delayed-ACK stalls

        def _serve(self) -> None:
            headers = {k.lower(): v for k, v in self.headers.items()}
            length = int(headers.get("content-length") or 0)
            request_body = self.rfile.read(min(length, 1 << 20)) if length else b""
            status, content_type, body, extra = fake.handle(self.command, self.path, headers, request_body)
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for key, value in extra.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (timeout test): nothing to answer

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # requests are recorded in fake.requests; stderr noise helps nobody

    return Handler


# --- a realistic scenario: Deployment shop/checkout whose pods are OOMKilled -------------------------

POD_UID = "5f1c2a3e-8b7d-4c6a-9e21-0d4f6b8a7c13"
RS_UID = "b2e4d6f8-1a3c-4e5b-8d7f-9a0b1c2d3e4f"
DEPLOY_UID = "0c9e8d7b-6a5f-4e3d-2c1b-0a9f8e7d6c5b"


def _meta(name: str, uid: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "namespace": "shop", "uid": uid, "resourceVersion": "48190",
            "creationTimestamp": "2026-11-03T09:12:44Z", **extra}


def _pod(name: str, uid: str, *, restarts: int, zone_label: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": _meta(name, uid, generateName="checkout-7d9f8b6c5-",
                          labels={"app.kubernetes.io/name": "checkout", "pod-template-hash": "7d9f8b6c5",
                                  "tier": zone_label},
                          ownerReferences=[{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                            "name": "checkout-7d9f8b6c5", "uid": RS_UID,
                                            "controller": True, "blockOwnerDeletion": True}],
                          managedFields=[{"manager": "kube-controller-manager", "operation": "Update",
                                          "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {}}]),
        "spec": {"nodeName": "node-a", "containers": [{
            "name": "checkout", "image": "ghcr.io/acme/checkout:1.42.0",
            "resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}}]},
        "status": {"phase": "Running", "qosClass": "Burstable", "containerStatuses": [{
            "name": "checkout", "image": "ghcr.io/acme/checkout:1.42.0", "ready": False,
            "restartCount": restarts, "started": False,
            "state": {"waiting": {"reason": "CrashLoopBackOff",
                                  "message": f"back-off 5m0s restarting failed container=checkout pod={name}_shop({uid})"}},
            "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                         "startedAt": "2026-11-03T10:01:02Z", "finishedAt": "2026-11-03T10:01:39Z",
                                         "containerID": "containerd://4b1f0c9e2d"}},
        }]},
    }


def shop_checkout_oomkilled() -> tuple[list[dict[str, Any]], dict[str, dict[str, str]]]:
    """(objects, logs) for Deployment shop/checkout → ReplicaSet → pods, OOMKilled and crash-looping."""
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": _meta("checkout", DEPLOY_UID, generation=7, labels={"app.kubernetes.io/name": "checkout"},
                          annotations={"deployment.kubernetes.io/revision": "7",
                                       "argocd.argoproj.io/tracking-id": "shop:apps/Deployment:shop/checkout"}),
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": "checkout"}},
                 "template": {"metadata": {"labels": {"app.kubernetes.io/name": "checkout"}},
                              "spec": {"containers": [{"name": "checkout", "image": "ghcr.io/acme/checkout:1.42.0",
                                                       "resources": {"limits": {"memory": "256Mi"}}}]}}},
        "status": {"replicas": 2, "unavailableReplicas": 2, "observedGeneration": 7},
    }
    replicaset = {
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": _meta("checkout-7d9f8b6c5", RS_UID,
                          labels={"app.kubernetes.io/name": "checkout", "pod-template-hash": "7d9f8b6c5"},
                          annotations={"deployment.kubernetes.io/revision": "7"},
                          ownerReferences=[{"apiVersion": "apps/v1", "kind": "Deployment", "name": "checkout",
                                            "uid": DEPLOY_UID, "controller": True, "blockOwnerDeletion": True}]),
        "spec": {"replicas": 2}, "status": {"replicas": 2, "readyReplicas": 0},
    }
    pods = [_pod("checkout-7d9f8b6c5-abcde", POD_UID, restarts=6, zone_label="web"),
            _pod("checkout-7d9f8b6c5-fghij", "7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d", restarts=5, zone_label="batch")]
    events = [
        {"apiVersion": "v1", "kind": "Event",
         "metadata": {"name": "checkout-7d9f8b6c5-abcde.18a3f2b1c4d5e6f7", "namespace": "shop"},
         "involvedObject": {"kind": "Pod", "namespace": "shop", "name": "checkout-7d9f8b6c5-abcde", "uid": POD_UID,
                            "apiVersion": "v1", "fieldPath": "spec.containers{checkout}"},
         "reason": "BackOff", "type": "Warning", "count": 27,
         "message": f"Back-off restarting failed container checkout in pod checkout-7d9f8b6c5-abcde_shop({POD_UID})",
         "source": {"component": "kubelet", "host": "node-a"},
         "firstTimestamp": "2026-11-03T09:20:11Z", "lastTimestamp": "2026-11-03T10:02:40Z"},
        {"apiVersion": "v1", "kind": "Event",
         "metadata": {"name": "checkout.18a3f0aa9b8c7d6e", "namespace": "shop"},
         "involvedObject": {"kind": "Deployment", "namespace": "shop", "name": "checkout", "uid": DEPLOY_UID,
                            "apiVersion": "apps/v1"},
         "reason": "ScalingReplicaSet", "type": "Normal", "count": 1,
         "message": "Scaled up replica set checkout-7d9f8b6c5 to 2",
         "source": {"component": "deployment-controller"},
         "firstTimestamp": "2026-11-03T09:12:44Z", "lastTimestamp": "2026-11-03T09:12:44Z"},
    ]
    configmap = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": _meta("checkout-config", "c0ffee00-1111-2222-3333-444455556666",
                          annotations={"kubectl.kubernetes.io/last-applied-configuration":
                                       '{"data":{"DATABASE_URL":"postgres://checkout:hunter2@db/checkout"}}',
                                       "team": "payments"}),
        "data": {"DATABASE_URL": "postgres://checkout:hunter2@db/checkout", "JAVA_OPTS": "-Xmx200m"},
        "binaryData": {"truststore.jks": "ZmFrZQ=="},
    }
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
              "metadata": _meta("checkout-db", "5ec4e700-aaaa-bbbb-cccc-ddddeeeeffff"),
              "data": {"password": "aHVudGVyMg=="}}
    node = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "node-a", "uid": "9d8c7b6a-0000-1111-2222-333344445555",
                         "labels": {"kubernetes.io/hostname": "node-a"}},
            "status": {"allocatable": {"cpu": "3920m", "memory": "15214708Ki"}}}
    namespace = {"apiVersion": "v1", "kind": "Namespace",
                 "metadata": {"name": "shop", "uid": "1e2d3c4b-5a69-7887-96a5-b4c3d2e1f000"},
                 "status": {"phase": "Active"}}
    other_ns_pod = _pod("checkout-7d9f8b6c5-zzzzz", "00000000-1111-4222-8333-444444444444",
                        restarts=0, zone_label="web")
    other_ns_pod["metadata"]["namespace"] = "staging"
    objects = [deployment, replicaset, *pods, other_ns_pod, *events, configmap, secret, node, namespace]
    old_log = "".join(f"2026-11-03T10:01:{i:02d}Z INFO cart cache warmed {i}\n" for i in range(30))
    logs = {"shop/checkout-7d9f8b6c5-abcde/checkout": {
        "previous": old_log + "java.lang.OutOfMemoryError: Java heap space\n\tat com.acme.checkout.Cart.load\n",
        "current": "2026-11-03T10:02:41Z INFO starting checkout 1.42.0\n"}}
    return objects, logs
