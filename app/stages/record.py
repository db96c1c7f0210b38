"""Record stage: the run record (MLflow params, metrics, tags, artifacts), built once from the stage outputs.

Pure: the same outputs give the same record. The outcome's workload, cause and model note come from the
same ``summary``, and the PR body recorded is the one published (publish.Proposal), so the MLflow run, the
job's result (/jobs, `autofix explain`) and the PR cannot disagree.

Metrics: what Prometheus was asked and said (``metrics/summary.json``: status, reason, the window, the queries
as sent, each series' pod, container, revision and extent; not when no Prometheus is configured), and the curve
a sizing read (``metrics/curve.json``, its statistics as ``curve_*`` metrics), which the exporter's sink also
draws as ``metrics/curve.png``. evidence.json keeps the series' labels but not their samples: thousands of
points per series would swell every record, and the queries and the anchored window read them again.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.models.incident import WorkloadRef
from app.models.metrics import Curve, Metrics
from app.models.outcome import Outcome, StageRecord
from app.models.runs import CURVE_ARTIFACT
from app.ports import RunRecord
from app.stages import Output, consult
from app.stages.change import Change, Edited, Located
from app.stages.diagnosis import Diagnosed
from app.stages.evidence import Gathered
from app.stages.explain import Explained
from app.stages.gating import Gated
from app.stages.history import History, Precedents
from app.stages.publish import Proposal
from app.stages.target import Target

MAX_TAG = 500
MAX_RENDER_TAG = 250
METRICS_SUMMARY = "metrics/summary.json"
CURVE_METRIC = re.compile(r"[a-z][a-z0-9_]{0,40}")  # a statistic's name as an MLflow metric key (curve_p95)
Consulted = consult.Consultation[Any]
Recorded = Output | Proposal  # what the record is built from: every stage's output, and the PR's texts


@dataclass(frozen=True, kw_only=True)
class Summary:
    workload: WorkloadRef | None  # None: the alert never led to a workload
    cause: str | None  # None: not diagnosed
    note: str | None  # the last word about the optional model, appended to the outcome's reason


@dataclass(frozen=True, kw_only=True)
class Failure:
    """A handling that raised instead of ending with an outcome: a retry, or an internal error."""

    outcome: str  # "retry" or "failed"
    reason: str


def summary(outputs: Sequence[Recorded]) -> Summary:
    workload = cause = note = None
    for out in outputs:
        if isinstance(out, Target):
            workload = out.workload
        if isinstance(out, Diagnosed) and out.diagnosis is not None:
            cause = str(out.diagnosis.cause)
        for asked in _consultations(out):
            note = asked.note
    return Summary(workload=workload, cause=cause, note=note)


def build(*, outputs: Sequence[Recorded], stages: Sequence[StageRecord], outcome: Outcome | None,
          failure: Failure | None = None, policy_version: str) -> RunRecord:
    record = RunRecord()
    for stage in stages:
        record.metrics[f"seconds_{stage.stage}"] = stage.seconds
    for out in outputs:
        _add(record, out)
    record.params.setdefault("policy_version", policy_version)
    record.params.setdefault("model", "none")
    facts = summary(outputs)
    if facts.workload is not None:
        record.tags.update({"namespace": facts.workload.namespace, "workload": facts.workload.name,
                            "kind": facts.workload.kind})
    if facts.cause:
        record.tags["cause"] = facts.cause
    if outcome is not None:
        record.tags.update({"outcome": outcome.outcome, "reason": outcome.reason[:MAX_TAG]})
        if outcome.pr_url:
            record.tags["pr_url"] = outcome.pr_url
        record.artifacts["outcome.json"] = json.dumps(outcome.model_dump(mode="json"), indent=2)
    if failure is not None:
        record.tags.update({"outcome": failure.outcome, "reason": failure.reason[:MAX_TAG]})
    return record


def _add(record: RunRecord, out: Recorded) -> None:
    """What one stage's output adds to the record."""
    for asked in _consultations(out):
        _consulted(record, asked)
    if isinstance(out, Gathered):
        metrics = out.evidence.metrics
        samples = {"metrics": {"series": {"__all__": {"points"}}}} if metrics is not None else None
        record.artifacts["evidence.json"] = out.evidence.model_dump_json(indent=2, exclude=samples)
        if metrics is not None and metrics.status != "not_configured":
            record.artifacts[METRICS_SUMMARY] = json.dumps(_metrics_summary(metrics), indent=2)
    elif isinstance(out, Diagnosed) and out.diagnosis is not None:
        record.params["detector"] = out.diagnosis.detector
        record.artifacts["diagnosis.json"] = out.diagnosis.model_dump_json(indent=2)
    elif isinstance(out, History):
        record.tags["ledger"] = out.action
    elif isinstance(out, Precedents):
        record.tags["history"] = out.action
    elif isinstance(out, Located):
        record.metrics.update(out.index_metrics)
        record.tags["manifest"] = out.location.path
    elif isinstance(out, Edited):
        record.tags["manifest"] = out.edits[0].path
        record.tags["render"] = out.rendered[:MAX_RENDER_TAG]
        record.metrics["validation_passed"] = 1.0
    elif isinstance(out, Change):
        _change(record, out)
    elif isinstance(out, Gated):
        record.tags["gate"] = "passed" if out.passed else "refused"
        record.artifacts["gates.txt"] = "\n".join(out.lines) + "\n"
    elif isinstance(out, Proposal):
        record.artifacts["pr_body.md"] = out.body


