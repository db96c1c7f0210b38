"""Publish stage: the branch, the pull request and the ledger row, from the change record.

``compose`` renders what will be proposed (title, body with the ledger marker, labels, commit message, the
files) before any forge call; ``publish`` pushes and opens or updates the PR. One open PR per workload and
cause: a second worker on the same branch waits for the first (a lock per branch), an open PR proposing the
same change is a duplicate, another change updates it. The hourly PR budget is counted and spent under one
lock, so workers cannot overshoot it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from app import duplicates, render
from app import ledger as ledgers
from app.errors import PermanentError, TemporaryError
from app.models.changes import ChangeSet
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.models.runs import RECORD_REF
from app.policies import Policy
from app.ports import Forge, Ledger, PullRequest, Remediation, Workspace
from app.stages import End, Output
from app.stages.history import LEDGER_LABEL, images

_branch_locks: dict[str, threading.Lock] = {}
_branch_locks_guard = threading.Lock()
_budget_lock = threading.Lock()  # the PR budget is counted and spent under it


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
            explanation: str | None, model: str | None, policy: Policy, run_url: str) -> Proposal:
    workload = evidence.workload
    branch = render.branch(workload, diagnosis.cause)
    team_labels, reviewers, teams = policy.owners_for(workload.namespace)
    changes = changeset.plan.changes
    entry = Remediation(workload=str(workload), cause=diagnosis.cause, branch=branch, pr_number=0, pr_url="",
                        state="open", before={c.path: c.old for c in changes}, after={c.path: c.new for c in changes},
                        fingerprint=incident.fingerprint, images=images(evidence),
                        record_id=run_url.removeprefix(RECORD_REF) if run_url.startswith(RECORD_REF) else "",
                        risk=changeset.risk.score)
    body = render.pr_body(workload=workload, diagnosis=diagnosis, changeset=changeset, run_url=run_url,
                          alert=incident.alertname, explanation=explanation, context=incident.context(),
                          model_note=f"model {model}" if model else None)
    return Proposal(
        branch=branch, owner=render.owner(workload, diagnosis.cause), title=render.title(workload, diagnosis, changeset),
        body=body + "\n" + ledgers.marker(entry) + "\n",
        labels=tuple(dict.fromkeys([LEDGER_LABEL, *policy.labels, *team_labels, f"risk:{changeset.risk.level}"])),
        reviewers=tuple(reviewers), teams=tuple(teams), message=render.commit_message(workload, diagnosis, changeset),
        files={f.path: f.new_text for f in changeset.files}, entry=entry)


def publish(*, proposal: Proposal, workload: WorkloadRef, cause: str, changeset: ChangeSet, workspace: Workspace,
            forge: Forge, ledger: Ledger, policy: Policy, base: str, clock: Callable[[], float],
            run_url: str) -> Published:
    with _lock_for(proposal.branch):  # two workers on one workload and cause must not open two PRs
        existing = _open_pr(forge, workload, cause, proposal.branch)
        branch = existing.branch if existing is not None else proposal.branch  # an earlier version's PR keeps it
        entry = replace(proposal.entry, branch=branch, opened_at=clock())
        risk = changeset.risk.score
        if existing is not None:
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
        # Budget check, push, PR and ledger record as one step: workers cannot overshoot the budget.
        with _budget_lock:
            _check_budget(ledger, policy, clock)
            workspace.push_branch(branch, proposal.files, message=proposal.message, owner=proposal.owner)
            pr = forge.open_pr(branch=branch, base=base, title=proposal.title, body=proposal.body,
                               labels=proposal.labels)
            _record(ledger, entry, pr, existing=False)
        if proposal.reviewers or proposal.teams:
            forge.request_reviewers(pr, reviewers=proposal.reviewers, teams=proposal.teams)
        return Published(decision=f"PR #{pr.number} opened",
                         end=End(kind="pr_opened", reason=proposal.title, pr_url=pr.url, branch=branch, risk=risk))


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
    wait = ledgers.budget_wait(ledger, now=clock(), per_hour=per_hour)
    if wait is not None:
        raise TemporaryError(f"PR budget exhausted ({per_hour} new PRs per hour): retry in {wait:.0f} s",
                             code="pr_budget", delay=wait)


def _unrecorded(ledger: Ledger, pr: PullRequest) -> bool:
    return not any(e.pr_number == pr.number for e in ledger.entries(branch=pr.branch))


def _record(ledger: Ledger, entry: Remediation, pr: PullRequest, *, existing: bool) -> None:
    known = [e for e in ledger.entries(branch=entry.branch) if e.pr_number == pr.number]
    opened = known[0].opened_at if existing and known else entry.opened_at
    ledger.record(replace(entry, pr_number=pr.number, pr_url=pr.url, opened_at=opened))


def _versions(changeset: ChangeSet) -> dict[str, tuple[str | None, str | None]]:
    return {f.path: (f.old_text, f.new_text) for f in changeset.files}
