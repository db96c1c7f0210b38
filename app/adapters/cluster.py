"""The live cluster, read-only, through the official `kubernetes` client.

The only module that imports `kubernetes` (lazily, so importing this module stays cheap). It does not use the
generated typed APIs: every request is a plain GET built from the kind table in `adapters.snapshot` and sent
through the ApiClient, so objects come back as the API's JSON (camelCase dicts, as `kubectl get -o json`
prints them), the same shape a snapshot file holds.

Errors are translated here: timeouts, connection trouble, 429 and 5xx become TemporaryError (honouring
Retry-After), 401/403 PermanentError(code="forbidden"), 404 means "absent" (get -> None, list -> []). Every
error names the dependency ("cluster: ...") and how it failed (app.dependencies), and each request is bounded
by the job's budget and retry budget (app.deadlines): a server that accepts and never answers is cut there.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from typing import Any

from app import deadlines, dependencies
from app.adapters.snapshot import LOG_LIMIT_BYTES, Resource, resource_for, sanitize_object
from app.errors import AutofixError, ConfigError, PermanentError, TemporaryError
from app.ports import K8sObject

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = (5.0, 15.0)  # (connect, read) seconds for one request
DEFAULT_DELAY = 30.0  # retry delay when the server gives no Retry-After
PAGE_SIZE = 500
MAX_PAGES = 20  # bounds memory and time on huge namespaces; evidence needs recent objects, not all

# Names and namespaces are DNS subdomains; anything else (e.g. ".." from an alert label) cannot exist and
# must never reach a URL path.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
# Log requests that fail only because no such log exists (yet): the caller gets "".
_NO_LOG = ("previous terminated container", "is waiting to start", "ContainerCreating", "PodInitializing")

_OBJECT_TYPES = {"200": "object", "default": "object"}
_LOG_TYPES = {"200": "bytearray", "default": "object"}
_REVIEW_TYPES = {"201": "object", "200": "object", "default": "object"}


CLUSTER = dependencies.CLUSTER


class _NotFound(PermanentError):
    """404 from the API server; turned into None / [] / "" before it leaves this module."""

    code = "not_found"


class KubeCluster:
    """ClusterReader over the Kubernetes API. Sends GET requests only."""

    def __init__(self, api_client: Any, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 page_size: int = PAGE_SIZE) -> None:
        self._api = api_client
        self._timeout = timeout
        self._page_size = page_size

    @classmethod
    def from_config(cls, kubeconfig: str | None, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                    context: str | None = None, source: str | None = None) -> KubeCluster:
        """Client for ``kubeconfig``, else the in-cluster service account in a pod, else ~/.kube/config.

        ``context``: one of the file's contexts (else its current-context); ``source``: where this cluster is
        configured (an entry of clusters.yaml), named by the error instead of KUBECONFIG."""
        from kubernetes import client, config  # heavy: imported only when a live cluster is used
        from urllib3.util.retry import Retry

        configuration = client.Configuration()
        try:
            if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                # persist_config=False: a read-only bot does not rewrite the user's kubeconfig.
                config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration,
                                        persist_config=False)  # type: ignore[no-untyped-call]
        except Exception as err:  # the client raises ConfigException, OSError, YAML and type errors alike
            in_pod = kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST")
            where = kubeconfig or ("unset: the pod's service account" if in_pod else "unset: ~/.kube/config")
            first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
            if source is not None:
                raise ConfigError(f"{source}: cannot load Kubernetes configuration from {where}"
                                  f"{f' (context {context})' if context else ''}: {first}") from err
            raise ConfigError(f"KUBECONFIG ({where}): cannot load Kubernetes configuration: {first}; set "
                              "KUBECONFIG to a kubeconfig file, run in a pod, or use `autofix handle --snapshot`"
                              ) from err
        # One reconnect, no re-read after a read timeout, no waiting out a Retry-After: the worker retries the
        # whole job on TemporaryError (with that delay), so retrying here would only stretch the 15 s bound.
        configuration.retries = Retry(total=1, connect=1, read=0, status=0, redirect=0,
                                      respect_retry_after_header=False)
        return cls(client.ApiClient(configuration), timeout=timeout)

    def close(self) -> None:
        self._api.close()

    def get(self, kind: str, namespace: str | None, name: str) -> K8sObject | None:
        resource = resource_for(kind)
        if not _valid_names(name, namespace if resource.namespaced else None):
            logger.warning("invalid object name refused", extra={"k8s_kind": kind, "k8s_name": name})
            return None
        if resource.namespaced and namespace is None:
            raise PermanentError(f"get {kind} {name!r} needs a namespace", code="bad_request")
        path, params = _collection_path(resource, namespace)
        try:
            data = self._get(path + "/{name}", {**params, "name": name}, {}, types=_OBJECT_TYPES,
                             what=f"{resource.plural}/{name}{_in(namespace, resource)}")
        except _NotFound:
            return None
        return sanitize_object(resource, _as_object(data))

    def logs(self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int) -> str:
        """Tail of a container's log; "" when there is none (no previous container, pod gone, not started)."""
        if not _valid_names(pod, namespace) or not _NAME.fullmatch(container):
            logger.warning("invalid pod or container name refused", extra={"k8s_name": pod})
            return ""
        if tail_lines <= 0:
            return ""
        query = {"container": container, "previous": "true" if previous else "false",
                 "tailLines": str(tail_lines), "limitBytes": str(LOG_LIMIT_BYTES)}
        try:
            data = self._get("/api/v1/namespaces/{namespace}/pods/{name}/log",
                             {"namespace": namespace, "name": pod}, query, types=_LOG_TYPES,
                             what=f"pods/{pod}/log container {container} in namespace {namespace}")
        except _NotFound:
            return ""
        except PermanentError as err:
            if any(marker in err.message for marker in _NO_LOG):
                return ""
            raise
        return bytes(data).decode("utf-8", errors="replace")

    def can_i(self, verb: str, resource: str, *, group: str = "", subresource: str = "",
              namespace: str | None = None) -> bool:
        """Whether this identity may ``verb`` the resource: a SelfSubjectAccessReview (for `autofix doctor`).

        The one request that is not a GET: creating the review writes nothing, the API server only answers.
        """
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        attributes = {"verb": verb, "group": group, "resource": resource}
        if subresource:
            attributes["subresource"] = subresource
        if namespace:
            attributes["namespace"] = namespace
        body = {"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": attributes}}
        what = f"access review {verb} {resource}"
        request = self._api.param_serialize(
            method="POST", resource_path="/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", body=body,
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            auth_settings=["BearerToken"],
        )
        timeout = self._bounded_timeout()
        try:
            with deadlines.calling(CLUSTER, f"POST {what}"):
                response = self._api.call_api(*request, _request_timeout=timeout)
                response.read()
            data = self._api.response_deserialize(response_data=response, response_types_map=_REVIEW_TYPES).data
        except ApiException as err:
            raise deadlines.failed(_translate(err, what)) from err
        except (HTTPError, OSError) as err:
            raise deadlines.failed(_transport_error(err, f"POST {what}", timeout)) from err
        deadlines.answered(CLUSTER)
        return bool((_as_object(data).get("status") or {}).get("allowed"))

    def _bounded_timeout(self) -> tuple[float, float]:
        """(connect, read) for one request: the configured ones, never past the job's budget."""
        connect, read = self._timeout
        return deadlines.timeout(connect), deadlines.timeout(read)

    def _get(self, path: str, path_params: Mapping[str, str], query: Mapping[str, str], *,
             types: Mapping[str, str], what: str) -> Any:
        """One GET; returns the decoded body or raises our own errors (``_NotFound`` for 404)."""
        from kubernetes.client.exceptions import ApiException
        from urllib3.exceptions import HTTPError

        request = self._api.param_serialize(
            method="GET", resource_path=path, path_params=dict(path_params), query_params=list(query.items()),
            header_params={"Accept": "application/json, */*"}, auth_settings=["BearerToken"],
        )
        timeout = self._bounded_timeout()
        try:
            with deadlines.calling(CLUSTER, f"GET {what}"):
                response = self._api.call_api(*request, _request_timeout=timeout)
                response.read()
            data = self._api.response_deserialize(response_data=response, response_types_map=dict(types)).data
        except ApiException as err:
            translated = _translate(err, what)
            if isinstance(translated, _NotFound) or translated.code == "cluster_request":
                # It answered: the object or CRD is absent, or (400) e.g. there is no previous container's log.
                deadlines.answered(CLUSTER)
                raise translated from err
            raise deadlines.failed(translated) from err
        except (HTTPError, OSError) as err:
            logger.warning("cluster request failed", extra={"k8s_what": what, "error": type(err).__name__})
            raise deadlines.failed(_transport_error(err, f"GET {what}", timeout)) from err
        except ValueError as err:  # 2xx with a body that is not JSON: a proxy in the way, most likely
            raise deadlines.failed(TemporaryError(
                f"malformed API response while reading {what}", code="cluster_unavailable", delay=DEFAULT_DELAY,
                dependency=CLUSTER, kind=dependencies.INVALID_RESPONSE)) from err
        deadlines.answered(CLUSTER)
        return data

    def _list_page(self, resource: Resource, namespace: str | None, query: Mapping[str, str]) -> K8sObject:
        path, params = _collection_path(resource, namespace)
        return _as_object(self._get(path, params, query, types=_OBJECT_TYPES,
                                    what=f"{resource.plural}{_in(namespace, resource)}"))

    # Last in the class: after this def, `list` inside the class body names the method, not the builtin.
    def list(self, kind: str, namespace: str | None, *, label_selector: str | None = None) -> list[K8sObject]:
        """All objects of ``kind`` (in ``namespace``; None means all namespaces); [] if the CRD is absent."""
        resource = resource_for(kind)
        scoped_ns = namespace if resource.namespaced else None
        if not _valid_names(None, scoped_ns):
            logger.warning("invalid namespace refused", extra={"k8s_kind": kind})
            return []
        items: list[K8sObject] = []
        query = {"limit": str(self._page_size)}
        if label_selector:
            query["labelSelector"] = label_selector
        for _ in range(MAX_PAGES):
            try:
                page = self._list_page(resource, scoped_ns, query)
            except _NotFound:  # the CRD (Argo CD, Flux) is not installed in this cluster
                return []
            items.extend(item for item in page.get("items") or [] if isinstance(item, dict))
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                break
            query["continue"] = token
        else:
            logger.warning("list truncated", extra={"k8s_kind": kind, "k8s_count": len(items)})
        return [sanitize_object(resource, item) for item in items]


