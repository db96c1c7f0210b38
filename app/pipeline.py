"""THE flow: one alert in, one Outcome out, every stage timed and recorded, read top to bottom.

This is the one place that turns exceptions into outcomes: NoFix -> no_fix, PermanentError -> failed,
TemporaryError -> re-raised for the worker to retry (the run is recorded as such).
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from app import (
    deadlines,
    duplicates,
    gates,
    render,
)
from app import ledger as ledger_mod
from app.errors import AutofixError, NoFix, PermanentError, TemporaryError
from app.models.changes import ChangeSet
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.models.outcome import Outcome, OutcomeKind, StageRecord
from app.policies import Policy
from app.ports import (
    Advisor,
    ClusterReader,
    Forge,
    Ledger,
    PullRequest,
    Remediation,
    RunHandle,
    RunRecord,
    Tracker,
    Workspace,
)
from app.sources import RepoIdentity
from app.stages import (
    End,
    Output,
    change,
    diagnosis,
    evidence,
    explain,
    history,
    intake,
    record,
    stopped,
    target,
)

log = logging.getLogger(__name__)
LEDGER_LABEL = "autofix"  # the ledger is rebuilt from the PRs carrying it: always put on our PRs
T = TypeVar("T")

_branch_locks: dict[str, threading.Lock] = {}
_branch_locks_guard = threading.Lock()
_budget_lock = threading.Lock()  # the PR budget is counted and spent under it (see _publish)


def _lock_for(branch: str) -> threading.Lock:
    """Two workers on alerts for one workload and cause must not race to open two PRs."""
    with _branch_locks_guard:
        return _branch_locks.setdefault(branch, threading.Lock())


StageOut = TypeVar("StageOut", bound=Output)


class _Stopped(Exception):
    """A stage's output ended the handling (its ``stop``): handle() turns it into the Outcome."""

    def __init__(self, end: End) -> None:
        super().__init__(end.reason)
        self.end = end


@dataclass
class _Run:
    """What one handling accumulates: stage log and the record for MLflow."""

    incident: Incident
    stages: list[StageRecord] = field(default_factory=list)
    outputs: list[object] = field(default_factory=list)
    record: RunRecord = field(default_factory=RunRecord)
    images: tuple[str, ...] = ()

    @contextmanager
    def stage(self, name: str) -> Iterator[list[str]]:
        deadlines.enter(name)  # the worker and /readyz name the stage a job ran out of time in
        decision: list[str] = []
        start = time.perf_counter()
        try:
            yield decision
        finally:
            seconds = time.perf_counter() - start
            self.stages.append(StageRecord(stage=name, seconds=round(seconds, 6),
                                           decision=decision[0] if decision else self._stopped()))

    def step(self, name: str, stage: Callable[[], StageOut]) -> StageOut:
        """Run one stage, entered by name (the job budget names it), timed; its output is kept for the record."""
        deadlines.enter(name)  # the worker and /readyz name the stage a job ran out of time in
        start = time.perf_counter()
        try:
            output = stage()
        except BaseException as err:
            self._log(name, start, stopped(err.message) if isinstance(err, AutofixError) else "error")
            raise
        self._log(name, start, output.decision)
        self.outputs.append(output)
        if output.stop is not None:
            raise _Stopped(output.stop)
        return output

    def _log(self, name: str, start: float, decision: str) -> None:
        self.stages.append(StageRecord(stage=name, seconds=round(time.perf_counter() - start, 6), decision=decision))

    def _stopped(self) -> str:
        """A stage that raised: its decision is why it stopped (shown by `autofix explain` and /jobs)."""
        err = sys.exc_info()[1]
        return f"stopped: {err}"[:500] if isinstance(err, AutofixError) else "error"

    def outcome(self, kind: OutcomeKind, reason: str, **extra: Any) -> Outcome:
        facts = record.summary(self.outputs)  # a model consulted: every outcome's reason says so
        return Outcome(alertname=self.incident.alertname, fingerprint=self.incident.fingerprint, outcome=kind,
                       reason=reason + (f" ({facts.note})" if facts.note else ""),
                       stages=list(self.stages), cause=facts.cause,
                       workload=str(facts.workload) if facts.workload else None, **extra)


