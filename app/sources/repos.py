"""What sources read the GitOps repo through: a view of its files at one commit, and its identity."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol


class RepoView(Protocol):
    """Repository-relative POSIX paths and texts at one commit (the workspace, a directory in tests)."""

    def list_files(self, *, suffixes: Sequence[str] = (".yaml", ".yml")) -> list[str]: ...

    def read_text(self, path: str) -> str: ...


class RepoIdentity(Protocol):
    """How to recognise our GitOps repo in an Application's or a GitRepository's URL."""

    def matches(self, url: str) -> bool: ...


class Overlay:
    """A RepoView with some files replaced by new texts: what the branch will hold."""

    def __init__(self, repo: RepoView, new_texts: Mapping[str, str]) -> None:
        self.repo, self.new_texts = repo, new_texts

    def list_files(self, *, suffixes: Sequence[str] = (".yaml", ".yml")) -> list[str]:
        return self.repo.list_files(suffixes=suffixes)

    def read_text(self, path: str) -> str:
        return self.new_texts[path] if path in self.new_texts else self.repo.read_text(path)