def _collection_path(resource: Resource, namespace: str | None) -> tuple[str, dict[str, str]]:
    """Path template of the collection; placeholders are filled (and quoted) by the ApiClient."""
    base = f"/apis/{resource.group}/{resource.version}" if resource.group else f"/api/{resource.version}"
    if resource.namespaced and namespace is not None:
        return f"{base}/namespaces/{{namespace}}/{resource.plural}", {"namespace": namespace}
    return f"{base}/{resource.plural}", {}


def _in(namespace: str | None, resource: Resource) -> str:
    if not resource.namespaced:
        return ""
    return f" in namespace {namespace}" if namespace else " in all namespaces"


def _valid_names(name: str | None, namespace: str | None) -> bool:
    return all(value is None or _NAME.fullmatch(value) for value in (name, namespace))


def _as_object(data: Any) -> K8sObject:
    if not isinstance(data, dict):
        raise TemporaryError("malformed API response: expected a JSON object", code="cluster_unavailable",
                             dependency=CLUSTER, kind=dependencies.INVALID_RESPONSE)
    return data


def _transport_error(err: Exception, call: str, timeout: tuple[float, float]) -> TemporaryError:
    """No HTTP answer: the API server did not answer in time, refused the connection, or cannot be reached."""
    kind = dependencies.kind_of(err)
    if kind == dependencies.TIMEOUT:
        text = f"the Kubernetes API did not answer within {deadlines.shown(max(timeout))} s ({call})"
    elif kind == dependencies.REFUSED:
        text = f"the Kubernetes API is unreachable: connection refused ({call})"
    else:
        text = f"the Kubernetes API is unreachable: {type(err).__name__} ({call})"
    return TemporaryError(text, code="cluster_unavailable", delay=DEFAULT_DELAY, dependency=CLUSTER, kind=kind)


