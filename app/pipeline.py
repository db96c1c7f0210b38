"""THE flow: one alert in, one Outcome out; the stages in order, read top to bottom (app/stages/).

Each stage is entered by name (the job budget names the stage a job ran out of time in), timed, and hands
its frozen output on as a return value. This is the one place where the handling ends: a stage's ``stop``
(skipped, no_fix) or the publish stage's result becomes the Outcome; NoFix -> no_fix, PermanentError ->
failed, TemporaryError -> re-raised for the worker to retry. Whatever happened, the run record is built once
from the stage outputs (app/stages/record.py) and travels with the result: on the Outcome (``run``), or on the
exception (``RUN_ATTRIBUTE``), so the worker writes it into the job store's outbox in the same transaction as
the job's end. Nothing here waits for MLflow: the exporter (app/exporter.py) sends the record later.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import TypeVar

from app import deadlines, risk
from app.errors import AutofixError, NoFix, PermanentError, TemporaryError
from app.models.incident import Incident
from app.models.outcome import Outcome, StageRecord
from app.models.runs import RUN_ATTRIBUTE, PendingRun, record_ref
from app.policies import Policy
from app.ports import Advisor, ClusterReader, Forge, Ledger, MetricsReader, Workspace
from app.repos import DEFAULT, RepoLedger, RepoSet, Repository, repos_of
from app.sources import RepoIdentity
from app.sources.layouts import Layouts
from app.stages import (
    End,
    Output,
    change,
    declared,
    diagnosis,
    evidence,
    explain,
    gating,
    history,
    intake,
    publish,
    record,
    repository,
    revision,
    stopped,
    target,
)

log = logging.getLogger(__name__)
StageOut = TypeVar("StageOut", bound=Output)
# Told each stage's name and seconds as it ends (failed or not): the service's stage-duration histogram
# (app/api/telemetry.py), so this module stays free of Prometheus. Set ``Pipeline.on_stage`` to one.
StageObserver = Callable[[str, float], None]


class Pipeline:
    def __init__(self, *, policy: Policy, cluster: ClusterReader, workspace: Workspace | None = None,
                 forge: Forge | None = None, identity: RepoIdentity | None = None, base: str = "main",
                 repos: RepoSet | None = None, ledger: Ledger, advisor: Advisor | None = None,
                 layouts: Layouts, own_namespace: str | None = None, metrics: MetricsReader | None = None,
                 clock: Callable[[], float] = time.time, new_key: Callable[[], str] = lambda: uuid.uuid4().hex) -> None:
        """One repository (``workspace``, ``forge``, ``identity``, ``base``), or ``repos``: several, one picked per
        alert from the URLs its Argo CD or Flux objects read (app/repos.py, repositories.yaml)."""
        self.policy = policy
        self.layouts = layouts
        self.advisor = advisor
        self.cluster = cluster
        # The clusters.yaml name of the cluster this pipeline reads (app/wiring._reading); None with one cluster.
        self.cluster_name: str | None = None
        if repos is None:
            assert workspace is not None and forge is not None and identity is not None, "one repository, or repos"
            repos = RepoSet.single(Repository(name=DEFAULT, workspace=workspace, forge=forge, identity=identity,
                                              base=base))
        self.repos = repos
        self.new_key = new_key
        self.ledger = ledger
        self.own_namespace = own_namespace
        self.metrics = metrics  # None: AUTOFIX_PROMETHEUS_URL unset, sized without metrics (and the PR says so)
        self.clock = clock
        self.on_stage: StageObserver | None = None

    # The default repository (AUTOFIX_GIT_URL's, else repositories.yaml's first): the dashboard's board, and
    # what a caller that knows one repository (doctor, the demo, tests) reads.
    @property
    def workspace(self) -> Workspace:
        return self.repos.get(self.repos.default.name).workspace

    @property
    def forge(self) -> Forge:
        return self.repos.get(self.repos.default.name).forge

    @property
    def identity(self) -> RepoIdentity:
        return self.repos.default.identity

    @property
    def base(self) -> str:
        return self.repos.default.base

    def ledger_of(self, name: str) -> Ledger:
        """The rows of one repository (``repo=<name>``) with repositories.yaml; the whole ledger without it."""
        return RepoLedger(self.ledger, name) if self.repos.from_file else self.ledger

    def handle(self, incident: Incident) -> Outcome:
        return self._handle(incident, lambda steps, run_url: self._flow(incident, steps, run_url=run_url))

    def stop(self, incident: Incident, end: End, *, stage: str = "intake") -> Outcome:
        """An alert ended before this pipeline reads anything (a router over clusters skips one no cluster is
        configured for), as a stage's ``stop`` ends one: the same Outcome, record key and run record."""
        return self._handle(incident, lambda steps, _: steps.run(stage, lambda: Output(decision=end.reason,
                                                                                      stop=end)).stop or end)

    def _handle(self, incident: Incident, flow: Callable[[_Steps, str], End]) -> Outcome:
        key = self.new_key()
        started = self.clock()
        steps = _Steps(self.on_stage)
        try:
            end = flow(steps, record_ref(key))
        except _Stopped as stop:
            end = stop.end
        except NoFix as err:
            end = End(kind="no_fix", reason=err.message, code=err.code)
        except TemporaryError as err:
            setattr(err, RUN_ATTRIBUTE, self._run(incident, key, started, steps,
                                                  failure=record.Failure(outcome="retry", reason=err.message)))
            raise
        except PermanentError as err:
            end = End(kind="failed", reason=err.message, code=err.code)
        except Exception as err:
            failure = record.Failure(outcome="failed", reason=f"internal error: {type(err).__name__}")
            setattr(err, RUN_ATTRIBUTE, self._run(incident, key, started, steps, failure=failure))
            raise
        outcome = self._outcome(incident, steps, end, key=key)
        linked = end.branch if end.kind in ("pr_opened", "pr_updated") else None  # the body names this record
        run = self._run(incident, key, started, steps, outcome=outcome, branch=linked)
        log.info("alert handled", extra={"fingerprint": incident.fingerprint, "outcome": outcome.outcome})
        return outcome.model_copy(update={"run": run})

    def _flow(self, incident: Incident, steps: _Steps, *, run_url: str) -> End:
        """The stages in order. A stage whose output says ``stop`` ends the handling there (``_Steps.run``)."""
        if incident.status == "resolved":
            return steps.run("intake", lambda: self._resolved(incident)).end
        steps.run("intake", lambda: intake.accept(incident=incident, policy=self.policy,
                                                  own_namespace=self.own_namespace))
        targeted = steps.run("target", lambda: target.resolve(
            cluster=self.cluster, incident=incident, policy=self.policy, own_namespace=self.own_namespace))
        ev = steps.run("evidence", lambda: evidence.collect(cluster=self.cluster, workload=targeted.workload,
                                                            incident=incident, metrics=self.metrics,
                                                            policy=self.policy)).evidence
        found = steps.run("diagnosis", lambda: diagnosis.diagnose(evidence=ev, policy=self.policy,
                                                                  advisor=self.advisor)).diagnosis
        assert found is not None, "a failure nothing recognised ends the handling (diagnosis.Diagnosed.stop)"
        diagnosed = found  # not Optional: the revision stage below may replace it
        name = self.repos.default.name  # several repositories: the one the workload's Argo CD / Flux objects read
        if self.repos.from_file:
            name = steps.run("repository", lambda: repository.choose(repos=self.repos, evidence=ev)).name
        repo, ledger = self.repos.get(name), self.ledger_of(name)
        # What became of earlier PRs needs only the evidence and the cause: before any change is built.
        baseline = steps.run("ledger", lambda: history.judge(
            evidence=ev, diagnosis=diagnosed, incident=incident, forge=repo.forge, ledger=ledger,
            policy=self.policy, clock=self.clock, run_url=run_url, cluster=self.cluster_name)).baseline
        # The fix may belong in another object's manifest (a standalone claim the pods wait for): read it too.
        at, subject = ev, diagnosed.subject
        if subject is not None:
            at = steps.run("subject", lambda: evidence.subject(cluster=self.cluster, evidence=ev, ref=subject,
                                                               policy=self.policy)).evidence
        located = steps.run("source", lambda: change.locate(evidence=at, workspace=repo.workspace,
                                                            identity=repo.identity))
        if revision.wanted(diagnosed):  # a rollback the cluster cannot prove: git's history of the field may
            diagnosed = steps.run("revision", lambda: revision.prove(
                located=located, evidence=ev, diagnosis=diagnosed, workspace=repo.workspace,
                layouts=self.layouts)).diagnosis
        if declared.wanted(diagnosed):  # probes answering 404, the served path unknown: one git declares may be
            diagnosed = steps.run("declared", lambda: declared.find(
                located=located, evidence=ev, diagnosis=diagnosed, workspace=repo.workspace)).diagnosis
        planned = steps.run("plan", lambda: change.plan(located=located, evidence=at, diagnosis=diagnosed,
                                                        workspace=repo.workspace, policy=self.policy,
                                                        layouts=self.layouts))
        edited = steps.run("validate", lambda: change.edit(located=located, planned=planned, evidence=at,
                                                           workspace=repo.workspace, layouts=self.layouts))
        # An earlier raise of the same field by anyone (a commit, another bot's PR): known once the edit is.
        steps.run("history", lambda: history.precedents(
            evidence=ev, diagnosis=diagnosed, incident=incident, edits=edited.edits, workspace=repo.workspace,
            forge=repo.forge, ledger=ledger, policy=self.policy, clock=self.clock, run_url=run_url))
        # With the track record of this cause's earlier fixes (a warm or cold decision): the ledger's rows as they are.
        changeset = steps.run("risk", lambda: change.assess(
            planned=planned, edited=edited, evidence=at, policy=self.policy,
            namespace_labels=targeted.namespace_labels, namespace_annotations=targeted.namespace_annotations,
            track=risk.track_record(self.ledger.entries(), cause=diagnosed.cause, workload=str(ev.workload)))).changeset
        steps.run("gates", lambda: gating.check(evidence=at, diagnosis=diagnosed, changeset=changeset,
                                                policy=self.policy, baseline=baseline))
        advisor, narrative = self.advisor, None
        if advisor is not None and explain.wanted(advisor=advisor, diagnosis=diagnosed, policy=self.policy):
            narrative = steps.run("explain", lambda: explain.explain(evidence=ev, diagnosis=diagnosed,
                                                                     advisor=advisor)).narrative
        proposal = steps.keep(publish.compose(
            incident=incident, evidence=ev, diagnosis=diagnosed, changeset=changeset, explanation=narrative,
            model=advisor.model if advisor is not None else None, policy=self.policy, run_url=run_url,
            now=self.clock(), cluster=self.cluster_name))
        return steps.run("publish", lambda: publish.publish(
            proposal=proposal, workload=ev.workload, cause=diagnosed.cause, changeset=changeset,
            workspace=repo.workspace, forge=repo.forge, ledger=ledger, policy=self.policy, base=repo.base,
            clock=self.clock, run_url=run_url)).end

    def _resolved(self, incident: Incident) -> history.Resolved:
        """A resolved alert, answered on its PRs: in each repository whose rows carry its fingerprint (and each
        whose rows are lost: rebuilt from its forge first). One repository: today's single answer."""
        if not self.repos.from_file:
            return history.resolved(incident=incident, forge=self.forge, ledger=self.ledger, policy=self.policy,
                                    clock=self.clock)
        rows = [r for r in self.ledger.entries() if r.fingerprint == incident.fingerprint]
        names = [n for n in self.repos.names if n in set(repos_of(rows)) or self.ledger_of(n).is_empty()]
        answers = [history.resolved(incident=incident, forge=self.repos.get(n).forge, ledger=self.ledger_of(n),
                                    policy=self.policy, clock=self.clock) for n in names]
        done = [a for a in answers if a.end.kind != "skipped"]
        if not done:
            return answers[0] if answers else history.Resolved(
                decision="resolved alert: no open PR of ours to update", end=End(kind="skipped", reason="alert resolved"))
        if len(done) == 1:
            return done[0]
        return history.Resolved(decision="; ".join(a.decision for a in done)[:500],
                                end=End(kind=done[0].end.kind, reason="; ".join(a.end.reason for a in done)))

    def _outcome(self, incident: Incident, steps: _Steps, end: End, *, key: str) -> Outcome:
        facts = record.summary(steps.outputs)  # once a model was consulted, every outcome's reason says so
        return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome=end.kind,
                       reason=end.reason + (f" ({facts.note})" if facts.note else ""), code=end.code,
                       pr_url=end.pr_url,
                       branch=end.branch, risk=end.risk, record_id=key, stages=list(steps.records),
                       cause=facts.cause, workload=str(facts.workload) if facts.workload else None)

    def _run(self, incident: Incident, key: str, started: float, steps: _Steps, *, outcome: Outcome | None = None,
             failure: record.Failure | None = None, branch: str | None = None) -> PendingRun:
        built = record.build(outputs=steps.outputs, stages=steps.records, outcome=outcome, failure=failure,
                             policy_version=self.policy.digest or "builtin")
        built.tags.update({"alertname": incident.alertname, "fingerprint": incident.fingerprint,
                           "autofix_record": key})
        ok = outcome is not None and outcome.outcome != "failed"
        return PendingRun(key=key, name=f"{incident.alertname} {incident.fingerprint}",
                          status="FINISHED" if ok else "FAILED", record=built, created_at=started,
                          branch=branch).redacted()


