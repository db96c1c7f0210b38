"""Argo CD Applications with a plain directory source: the Application's path holds the manifest."""

from __future__ import annotations

import fnmatch
from typing import Any

from app import kube
from app.errors import NoFix
from app.models.changes import Location
from app.models.evidence import Evidence
from app.sources import RepoIdentity, RepoView, manifests


def locate(ev: Evidence, repo: RepoView, identity: RepoIdentity) -> Location | None:
    apps = [g for g in ev.gitops if g.get("kind") == "Application"]
    if not apps:
        return None
    app = apps[0]
    spec = app.get("spec") or {}
    source = spec.get("source") or {}
    if not source:
        raise NoFix(f"Application {kube.name(app)} uses several sources: not supported yet", code="unsupported_source")
    repo_url = str(source.get("repoURL", ""))
    if not identity.matches(repo_url):
        raise NoFix(f"{ev.workload} is deployed by Application {kube.name(app)} from another repository "
                    f"({repo_url}), not the configured GitOps repo", code="foreign_repo")
    if source.get("chart") or source.get("helm") or source.get("kustomize"):
        raise NoFix(f"Application {kube.name(app)} renders with Helm or Kustomize: not supported yet",
                    code="unsupported_source")
    base = str(source.get("path", ".")).strip("/")
    files = _files(repo.list_files(), base, source.get("directory") or {})
    if any(f.rsplit("/", 1)[-1] in ("kustomization.yaml", "kustomization.yml", "Chart.yaml") for f in files):
        raise NoFix(f"path {base} of Application {kube.name(app)} is a Kustomize or Helm source: not supported yet",
                    code="unsupported_source")
    default_ns = ((spec.get("destination") or {}).get("namespace")) or None
    texts = {f: repo.read_text(f) for f in files}
    found = manifests.find(texts, ev.workload, api_version=_api_version(ev.object), default_namespace=default_ns)
    if not found:
        raise NoFix(f"Application {kube.name(app)} path {base or '.'} has no manifest for {ev.workload}",
                    code="no_manifest")
    if len(found) > 1:
        where = ", ".join(f"{p}#{i}" for p, i in found)
        raise NoFix(f"{ev.workload} is defined more than once under {base or '.'} ({where}): not guessing",
                    code="ambiguous_manifest")
    path, index = found[0]
    return Location(path=path, document_index=index, source="argocd", app=kube.name(app),
                    note=f"Argo CD Application {kube.name(app)}: {repo_url} path {base or '.'}")


def _api_version(obj: dict[str, Any]) -> str:
    return str(obj.get("apiVersion") or "")


def _files(all_files: list[str], base: str, directory: dict[str, Any]) -> list[str]:
    recurse = bool(directory.get("recurse"))
    include = str(directory.get("include") or "")
    exclude = str(directory.get("exclude") or "")
    out = []
    prefix = f"{base}/" if base and base != "." else ""
    for path in all_files:
        if not path.startswith(prefix):
            continue
        rel = path[len(prefix):]
        if "/" in rel and not recurse:
            continue
        if include and not _glob_any(rel, include):
            continue
        if exclude and _glob_any(rel, exclude):
            continue
        out.append(path)
    return out


def _glob_any(rel: str, patterns: str) -> bool:
    """Argo CD include/exclude: one glob or a {a,b} list of globs."""
    pats = patterns.strip("{}").split(",")
    name = rel.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(rel, p.strip()) or fnmatch.fnmatch(name, p.strip()) for p in pats)
