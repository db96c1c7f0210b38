"""Deployers: which object deploys the workload (an Argo CD Application, a Flux Kustomization or HelmRelease,
none), so which repository path defines it and with which layout (app/sources/layouts).

Each deployer returns a Location, None when it does not apply (the next one is tried), or raises NoFix when
it applies but the one right place cannot be determined: never guess between two files.
"""

from __future__ import annotations

from collections.abc import Callable

from app import kube
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
    if evidence.workload.kind == kube.POD:
        raise NoFix(bare_pod(evidence), code="no_manifest")
    raise NoFix(f"no manifest for {evidence.workload} was found in the GitOps repo", code="no_manifest")


# What Argo CD and Flux write on what they deploy (FACTS.md): the annotation first, then the labels.
TRACKING = ("argocd.argoproj.io/tracking-id", "app.kubernetes.io/instance", "kustomize.toolkit.fluxcd.io/name",
            "helm.toolkit.fluxcd.io/name")


def bare_pod(evidence: Evidence) -> str:
    """Why a Pod no controller owns cannot be fixed in git: what was looked for, and that none of it was found."""
    ref, obj = evidence.workload, evidence.object
    marks = {**kube.labels_of(obj), **kube.annotations_of(obj)}
    carried = [k for k in TRACKING if marks.get(k)]
    tracking = (f"it carries {', '.join(carried)}, but no Argo CD Application or Flux object that deploys it from "
                "the GitOps repo could be read" if carried else
                f"it carries no GitOps tracking (looked for {', '.join(TRACKING)})")
    return (f"Pod {ref.short} has no controller and no GitOps source defines it: {tracking}, and no manifest in the "
            f"GitOps repo defines Pod {ref.name} in namespace {ref.namespace}")