class _Stopped(Exception):
    """A stage's output ended the handling (its ``stop``): handle() turns it into the Outcome."""

    def __init__(self, end: End) -> None:
        super().__init__(end.reason)
        self.end = end


class _Steps:
    """The pipeline's own log of one handling: each stage's record (name, seconds, decision) and every
    output, in order. Stages never see it; the Outcome's stages and the run record are built from it."""

    def __init__(self, observer: StageObserver | None = None) -> None:
        self.records: list[StageRecord] = []
        self.outputs: list[record.Recorded] = []
        self._observer = observer

    def run(self, name: str, stage: Callable[[], StageOut]) -> StageOut:
        deadlines.enter(name)  # the worker and /readyz name the stage a job ran out of time in
        start = time.perf_counter()
        try:
            output = stage()
        except BaseException as err:  # its decision is why it stopped (`autofix explain`, /jobs)
            self._log(name, start, stopped(err.message) if isinstance(err, AutofixError) else "error")
            raise
        self._log(name, start, output.decision)
        self.outputs.append(output)
        if output.stop is not None:
            raise _Stopped(output.stop)
        return output

    def keep(self, proposal: publish.Proposal) -> publish.Proposal:
        """What is made between two stages (the PR's texts, before the forge is called): recorded too."""
        self.outputs.append(proposal)
        return proposal

    def _log(self, name: str, start: float, decision: str) -> None:
        seconds = time.perf_counter() - start
        self.records.append(StageRecord(stage=name, seconds=round(seconds, 6), decision=decision))
        if self._observer is not None:
            self._observer(name, seconds)
