"""The contract every layout implements, and what layouts share: their typed spec, grouping edits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from app.models.changes import FileEdit, LayoutSpec, Location, Plan
from app.models.evidence import Evidence
from app.sources.repos import RepoView

S = TypeVar("S", bound=LayoutSpec)


class Layout(Protocol):
    """How git produces a workload (a manifest, a Kustomize tree, a Helm chart and its values), and so where
    a planned change of that workload must be written. One instance per layout, bound to the renderer."""

    @property
    def layered(self) -> bool:
        """Whether the workload is produced from more than the document at the location. Then an edit may
        land in a patch, values file or kustomization: each edit check names its file, the change record keeps
        the effective workload before and after, and the gates judge that rather than an edited file."""
        ...

    def effective(self, location: Location, evidence: Evidence, *, repo: RepoView) -> dict[str, Any]:
        """The workload as git produces it (rendered when the renderer can), for the fixers to plan on."""
        ...

    def edits(self, location: Location, plan: Plan, *, evidence: Evidence, repo: RepoView,
              workload: dict[str, Any]) -> list[FileEdit]:
        """Each planned change, in the file where its effective value is set: one edit per (file, document,
        prefix), changes in plan order. NoFix when that place cannot be told for sure."""
        ...

    def environments(self, location: Location, edits: Sequence[FileEdit], *, repo: RepoView) -> tuple[str, ...]:
        """What the change reaches besides the one workload (overlays rendering an edited base, values files)."""
        ...

    def verify(self, location: Location, evidence: Evidence, *, repo: RepoView, plan: Plan,
               new_texts: Mapping[str, str]) -> tuple[str, list[str]]:
        """The render check: ("verified: ..." | "not verified: why" | "not needed: why", checks that passed).
        Raises PermanentError when the edited tree renders anything but the planned change."""
        ...

    def shown_path(self, location: Location, edits: Sequence[FileEdit]) -> str:
        """The change record's path: the workload manifest when that is what was edited, else the render root
        (never an edited file, so the publish gates judge edited patches and values files as files)."""
        ...


def spec_of(location: Location, kind: type[S]) -> S:
    """The location's layout spec as the layout's own model (a location of another layout is a bug)."""
    spec = location.layout_spec
    if not isinstance(spec, kind):
        raise TypeError(f"{location.path} has layout {location.layout}, not {kind.layout}")
    return spec


def grouped(found: Sequence[FileEdit]) -> list[FileEdit]:
    """One edit per (file, document, prefix), changes in plan order."""
    out: dict[tuple[str, int, tuple[str | int, ...]], FileEdit] = {}
    for edit in found:
        key = (edit.path, edit.document_index, edit.prefix)
        if key in out:
            out[key] = out[key].model_copy(update={"changes": [*out[key].changes, *edit.changes]})
        else:
            out[key] = edit
    return list(out.values())
