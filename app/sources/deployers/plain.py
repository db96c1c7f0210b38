"""No deployer object: plain YAML anywhere in the repo, when no Argo CD or Flux object is readable. Exactly
one match, whatever its layout would be (it is planned on and edited as the plain workload manifest)."""

from __future__ import annotations

from app.errors import NoFix
from app.models.changes import Location
from app.models.evidence import Evidence
from app.sources import manifests
from app.sources.repos import RepoIdentity, RepoView


def locate(ev: Evidence, repo: RepoView, identity: RepoIdentity) -> Location | None:
    if ev.gitops:
        return None  # a GitOps owner was found: only its own source may decide
    found = defining(ev, repo)
    if not found:
        return None
    if len(found) > 1:
        where = ", ".join(f"{p}#{i}" for p, i in found)
        raise NoFix(f"{ev.workload} is defined in more than one place ({where}) and no Argo CD or Flux object "
                    "says which one is deployed: not guessing", code="ambiguous_manifest")
    path, index = found[0]
    return Location(path=path, document_index=index, source="plain",
                    note="the only manifest in the repo with this kind, name and namespace")


def defining(ev: Evidence, repo: RepoView) -> list[tuple[str, int]]:
    """Every (path, document index) of the repository defining the workload: with the workspace's index a
    lookup, without one the repository's files are read. The repository stage asks each configured repository
    this (app/stages/repository.py)."""
    return manifests.find(repo, ev.workload, api_version=str(ev.object.get("apiVersion") or ""),
                          default_namespace=None)
