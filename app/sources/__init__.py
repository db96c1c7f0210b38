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

from app.sources.repos import Overlay, RepoIdentity, RepoView

__all__ = ["Overlay", "RepoIdentity", "RepoView"]
