"""MlflowTracker (the exporter's RunSink) against a real MLflow sqlite store (module-scoped: the first migration
takes seconds)."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from mlflow import MlflowClient

from app.adapters.tracking import MlflowTracker, sanitize_key
from app.errors import PermanentError, TemporaryError
from app.models.runs import PendingRun, RunRecord


def pending(record: RunRecord | None = None, *, name: str = "r", status: str = "FINISHED",
            key: str = "") -> PendingRun:
    return PendingRun(key=key or uuid.uuid4().hex, name=name, status=status, record=record or RunRecord(),
                      created_at=1_764_590_400.0)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlflow.db'}", root / "artifacts"


def test_run_is_recorded_and_readable(store: tuple[str, Path]) -> None:
    uri, artifacts = store
    tracker = MlflowTracker(uri, ui_url="http://mlflow.example:5000/", artifact_root=artifacts)
    record = RunRecord(
        params={"cause": "oom", "diff": "x" * 7000},
        metrics={"risk score": 0.25, "latency(s)": 1.5},
        tags={"outcome": "pr_opened", "alertname": "KubePodCrashLooping"},
        artifacts={"changeset.json": '{"ok": true}', "pr/body.md": "# PR\n"},
    )
    run_record = pending(record, name="shop/checkout OOMKilled")
    handle = tracker.export(run_record)

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(handle.run_id)
    exp_id = run.info.experiment_id
    assert handle.url == f"http://mlflow.example:5000/#/experiments/{exp_id}/runs/{handle.run_id}"
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "shop/checkout OOMKilled"
    assert run.data.params["cause"] == "oom"
    assert len(run.data.params["diff"]) == 6000
    assert run.data.metrics == {"risk score": 0.25, "latency_s_": 1.5}
    assert run.data.tags["alertname"] == "KubePodCrashLooping"
    assert run.data.tags["outcome"] == "pr_opened"
    assert run.data.tags["autofix_record"] == run_record.key
    assert run.info.start_time == 1_764_590_400_000, "the run starts when the alert was handled, not when exported"
    # artifacts land under our artifact root, read back through the client
    exp = client.get_experiment(exp_id)
    assert exp.artifact_location == artifacts.resolve().as_uri()
    assert sorted(a.path for a in client.list_artifacts(handle.run_id)) == ["changeset.json", "pr"]
    local = Path(
        client.download_artifacts(handle.run_id, "pr/body.md", dst_path=str(artifacts.parent / "dl"))
    )
    assert local.read_text() == "# PR\n"


def test_second_tracker_reuses_experiment_and_failed_status(store: tuple[str, Path]) -> None:
    uri, artifacts = store
    first = MlflowTracker(uri, artifact_root=artifacts)
    second = MlflowTracker(uri, artifact_root=artifacts)
    assert first.experiment_id() == second.experiment_id() == first.experiment_id()
    handle = second.export(pending(name="failing", status="failed"))
    assert handle.url == f"{uri}/#/experiments/{first.experiment_id()}/runs/{handle.run_id}"
    assert MlflowClient(tracking_uri=uri).get_run(handle.run_id).info.status == "FAILED"


def test_an_export_repeated_after_a_crash_lands_in_the_same_run(store: tuple[str, Path]) -> None:
    uri, artifacts = store
    record = RunRecord(params={"detector": "oom"}, metrics={"risk": 0.3}, tags={"outcome": "pr_opened"},
                       artifacts={"patch.diff": "-a\n+b\n"})
    run = pending(record)
    first = MlflowTracker(uri, artifact_root=artifacts).export(run)
    again = MlflowTracker(uri, artifact_root=artifacts).export(run)  # the outbox was not told: sent again
    assert again.run_id == first.run_id
    client = MlflowClient(tracking_uri=uri)
    found = client.search_runs([client.get_run(first.run_id).info.experiment_id],
                               filter_string=f"tags.autofix_record = '{run.key}'")
    assert [r.info.run_id for r in found] == [first.run_id]
    assert [(m.value, m.timestamp) for m in client.get_metric_history(first.run_id, "risk")] == [
        (0.3, 1_764_590_400_000)], "one point, not one per attempt"


def test_mlflow_refusing_the_record_is_permanent(store: tuple[str, Path]) -> None:
    uri, artifacts = store
    tracker = MlflowTracker(uri, artifact_root=artifacts)
    key = uuid.uuid4().hex
    tracker.export(pending(RunRecord(params={"a": "b"}), key=key))
    with pytest.raises(PermanentError) as info:  # a param may not change its value: MLflow says 400
        tracker.export(pending(RunRecord(params={"a": "c"}), key=key))
    assert info.value.message.startswith("mlflow: log batch refused") and info.value.__cause__ is not None


def test_an_unreachable_server_is_temporary_and_fails_fast(tmp_path: Path) -> None:
    tracker = MlflowTracker("http://127.0.0.1:9", artifact_root=tmp_path)  # discard port: nothing listens
    with pytest.raises(TemporaryError) as info:
        tracker.export(pending())
    assert info.value.message.startswith("mlflow: get experiment failed")


@pytest.mark.parametrize(
    ("name", "clean"),
    [
        ("risk score", "risk score"),
        ("latency(s)", "latency_s_"),
        ("a/../b", "a/./b"),
        ("/abs", "abs"),
        ("", "_"),
    ],
)
def test_sanitize_key(name: str, clean: str) -> None:
    assert sanitize_key(name) == clean


def test_import_is_cheap() -> None:
    code = "import sys, app.adapters.tracking; sys.exit('mlflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
