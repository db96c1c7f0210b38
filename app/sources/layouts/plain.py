"""Plain layout: the document at the location is the workload, planned on as it is and edited in place."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from app import fieldpaths, yaml_rt
from app.models.changes import FileEdit, Location, Plan
from app.models.evidence import Evidence
from app.ports import Renderer
from app.sources.repos import RepoView


class Plain:
    """Its spec is the base LayoutSpec: a plain manifest needs nothing beyond the Location."""

    layered = False

    def __init__(self, renderer: Renderer) -> None:
        del renderer  # nothing to render: the manifest is deployed as it is

    def effective(self, location: Location, evidence: Evidence, *, repo: RepoView) -> dict[str, Any]:
        doc = yaml_rt.documents(repo.read_text(location.path), source=location.path)[location.document_index]
        found = fieldpaths.get(doc, location.prefix) if location.prefix else doc
        return found if isinstance(found, dict) else {}

    def edits(self, location: Location, plan: Plan, *, evidence: Evidence, repo: RepoView,
              workload: dict[str, Any]) -> list[FileEdit]:
        return [FileEdit(path=location.path, document_index=location.document_index, prefix=location.prefix,
                         changes=plan.changes, what="workload manifest")]

    def environments(self, location: Location, edits: Sequence[FileEdit], *, repo: RepoView) -> tuple[str, ...]:
        return ()  # the manifest is deployed as it is, by the one Application or Kustomization named in the PR

    def verify(self, location: Location, evidence: Evidence, *, repo: RepoView, plan: Plan,
               new_texts: Mapping[str, str]) -> tuple[str, list[str]]:
        return "not needed: the edited manifest is the workload itself", []

    def shown_path(self, location: Location, edits: Sequence[FileEdit]) -> str:
        return edits[0].path
