"""MlflowTracker against a real MLflow sqlite store (module-scoped: the first migration takes seconds)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from app.adapters.tracking import MlflowTracker, sanitize_key
from app.errors import TemporaryError
from app.ports import RunRecord


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{root / 'mlflow.db'}", root / "artifacts"


def test_run_is_recorded_and_readable(store: tuple[str, Path]) -> None:
    uri, artifacts = store
    tracker = MlflowTracker(uri, ui_url="http://mlflow.example:5000/", artifact_root=artifacts)
    handle = tracker.start_run(name="shop/checkout OOMKilled", tags={"alertname": "KubePodCrashLooping"})
    record = RunRecord(
        params={"cause": "oom", "diff": "x" * 7000},
        metrics={"risk score": 0.25, "latency(s)": 1.5},
        tags={"outcome": "pr_opened"},
        artifacts={"changeset.json": '{"ok": true}', "pr/body.md": "# PR\n"},
    )
    tracker.finish_run(handle, record, status="FINISHED")

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
    handle = second.start_run(name="failing", tags={})
    assert handle.url == f"{uri}/#/experiments/{first.experiment_id()}/runs/{handle.run_id}"
    second.finish_run(handle, RunRecord(), status="failed")
    assert MlflowClient(tracking_uri=uri).get_run(handle.run_id).info.status == "FAILED"


def test_mlflow_errors_become_temporary(store: tuple[str, Path]) -> None:
    uri, artifacts = store
    tracker = MlflowTracker(uri, artifact_root=artifacts)
    handle = tracker.start_run(name="r", tags={})
    with pytest.raises(TemporaryError) as info:
        tracker.finish_run(
            handle.__class__(run_id="0" * 32, url=""), RunRecord(params={"a": "b"}), status="FINISHED"
        )
    assert info.value.__cause__ is not None


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
