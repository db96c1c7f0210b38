"""The run record: what one handling logged (params, metrics, tags, artifacts), on its way to MLflow.

Made by the pipeline (app/stages/record.py), kept in the job store's outbox with the job's result, sent to
MLflow by the exporter (app/exporter.py).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from app import redact


@dataclass
class RunRecord:
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # file name -> text


RECORD_REF = "autofix-record:"  # + key: where a run is named before MLflow has it (render.record_line)
CURVE_ARTIFACT = "metrics/curve.json"  # the curve a sizing read (Plan.curve); the exporter's sink draws it:
CURVE_PNG = "metrics/curve.png"  # the same chart as the PR's, as an image in the MLflow run


RUN_ATTRIBUTE = "autofix_run"  # the PendingRun an exception carries out of Pipeline.handle


def record_ref(key: str) -> str:
    return RECORD_REF + key


def amendment(*, amends: str, name: str, tags: dict[str, str], metrics: dict[str, float],
              created_at: float) -> PendingRun:
    """Tags and metrics for the exported run of record ``amends``; one per record and ``name``: its outbox key
    is derived from both, so the same amendment stored twice is sent once."""
    return PendingRun(key=f"{amends}.{name}", name=name, status="FINISHED", amends=amends, created_at=created_at,
                      record=RunRecord(tags=dict(tags), metrics=dict(metrics)))


def run_of(err: BaseException) -> PendingRun | None:
    """The run record a failed handling left on its exception (None for one raised outside the pipeline)."""
    run = getattr(err, RUN_ATTRIBUTE, None)
    return run if isinstance(run, PendingRun) else None


@dataclass(frozen=True, kw_only=True)
class PendingRun:
    """One handling's run record, made by the pipeline, kept in the job store's outbox until exported.

    ``key`` is ours (32 hex digits, made before the first stage): the PR body names it, the exported run
    carries it as the tag ``autofix_record``, so an export repeated after a crash finds its run again."""

    key: str
    name: str
    status: str  # FINISHED or FAILED
    record: RunRecord
    created_at: float  # Unix seconds: the metrics' timestamp, identical in every export attempt
    branch: str | None = None  # the PR's branch: the exporter puts the run's link into its body
    # An amendment (app/outcomes.py): the key of the run record it adds its tags and metrics to, later. It
    # creates no run of its own: its export waits until that run is in MLflow, then logs into it.
    amends: str | None = None

    def redacted(self) -> PendingRun:
        """The record as it may be stored and sent: every param, tag and artifact through the redactor (the
        evidence was redacted at the boundary; this pass covers what was rendered from it, diffs and model
        answers included, before the record is written to the outbox)."""
        clean = RunRecord(params={k: redact.text(str(v)) for k, v in self.record.params.items()},
                          metrics=dict(self.record.metrics),
                          tags={k: redact.text(str(v)) for k, v in self.record.tags.items()},
                          artifacts={k: redact.text(v) for k, v in self.record.artifacts.items()})
        return PendingRun(key=self.key, name=redact.text(self.name), status=self.status, record=clean,
                          created_at=self.created_at, branch=self.branch, amends=self.amends)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> PendingRun:
        data: dict[str, Any] = json.loads(text)
        return cls(**{**data, "record": RunRecord(**data["record"])})
