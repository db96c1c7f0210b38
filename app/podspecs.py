"""Readings of a pod spec that a detector (on the live object) and a fixer (on the manifest in git) both need.

They live here, outside app/detectors and app/fixers, so those two packages stay independent of each other:
where a ConfigMap or a Secret is referenced, which ports a container declares, and how long the kubelet
lets a container start before its probes kill it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app import fieldpaths

HANDLERS = ("httpGet", "tcpSocket", "grpc")
# Kubelet probe defaults (k8s.io/api/core/v1): what a probe without these fields does.
DEFAULT_PERIOD, DEFAULT_FAILURES = 10, 3
# A startupProbe sized for a slow starter allows its observed start time times this.
START_MARGIN = 1.5


@dataclass(frozen=True)
class Ref:
    """Where a pod spec names the object: a field path below the pod spec, and how a human says it."""

    path: str
    describe: str


def references(pod_spec: dict[str, Any], kind: str, name: str, *, key: str | None = None) -> list[Ref]:
    """Every field below a pod spec that names ``kind``/``name`` (or, with ``key``, that key of it)."""
    out: list[Ref] = []
    for group in ("initContainers", "containers"):
        for c in pod_spec.get(group) or []:
            out += _container_refs(c, f"{group}[name={c.get('name')}]", kind, name, key)
    for v in pod_spec.get("volumes") or []:
        out += _volume_refs(v, kind, name, key)
    return out


def _container_refs(c: dict[str, Any], base: str, kind: str, name: str, key: str | None) -> list[Ref]:
    out: list[Ref] = []
    from_key, key_ref = ("configMapRef", "configMapKeyRef") if kind == "ConfigMap" else ("secretRef", "secretKeyRef")
    who = f"container {c.get('name')}"
    if key is None:
        for i, item in enumerate(c.get("envFrom") or []):
            if ((item or {}).get(from_key) or {}).get("name") == name:
                out.append(Ref(f"{base}.envFrom[{i}].{from_key}.name", f"{who} envFrom {from_key}"))
    for item in c.get("env") or []:
        ref = ((item or {}).get("valueFrom") or {}).get(key_ref) or {}
        if ref.get("name") == name and (key is None or ref.get("key") == key):
            field = "key" if key else "name"
            path = fieldpaths.format([*fieldpaths.parse(base), "env", fieldpaths.Selector("name", str(item["name"])),
                                      "valueFrom", key_ref, field])
            out.append(Ref(path, f"{who} env {item['name']} ({key_ref})"))
    return out


def _volume_refs(v: dict[str, Any], kind: str, name: str, key: str | None) -> list[Ref]:
    out: list[Ref] = []
    base = f"volumes[name={v.get('name')}]"
    field, name_key = ("configMap", "name") if kind == "ConfigMap" else ("secret", "secretName")
    direct = v.get(field) or {}
    if direct.get(name_key) == name:
        out += _source_refs(direct, f"{base}.{field}", name_key, key, f"volume {v.get('name')}")
    for i, source in enumerate((v.get("projected") or {}).get("sources") or []):
        inner = (source or {}).get(field) or {}
        if inner.get("name") == name:
            out += _source_refs(inner, f"{base}.projected.sources[{i}].{field}", "name", key,
                                f"projected volume {v.get('name')}")
    return out


def _source_refs(source: dict[str, Any], path: str, name_key: str, key: str | None, who: str) -> list[Ref]:
    if key is None:
        return [Ref(f"{path}.{name_key}", who)]
    return [Ref(f"{path}.items[{i}].key", f"{who} item {key}")
            for i, item in enumerate(source.get("items") or []) if (item or {}).get("key") == key]


# ---------------------------------------------------------------- ports and probes


def declared_ports(c: dict[str, Any]) -> dict[str, int]:
    """Declared container ports: name -> number (unnamed ones under their number's text)."""
    out: dict[str, int] = {}
    for p in c.get("ports") or []:
        number = int(p.get("containerPort") or 0)
        out[str(p.get("name") or number)] = number
    return out


def resolve_port(port: Any, declared: dict[str, int]) -> int | None:
    if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
        return int(port) if int(port) in declared.values() else None
    return declared.get(str(port))


def allowed_start(c: dict[str, Any]) -> float:
    """Seconds a container may take to start before the probes kill it (startupProbe if any, else liveness)."""
    probe = c.get("startupProbe") or c.get("livenessProbe") or {}
    return float(int(probe.get("initialDelaySeconds") or 0)
                 + int(probe.get("failureThreshold") or DEFAULT_FAILURES) * int(probe.get("periodSeconds") or DEFAULT_PERIOD))
