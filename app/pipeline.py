"""THE flow: one alert in, one Outcome out, every stage timed and recorded, read top to bottom.

This is the one place that turns exceptions into outcomes: NoFix -> no_fix, PermanentError -> failed,
TemporaryError -> re-raised for the worker to retry (the run is recorded as such).
"""

from __future__ import annotations

import difflib
import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from app import detectors, fixers, render, risk, sources, targets, validation
from app import evidence as evidence_stage
from app.errors import NoFix, PermanentError, TemporaryError
from app.models.changes import ChangeSet, FileChange, Location
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.models.outcome import Outcome, OutcomeKind, StageRecord
from app.policies import Policy
from app.ports import ClusterReader, Forge, RunHandle, RunRecord, Tracker, Workspace
from app.sources import RepoIdentity, yaml_rt
from app.sources.repo_urls import RepoIdentity as GitRepoIdentity

log = logging.getLogger(__name__)

_branch_locks: dict[str, threading.Lock] = {}
_branch_locks_guard = threading.Lock()


def _lock_for(branch: str) -> threading.Lock:
    """Two workers on alerts for one workload and cause must not race to open two PRs."""
    with _branch_locks_guard:
        return _branch_locks.setdefault(branch, threading.Lock())


@dataclass
class _Run:
    """What one handling accumulates: stage log and the record for MLflow."""

    incident: Incident
    stages: list[StageRecord] = field(default_factory=list)
    record: RunRecord = field(default_factory=RunRecord)
    workload: WorkloadRef | None = None
    cause: str | None = None

    @contextmanager
    def stage(self, name: str) -> Iterator[list[str]]:
        decision: list[str] = []
        start = time.perf_counter()
        try:
            yield decision
        finally:
            seconds = time.perf_counter() - start
            self.record.metrics[f"seconds_{name}"] = round(seconds, 6)
            self.stages.append(StageRecord(stage=name, seconds=round(seconds, 6),
                                           decision=decision[0] if decision else "error"))

    def outcome(self, kind: OutcomeKind, reason: str, **extra: Any) -> Outcome:
        return Outcome(alertname=self.incident.alertname, fingerprint=self.incident.fingerprint, outcome=kind,
                       reason=reason, stages=list(self.stages), cause=self.cause,
                       workload=str(self.workload) if self.workload else None, **extra)


