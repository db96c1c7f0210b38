"""Repository stage (only with repositories.yaml): which configured GitOps repository the workload lives in.

- Deployed by an Argo CD Application or a Flux GitRepository: the URLs they read (app/sources/deployers/repo_urls.py)
  are matched against each repository's patterns; the first that matches is the one whose checkout is edited, whose
  forge gets the PR and whose ledger rows are read and written. A workload deployed from a repository none of them
  matches ends ``no_fix`` (``foreign_repo``) naming that repository (``RepoSet.select``).
- Deployed by none (plain YAML applied by CI or kubectl): each configured repository is asked for the workload's
  manifest, the lookup the plain deployer makes in one repository (its index at the base's head). Exactly one
  repository defining it is the one; none ends ``no_fix`` (``no_manifest``) naming the repositories searched;
  several end ``no_fix`` (``ambiguous_manifest``) naming them: no fix beats a wrong fix.
- One repository configured: it is the one, read by the source stage as without repositories.yaml (no clone or
  fetch here).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from app import kube
from app.errors import NoFix
from app.models.evidence import Evidence
from app.repos import RepoSet, shown
from app.sources import deployers
from app.sources.deployers import plain
from app.stages import Output

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Chosen(Output):
    name: str  # the repositories.yaml entry ('' the AUTOFIX_GIT_URL repository)


def choose(*, repos: RepoSet, evidence: Evidence) -> Chosen:
    if evidence.gitops or len(repos.entries) == 1:
        entry = repos.select(evidence.gitops, workload=str(evidence.workload))
        return Chosen(name=entry.name, decision=f"repository {shown(entry.name)} (base {entry.base})")
    return search(repos=repos, evidence=evidence)


def search(*, repos: RepoSet, evidence: Evidence) -> Chosen:
    """The one configured repository defining a workload no GitOps object deploys. Each repository's checkout is
    synced (cloned on its first search) and its manifest index asked; a repository git cannot read fails the
    alert (retried when temporary) rather than being left out of the count."""
    holding = []
    for entry in repos.entries:
        workspace = repos.get(entry.name).workspace
        workspace.sync()
        found = plain.defining(evidence, workspace)
        log.debug("repository searched", extra={"repo": entry.name, "workload": str(evidence.workload),
                                                 "found": len(found)})
        if found:
            holding.append((entry, found))
    searched = ", ".join(shown(e.name) for e in repos.entries)
    if not holding:
        raise NoFix(_nowhere(evidence, searched), code="no_manifest")
    if len(holding) > 1:
        where = ", ".join(f"{shown(e.name)}: {p}#{i}" for e, found in holding for p, i in found)
        raise NoFix(f"{evidence.workload} is defined in more than one configured repository ({where}) and no Argo CD "
                    "or Flux object says which one is deployed: not guessing", code="ambiguous_manifest")
    [(entry, found)] = holding
    path, index = found[0]
    return Chosen(name=entry.name, decision=f"repository {shown(entry.name)} (base {entry.base}): the only one of "
                                            f"{searched} defining it ({path}#{index}); no Argo CD or Flux object "
                                            "deploys it"[:500])


def _nowhere(evidence: Evidence, searched: str) -> str:
    """The source stage's no_manifest reason for one repository, naming every repository searched."""
    if evidence.workload.kind == kube.POD:
        return f"{deployers.bare_pod(evidence)} (repositories searched: {searched})"
    return f"no manifest for {evidence.workload} was found in the GitOps repos searched ({searched})"