def _translate(err: Any, what: str) -> AutofixError:
    """Our error for an ApiException: retry what may pass, stop on what will not."""
    status = int(err.status or 0)
    detail = _status_message(err.body) or str(err.reason or "")
    if status == 404:
        return _NotFound(f"{what} not found")
    kind = dependencies.http_kind(status) if status else dependencies.UNREACHABLE
    if status in (401, 403):
        logger.warning("cluster access denied", extra={"k8s_what": what, "http_status": status})
        return PermanentError(f"the Kubernetes API refused to get {what} (HTTP {status}): {detail}",
                              code="forbidden", dependency=CLUSTER, kind=kind)
    if status in (0, 408, 410, 429) or status >= 500:
        delay = _retry_after(err.headers)
        logger.warning("cluster temporarily unavailable", extra={"k8s_what": what, "http_status": status})
        return TemporaryError(f"the Kubernetes API answered HTTP {status} while reading {what}: {detail}",
                              code="cluster_unavailable", delay=DEFAULT_DELAY if delay is None else delay,
                              dependency=CLUSTER, kind=dependencies.HTTP_5XX if status == 408 else kind)
    return PermanentError(f"the Kubernetes API rejected get {what} (HTTP {status}): {detail}",
                          code="cluster_request", dependency=CLUSTER, kind=kind)


def _status_message(body: Any) -> str:
    """The `message` of a Status body, or the raw body text."""
    if not body:
        return ""
    try:
        status = json.loads(body)
    except (TypeError, ValueError):
        return str(body)[:500]
    return str(status.get("message", "")) if isinstance(status, dict) else str(body)[:500]


def _retry_after(headers: Any) -> float | None:
    """Seconds from a Retry-After header (the API server sends delta-seconds), bounded to an hour."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return min(max(float(value), 0.0), 3600.0) if value is not None else None
    except ValueError:
        return None
