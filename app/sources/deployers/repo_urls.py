"""Recognising a GitOps repository in the URLs Argo CD and Flux objects carry.

One repository (AUTOFIX_GIT_URL) is recognised by its URL or its GitHub owner/name (``RepoIdentity``); a
repository of repositories.yaml by fnmatch patterns over the normalised host/path (``PatternIdentity``).
``source_urls`` lists the repository URLs the GitOps objects that deploy a workload read from, which is
how the pipeline picks the configured repository the workload lives in (app/repos.py).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_SCP = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>[^/].*)$")  # git@github.com:acme/gitops.git
_PORT = re.compile(r":\d*$")


def normalize(url: str) -> str:
    """host/path: lowercase host without port, no scheme, credentials, ``.git`` suffix or trailing slash.

    ``https://github.com/acme/gitops.git``, ``ssh://git@github.com:22/acme/gitops`` and
    ``git@GitHub.com:acme/gitops.git`` are all ``github.com/acme/gitops``; a local path stays a path.
    """
    url = url.strip()
    if "://" in url:
        rest = url.split("://", 1)[1]
        rest = rest.rsplit("@", 1)[-1] if "@" in rest.split("/", 1)[0] else rest
        host, _, path = rest.partition("/")
        host = _PORT.sub("", host)
    elif (m := _SCP.match(url)) is not None:
        host, path = m.group("host"), m.group("path")
    else:
        return url.rstrip("/").removesuffix(".git")
    path = path.rstrip("/").removesuffix(".git")
    return f"{host.lower()}/{path}"


@dataclass(frozen=True)
class RepoIdentity:
    git_url: str
    github_repo: str = ""  # owner/name, when the repo is on GitHub (lets a local mirror stand in for it)

    def matches(self, url: str) -> bool:
        if not url:
            return False
        if normalize(url) == normalize(self.git_url):
            return True
        if self.github_repo:
            path = normalize(url).split("/", 1)[-1]
            return path.lower() == self.github_repo.lower()
        return False


@dataclass(frozen=True)
class PatternIdentity:
    """A repository of repositories.yaml: fnmatch patterns over ``normalize(url)``, case-insensitive (GitHub
    and GitLab paths are). A pattern is written like a URL or like its normalised form: it is normalised too,
    so ``https://github.com/acme/gitops.git`` and ``github.com/acme/gitops`` mean the same."""

    patterns: tuple[str, ...]

    def matches(self, url: str) -> bool:
        if not url:
            return False
        seen = normalize(url).lower()
        return any(fnmatch.fnmatchcase(seen, pattern_of(p)) for p in self.patterns)


def pattern_of(pattern: str) -> str:
    """A pattern as ``matches`` compares it: normalised like a URL (wildcards kept), lowercase."""
    return normalize(pattern).lower()


def source_urls(gitops: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(what reads it, URL) for every repository the workload's GitOps objects read: the first Argo CD
    Application's sources (as the argocd deployer reads only that one), every Flux GitRepository."""
    found: list[tuple[str, str]] = []
    apps = [g for g in gitops if g.get("kind") == "Application"]
    if apps:
        app = apps[0]
        spec = app.get("spec") or {}
        name = str((app.get("metadata") or {}).get("name", ""))
        for source in [*(spec.get("sources") or []), *([spec["source"]] if spec.get("source") else [])]:
            if isinstance(source, Mapping) and source.get("repoURL") and not source.get("chart"):
                found.append((f"Application {name}", str(source["repoURL"])))
    for repo in (g for g in gitops if g.get("kind") == "GitRepository"):
        url = str((repo.get("spec") or {}).get("url") or "")
        if url:
            found.append((f"Flux GitRepository {(repo.get('metadata') or {}).get('name', '')}", url))
    return found
