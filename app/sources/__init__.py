"""Sources: where a workload's manifest lives in the GitOps repo, over file texts (explicit registry).

Each source returns a Location, None when it does not apply (try the next), or raises NoFix when it
applies but the one right place cannot be determined: never guess between two files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from app.models.changes import Location
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
    from app.sources import argocd, plain

    registry: list[Source] = [argocd.locate, plain.locate]
    for source in registry:
        location = source(evidence, repo, identity)
        if location is not None:
            return location
    raise NoFix(f"no manifest for {evidence.workload} was found in the GitOps repo", code="no_manifest")