class Pipeline:
    def __init__(self, *, policy: Policy, cluster: ClusterReader, workspace: Workspace, forge: Forge,
                 tracker: Tracker, identity: RepoIdentity, base: str, advisor: Advisor | None = None,
                 ledger: Ledger | None = None, own_namespace: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.policy = policy
        self.advisor = advisor
        self.cluster = cluster
        self.workspace = workspace
        self.forge = forge
        self.tracker = tracker
        self.identity = identity
        self.base = base
        self.ledger = ledger
        self.own_namespace = own_namespace
        self.clock = clock

    def handle(self, incident: Incident) -> Outcome:
        run = _Run(incident=incident)
        handle = self.tracker.start_run(name=f"{incident.alertname} {incident.fingerprint}",
                                        tags={"alertname": incident.alertname, "fingerprint": incident.fingerprint})
        status = "FINISHED"
        try:
            outcome = self._flow(incident, run, handle)
        except _Stopped as stop:
            end = stop.end
            outcome = run.outcome(end.kind, end.reason, pr_url=end.pr_url, branch=end.branch, risk=end.risk)
        except NoFix as err:
            outcome = run.outcome("no_fix", err.message)
        except TemporaryError as err:
            run.record.tags["outcome"] = "retry"
            run.record.tags["reason"] = err.message[:500]
            self._finish(handle, run, None, status="FAILED")
            raise
        except PermanentError as err:
            outcome = run.outcome("failed", err.message)
            status = "FAILED"
        except Exception as err:
            run.record.tags["outcome"] = "failed"
            run.record.tags["reason"] = f"internal error: {type(err).__name__}"
            self._finish(handle, run, None, status="FAILED")
            raise
        outcome = outcome.model_copy(update={"mlflow_run_id": handle.run_id})
        self._finish(handle, run, outcome, status=status)
        log.info("alert handled", extra={"fingerprint": incident.fingerprint, "outcome": outcome.outcome})
        return outcome

    def _flow(self, incident: Incident, run: _Run, handle: RunHandle) -> Outcome:
        if incident.status == "resolved":
            end = run.step("intake", lambda: history.resolved(incident=incident, forge=self.forge, ledger=self.ledger,
                                                              policy=self.policy, clock=self.clock)).end
            return run.outcome(end.kind, end.reason, pr_url=end.pr_url)
        run.step("intake", lambda: intake.accept(incident=incident, policy=self.policy,
                                                 own_namespace=self.own_namespace))
        found = run.step("target", lambda: target.resolve(cluster=self.cluster, incident=incident, policy=self.policy,
                                                          own_namespace=self.own_namespace))
        workload = found.workload
        ev = run.step("evidence", lambda: evidence.collect(cluster=self.cluster, workload=workload,
                                                           incident=incident)).evidence
        diagnosed = run.step("diagnosis", lambda: diagnosis.diagnose(evidence=ev, policy=self.policy,
                                                                     advisor=self.advisor)).diagnosis
        assert diagnosed is not None, "a failure nothing recognised ends the handling (diagnosis.Diagnosed.stop)"
        run.images = history.images(ev)
        ledger = self.ledger
        baseline: Mapping[str, Any] = {}
        if ledger is not None:  # what became of earlier PRs needs only the evidence and the cause: before the change
            baseline = run.step("ledger", lambda: history.judge(
                evidence=ev, diagnosis=diagnosed, incident=incident, forge=self.forge, ledger=ledger,
                policy=self.policy, clock=self.clock, run_url=handle.url)).baseline
        located = run.step("source", lambda: change.locate(evidence=ev, workspace=self.workspace,
                                                           identity=self.identity))
        planned = run.step("plan", lambda: change.plan(located=located, evidence=ev, diagnosis=diagnosed,
                                                       workspace=self.workspace, policy=self.policy))
        edited = run.step("validate", lambda: change.edit(located=located, planned=planned, evidence=ev,
                                                          workspace=self.workspace))
        changeset = run.step("risk", lambda: change.assess(planned=planned, edited=edited, evidence=ev,
                                                           policy=self.policy,
                                                           namespace_labels=found.namespace_labels)).changeset
        self._gate(ev, diagnosed, changeset, run, baseline)
        advisor = self.advisor
        narrative = None
        if advisor is not None and explain.wanted(advisor=advisor, diagnosis=diagnosed, policy=self.policy):
            narrative = run.step("explain", lambda: explain.explain(evidence=ev, diagnosis=diagnosed,
                                                                    advisor=advisor)).narrative
        return self._publish(workload, diagnosed, changeset, run, handle, narrative)

    def _publish(self, workload: WorkloadRef, diagnosis: Diagnosis, changeset: ChangeSet, run: _Run,
                 handle: RunHandle, narrative: str | None) -> Outcome:
        own = render.branch(workload, diagnosis.cause)
        title = render.title(workload, diagnosis, changeset)
        body = render.pr_body(workload=workload, diagnosis=diagnosis, changeset=changeset, run_url=handle.url,
                              alert=run.incident.alertname, explanation=narrative,
                              model_note=f"model {self.advisor.model}" if self.advisor else None)
        team_labels, reviewers, teams = self.policy.owners_for(workload.namespace)
        labels = list(dict.fromkeys([LEDGER_LABEL, *self.policy.labels, *team_labels, f"risk:{changeset.risk.level}"]))
        files = {f.path: f.new_text for f in changeset.files}
        message = render.commit_message(workload, diagnosis, changeset)
        owner = render.owner(workload, diagnosis.cause)  # the push refuses a branch carrying another's change
        with _lock_for(own), run.stage("publish") as decision:
            existing = self._open_pr(workload, diagnosis.cause, own)
            branch = existing.branch if existing is not None else own  # an earlier version's PR keeps its branch
            entry = self._remediation(workload, diagnosis, changeset, run, branch)
            body += "\n" + ledger_mod.marker(entry) + "\n"
            run.record.artifacts["pr_body.md"] = body
            common = {"branch": branch, "risk": changeset.risk.score}
            if existing is not None:
                remote = self.workspace.remote_branch_files(branch)
                # Same files, objects, fields and new values: not merely the same changed lines.
                if remote is not None and duplicates.same_change(remote, _versions(changeset)):
                    if not set(labels) <= set(existing.labels) or self._unrecorded(existing):
                        # Opened by a run that crashed before labels and ledger (tests/test_faults.py): finish it.
                        existing = self.forge.open_pr(branch=branch, base=self.base, title=title, body=body,
                                                      labels=labels)
                        self._record(entry, existing, existing=True)
                    decision.append(f"PR #{existing.number} already proposes this change")
                    return run.outcome("duplicate", f"PR #{existing.number} already proposes this change",
                                       pr_url=existing.url, **common)
                self.workspace.push_branch(branch, files, message=message, owner=owner)
                pr = self.forge.update_pr(existing, title=title, body=body,
                                          comment=render.update_comment(title_text=title, run_url=handle.url))
                decision.append(f"PR #{pr.number} updated")
                self._record(entry, pr, existing=True)
                return run.outcome("pr_updated", f"updated PR #{pr.number}", pr_url=pr.url, **common)
            # Budget check, push, PR and ledger record as one step: workers cannot overshoot the budget.
            with _budget_lock:
                self._check_budget()
                self.workspace.push_branch(branch, files, message=message, owner=owner)
                pr = self.forge.open_pr(branch=branch, base=self.base, title=title, body=body, labels=labels)
                self._record(entry, pr, existing=False)
            if reviewers or teams:
                self.forge.request_reviewers(pr, reviewers=reviewers, teams=teams)
            decision.append(f"PR #{pr.number} opened")
        return run.outcome("pr_opened", title, pr_url=pr.url, **common)

    def _open_pr(self, workload: WorkloadRef, cause: str, own: str) -> PullRequest | None:
        """The open PR for this workload and cause: on its branch, or on the branch name of an earlier version.

        Earlier versions cut names at 63 characters and left the kind out, so their branch names could be
        shared by two workloads: a PR there is this workload's only when its ledger marker says so.
        """
        existing = self.forge.find_open_pr(own)
        if existing is not None:
            if _belongs(existing, workload, cause) is False:
                raise PermanentError(f"branch {own} holds the open PR #{existing.number} of another workload "
                                     "(opened by an earlier version): close it to free the name", code="branch_taken")
            return existing
        legacy = render.legacy_branch(workload, cause)
        if legacy == own or not render.valid_branch(legacy):
            return None
        found = self.forge.find_open_pr(legacy)
        return found if found is not None and _belongs(found, workload, cause) else None

    def _gate(self, ev: Evidence, diagnosis: Diagnosis, changeset: ChangeSet, run: _Run,
              baseline: Mapping[str, Any]) -> None:
        """Every change, a rule's or a model's, passes the same gates; a refusal is recorded, never published."""
        loc = changeset.location
        with run.stage("gates") as decision:
            try:
                passed: list[str] = []
                if loc.layout != "plain" and changeset.workload_old is not None \
                        and changeset.workload_new is not None:
                    # An overlay, values file or patch was edited: judge the rendered workload it produces.
                    passed += gates.check(old=changeset.workload_old, new=changeset.workload_new,
                                          plan=changeset.plan, policy=self.policy, kind=ev.workload.kind,
                                          proposed_by=diagnosis.proposed_by, baseline=baseline)
                for f in changeset.files:
                    if f.path != loc.path:
                        passed += gates.check_file(f.old_text, f.new_text)
                        continue
                    old, new = gates.objects(f.old_text, f.new_text, index=loc.document_index, prefix=loc.prefix)
                    passed += gates.check(old=old, new=new, plan=changeset.plan, policy=self.policy,
                                          kind=ev.workload.kind, proposed_by=diagnosis.proposed_by, baseline=baseline)
            except NoFix as err:
                run.record.tags["gate"] = "refused"
                run.record.artifacts["gates.txt"] = err.message + "\n"
                raise
            run.record.tags["gate"] = "passed"
            run.record.artifacts["gates.txt"] = "\n".join(passed) + "\n"
            decision.append(f"{len(passed)} gate(s) passed")

    def _check_budget(self) -> None:
        if self.ledger is None:
            return
        per_hour = self.policy.limits.prs_per_hour
        wait = ledger_mod.budget_wait(self.ledger, now=self.clock(), per_hour=per_hour)
        if wait is not None:
            raise TemporaryError(f"PR budget exhausted ({per_hour} new PRs per hour): retry in {wait:.0f} s",
                                 code="pr_budget", delay=wait)

    def _remediation(self, workload: WorkloadRef, diagnosis: Diagnosis, changeset: ChangeSet, run: _Run,
                     branch: str) -> Remediation:
        changes = changeset.plan.changes
        return Remediation(workload=str(workload), cause=diagnosis.cause, branch=branch, pr_number=0, pr_url="",
                           state="open", before={c.path: c.old for c in changes},
                           after={c.path: c.new for c in changes}, fingerprint=run.incident.fingerprint,
                           images=run.images, opened_at=self.clock())

    def _unrecorded(self, pr: PullRequest) -> bool:
        return self.ledger is not None and not any(e.pr_number == pr.number for e in self.ledger.entries(branch=pr.branch))

    def _record(self, entry: Remediation, pr: PullRequest, *, existing: bool) -> None:
        if self.ledger is None:
            return
        known = [e for e in self.ledger.entries(branch=entry.branch) if e.pr_number == pr.number]
        opened = known[0].opened_at if existing and known else entry.opened_at
        self.ledger.record(replace(entry, pr_number=pr.number, pr_url=pr.url, opened_at=opened))

    def _finish(self, handle: RunHandle, run: _Run, outcome: Outcome | None, *, status: str) -> None:
        failure = None
        if outcome is None:
            failure = record.Failure(outcome=run.record.tags["outcome"], reason=run.record.tags["reason"])
        built = record.build(outputs=run.outputs, stages=run.stages, outcome=outcome, failure=failure,
                             policy_version=self.policy.digest or "builtin", base=run.record)
        self.tracker.finish_run(handle, built, status=status)


def _versions(changeset: ChangeSet) -> dict[str, tuple[str | None, str | None]]:
    return {f.path: (f.old_text, f.new_text) for f in changeset.files}


def _belongs(pr: PullRequest, workload: WorkloadRef, cause: str) -> bool | None:
    """Whether a PR's ledger marker names this workload and cause; None when it has no marker to tell."""
    entry = ledger_mod.from_pr(pr)
    if entry is None or entry.workload.startswith("?/"):
        return None
    return (entry.workload, entry.cause) == (str(workload), cause)
