"""Repository stage (only with repositories.yaml): which configured GitOps repository the workload lives in.

The URLs the workload's Argo CD Application or Flux GitRepository read (app/sources/deployers/repo_urls.py) are
matched against each repository's patterns; the first that matches is the one whose checkout is edited, whose
forge gets the PR and whose ledger rows are read and written. A workload deployed from a repository none of them
matches ends ``no_fix`` (``foreign_repo``) naming that repository; a workload no GitOps object deploys is looked
for in the default repository (plain YAML: still exactly one manifest, or no fix).
"""

from __future__ import annotations

from dataclasses import dataclass

from app.models.evidence import Evidence
from app.repos import RepoSet
from app.stages import Output


@dataclass(frozen=True, kw_only=True)
class Chosen(Output):
    name: str  # the repositories.yaml entry ('' the AUTOFIX_GIT_URL repository)


def choose(*, repos: RepoSet, evidence: Evidence) -> Chosen:
    entry = repos.select(evidence.gitops, workload=str(evidence.workload))
    shown = entry.name or "AUTOFIX_GIT_URL"
    return Chosen(name=entry.name, decision=f"repository {shown} (base {entry.base})")
