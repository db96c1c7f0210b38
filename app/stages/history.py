"""History stages: what became of earlier fixes for this workload, the bot's own and everyone else's.

``judge`` (recorded as "ledger") needs only the evidence and the cause, so it runs before any change is built:
a merged fix of the bot's that did not help is escalated on its PR, a PR a human closed is respected
(cooldown), else the change goes ahead with the values before the first merged fix as the baseline the gates'
caps count from. A resolved alert is answered here too: a comment on its open PR (and a close, if the policy
asks).

``precedents`` (recorded as "history") runs once the change is edited, when the file and field it raises are
known: an earlier raise of that field by anyone (a commit on the base branch within the window, a PR labelled
``autofix`` in another version's or another bot's format) means the same failure came back after a raise:
comment on that PR with the new evidence and end ``no_fix`` (escalated), never a second raise. The rules are
app/ledger.py's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from app import kube, render
from app import ledger as ledgers
from app.errors import PermanentError
from app.models.changes import FileEdit
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.policies import Policy
from app.ports import Forge, Ledger, PullRequest, Remediation, Workspace
from app.stages import End, Output

LEDGER_LABEL = "autofix"  # the ledger is rebuilt from the PRs carrying it: always put on our PRs
HOUR = 3600.0
MAX_FOREIGN_PRS = 50  # labelled PRs in another format looked at per alert, newest first
MAX_FILE_LOOKUPS = 20  # of which at most this many have their changed files asked for (one request each)
MAX_COMMITS = 20  # commits of an edited file read per alert, newest first within the window


@dataclass(frozen=True, kw_only=True)
class History(Output):
    action: Literal["proceed", "escalate", "cooldown"]
    baseline: Mapping[str, Any]  # path -> the value in git before the first merged fix


@dataclass(frozen=True, kw_only=True)
class Resolved(Output):
    end: End


def judge(*, evidence: Evidence, diagnosis: Diagnosis, incident: Incident, forge: Forge, ledger: Ledger,
          policy: Policy, clock: Callable[[], float], run_url: str, cluster: str | None = None) -> History:
    """The ledger's word on this workload and cause (in ``cluster``, when clusters are configured): escalate,
    respect a "no", or go on from a baseline."""
    workload, cause = evidence.workload, diagnosis.cause
    entries = _entries(ledger, forge, workload, cause, cluster=cluster)
    verdict = ledgers.decide(entries, now=clock(), limits=policy.limits, images=images(evidence))
    earlier = f"{len(entries)} earlier PR(s) for {render.branch(workload, cause, cluster=cluster)}"
    decision = f"{verdict.action}: {verdict.reason or earlier}"
    stop = None
    if verdict.action == "escalate" and verdict.pr is not None:
        _escalate(verdict, verdict.pr, diagnosis=diagnosis, incident=incident, forge=forge, ledger=ledger,
                  clock=clock, run_url=run_url)
        stop = End(kind="no_fix", reason=verdict.reason, code="escalated")
    elif verdict.action == "cooldown":
        stop = End(kind="no_fix", reason=verdict.reason, code="cooldown")
    return History(action=verdict.action, baseline=verdict.baseline, decision=decision, stop=stop)


def images(evidence: Evidence) -> tuple[str, ...]:
    """The images the workload runs: a new one is new evidence after a human said no."""
    spec = kube.pod_spec_of(evidence.object, evidence.workload.kind)
    return tuple(sorted({str(c.get("image")) for key in ("containers", "initContainers")
                         for c in spec.get(key) or [] if c.get("image")}))


def as_pr(entry: Remediation) -> PullRequest:
    return PullRequest(number=entry.pr_number, url=entry.pr_url, branch=entry.branch, state=entry.state)


def _entries(ledger: Ledger, forge: Forge, workload: WorkloadRef, cause: str, *,
             cluster: str | None = None) -> list[Remediation]:
    """This workload's and cause's PRs, under its branch name and the one earlier versions used (no cluster:
    the branch of one cluster is that cluster's only, and earlier versions knew no clusters)."""
    own = render.branch(workload, cause, cluster=cluster)
    entries = ledgers.sync(ledger, forge, label=LEDGER_LABEL, branch=own)
    if cluster:
        return [e for e in entries if e.branch == own]
    legacy = render.legacy_branch(workload, cause)
    if legacy != own and render.valid_branch(legacy):
        entries += ledgers.sync(ledger, forge, label=LEDGER_LABEL, branch=legacy)
    # A PR without a marker (older still) is judged by its branch: this workload's own name only.
    return [e for e in entries if (e.workload, e.cause) == (str(workload), cause)
            or (e.workload.startswith("?/") and e.branch == own)]


def _escalate(verdict: ledgers.Verdict, merged: Remediation, *, diagnosis: Diagnosis, incident: Incident,
              forge: Forge, ledger: Ledger, clock: Callable[[], float], run_url: str) -> None:
    """One comment per merged fix with the new evidence: the humans who merged it decide what next."""
    if merged.fired_again_at is None:  # the fix's outcome (app/outcomes.py): it did not stop the alert
        merged = replace(merged, fired_again_at=clock())
        ledger.record(merged)
    if merged.escalated_at is not None and merged.escalated_at >= (merged.merged_at or 0):
        return
    forge.comment(as_pr(merged), ledgers.escalation_comment(
        verdict, alert=incident.alertname, root_cause=diagnosis.finding.root_cause,
        evidence=diagnosis.finding.evidence, run_url=run_url))
    ledger.record(replace(merged, escalated_at=clock()))


def resolved(*, incident: Incident, forge: Forge, ledger: Ledger, policy: Policy,
             clock: Callable[[], float]) -> Resolved:
    """An alert resolved: say so on its open PR (once), and close it if the policy asks. A merged fix still
    followed (app/outcomes.py) gets the time its alert resolved: the first resolution after the merge."""
    open_entries = []
    ledgers.sync(ledger, forge, label=LEDGER_LABEL)
    for branch in {e.branch for e in ledger.entries() if e.fingerprint == incident.fingerprint}:
        open_entries += [e for e in ledgers.sync(ledger, forge, label=LEDGER_LABEL, branch=branch)
                         if e.fingerprint == incident.fingerprint and e.state == "open" and not e.resolved_at]
    _resolved_after_merge(incident, ledger, clock=clock)  # the branches were refreshed just above
    if not open_entries:
        return Resolved(decision="resolved alert: no open PR of ours to update",
                        end=End(kind="skipped", reason="alert resolved"))
    at = (incident.ends_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    closing = policy.limits.close_pr_on_resolve
    text = ledgers.resolved_comment(alert=incident.alertname, resolved_at=at, closing=closing)
    for entry in open_entries:
        if closing:
            forge.close_pr(as_pr(entry), comment=text)
        else:
            forge.comment(as_pr(entry), text)
        ledger.record(replace(entry, resolved_at=clock(), state="closed" if closing else entry.state))
    numbers = ", ".join(f"#{e.pr_number}" for e in open_entries)
    done = "closed" if closing else "commented on"
    return Resolved(decision=f"resolved at {at}: {done} PR {numbers}",
                    end=End(kind="skipped", reason=f"alert resolved at {at} without the change: {done} PR {numbers}",
                            pr_url=open_entries[0].pr_url))


def _resolved_after_merge(incident: Incident, ledger: Ledger, *, clock: Callable[[], float]) -> None:
    ends = incident.ends_at  # a firing alert's endsAt is 0001-01-01 (unset): then the time it reached us
    at = ends.timestamp() if ends is not None and ends.year > 1 else clock()
    for entry in ledger.entries():
        if entry.fingerprint == incident.fingerprint and entry.state == "merged" and entry.final is None \
                and entry.merged_at is not None and entry.resolved_at is None and at >= entry.merged_at:
            ledger.record(replace(entry, resolved_at=at))


@dataclass(frozen=True, kw_only=True)
class Precedents(Output):
    action: Literal["proceed", "escalate", "open", "cooldown"]
    found: tuple[ledgers.Precedent, ...]


def precedents(*, evidence: Evidence, diagnosis: Diagnosis, incident: Incident, edits: Sequence[FileEdit],
               workspace: Workspace, forge: Forge, ledger: Ledger, policy: Policy, clock: Callable[[], float],
               run_url: str) -> Precedents:
    """Earlier raises of the fields this change raises, by anyone: escalate, respect a "no", or go on."""
    now = clock()
    raises = _raises(edits, workspace)
    if not raises:
        return Precedents(action="proceed", found=(), decision="proceed: the change raises no quantity")
    limits = policy.limits
    since = now - limits.merged_fix_window_hours * HOUR
    histories = {path: workspace.file_history(path, since=since, limit=MAX_COMMITS) for path in {r.file for r in raises}}
    found = [p for raised in raises for p in ledgers.commit_raises(raised, histories[raised.file])]
    prs = _foreign_prs(forge, now=now, limits=limits)
    found = ledgers.tie_to_commits(found, prs)
    from_prs, unread = _pr_raises(prs, raises, evidence=evidence, forge=forge, workspace=workspace,
                                  tied={p.pr.number for p in found if p.pr is not None})
    found += from_prs
    verdict = ledgers.judge(found, now=now, limits=limits)
    stop = None
    if verdict.action != "proceed" and verdict.precedent is not None:
        if verdict.action in ("escalate", "open") and verdict.precedent.pr is not None:
            _comment_once(verdict.precedent, verdict.action, evidence=evidence, diagnosis=diagnosis,
                          incident=incident, forge=forge, ledger=ledger, clock=clock, run_url=run_url)
        code = {"escalate": "escalated", "open": "open_pr", "cooldown": "cooldown"}[verdict.action]
        stop = End(kind="no_fix", reason=verdict.reason, code=code)
    fields = ", ".join(sorted({r.path for r in raises}))
    decision = f"{verdict.action}: {verdict.reason or f'no earlier raise of {fields} by anyone within the window'}"
    if unread:  # said, not guessed: an unread change is neither a raise nor its absence
        decision += f" (PR {'; '.join(unread[:5])})"
    return Precedents(action=verdict.action, found=tuple(found), decision=decision, stop=stop)


def _raises(edits: Sequence[FileEdit], workspace: Workspace) -> list[ledgers.Raise]:
    """The fields the change raises (quantities that go up), each where the edit writes it."""
    found = []
    for edit in edits:
        wanted = [c for c in edit.changes if ledgers.is_raise(c.old, c.new)]
        if not wanted:
            continue
        try:
            text = workspace.read_text(edit.path)
        except PermanentError:  # a file the edit creates: nothing was raised in it before
            continue
        kind, name = ledgers.document_identity(text, document_index=edit.document_index, prefix=edit.prefix)
        found += [ledgers.Raise(file=edit.path, document_index=edit.document_index, prefix=edit.prefix,
                                path=c.path, old=c.old, new=c.new, kind=kind, name=name) for c in wanted]
    return found


def _foreign_prs(forge: Forge, *, now: float, limits: Any) -> list[PullRequest]:
    """Labelled PRs not in this version's branch format that can still matter: every open one, and those
    updated within the longer of the merged-fix window and the cooldown; newest first, bounded."""
    horizon = now - max(limits.merged_fix_window_hours, limits.cooldown_hours_after_closed) * HOUR
    listed = [*forge.list_prs(LEDGER_LABEL, "all", updated_since=horizon), *forge.list_prs(LEDGER_LABEL, "open")]
    unique = {pr.number: pr for pr in listed if ledgers.foreign(pr)}
    return sorted(unique.values(), key=lambda pr: -pr.number)[:MAX_FOREIGN_PRS]


def _pr_raises(prs: list[PullRequest], raises: list[ledgers.Raise], *, evidence: Evidence, forge: Forge,
               workspace: Workspace, tied: set[int]) -> tuple[list[ledgers.Precedent], list[str]]:
    """The PRs not yet tied to a commit that raise one of the fields: by marker, else by their changed files;
    and what could not be read (a changed file whose diff the forge did not show)."""
    files_of = {r.file for r in raises}
    only = {r.file: ledgers.defines_only(workspace.read_text(r.file), kind=r.kind, name=r.name) for r in raises}
    found, lookups, unread = [], 0, []
    for pr in prs:
        if pr.number in tied:
            continue
        files = None
        if ledgers.marker_of(pr) is None and lookups < MAX_FILE_LOOKUPS:
            files, lookups = forge.pr_files(pr), lookups + 1
            if not files_of & {f.path for f in files}:
                continue
        for raised in raises:
            hit = ledgers.pr_raise(pr, raised, workload=str(evidence.workload), name=evidence.workload.name,
                                   files=files, single_workload=only[raised.file])
            if hit is not None:
                found.append(hit)
                break
        else:
            unread += [note for raised in raises if (note := ledgers.hidden_change(
                pr, raised, name=evidence.workload.name, files=files, single_workload=only[raised.file]))][:1]
    return found, unread


def _comment_once(precedent: ledgers.Precedent, action: str, *, evidence: Evidence, diagnosis: Diagnosis,
                  incident: Incident, forge: Forge, ledger: Ledger, clock: Callable[[], float], run_url: str) -> None:
    """The new evidence on someone else's PR: once while it is open, once more after it is merged. Remembered
    in the ledger as a row that is not the bot's (opened_at 0: it never counts against the PR budget)."""
    pr = precedent.pr
    assert pr is not None
    row = next((e for e in ledger.entries(branch=pr.branch) if e.pr_number == pr.number), None)
    merged_at = ledgers.epoch(pr.merged_at)
    if row is not None and row.escalated_at is not None and row.escalated_at >= (merged_at or 0.0):
        return
    forge.comment(pr, ledgers.precedent_comment(
        precedent, action=action, alert=incident.alertname, root_cause=diagnosis.finding.root_cause,
        evidence=diagnosis.finding.evidence, run_url=run_url))
    ledger.record(Remediation(
        workload=str(evidence.workload), cause=diagnosis.cause, branch=pr.branch, pr_number=pr.number,
        pr_url=pr.url, state=pr.state if pr.state in ("open", "merged", "closed") else "closed",
        before={precedent.raised.path: precedent.old}, after={precedent.raised.path: precedent.new},
        opened_at=0.0, merged_at=merged_at, closed_at=ledgers.epoch(pr.closed_at), escalated_at=clock()))
