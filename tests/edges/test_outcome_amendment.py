"""An outcome reaches the original MLflow run as an amendment through the outbox (real sqlite MLflow, real job
store, the real exporter): it waits while the run is not in MLflow, lands once, and adds tags and metrics only."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from app.adapters.store import JobStore
from app.adapters.tracking import MlflowTracker
from app.exporter import Exporter
from app.models.runs import PendingRun, RunRecord, amendment

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def test_an_amendment_waits_for_its_run_then_adds_tags_and_metrics_once(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    store = JobStore(tmp_path / "jobs.sqlite3")
    exporter = Exporter(store, sink=lambda: MlflowTracker(uri, artifact_root=tmp_path / "artifacts"), forge=None)
    key = uuid.uuid4().hex
    original = PendingRun(key=key, name="shop/checkout OOMKilled", status="FINISHED", created_at=1_764_590_400.0,
                          record=RunRecord(params={"cause": "oom_killed"}, tags={"outcome": "pr_opened"},
                                           metrics={"risk.score": 0.3}))
    outcome = amendment(amends=key, name="outcome", created_at=1_764_680_400.0,
                        tags={"outcome.final": "effective", "outcome.merged_by": "alice"},
                        metrics={"time_to_merge_s": 3600.0, "time_to_sync_s": 95.0})

    store.add_run(outcome)  # the run itself is not in MLflow yet: the amendment waits for it
    first = exporter.once(due_only=False)
    assert (first.exported, first.failed) == (0, 1)
    waiting = store.export_of(outcome.key)
    assert waiting is not None and waiting.state == "pending" and "no run tagged" in (waiting.error or "")

    store.add_run(original)
    store.add_run(outcome)  # stored twice (a second pass decided it again): one row, one export
    exporter.once(due_only=False)
    exporter.once(due_only=False)
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("gitops-autofix").experiment_id])
    assert len(runs) == 1, "the amendment made no run of its own"
    run = runs[0]
    assert run.data.tags["autofix_record"] == key and run.data.tags["outcome"] == "pr_opened"
    assert (run.data.tags["outcome.final"], run.data.tags["outcome.merged_by"]) == ("effective", "alice")
    assert run.data.metrics == {"risk.score": 0.3, "time_to_merge_s": 3600.0, "time_to_sync_s": 95.0}
    assert run.data.params == {"cause": "oom_killed"}
    done = store.export_of(outcome.key)
    assert done is not None and done.state == "done" and done.run_id == run.info.run_id

    MlflowTracker(uri).export(outcome)  # an export repeated after a crash: same values, same timestamp
    assert len(client.get_metric_history(run.info.run_id, "time_to_merge_s")) == 1
    store.close()
