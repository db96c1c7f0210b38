"""Publish stage: the branch, the pull request and the ledger row, from the change record.

``compose`` renders what will be proposed (title, body with the ledger marker, labels, commit message, the
files) before any forge call; ``publish`` pushes and opens or updates the PR. One open PR per workload and
cause: a second worker on the same branch waits for the first (a lock per branch), an open PR proposing the
same change is a duplicate, another change updates it. All of it runs under the ledger's publishing lock
(``Ledger.publishing``: across workers, processes and replicas): the look for an open PR on the branch, the budget
check, the push, the PR (opened or updated) and its ledger row: neither the hourly PR budget nor one-PR-per-branch
can be overshot, and two replicas never push over each other's update of one PR.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from app import duplicates, render
from app import ledger as ledgers
from app.errors import AutofixError, PermanentError, TemporaryError
from app.models.changes import ChangeSet
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.models.runs import RECORD_REF
from app.policies import Policy
from app.ports import Forge, Ledger, PullRequest, Remediation, Workspace
from app.repos import install_ledger
from app.sources import codeowners
from app.stages import End, Output
from app.stages.change import OPT_OUT, OPT_OUT_CAUSES
from app.stages.history import LEDGER_LABEL, images

log = logging.getLogger(__name__)
ARGOCD_RECONCILIATION = "3m"  # Argo CD's default timeout.reconciliation (argocd-cm): how often it polls git

_branch_locks: dict[str, threading.Lock] = {}
_branch_locks_guard = threading.Lock()


@dataclass(frozen=True, kw_only=True)
class Proposal:
    """The pull request as it will be proposed, rendered from the change record (app/render.py)."""

    branch: str  # this workload's and cause's branch (an open PR of an earlier version may keep its own)
    owner: str  # the id the push writes on the branch: a branch carrying another's change is refused
    title: str
    body: str  # ends with the ledger marker
    labels: tuple[str, ...]
    reviewers: tuple[str, ...]
    teams: tuple[str, ...]
    message: str  # the commit message
    files: Mapping[str, str]  # path -> new text
    entry: Remediation  # the ledger row; the PR's number, URL and branch are filled in once it exists


@dataclass(frozen=True, kw_only=True)
class Published(Output):
    end: End


def compose(*, incident: Incident, evidence: Evidence, diagnosis: Diagnosis, changeset: ChangeSet,
            explanation: str | None, model: str | None, policy: Policy, run_url: str,
            now: float | None = None, cluster: str | None = None) -> Proposal:
    """``now``: the decision time (Unix seconds; default the wall clock), for "firing for" and the cooldown's end.
    ``cluster``: the configured cluster the alert came from (clusters.yaml), part of the branch's identity: the same
    workload failing in two clusters (two overlays of one repository) gets two PRs, never one that swaps fixes."""
    workload = evidence.workload
    decided = datetime.fromtimestamp(time.time() if now is None else now, tz=UTC)
    branch = render.branch(workload, diagnosis.cause, cluster=cluster)
    team_labels, reviewers, teams = policy.owners_for(workload.namespace)
    changes = changeset.plan.changes
    entry = Remediation(workload=str(workload), cause=diagnosis.cause, branch=branch, pr_number=0, pr_url="",
                        state="open", before={c.path: c.old for c in changes}, after={c.path: c.new for c in changes},
                        fingerprint=incident.fingerprint, images=images(evidence),
                        record_id=run_url.removeprefix(RECORD_REF) if run_url.startswith(RECORD_REF) else "",
                        risk=changeset.risk.score, cluster=cluster or "")
    body = render.pr_body(workload=workload, diagnosis=diagnosis, changeset=changeset, run_url=run_url,
                          alert=incident.alertname, explanation=explanation, context=incident.context(now=decided),
                          model_note=f"model {model}" if model else None, logs=last_logs(evidence),
                          next_steps=next_steps(evidence, changeset, cause=diagnosis.cause, policy=policy,
                                                now=decided))
    return Proposal(
        branch=branch, owner=render.owner(workload, diagnosis.cause, cluster=cluster), title=render.title(workload, diagnosis, changeset),
        body=body + "\n" + ledgers.marker(entry) + "\n",
        labels=tuple(dict.fromkeys([LEDGER_LABEL, *policy.labels, *team_labels, f"risk:{changeset.risk.level}",
                                    cause_label(diagnosis.cause)])),
        reviewers=tuple(reviewers), teams=tuple(teams), message=render.commit_message(workload, diagnosis, changeset),
        files={f.path: f.new_text for f in changeset.files}, entry=entry)


def publish(*, proposal: Proposal, workload: WorkloadRef, cause: str, changeset: ChangeSet, workspace: Workspace,
            forge: Forge, ledger: Ledger, policy: Policy, base: str, clock: Callable[[], float],
            run_url: str) -> Published:
    # The branch lock queues this process's workers on one workload and cause; the ledger's publishing lock then
    # makes the look for an open PR, the budget check, the push, the PR (new or updated) and the ledger record
    # one step across workers, processes and replicas: no second PR for a branch, no overshot budget, no two
    # replicas pushing over each other's update of one PR.
    done: list[Published] = []

    def spacing() -> float:  # asked at release: only a publication that wrote to the forge makes the next one wait
        wrote = bool(done) and done[0].end.kind in ("pr_opened", "pr_updated")
        return float(getattr(forge, "write_spacing", 0.0)) if wrote else 0.0

    with _lock_for(proposal.branch), ledger.publishing(spacing=spacing):
        done.append(_publish_locked(proposal, workload=workload, cause=cause, changeset=changeset,
                                    workspace=workspace, forge=forge, ledger=ledger, policy=policy, base=base,
                                    clock=clock, run_url=run_url))
    return done[0]


def _publish_locked(proposal: Proposal, *, workload: WorkloadRef, cause: str, changeset: ChangeSet,
                    workspace: Workspace, forge: Forge, ledger: Ledger, policy: Policy, base: str,
                    clock: Callable[[], float], run_url: str) -> Published:
    existing = _open_pr(forge, workload, cause, proposal.branch)
    if existing is not None:
        return _with_existing(existing, proposal, changeset=changeset, workspace=workspace, forge=forge,
                              ledger=ledger, base=base, clock=clock, run_url=run_url)
    twin = _same_change_elsewhere(proposal, changeset=changeset, workspace=workspace, forge=forge, ledger=ledger)
    if twin is not None:
        said = f"PR #{twin.number} (branch {twin.branch}) already proposes this change"
        return Published(decision=said, end=End(kind="duplicate", reason=said, pr_url=twin.url,
                                                branch=twin.branch, risk=changeset.risk.score))
    opened = _open_new(proposal, workspace=workspace, forge=forge, ledger=ledger, policy=policy, base=base,
                       clock=clock)
    _request_reviews(forge, opened, workspace=workspace, proposal=proposal)  # writes too: spaced with the others
    return Published(decision=f"PR #{opened.number} opened",
                     end=End(kind="pr_opened", reason=proposal.title, pr_url=opened.url, branch=proposal.branch,
                             risk=changeset.risk.score))


def _with_existing(existing: PullRequest, proposal: Proposal, *, changeset: ChangeSet, workspace: Workspace,
                   forge: Forge, ledger: Ledger, base: str, clock: Callable[[], float], run_url: str) -> Published:
    """An open PR for this workload and cause: a duplicate when it proposes this change, else updated."""
    branch = existing.branch  # an earlier version's PR keeps its branch name
    entry = replace(proposal.entry, branch=branch, opened_at=clock())
    risk = changeset.risk.score
    remote = workspace.remote_branch_files(branch)
    # Same files, objects, fields and new values: not merely the same changed lines.
    if remote is not None and duplicates.same_change(remote, _versions(changeset)):
        if not set(proposal.labels) <= set(existing.labels) or _unrecorded(ledger, existing):
            # Opened by a run that crashed before labels and ledger (tests/e2e/test_faults.py): finish it.
            existing = forge.open_pr(branch=branch, base=base, title=proposal.title, body=proposal.body,
                                     labels=proposal.labels)
            _record(ledger, entry, existing, existing=True)
        said = f"PR #{existing.number} already proposes this change"
        return Published(decision=said, end=End(kind="duplicate", reason=said, pr_url=existing.url,
                                                branch=branch, risk=risk))
    workspace.push_branch(branch, proposal.files, message=proposal.message, owner=proposal.owner)
    pr = forge.update_pr(existing, title=proposal.title, body=proposal.body,
                         comment=render.update_comment(title_text=proposal.title, run_url=run_url))
    _record(ledger, entry, pr, existing=True)
    return Published(decision=f"PR #{pr.number} updated",
                     end=End(kind="pr_updated", reason=f"updated PR #{pr.number}", pr_url=pr.url,
                             branch=branch, risk=risk))


def _same_change_elsewhere(proposal: Proposal, *, changeset: ChangeSet, workspace: Workspace, forge: Forge,
                           ledger: Ledger) -> PullRequest | None:
    """An open PR of this workload and cause on another branch (another cluster's, clusters.yaml) whose branch
    holds exactly this change: two clusters deploying one manifest need one PR, not two identical ones. The
    ledger names the candidates; the forge says whether each is still open."""
    for row in ledger.entries():
        if row.state != "open" or row.branch == proposal.branch or \
                (row.workload, row.cause) != (proposal.entry.workload, proposal.entry.cause):
            continue
        remote = workspace.remote_branch_files(row.branch)
        if remote is None or not duplicates.same_change(remote, _versions(changeset)):
            continue
        pr = forge.find_open_pr(row.branch)
        if pr is not None:
            return pr
    return None


def _open_new(proposal: Proposal, *, workspace: Workspace, forge: Forge, ledger: Ledger, policy: Policy,
              base: str, clock: Callable[[], float]) -> PullRequest:
    """Under ``ledger.publishing()``: spend the budget on a new PR, recorded in the ledger."""
    entry = replace(proposal.entry, opened_at=clock())
    _check_budget(ledger, policy, clock)
    workspace.push_branch(proposal.branch, proposal.files, message=proposal.message, owner=proposal.owner)
    pr = forge.open_pr(branch=proposal.branch, base=base, title=proposal.title, body=proposal.body,
                       labels=proposal.labels)
    _record(ledger, entry, pr, existing=False)
    return pr


def cause_label(cause: str) -> str:
    """``cause:oom-killed``: the label beside ``risk:<level>`` (GitHub labels are at most 50 characters)."""
    return f"cause:{cause.replace('_', '-')}"[:50]


def reviewers_for(proposal: Proposal, owners: codeowners.Owners) -> tuple[list[str], list[str]]:
    """CODEOWNERS' owners of the changed files first, then the policy's: (logins, team slugs), no repeats."""
    users = list(dict.fromkeys([*owners.users, *proposal.reviewers]))
    teams = list(dict.fromkeys([*owners.teams, *proposal.teams]))
    return users, teams


def _request_reviews(forge: Forge, pr: PullRequest, *, workspace: Workspace, proposal: Proposal) -> None:
    """Ask the owners for a review. A refusal (GitHub's 422: not a collaborator) never fails the PR: it is
    logged and said in a comment on the PR."""
    try:
        owners = codeowners.lookup(workspace.read_text, sorted(proposal.files))
    except AutofixError as err:  # an unreadable CODEOWNERS: the policy's reviewers still count
        log.warning("codeowners unreadable", extra={"pr": pr.number, "error": err.message})
        owners = codeowners.Owners()
    users, teams = reviewers_for(proposal, owners)
    if not users and not teams:
        return
    try:
        refused = forge.request_reviewers(pr, reviewers=users, teams=teams)
    except AutofixError as err:  # GitHub down or refusing after the PR is open: the PR stands, without them
        refused = [(name, err.message) for name in [*users, *(f"team {t}" for t in teams)]]
    if refused:
        log.warning("review request refused", extra={"pr": pr.number, "refused": [n for n, _ in refused]})
        _say_refused(forge, pr, refused)


def _say_refused(forge: Forge, pr: PullRequest, refused: Sequence[tuple[str, str]]) -> None:
    names = ", ".join(render.code(name) for name, _ in refused)
    why = "; ".join(dict.fromkeys(render.prose(reason) for _, reason in refused))
    try:
        forge.comment(pr, f"GitOps Autofix could not request a review from {names}: {why}\n")
    except AutofixError as err:
        log.warning("review refusal comment failed", extra={"pr": pr.number, "error": err.message})


def last_logs(evidence: Evidence) -> render.LogTail | None:
    """The last lines the alert's container (else the first container with a log) wrote before failing."""
    if not evidence.logs:
        return None
    incident = evidence.incident
    wanted = f"{incident.pod}/{incident.container}" if incident.pod and incident.container else None
    key = wanted if wanted in evidence.logs else next(
        (k for k in sorted(evidence.logs) if incident.pod and k.startswith(f"{incident.pod}/")), sorted(evidence.logs)[0])
    lines = [line for line in evidence.logs[key].splitlines() if line.strip()]
    if not lines:
        return None
    return render.LogTail(source=key, lines=tuple(lines[-render.MAX_EVIDENCE_LINES:]),
                          previous=_restarted(evidence, key))


def _restarted(evidence: Evidence, key: str) -> bool:
    """Whether the container has a previous instance (the evidence keeps its log then, app/models/evidence.py)."""
    pod_name, _, container = key.partition("/")
    pod = evidence.pod_named(pod_name) or {}
    statuses = [*((pod.get("status") or {}).get("containerStatuses") or []),
                *((pod.get("status") or {}).get("initContainerStatuses") or [])]
    return any(s.get("name") == container and (s.get("restartCount") or 0) > 0 for s in statuses)


def next_steps(evidence: Evidence, changeset: ChangeSet, *, cause: str, policy: Policy,
               now: datetime) -> render.NextSteps:
    hours = policy.limits.cooldown_hours_after_closed
    return render.NextSteps(delivery=delivery(evidence.gitops, app=changeset.location.app), cause=cause,
                            cooldown_hours=hours, cooldown_until=now + timedelta(hours=hours),
                            opt_out=OPT_OUT, opt_out_causes=OPT_OUT_CAUSES)


def delivery(gitops: Sequence[Mapping[str, Any]], *, app: str | None) -> render.Delivery | None:
    """The Argo CD Application or Flux Kustomization/HelmRelease that applies the change: the one the deployer
    located the manifest through (``app``) when it is among the evidence's GitOps objects, else the first."""
    known = [o for o in gitops if o.get("kind") in ("Application", "Kustomization", "HelmRelease")]
    chosen = next((o for o in known if (o.get("metadata") or {}).get("name") == app), known[0] if known else None)
    if chosen is None:
        return None
    meta, spec = chosen.get("metadata") or {}, chosen.get("spec") or {}
    name, namespace = str(meta.get("name", "")), str(meta.get("namespace", ""))
    if chosen.get("kind") == "Application":
        automated = (spec.get("syncPolicy") or {}).get("automated")
        on = isinstance(automated, dict) and automated.get("enabled", True) is not False
        return render.Delivery(tool="Argo CD", kind="Application", name=name, namespace=namespace, automated=on,
                               interval=ARGOCD_RECONCILIATION, interval_default=True)
    return render.Delivery(tool="Flux", kind=str(chosen.get("kind")), name=name, namespace=namespace,
                           automated=spec.get("suspend") is not True, interval=str(spec.get("interval") or ""))


def _lock_for(branch: str) -> threading.Lock:
    with _branch_locks_guard:
        return _branch_locks.setdefault(branch, threading.Lock())


def _open_pr(forge: Forge, workload: WorkloadRef, cause: str, own: str) -> PullRequest | None:
    """The open PR for this workload and cause: on its branch, or on the branch name of an earlier version.

    Earlier versions cut names at 63 characters and left the kind out, so their branch names could be
    shared by two workloads: a PR there is this workload's only when its ledger marker says so.
    """
    existing = forge.find_open_pr(own)
    if existing is not None:
        if _belongs(existing, workload, cause) is False:
            raise PermanentError(f"branch {own} holds the open PR #{existing.number} of another workload "
                                 "(opened by an earlier version): close it to free the name", code="branch_taken")
        return existing
    legacy = render.legacy_branch(workload, cause)
    if legacy == own or not render.valid_branch(legacy):
        return None
    found = forge.find_open_pr(legacy)
    return found if found is not None and _belongs(found, workload, cause) else None


def _belongs(pr: PullRequest, workload: WorkloadRef, cause: str) -> bool | None:
    """Whether a PR's ledger marker names this workload and cause; None when it has no marker to tell."""
    entry = ledgers.from_pr(pr)
    if entry is None or entry.workload.startswith("?/"):
        return None
    return (entry.workload, entry.cause) == (str(workload), cause)


def _check_budget(ledger: Ledger, policy: Policy, clock: Callable[[], float]) -> None:
    per_hour = policy.limits.prs_per_hour
    # Per install, whichever repository the PR goes to (repositories.yaml: ``ledger`` is one repository's rows).
    wait = ledgers.budget_wait(install_ledger(ledger), now=clock(), per_hour=per_hour)
    if wait is not None:
        raise TemporaryError(f"PR budget exhausted ({per_hour} new PRs per hour): retry in {wait:.0f} s",
                             code="pr_budget", delay=wait)


def _unrecorded(ledger: Ledger, pr: PullRequest) -> bool:
    return not any(e.pr_number == pr.number for e in ledger.entries(branch=pr.branch))


def _record(ledger: Ledger, entry: Remediation, pr: PullRequest, *, existing: bool) -> None:
    known = [e for e in ledger.entries(branch=entry.branch, repo=entry.repo) if e.pr_number == pr.number]
    opened = known[0].opened_at if existing and known else entry.opened_at
    ledger.record(replace(entry, pr_number=pr.number, pr_url=pr.url, opened_at=opened))


def _versions(changeset: ChangeSet) -> dict[str, tuple[str | None, str | None]]:
    return {f.path: (f.old_text, f.new_text) for f in changeset.files}
