"""Sources: where a workload is defined in the GitOps repo and how git produces it, over file texts (pure).

- ``deployers``: which object deploys the workload (Argo CD, Flux, none), so which path defines it and
  with which layout: ``deployers.locate`` -> Location.
- ``layouts``: plain, Kustomize, Helm values behind one ``Layout`` protocol, looked up once by name
  (``Layouts(renderer=...).of(location)``): effective workload, edits, environments reached, render check.
- ``manifests``, ``index``, ``yaml_rt``: matching documents, the repository index, the round-trip editor.

Renderers (kubectl kustomize, Helm) reach layouts through the ``Renderer`` port, injected at wiring time:
nothing here runs a program.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from app.models.changes import FileEdit, Location, Plan
from app.models.evidence import Evidence
from app.sources.repos import Overlay, RepoIdentity, RepoView

if TYPE_CHECKING:
    from app.sources.layouts import Layouts

__all__ = ["Overlay", "RepoIdentity", "RepoView", "edits", "effective", "environments", "locate", "verify"]


def locate(evidence: Evidence, repo: RepoView, identity: RepoIdentity) -> Location:
    from app.sources import deployers

    return deployers.locate(evidence, repo, identity)


# ---------------------------------------------------------------- transitional (issue 11)
# app/pipeline.py still calls these module functions. They bind the layouts to the sandboxed renderer here,
# which is the one import of an adapter left in app/sources: remove them (and the import) once the change
# stage gets ``Layouts(renderer=...)`` from app/wiring.py and calls ``layouts.of(location)`` directly.


def _layouts() -> Layouts:
    from app.adapters.renderers import SandboxedRenderer
    from app.sources.layouts import Layouts

    return Layouts(renderer=SandboxedRenderer())


def effective(location: Location, evidence: Evidence, repo: RepoView) -> dict[str, Any]:
    return _layouts().of(location).effective(location, evidence, repo=repo)


def edits(location: Location, plan: Plan, evidence: Evidence, repo: RepoView,
          workload: dict[str, Any]) -> list[FileEdit]:
    return _layouts().of(location).edits(location, plan, evidence=evidence, repo=repo, workload=workload)


def environments(location: Location, found: list[FileEdit], repo: RepoView) -> tuple[str, ...]:
    return _layouts().of(location).environments(location, found, repo=repo)


def verify(location: Location, evidence: Evidence, repo: RepoView, plan: Plan,
           new_texts: Mapping[str, str]) -> tuple[str, list[str]]:
    return _layouts().of(location).verify(location, evidence, repo=repo, plan=plan, new_texts=new_texts)
