"""Recognising the configured GitOps repository in the URLs Argo CD and Flux objects carry."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SCP = re.compile(r"^(?:[\w.-]+@)?(?P<host>[\w.-]+):(?P<path>[^/].*)$")  # git@github.com:acme/gitops.git


def normalize(url: str) -> str:
    """host/path, lowercase host, without scheme, credentials, port-less .git suffix or trailing slash."""
    url = url.strip()
    if "://" in url:
        rest = url.split("://", 1)[1]
        rest = rest.rsplit("@", 1)[-1] if "@" in rest.split("/", 1)[0] else rest
        host, _, path = rest.partition("/")
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