class Pipeline:
    def __init__(self, *, policy: Policy, cluster: ClusterReader, workspace: Workspace, forge: Forge,
                 tracker: Tracker, identity: RepoIdentity, base: str) -> None:
        self.policy = policy
        self.cluster = cluster
        self.workspace = workspace
        self.forge = forge
        self.tracker = tracker
        self.identity = identity
        self.base = base

    def handle(self, incident: Incident) -> Outcome:
        run = _Run(incident=incident)
        handle = self.tracker.start_run(name=f"{incident.alertname} {incident.fingerprint}",
                                        tags={"alertname": incident.alertname, "fingerprint": incident.fingerprint})
        status = "FINISHED"
        try:
            outcome = self._flow(incident, run, handle)
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
        with run.stage("intake") as decision:
            if incident.status == "resolved":
                decision.append("resolved alert: nothing to fix")
                return run.outcome("skipped", "alert resolved")
            if incident.namespace and not self.policy.namespace_allowed(incident.namespace):
                decision.append(f"namespace {incident.namespace} denied by policy")
                return run.outcome("skipped", f"namespace {incident.namespace} is denied by policy")
            decision.append("firing alert accepted")
        with run.stage("target") as decision:
            workload = targets.resolve(self.cluster, incident)
            run.workload = workload
            decision.append(f"workload {workload}")
            if workload.kind not in self.policy.kinds:
                return run.outcome("skipped", f"kind {workload.kind} is not allowed by policy")
        with run.stage("evidence") as decision:
            ev = evidence_stage.gather(self.cluster, workload, incident)
            decision.append(f"{len(ev.pods)} pod(s), {len(ev.events)} event(s), {len(ev.logs)} log(s)")
            run.record.artifacts["evidence.json"] = ev.model_dump_json(indent=2)
        with run.stage("diagnosis") as decision:
            diagnosis = self._diagnose(ev)
            run.cause = diagnosis.cause
            decision.append(f"{diagnosis.detector}: {diagnosis.cause}"
                            + ("" if diagnosis.fixable else " (no fix)"))
            run.record.params["detector"] = diagnosis.detector
            run.record.artifacts["diagnosis.json"] = diagnosis.model_dump_json(indent=2)
            if not diagnosis.fixable:
                raise NoFix(f"{diagnosis.finding.root_cause} No fix: {diagnosis.no_fix_reason}", code="no_fix")
        changeset = self._change(ev, diagnosis, run)
        return self._publish(workload, diagnosis, changeset, run, handle)

    def _diagnose(self, ev: Evidence) -> Diagnosis:
        found = detectors.diagnose(ev)
        if not found:
            raise NoFix(f"no detector recognised the failure of {ev.workload}: see the evidence in MLflow",
                        code="unknown_cause")
        first = found[0]
        return first.model_copy(update={"others": [d.finding for d in found[1:]]})

    def _change(self, ev: Evidence, diagnosis: Diagnosis, run: _Run) -> ChangeSet:
        with run.stage("source") as decision:
            base_commit = self.workspace.sync()
            location = sources.locate(ev, self.workspace, self.identity)
            decision.append(f"{location.path}#{location.document_index} via {location.source} at {base_commit[:12]}")
            run.record.tags["manifest"] = location.path
        with run.stage("plan") as decision:
            text = self.workspace.read_text(location.path)
            document = yaml_rt.documents(text)[location.document_index]
            _check_opt_out(document, diagnosis.cause)
            plan = fixers.plan(diagnosis, document, self.policy)
            decision.append(plan.summary)
        with run.stage("validate") as decision:
            new_text = yaml_rt.edit(text, document_index=location.document_index,
                                    changes=[(c.path, c.new) for c in plan.changes], prefix=location.prefix)
            checks = validation.check(text, new_text, document_index=location.document_index,
                                      prefix=location.prefix, plan=plan)
            decision.append(f"{len(checks)} check(s) passed")
            run.record.metrics["validation_passed"] = 1.0
        with run.stage("risk") as decision:
            assessed = risk.assess(workload=document, namespace=ev.workload.namespace, plan=plan, policy=self.policy)
            decision.append(f"{assessed.level} ({assessed.score:.2f})")
            run.record.metrics["risk"] = assessed.score
            for factor in assessed.factors:
                run.record.metrics[f"risk_{factor.name}"] = factor.value
        change = FileChange(path=location.path, old_text=text, new_text=new_text,
                            diff=_unified(location, text, new_text))
        run.record.artifacts["patch.diff"] = change.diff
        run.record.artifacts["manifest/" + location.path.rsplit("/", 1)[-1]] = new_text
        return ChangeSet(location=location, plan=plan, files=[change], risk=assessed, validation=checks)

    def _publish(self, workload: WorkloadRef, diagnosis: Diagnosis, changeset: ChangeSet, run: _Run,
                 handle: RunHandle) -> Outcome:
        branch = render.branch(workload, diagnosis.cause)
        title = render.title(workload, diagnosis, changeset)
        body = render.pr_body(workload=workload, diagnosis=diagnosis, changeset=changeset, run_url=handle.url,
                              alert=run.incident.alertname)
        labels = [*self.policy.labels, f"risk:{changeset.risk.level}"]
        run.record.artifacts["pr_body.md"] = body
        common = {"branch": branch, "risk": changeset.risk.score}
        with _lock_for(branch), run.stage("publish") as decision:
            existing = self.forge.find_open_pr(branch)
            if existing is not None:
                remote = self.workspace.remote_branch_diff(branch)
                if remote is not None and _changed_lines(remote) == _changed_lines(changeset.diff):
                    decision.append(f"PR #{existing.number} already proposes this change")
                    return run.outcome("duplicate", f"PR #{existing.number} already proposes this change",
                                       pr_url=existing.url, **common)
            self.workspace.push_branch(branch, {f.path: f.new_text for f in changeset.files},
                                       message=render.commit_message(workload, diagnosis, changeset))
            if existing is not None:
                pr = self.forge.update_pr(existing, title=title, body=body,
                                          comment=f"Updated by GitOps Autofix with new evidence: {changeset.plan.summary}. "
                                                  f"Run: {handle.url}")
                decision.append(f"PR #{pr.number} updated")
                return run.outcome("pr_updated", f"updated PR #{pr.number}", pr_url=pr.url, **common)
            pr = self.forge.open_pr(branch=branch, base=self.base, title=title, body=body, labels=labels)
            decision.append(f"PR #{pr.number} opened")
        return run.outcome("pr_opened", title, pr_url=pr.url, **common)

    def _finish(self, handle: RunHandle, run: _Run, outcome: Outcome | None, *, status: str) -> None:
        record = run.record
        record.params.setdefault("policy_version", self.policy.digest or "builtin")
        record.params.setdefault("model", "none")
        if run.workload is not None:
            record.tags.update({"namespace": run.workload.namespace, "workload": run.workload.name,
                                "kind": run.workload.kind})
        if run.cause:
            record.tags["cause"] = run.cause
        if outcome is not None:
            record.tags.update({"outcome": outcome.outcome, "reason": outcome.reason[:500]})
            if outcome.pr_url:
                record.tags["pr_url"] = outcome.pr_url
            record.artifacts["outcome.json"] = json.dumps(outcome.model_dump(mode="json"), indent=2)
        self.tracker.finish_run(handle, record, status=status)


