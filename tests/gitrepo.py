"""Bare GitOps repositories with a history: a source directory copied verbatim as the first commit, then the
commits a test needs, each with its own author, subject and date (what a team's repo looks like after a few
weeks: a person's raise, a squash-merged PR). Real git, no hooks, no global config."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Commit:
    subject: str
    files: dict[str, str]  # path -> new text
    at: float  # Unix seconds: author and committer date
    author: str = "Dana Ops <dana@example.com>"
    body: str = ""
    shas: list[str] = field(default_factory=list, compare=False)  # filled with the commit's id once written


def _git(work: Path, *argv: str, author: str, at: float) -> str:
    name, _, email = author.partition(" <")
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": name, "GIT_AUTHOR_EMAIL": email.rstrip(">"), "GIT_COMMITTER_NAME": name,
           "GIT_COMMITTER_EMAIL": email.rstrip(">"), "GIT_AUTHOR_DATE": f"@{int(at)} +0000",
           "GIT_COMMITTER_DATE": f"@{int(at)} +0000"}
    out = subprocess.run(["git", *argv], cwd=work, env=env, check=True, capture_output=True, timeout=60)
    return out.stdout.decode()


def seed_history(source: Path, bare: Path, *, first_at: float, commits: list[Commit],
                 first_author: str = "Online Boutique Team <boutique@example.com>",
                 first_subject: str = "Import kubernetes-manifests from GoogleCloudPlatform/microservices-demo") -> list[str]:
    """``bare`` with branch main: ``source`` at ``first_at``, then ``commits`` in order; returns every sha."""
    if bare.exists():
        shutil.rmtree(bare)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(source, work)
        _git(work, "init", "-q", "-b", "main", author=first_author, at=first_at)
        _git(work, "add", "-A", author=first_author, at=first_at)
        _git(work, "commit", "-q", "-m", first_subject, author=first_author, at=first_at)
        shas = [_git(work, "rev-parse", "HEAD", author=first_author, at=first_at).strip()]
        for change in commits:
            for path, text in change.files.items():
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).write_bytes(text.encode())
            _git(work, "add", "-A", author=change.author, at=change.at)
            message = change.subject + (f"\n\n{change.body}" if change.body else "")
            _git(work, "commit", "-q", "-m", message, author=change.author, at=change.at)
            shas.append(_git(work, "rev-parse", "HEAD", author=change.author, at=change.at).strip())
            change.shas.append(shas[-1])
        _git(work, "clone", "-q", "--bare", str(work), str(bare), author=first_author, at=first_at)
    return shas