def _change(record: RunRecord, out: Change) -> None:
    """The risk and its factors; the diff and each edited file as it will be pushed."""
    changeset = out.changeset
    record.metrics["risk"] = changeset.risk.score
    for factor in changeset.risk.factors:
        record.metrics[f"risk_{factor.name}"] = factor.value
    record.artifacts["patch.diff"] = changeset.diff
    for f in changeset.files:
        record.artifacts["manifest/" + f.path.rsplit("/", 1)[-1]] = f.new_text
    curve = changeset.plan.curve
    if curve is not None:
        curve = _finite(curve)
        record.artifacts[CURVE_ARTIFACT] = curve.model_dump_json(indent=2)
        record.metrics.update({f"curve_{k}": v for k, v in curve.stats.items() if CURVE_METRIC.fullmatch(k)})


def _finite(curve: Curve) -> Curve:
    """The curve as JSON can carry it (an infinity or NaN would come back as null, and the chart would not be
    drawn at export): non-finite samples and statistics left out."""
    def ok(value: float | None) -> bool:
        return value is not None and math.isfinite(value)

    return curve.model_copy(update={
        "points": [(t, v) for t, v in curve.points if ok(t) and ok(v)],
        "stats": {k: float(v) for k, v in curve.stats.items() if ok(v)},
        "threshold": curve.threshold if ok(curve.threshold) else None,
        "proposed": curve.proposed if ok(curve.proposed) else None,
        "end": curve.end if ok(curve.end) else None})


def _metrics_summary(metrics: Metrics) -> dict[str, Any]:
    """What was asked and what came back, without the samples."""
    return {"status": metrics.status, "reason": metrics.reason, "source": metrics.source,
            "window": {"start": metrics.start, "end": metrics.end},
            "queries": [q.model_dump(mode="json") for q in metrics.queries],
            "series": [{"name": s.name, "pod": s.pod, "container": s.container, "revision": s.revision,
                        "image": s.image, "samples": len(s.points),
                        "first": s.points[0][0] if s.points else None, "last": s.points[-1][0] if s.points else None}
                       for s in metrics.series]}


def _consultations(out: Recorded) -> list[Consulted]:
    if isinstance(out, (Diagnosed, Explained)) and out.consultation is not None:
        return [out.consultation]
    return []


def _consulted(record: RunRecord, asked: Consulted) -> None:
    """The prompt, the answer (or why none), tokens in/out and latency, summed over the run's calls."""
    record.params["model"] = asked.model
    record.artifacts[f"llm/{asked.purpose}_prompt.md"] = asked.prompt
    if asked.usage is not None:
        record.params["llm_model"] = asked.usage.model
        for key, value in (("llm_tokens_in", asked.usage.tokens_in), ("llm_tokens_out", asked.usage.tokens_out),
                           ("llm_seconds", asked.usage.seconds)):
            record.metrics[key] = record.metrics.get(key, 0.0) + float(value)
    record.tags["llm_outcome"] = asked.outcome
    if asked.answer_json is not None:
        record.artifacts[f"llm/{asked.purpose}_answer.json"] = asked.answer_json
