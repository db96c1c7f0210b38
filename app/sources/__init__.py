"""Sources: where a workload's manifest lives in the GitOps repo, over file texts (explicit registry).

Each source returns a Location, None when it does not apply (try the next), or raises NoFix when it
applies but the one right place cannot be determined: never guess between two files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from app.models.changes import FileEdit, Location, Plan
from app.models.evidence import Evidence


class RepoView(Protocol):
    def list_files(self, *, suffixes: Sequence[str] = (".yaml", ".yml")) -> list[str]: ...

    def read_text(self, path: str) -> str: ...


class RepoIdentity(Protocol):
    """How to recognise our GitOps repo in an Application's repoURL."""

    def matches(self, url: str) -> bool: ...


Source = Callable[[Evidence, RepoView, RepoIdentity], Location | None]


def locate(evidence: Evidence, repo: RepoView, identity: RepoIdentity) -> Location:
    from app.errors import NoFix
    from app.sources import argocd, flux, plain

    registry: list[Source] = [argocd.locate, flux.locate, plain.locate]
    for source in registry:
        location = source(evidence, repo, identity)
        if location is not None:
            return location
    raise NoFix(f"no manifest for {evidence.workload} was found in the GitOps repo", code="no_manifest")


# ---------------------------------------------------------------- layouts: effective object, edits, render


class Overlay:
    """A RepoView with some files replaced by new texts: what the branch will hold."""

    def __init__(self, repo: RepoView, new_texts: dict[str, str]) -> None:
        self.repo, self.new_texts = repo, new_texts

    def list_files(self, *, suffixes: Sequence[str] = (".yaml", ".yml")) -> list[str]:
        return self.repo.list_files(suffixes=suffixes)

    def read_text(self, path: str) -> str:
        return self.new_texts[path] if path in self.new_texts else self.repo.read_text(path)


def effective(location: Location, evidence: Evidence, repo: RepoView) -> dict[str, Any]:
    """The workload as git produces it (rendered when a renderer is available), for the fixers to plan on."""
    from app import fieldpaths
    from app.sources import helm_values, kustomize, yaml_rt

    if location.layout == "kustomize":
        return kustomize.effective(location, evidence, repo)
    if location.layout == "helm":
        return helm_values.effective(location, evidence, repo)
    doc = yaml_rt.documents(repo.read_text(location.path), source=location.path)[location.document_index]
    found = fieldpaths.get(doc, location.prefix) if location.prefix else doc
    return found if isinstance(found, dict) else {}


def edits(location: Location, plan: Plan, evidence: Evidence, repo: RepoView,
          workload: dict[str, Any]) -> list[FileEdit]:
    """Each planned change of the workload, translated to the file where its effective value is set."""
    from app.sources import helm_values, kustomize

    if location.layout == "kustomize":
        found = kustomize.edits(location, plan.changes, repo, evidence.workload, workload)
    elif location.layout == "helm":
        found = helm_values.edits(location, plan.changes, repo)
    else:
        found = [FileEdit(path=location.path, document_index=location.document_index, prefix=location.prefix,
                          changes=plan.changes, what="workload manifest")]
    return _grouped(found)


def _grouped(found: list[FileEdit]) -> list[FileEdit]:
    """One edit per (file, document, prefix), changes in plan order."""
    out: dict[tuple[str, int, tuple[str | int, ...]], FileEdit] = {}
    for edit in found:
        key = (edit.path, edit.document_index, edit.prefix)
        if key in out:
            out[key] = out[key].model_copy(update={"changes": [*out[key].changes, *edit.changes]})
        else:
            out[key] = edit
    return list(out.values())


def environments(location: Location, found: list[FileEdit], repo: RepoView) -> tuple[str, ...]:
    """What the change reaches: the kustomizations that render an edited file, the values files, the app."""
    from app.sources import kustomize

    if location.layout == "kustomize":
        return tuple(sorted({env for edit in found for env in kustomize.environments(repo, edit.path)}))
    if location.layout == "helm":
        return tuple(sorted({edit.path for edit in found}))
    return ()  # the manifest is deployed as it is, by the one Application or Kustomization named in the PR


def verify(location: Location, evidence: Evidence, repo: RepoView, plan: Plan,
           new_texts: dict[str, str]) -> tuple[str, list[str]]:
    """Render before and after: ("verified: ..." | "not verified: why", checks that passed)."""
    from app.sources import helm_values, kustomize

    if location.layout == "kustomize":
        return kustomize.verify(location, evidence, repo, plan, new_texts)
    if location.layout == "helm":
        return helm_values.verify(location, evidence, repo, plan, new_texts)
    return "not needed: the edited manifest is the workload itself", []
