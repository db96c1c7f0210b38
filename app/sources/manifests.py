"""Matching Kubernetes documents in YAML files against a live object (apiVersion group, kind, name, ns)."""

from __future__ import annotations

from typing import Any

from app.models.incident import WorkloadRef
from app.sources import yaml_rt


def group_of(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def matches(doc: Any, ref: WorkloadRef, *, api_version: str, default_namespace: str | None) -> bool:
    if not isinstance(doc, dict) or doc.get("kind") != ref.kind:
        return False
    meta = doc.get("metadata") or {}
    if meta.get("name") != ref.name or group_of(str(doc.get("apiVersion", ""))) != group_of(api_version):
        return False
    namespace = meta.get("namespace") or default_namespace
    return namespace is None or namespace == ref.namespace


def find(texts: dict[str, str], ref: WorkloadRef, *, api_version: str,
         default_namespace: str | None) -> list[tuple[str, int]]:
    """Every (path, document index) whose document defines ``ref``."""
    found = []
    for path, text in sorted(texts.items()):
        if ref.name not in text:  # cheap filter before parsing
            continue
        try:
            docs = yaml_rt.documents(text)
        except Exception:  # noqa: BLE001 - a broken file elsewhere in the repo is not our workload
            continue
        found += [(path, i) for i, doc in enumerate(docs)
                  if matches(doc, ref, api_version=api_version, default_namespace=default_namespace)]
    return found
