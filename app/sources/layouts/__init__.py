"""Layouts: how git produces the workload (a plain manifest, a Kustomize tree, a Helm chart and its values).

A deployer (app/sources/deployers) finds where the workload is defined and puts the layout's own typed spec
in the Location; the layout named by that spec plans on the effective workload, writes each change where its
value is set, names what else the change reaches and checks the render. This is the one registry, and
``Layouts.of`` the one lookup by layout name: a new layout is its module and one line here.
"""

from __future__ import annotations

from collections.abc import Callable

from app.models.changes import LayoutSpec, Location
from app.ports import Renderer
from app.sources.layouts import helm, kustomize, plain
from app.sources.layouts.base import Layout

__all__ = ["Layout", "Layouts"]

# Layout name (its spec's ``layout``) -> the layout, built with the renderer.
_REGISTRY: dict[str, Callable[[Renderer], Layout]] = {
    LayoutSpec.layout: plain.Plain,
    kustomize.KustomizeSpec.layout: kustomize.Kustomize,
    helm.HelmSpec.layout: helm.Helm,
}


class Layouts:
    """Every layout, bound to the renderer injected at wiring time (the sandboxed kubectl and Helm, or a
    fake in tests)."""

    def __init__(self, *, renderer: Renderer) -> None:
        self._layouts = {name: make(renderer) for name, make in _REGISTRY.items()}

    def of(self, location: Location) -> Layout:
        """The layout that produces the workload at ``location``."""
        found = self._layouts.get(location.layout)
        if found is None:
            raise LookupError(f"no layout named {location.layout!r} is registered in app/sources/layouts")
        return found
