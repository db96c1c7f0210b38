"""History stage (recorded as "ledger"): what became of the bot's earlier PRs for this workload and cause.

It needs only the evidence and the cause, so it runs before any change is built: a merged fix that did not
help is escalated on its PR, a PR a human closed is respected (cooldown), else the change goes ahead with the
values before the first merged fix as the baseline the gates' caps count from. The rules are app/ledger.py's.
A resolved alert is answered here too: a comment on its open PR (and a close, if the policy asks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from app import kube, render
from app import ledger as ledgers
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.policies import Policy
from app.ports import Forge, Ledger, PullRequest, Remediation
from app.stages import End, Output

LEDGER_LABEL = "autofix"  # the ledger is rebuilt from the PRs carrying it: always put on our PRs


@dataclass(frozen=True, kw_only=True)
class History(Output):
    action: Literal["proceed", "escalate", "cooldown"]
    baseline: Mapping[str, Any]  # path -> the value in git before the first merged fix


@dataclass(frozen=True, kw_only=True)
class Resolved(Output):
    end: End


def judge(*, evidence: Evidence, diagnosis: Diagnosis, incident: Incident, forge: Forge, ledger: Ledger,
          policy: Policy, clock: Callable[[], float], run_url: str) -> History:
    """The ledger's word on this workload and cause: escalate, respect a "no", or go on from a baseline."""
    workload, cause = evidence.workload, diagnosis.cause
    entries = _entries(ledger, forge, workload, cause)
    verdict = ledgers.decide(entries, now=clock(), limits=policy.limits, images=images(evidence))
    earlier = f"{len(entries)} earlier PR(s) for {render.branch(workload, cause)}"
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


def _entries(ledger: Ledger, forge: Forge, workload: WorkloadRef, cause: str) -> list[Remediation]:
    """This workload's and cause's PRs, under its branch name and the one earlier versions used."""
    own = render.branch(workload, cause)
    entries = ledgers.sync(ledger, forge, label=LEDGER_LABEL, branch=own)
    legacy = render.legacy_branch(workload, cause)
    if legacy != own and render.valid_branch(legacy):
        entries += ledgers.sync(ledger, forge, label=LEDGER_LABEL, branch=legacy)
    # A PR without a marker (older still) is judged by its branch: this workload's own name only.
    return [e for e in entries if (e.workload, e.cause) == (str(workload), cause)
            or (e.workload.startswith("?/") and e.branch == own)]


def _escalate(verdict: ledgers.Verdict, merged: Remediation, *, diagnosis: Diagnosis, incident: Incident,
              forge: Forge, ledger: Ledger, clock: Callable[[], float], run_url: str) -> None:
    """One comment per merged fix with the new evidence: the humans who merged it decide what next."""
    if merged.escalated_at is not None and merged.escalated_at >= (merged.merged_at or 0):
        return
    forge.comment(as_pr(merged), ledgers.escalation_comment(
        verdict, alert=incident.alertname, root_cause=diagnosis.finding.root_cause,
        evidence=diagnosis.finding.evidence, run_url=run_url))
    ledger.record(replace(merged, escalated_at=clock()))


def resolved(*, incident: Incident, forge: Forge, ledger: Ledger, policy: Policy,
             clock: Callable[[], float]) -> Resolved:
    """An alert resolved: say so on its open PR (once), and close it if the policy asks."""
    open_entries = []
    ledgers.sync(ledger, forge, label=LEDGER_LABEL)
    for branch in {e.branch for e in ledger.entries() if e.fingerprint == incident.fingerprint}:
        open_entries += [e for e in ledgers.sync(ledger, forge, label=LEDGER_LABEL, branch=branch)
                         if e.fingerprint == incident.fingerprint and e.state == "open" and not e.resolved_at]
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
