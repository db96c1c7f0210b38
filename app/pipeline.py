"""THE flow: one alert in, one Outcome out, every stage timed and recorded, read top to bottom.

This is the one place that turns exceptions into outcomes: NoFix -> no_fix, PermanentError -> failed,
TemporaryError -> re-raised for the worker to retry (the run is recorded as such).
"""

from __future__ import annotations

import copy
import difflib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from app import (
    causes,
    deadlines,
    duplicates,
    fieldpaths,
    gates,
    kube,
    render,
    risk,
    sources,
    validation,
)
from app import ledger as ledger_mod
from app.errors import AutofixError, NoFix, PermanentError, TemporaryError
from app.models.changes import ChangeSet, FileChange, FileEdit, Location, Plan
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
from app.sources import RepoIdentity, yaml_rt
from app.stages import End, Output, diagnosis, evidence, explain, intake, record, stopped, target

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
    namespace_labels: dict[str, str] = field(default_factory=dict)
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
            with run.stage("intake") as decision:
                return self._resolved(incident, run, decision)
        run.step("intake", lambda: intake.accept(incident=incident, policy=self.policy,
                                                 own_namespace=self.own_namespace))
        found = run.step("target", lambda: target.resolve(cluster=self.cluster, incident=incident, policy=self.policy,
                                                          own_namespace=self.own_namespace))
        workload = found.workload
        run.namespace_labels = dict(found.namespace_labels)
        ev = run.step("evidence", lambda: evidence.collect(cluster=self.cluster, workload=workload,
                                                           incident=incident)).evidence
        diagnosed = run.step("diagnosis", lambda: diagnosis.diagnose(evidence=ev, policy=self.policy,
                                                                     advisor=self.advisor)).diagnosis
        assert diagnosed is not None, "a failure nothing recognised ends the handling (diagnosis.Diagnosed.stop)"
        changeset = self._change(ev, diagnosed, run)
        baseline = self._history(ev, diagnosed, run, handle)
        self._gate(ev, diagnosed, changeset, run, baseline)
        advisor = self.advisor
        narrative = None
        if advisor is not None and explain.wanted(advisor=advisor, diagnosis=diagnosed, policy=self.policy):
            narrative = run.step("explain", lambda: explain.explain(evidence=ev, diagnosis=diagnosed,
                                                                    advisor=advisor)).narrative
        return self._publish(workload, diagnosed, changeset, run, handle, narrative)

    def _change(self, ev: Evidence, diagnosis: Diagnosis, run: _Run) -> ChangeSet:
        with run.stage("source") as decision:
            base_commit = self.workspace.sync()
            # The repository index at this commit (built once, then updated from git diff) serves lookups.
            run.record.metrics.update(self.workspace.index.metrics())
            location = sources.locate(ev, self.workspace, self.identity)
            decision.append(f"{location.path}#{location.document_index} via {location.source} at {base_commit[:12]}")
            run.record.tags["manifest"] = location.path
        with run.stage("plan") as decision:
            # Plan on the workload as git produces it: the manifest itself, or the rendered overlay/chart.
            document = sources.effective(location, ev, self.workspace)
            _check_opt_out(document, diagnosis.cause)
            plan = causes.plan(diagnosis, document, self.policy)  # a rule's fixer, or the model's proposal gated
            decision.append(plan.summary)
        with run.stage("validate") as decision:
            _check_allowed(plan)
            edits = sources.edits(location, plan, ev, self.workspace, document)
            files, checks = _apply_edits(self.workspace, edits, plan, tag_files=location.layout != "plain")
            rendered, render_checks = sources.verify(location, ev, self.workspace, plan,
                                                     {f.path: f.new_text for f in files})
            checks += render_checks
            # For a patch, values file or kustomization the gates (`_gate`) judge this effective workload.
            after = _applied(document, plan)
            location = location.model_copy(update={
                "path": _shown_path(location, edits), "document_index": edits[0].document_index,
                "environments": sources.environments(location, edits, self.workspace)})
            run.record.tags["manifest"] = edits[0].path
            run.record.tags["render"] = rendered[:250]
            decision.append(f"{len(checks)} check(s) passed; {', '.join(f.path for f in files)}; render {rendered}")
            run.record.metrics["validation_passed"] = 1.0
        with run.stage("risk") as decision:
            assessed = risk.assess(workload=document, namespace=ev.workload.namespace, plan=plan, policy=self.policy,
                                   namespace_labels=run.namespace_labels, related=ev.related)
            decision.append(f"{assessed.level} ({assessed.score:.2f})")
            run.record.metrics["risk"] = assessed.score
            for factor in assessed.factors:
                run.record.metrics[f"risk_{factor.name}"] = factor.value
        run.record.artifacts["patch.diff"] = "".join(f.diff for f in files)
        for change in files:
            run.record.artifacts["manifest/" + change.path.rsplit("/", 1)[-1]] = change.new_text
        layered = location.layout != "plain"
        return ChangeSet(location=location, plan=plan, files=files, risk=assessed, validation=checks, edits=edits,
                         rendered=rendered, workload_old=document if layered else None,
                         workload_new=after if layered else None)

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

    def _ledger_entries(self, workload: WorkloadRef, cause: str) -> list[Remediation]:
        """This workload's and cause's PRs, under its branch name and the one earlier versions used."""
        own = render.branch(workload, cause)
        assert self.ledger is not None
        entries = ledger_mod.sync(self.ledger, self.forge, label=LEDGER_LABEL, branch=own)
        legacy = render.legacy_branch(workload, cause)
        if legacy != own and render.valid_branch(legacy):
            entries += ledger_mod.sync(self.ledger, self.forge, label=LEDGER_LABEL, branch=legacy)
        # A PR without a marker (older still) is judged by its branch: this workload's own name only.
        return [e for e in entries if (e.workload, e.cause) == (str(workload), cause)
                or (e.workload.startswith("?/") and e.branch == own)]

    # ---------------------------------------------------------------- trust boundaries (app/gates.py, app/ledger.py)

    def _history(self, ev: Evidence, diagnosis: Diagnosis, run: _Run, handle: RunHandle) -> dict[str, Any]:
        """The ledger's word on this workload and cause: escalate, respect a "no", or go on from a baseline."""
        run.images = _images(ev)
        if self.ledger is None:
            return {}
        branch = render.branch(ev.workload, diagnosis.cause)
        with run.stage("ledger") as decision:
            entries = self._ledger_entries(ev.workload, diagnosis.cause)
            verdict = ledger_mod.decide(entries, now=self.clock(), limits=self.policy.limits, images=run.images)
            run.record.tags["ledger"] = verdict.action
            decision.append(f"{verdict.action}: {verdict.reason or f'{len(entries)} earlier PR(s) for {branch}'}")
            if verdict.action == "escalate" and verdict.pr is not None:
                self._escalate(verdict, verdict.pr, diagnosis, run, handle)
                raise NoFix(verdict.reason, code="escalated")
            if verdict.action == "cooldown":
                raise NoFix(verdict.reason, code="cooldown")
        return verdict.baseline

    def _escalate(self, verdict: ledger_mod.Verdict, merged: Remediation, diagnosis: Diagnosis, run: _Run,
                  handle: RunHandle) -> None:
        """One comment per merged fix with the new evidence: the humans who merged it decide what next."""
        if merged.escalated_at is not None and merged.escalated_at >= (merged.merged_at or 0):
            return
        self.forge.comment(_as_pr(merged), ledger_mod.escalation_comment(
            verdict, alert=run.incident.alertname, root_cause=diagnosis.finding.root_cause,
            evidence=diagnosis.finding.evidence, run_url=handle.url))
        assert self.ledger is not None
        self.ledger.record(replace(merged, escalated_at=self.clock()))

    def _gate(self, ev: Evidence, diagnosis: Diagnosis, changeset: ChangeSet, run: _Run,
              baseline: dict[str, Any]) -> None:
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

    def _resolved(self, incident: Incident, run: _Run, decision: list[str]) -> Outcome:
        """An alert resolved: say so on its open PR (once), and close it if the policy asks."""
        open_entries = []
        if self.ledger is not None:
            ledger_mod.sync(self.ledger, self.forge, label=LEDGER_LABEL)
            for branch in {e.branch for e in self.ledger.entries() if e.fingerprint == incident.fingerprint}:
                open_entries += [e for e in ledger_mod.sync(self.ledger, self.forge, label=LEDGER_LABEL, branch=branch)
                                 if e.fingerprint == incident.fingerprint and e.state == "open" and not e.resolved_at]
        if not open_entries:
            decision.append("resolved alert: no open PR of ours to update")
            return run.outcome("skipped", "alert resolved")
        at = (incident.ends_at or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        closing = self.policy.limits.close_pr_on_resolve
        text = ledger_mod.resolved_comment(alert=incident.alertname, resolved_at=at, closing=closing)
        for entry in open_entries:
            if closing:
                self.forge.close_pr(_as_pr(entry), comment=text)
            else:
                self.forge.comment(_as_pr(entry), text)
            assert self.ledger is not None
            self.ledger.record(replace(entry, resolved_at=self.clock(), state="closed" if closing else entry.state))
        numbers = ", ".join(f"#{e.pr_number}" for e in open_entries)
        decision.append(f"resolved at {at}: {'closed' if closing else 'commented on'} PR {numbers}")
        return run.outcome("skipped", f"alert resolved at {at} without the change: "
                                      f"{'closed' if closing else 'commented on'} PR {numbers}",
                           pr_url=open_entries[0].pr_url)

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


def _check_opt_out(document: Any, cause: str) -> None:
    """The team's own "no", written on the manifest in git, wins over any rule."""
    annotations = ((document or {}).get("metadata") or {}).get("annotations") or {}
    if str(annotations.get("autofix.io/ignore", "")).lower() == "true":
        raise NoFix("the manifest in git opts out of GitOps Autofix (autofix.io/ignore: \"true\")", code="opted_out")
    skipped = {c.strip() for c in str(annotations.get("autofix.io/ignore-causes", "")).split(",")}
    if cause in skipped:
        raise NoFix(f"the manifest in git opts out of fixes for {cause}", code="opted_out")


def _images(ev: Evidence) -> tuple[str, ...]:
    """The images the workload runs: a new one is new evidence after a human said no."""
    spec = kube.pod_spec_of(ev.object, ev.workload.kind)
    return tuple(sorted({str(c.get("image")) for key in ("containers", "initContainers")
                         for c in spec.get(key) or [] if c.get("image")}))


def _as_pr(entry: Remediation) -> PullRequest:
    return PullRequest(number=entry.pr_number, url=entry.pr_url, branch=entry.branch, state=entry.state)


def _applied(workload: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """The effective workload with the plan applied (what the render showed, when one was verified)."""
    out = copy.deepcopy(workload)
    for change in plan.changes:
        keys = fieldpaths.resolve(out, change.path)
        node: Any = out
        for key in keys[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[keys[-1]] = change.new
    return out


def _shown_path(location: Location, edits: list[FileEdit]) -> str:
    """The workload manifest when it is what was edited; else the render root (never an edited file, so
    the publish gates judge edited patches and values files as files, not as the workload)."""
    if location.layout == "plain":
        return edits[0].path
    return location.render_dir or f"{location.app or 'chart'} (Helm values)"


def _check_allowed(plan: Plan) -> None:
    """The policy's paths bound the workload fields, whichever file ends up holding them."""
    for change in plan.changes:
        if plan.allowed_paths and not any(fieldpaths.matches(change.path, g) for g in plan.allowed_paths):
            raise PermanentError(f"change not allowed for {plan.cause}: {change.path}", code="validation_failed")


def _apply_edits(repo: Workspace, edits: list[FileEdit], plan: Plan, *,
                 tag_files: bool) -> tuple[list[FileChange], list[str]]:
    """Edit each file with the round-trip editor and check every edited document; one FileChange per file."""
    originals: dict[str, str] = {}
    texts: dict[str, str] = {}
    checks: list[str] = []
    for edit in edits:
        old = texts.get(edit.path) or originals.setdefault(edit.path, repo.read_text(edit.path))
        new = yaml_rt.edit(old, document_index=edit.document_index, changes=[(c.path, c.new) for c in edit.changes],
                           prefix=edit.prefix)
        # The workload document itself is checked against the plan and the policy's paths; a patch, values
        # file or kustomization against exactly the translated changes (the render checks the workload).
        whole = not edit.prefix and edit.changes == plan.changes
        sub = plan if whole else Plan(cause=plan.cause, summary=plan.summary, changes=edit.changes)
        passed = validation.check(old, new, document_index=edit.document_index, prefix=edit.prefix, plan=sub)
        checks += [f"{edit.path}: {c}" if tag_files else c for c in passed]
        texts[edit.path] = new
    files = [FileChange(path=p, old_text=originals[p], new_text=t, diff=_unified_path(p, originals[p], t))
             for p, t in texts.items()]
    return files, checks


def _unified_path(path: str, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"a/{path}", tofile=f"b/{path}"))


def _versions(changeset: ChangeSet) -> dict[str, tuple[str | None, str | None]]:
    return {f.path: (f.old_text, f.new_text) for f in changeset.files}


def _belongs(pr: PullRequest, workload: WorkloadRef, cause: str) -> bool | None:
    """Whether a PR's ledger marker names this workload and cause; None when it has no marker to tell."""
    entry = ledger_mod.from_pr(pr)
    if entry is None or entry.workload.startswith("?/"):
        return None
    return (entry.workload, entry.cause) == (str(workload), cause)
