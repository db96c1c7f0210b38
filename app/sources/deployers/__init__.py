"""Deployers: which object deploys the workload (an Argo CD Application, a Flux Kustomization or HelmRelease,
none), so which repository path defines it and with which layout (app/sources/layouts).

Each deployer returns a Location, None when it does not apply (the next one is tried), or raises NoFix when
it applies but the one right place cannot be determined: never guess between two files.
"""

from __future__ import annotations

from collections.abc import Callable

from app.errors import NoFix
from app.models.changes import Location
from app.models.evidence import Evidence
from app.sources.deployers import argocd, flux, plain
from app.sources.repos import RepoIdentity, RepoView

Deployer = Callable[[Evidence, RepoView, RepoIdentity], Location | None]

# In order: the GitOps controllers' own word first; plain YAML only when neither deploys the workload.
DEPLOYERS: tuple[Deployer, ...] = (argocd.locate, flux.locate, plain.locate)


def locate(evidence: Evidence, repo: RepoView, identity: RepoIdentity) -> Location:
    for deployer in DEPLOYERS:
        location = deployer(evidence, repo, identity)
        if location is not None:
            return location
    raise NoFix(f"no manifest for {evidence.workload} was found in the GitOps repo", code="no_manifest")
