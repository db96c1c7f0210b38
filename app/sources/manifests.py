"""Matching Kubernetes documents in YAML files against a live object (apiVersion group, kind, name, ns).

Two ways in, one answer: over file texts (parse each candidate), or over a repository view carrying the
repository index (``repo.index``: a dictionary lookup, no file read). ``find`` returns (path, document
index) of whole documents; ``hits`` also returns objects embedded in ``kind: List`` documents with their
YAML path, which a Location must carry as its ``prefix``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from app import yaml_rt
from app.errors import NoFix
from app.models.incident import WorkloadRef
from app.models.repo_index import Hit, RepoIndex, group_of
from app.sources.repos import RepoView

__all__ = ["Hit", "find", "group_of", "hits", "index_of", "matches"]


def matches(doc: Any, ref: WorkloadRef, *, api_version: str, default_namespace: str | None) -> bool:
    if not isinstance(doc, dict) or doc.get("kind") != ref.kind:
        return False
    meta = doc.get("metadata") or {}
    if meta.get("name") != ref.name or group_of(str(doc.get("apiVersion", ""))) != group_of(api_version):
        return False
    namespace = meta.get("namespace") or default_namespace
    return namespace is None or namespace == ref.namespace


def find(texts: Mapping[str, str] | RepoView, ref: WorkloadRef, *, api_version: str,
         default_namespace: str | None, paths: Collection[str] | None = None) -> list[tuple[str, int]]:
    """Every (path, document index) whose whole document defines ``ref``.

    ``texts``: file texts by path (parsed here), or a repository view; with an index (``repo.index``) the
    answer is a lookup, without one its files are read. ``paths`` limits the search to those files.
    """
    found = hits(texts, ref, api_version=api_version, default_namespace=default_namespace, paths=paths)
    return [(hit.path, hit.document_index) for hit in found if not hit.prefix]


def hits(texts: Mapping[str, str] | RepoView, ref: WorkloadRef, *, api_version: str,
         default_namespace: str | None, paths: Collection[str] | None = None) -> list[Hit]:
    """Every place defining ``ref``, List items included (their ``prefix`` is ``("items", i)``)."""
    if not isinstance(texts, Mapping):
        index = index_of(texts)
        if index is None:
            files = paths if paths is not None else texts.list_files()
            return hits({f: texts.read_text(f) for f in files}, ref, api_version=api_version,
                        default_namespace=default_namespace)
        found = index.find(group=group_of(api_version), kind=ref.kind, namespace=ref.namespace, name=ref.name,
                           default_namespace=default_namespace)
        wanted = None if paths is None else set(paths)
        return [hit for hit in found if wanted is None or hit.path in wanted]
    return _scan(texts, ref, api_version=api_version, default_namespace=default_namespace, paths=paths)


def index_of(repo: object) -> RepoIndex | None:
    """The repository index a view carries, if any (the workspace adapter offers one per commit)."""
    index = getattr(repo, "index", None)
    return index if isinstance(index, RepoIndex) else None


def _scan(texts: Mapping[str, str], ref: WorkloadRef, *, api_version: str, default_namespace: str | None,
          paths: Collection[str] | None) -> list[Hit]:
    found: list[Hit] = []
    wanted = None if paths is None else set(paths)
    for path, text in sorted(texts.items()):
        if (wanted is not None and path not in wanted) or ref.name not in text:  # cheap filter before parsing
            continue
        try:
            docs = yaml_rt.documents(text)
        except Exception:  # noqa: BLE001 - a broken file elsewhere in the repo is not our workload
            continue
        for i, doc in enumerate(docs):
            if matches(doc, ref, api_version=api_version, default_namespace=default_namespace):
                found.append(Hit(path, i))
            found += [Hit(path, i, ("items", j)) for j, item in _list_items(doc)
                      if matches(item, ref, api_version=api_version, default_namespace=default_namespace)]
    return found


def _list_items(doc: Any) -> list[tuple[int, Any]]:
    if not isinstance(doc, dict) or not str(doc.get("kind", "")).endswith("List"):
        return []
    items = doc.get("items")
    return list(enumerate(items)) if isinstance(items, list) else []


def exactly_one(found: list[tuple[str, int]], ref: WorkloadRef, where: str, *, missing: str) -> tuple[str, int]:
    """The one (path, document) defining ``ref``; none or several: NoFix, never a guess between files."""
    if not found:
        raise NoFix(missing, code="no_manifest")
    if len(found) > 1:
        listed = ", ".join(f"{p}#{i}" for p, i in found)
        raise NoFix(f"{ref} is defined more than once under {where or '.'} ({listed}): not guessing",
                    code="ambiguous_manifest")
    return found[0]