def _check_opt_out(document: Any, cause: str) -> None:
    """The team's own "no", written on the manifest in git, wins over any rule."""
    annotations = ((document or {}).get("metadata") or {}).get("annotations") or {}
    if str(annotations.get("autofix.io/ignore", "")).lower() == "true":
        raise NoFix("the manifest in git opts out of GitOps Autofix (autofix.io/ignore: \"true\")", code="opted_out")
    skipped = {c.strip() for c in str(annotations.get("autofix.io/ignore-causes", "")).split(",")}
    if cause in skipped:
        raise NoFix(f"the manifest in git opts out of fixes for {cause}", code="opted_out")


def _unified(location: Location, old: str, new: str) -> str:
    return "".join(difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True),
                                        fromfile=f"a/{location.path}", tofile=f"b/{location.path}"))


def _changed_lines(diff: str) -> list[str]:
    return [line.rstrip("\r\n") for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def build_pipeline(settings: Any, *, cluster: ClusterReader | None = None) -> Pipeline:
    """Wire the real adapters from Settings. Heavy libraries are imported here, not at module import."""
    from app import policies
    from app.adapters.tracking import MlflowTracker
    from app.adapters.workspace import GitWorkspace
    from app.errors import ConfigError

    if not settings.git_url:
        raise ConfigError("AUTOFIX_GIT_URL: required (clone URL of the GitOps repo)")
    policy = policies.load(settings.policy_dir)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    forge, auth_header = _build_forge(settings)
    if cluster is None:
        from app.adapters.cluster import KubeCluster

        cluster = KubeCluster.from_config(settings.kubeconfig)
    workspace = GitWorkspace(settings.git_url, base=settings.git_base, checkout=settings.data_dir / "repo",
                             author=settings.git_author, auth_header=auth_header)
    tracker = MlflowTracker(settings.tracking_uri, ui_url=settings.mlflow_ui_url,
                            artifact_root=(settings.data_dir / "mlartifacts").resolve())
    return Pipeline(policy=policy, cluster=cluster, workspace=workspace, forge=forge, tracker=tracker,
                    identity=GitRepoIdentity(git_url=settings.git_url, github_repo=settings.github_repo),
                    base=settings.git_base)


def _build_forge(settings: Any) -> tuple[Forge, Any]:
    from app.errors import ConfigError

    if settings.forge == "local":
        from app.forges.local import LocalForge

        return LocalForge(settings.data_dir / "prs"), None
    if not settings.github_repo or settings.github_token is None:
        raise ConfigError("AUTOFIX_GITHUB_REPO and GITHUB_TOKEN: required with the github forge "
                          "(or set AUTOFIX_FORGE=local for a dry run)")
    from app.forges.github import GitHubForge

    forge = GitHubForge(settings.github_repo, api_url=settings.github_api_url,
                        token=settings.github_token.get_secret_value())
    return forge, forge.auth_header
