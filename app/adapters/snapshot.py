"""A ClusterReader over a dump file, and the rules every ClusterReader shares.

The dump is what `kubectl get -o json` prints for a List, plus container logs::

    {"apiVersion": "v1", "kind": "List", "items": [...],
     "logs": {"<namespace>/<pod>/<container>": {"previous": "...", "current": "..."}}}

A plain string log value is the previous container's log. The file may be JSON or YAML.

This module has no heavy imports on purpose: `adapters.cluster` imports the shared pieces from here (the
kind table, the Secret refusal, the ConfigMap key-only rule, label selectors), so the live cluster and a
snapshot hand the detectors exactly the same shapes.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from app import aliases
from app.errors import ConfigError, PermanentError
from app.ports import K8sObject

logger = logging.getLogger(__name__)

# Both adapters cap a log at this many bytes (the live one sends it as limitBytes).
LOG_LIMIT_BYTES = 64 * 1024

# Written by `kubectl apply`: on a ConfigMap it holds every value, so it goes with the values.
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


@dataclass(frozen=True)
class Resource:
    """Where the API serves one kind."""

    kind: str
    group: str  # "" for the core group
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def _r(kind: str, group: str, version: str, plural: str, namespaced: bool = True) -> tuple[str, Resource]:
    return kind, Resource(kind, group, version, plural, namespaced)


# Explicit on purpose: the bot reads these kinds and nothing else (no discovery, so no surprise reads).
RESOURCES: Mapping[str, Resource] = dict(
    [
        _r("Pod", "", "v1", "pods"),
        _r("Event", "", "v1", "events"),
        _r("Node", "", "v1", "nodes", namespaced=False),
        _r("Namespace", "", "v1", "namespaces", namespaced=False),
        _r("ConfigMap", "", "v1", "configmaps"),
        _r("PersistentVolumeClaim", "", "v1", "persistentvolumeclaims"),
        _r("ResourceQuota", "", "v1", "resourcequotas"),
        _r("Service", "", "v1", "services"),
        _r("ReplicaSet", "apps", "v1", "replicasets"),
        _r("Deployment", "apps", "v1", "deployments"),
        _r("StatefulSet", "apps", "v1", "statefulsets"),
        _r("DaemonSet", "apps", "v1", "daemonsets"),
        _r("Job", "batch", "v1", "jobs"),
        _r("CronJob", "batch", "v1", "cronjobs"),
        _r("HorizontalPodAutoscaler", "autoscaling", "v2", "horizontalpodautoscalers"),
        _r("StorageClass", "storage.k8s.io", "v1", "storageclasses", namespaced=False),
        _r("PodDisruptionBudget", "policy", "v1", "poddisruptionbudgets"),
        _r("Application", "argoproj.io", "v1alpha1", "applications"),
        _r("Kustomization", "kustomize.toolkit.fluxcd.io", "v1", "kustomizations"),
        _r("GitRepository", "source.toolkit.fluxcd.io", "v1", "gitrepositories"),
        _r("HelmRelease", "helm.toolkit.fluxcd.io", "v2", "helmreleases"),
    ]
)


def resource_for(kind: str) -> Resource:
    """The table entry for ``kind``; Secrets and unknown kinds are refused before any request is made."""
    if kind == "Secret":
        raise PermanentError("refusing to read Secrets: the bot never reads secret data", code="forbidden_kind")
    resource = RESOURCES.get(kind)
    if resource is None:
        raise PermanentError(f"kind {kind!r} is not one the bot reads", code="unknown_kind")
    return resource


def sanitize_object(resource: Resource, obj: K8sObject) -> K8sObject:
    """A copy of ``obj`` as detectors may see it.

    Fills kind/apiVersion (list items arrive without them), drops managedFields (kubectl hides them too) and
    keeps only the keys of a ConfigMap's data: detectors compare names and keys, never contents.
    """
    out = dict(obj)
    out.setdefault("kind", resource.kind)
    out.setdefault("apiVersion", resource.api_version)
    metadata = dict(out.get("metadata") or {})
    metadata.pop("managedFields", None)
    if resource.kind == "ConfigMap":
        annotations = {k: v for k, v in (metadata.get("annotations") or {}).items() if k != LAST_APPLIED}
        if annotations:
            metadata["annotations"] = annotations
        else:
            metadata.pop("annotations", None)
        for field in ("data", "binaryData"):
            if isinstance(out.get(field), Mapping):
                out[field] = dict.fromkeys(out[field], "")
    out["metadata"] = metadata
    return out


def cap_log(text: str, *, tail_lines: int) -> str:
    """The last ``tail_lines`` lines, then at most LOG_LIMIT_BYTES (the order the API server applies them)."""
    if tail_lines <= 0:
        return ""
    tail = "".join(text.splitlines(keepends=True)[-tail_lines:])
    return tail.encode()[:LOG_LIMIT_BYTES].decode(errors="ignore")


# --- label selectors -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!exists"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        # "!=" and "notin" also match objects without the label, as the API server does.
        return not present or value not in self.values


_KEY = r"[A-Za-z0-9]([-A-Za-z0-9_./]*[A-Za-z0-9])?"
_VALUE = r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_EQUALITY = re.compile(rf"\s*(?P<key>{_KEY})\s*(?P<op>==|=|!=)\s*(?P<value>{_VALUE})\s*")
_SET = re.compile(rf"\s*(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)\s*")
_EXISTS = re.compile(rf"\s*(?P<neg>!)?\s*(?P<key>{_KEY})\s*")
_VALUE_ONLY = re.compile(_VALUE)


def _split_terms(selector: str) -> list[str]:
    """Split on the commas that are not inside `in (...)` value sets."""
    terms, depth, start = [], 0, 0
    for i, char in enumerate(selector):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return terms


def _parse_term(term: str) -> Requirement:
    if m := _SET.fullmatch(term):
        values = [v.strip() for v in m["values"].split(",")]
        if not all(_VALUE_ONLY.fullmatch(v) for v in values):
            raise PermanentError(f"invalid label selector term {term.strip()!r}", code="bad_selector")
        return Requirement(m["key"], m["op"], frozenset(values))
    if m := _EQUALITY.fullmatch(term):
        return Requirement(m["key"], "!=" if m["op"] == "!=" else "=", frozenset([m["value"]]))
    if m := _EXISTS.fullmatch(term):
        return Requirement(m["key"], "!exists" if m["neg"] else "exists")
    raise PermanentError(f"invalid label selector term {term.strip()!r}", code="bad_selector")


def parse_label_selector(selector: str | None) -> tuple[Requirement, ...]:
    """Parse `a=b,c!=d,e in (x,y),!f,g` into requirements; all of them must match (empty matches all)."""
    if selector is None or not selector.strip():
        return ()
    return tuple(_parse_term(term) for term in _split_terms(selector))


def selector_matches(requirements: Iterable[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(req.matches(labels or {}) for req in requirements)


# --- the snapshot cluster --------------------------------------------------------------------------

def _group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


class SnapshotCluster:
    """ClusterReader over objects and logs held in memory (usually loaded with ``from_file``)."""

    def __init__(self, items: Iterable[K8sObject], *, logs: Mapping[str, Any] | None = None) -> None:
        self._objects: dict[str, list[K8sObject]] = {}
        for item in items:
            self._add(item)
        self._logs = {key: _log_pair(key, value) for key, value in (logs or {}).items()}

    @classmethod
    def from_file(cls, path: str | Path) -> SnapshotCluster:
        doc = _load_document(Path(path))
        return cls(_items_of(doc, path), logs=_logs_of(doc, path))

    def _add(self, item: K8sObject) -> None:
        resource = RESOURCES.get(str(item.get("kind")))
        # Secrets (and kinds nobody may ask for) are not even kept in memory.
        if resource is None or _group_of(str(item.get("apiVersion", resource.api_version))) != resource.group:
            logger.debug("snapshot object skipped", extra={"k8s_kind": item.get("kind")})
            return
        self._objects.setdefault(resource.kind, []).append(sanitize_object(resource, item))

    def get(self, kind: str, namespace: str | None, name: str) -> K8sObject | None:
        resource = resource_for(kind)
        for obj in self._objects.get(kind, []):
            meta = obj["metadata"]
            if meta.get("name") == name and (not resource.namespaced or meta.get("namespace") == namespace):
                return copy.deepcopy(obj)
        return None

    def logs(self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int) -> str:
        pair = self._logs.get(f"{namespace}/{pod}/{container}")
        if pair is None:
            return ""
        return cap_log(pair[0] if previous else pair[1], tail_lines=tail_lines)

    def list(self, kind: str, namespace: str | None, *, label_selector: str | None = None) -> list[K8sObject]:
        resource = resource_for(kind)
        requirements = parse_label_selector(label_selector)
        return [
            copy.deepcopy(obj)
            for obj in self._objects.get(kind, [])
            if (not resource.namespaced or namespace is None or obj["metadata"].get("namespace") == namespace)
            and selector_matches(requirements, obj["metadata"].get("labels"))
        ]


# --- reading the file ------------------------------------------------------------------------------

def _load_document(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read cluster snapshot {path}: {err}") from err
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return aliases.load(text, source=f"cluster snapshot {path}")
    except aliases.YamlTooComplex as err:
        raise ConfigError(str(err)) from err
    except (ValueError, yaml.YAMLError) as err:
        raise ConfigError(f"cluster snapshot {path} is not valid JSON/YAML: {err}") from err


def _items_of(doc: Any, path: str | Path) -> list[K8sObject]:
    if not isinstance(doc, dict) or not isinstance(doc.get("items"), list):
        raise ConfigError(f"cluster snapshot {path}: expected a mapping with an 'items' list (kind: List)")
    items: list[K8sObject] = doc["items"]
    for index, item in enumerate(items):
        meta = item.get("metadata") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(item.get("kind"), str) or not isinstance(meta, dict) \
                or not isinstance(meta.get("name"), str):
            raise ConfigError(f"cluster snapshot {path}: items[{index}] needs a kind and metadata.name")
    return items


def _logs_of(doc: dict[str, Any], path: str | Path) -> dict[str, Any]:
    logs = doc.get("logs") or {}
    if not isinstance(logs, dict):
        raise ConfigError(f"cluster snapshot {path}: 'logs' must map 'namespace/pod/container' to logs")
    for key, value in logs.items():
        try:
            _log_pair(key, value)
        except ValueError as err:
            raise ConfigError(f"cluster snapshot {path}: {err}") from err
    return logs


def _log_pair(key: str, value: Any) -> tuple[str, str]:
    """(previous, current) for one logs entry; a plain string is the previous container's log."""
    if not isinstance(key, str) or key.count("/") != 2:
        raise ValueError(f"log key {key!r} is not 'namespace/pod/container'")
    if isinstance(value, str):
        return value, ""
    if isinstance(value, dict) and all(isinstance(value.get(k, ""), str) for k in ("previous", "current")):
        return value.get("previous", ""), value.get("current", "")
    raise ValueError(f"log {key!r} must be a string or a mapping with 'previous'/'current' strings")
