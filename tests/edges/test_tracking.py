"""MlflowTracker (the exporter's RunSink) against a real MLflow sqlite store (module-scoped: the first migration
takes seconds)."""

from __future__ import annotations

import struct
import subprocess
import sys
import uuid
import zlib
from pathlib import Path

import pytest
from mlflow import MlflowClient
from PIL import Image

from app.adapters import png
from app.adapters.tracking import MlflowTracker, sanitize_key
from app.errors import PermanentError, TemporaryError
from app.models.metrics import Curve
from app.models.runs import CURVE_ARTIFACT, CURVE_PNG, PendingRun, RunRecord


def pending(record: RunRecord | None = None, *, name: str = "r", status: str = "FINISHED",
            key: str = "") -> PendingRun:
    return PendingRun(key=key or uuid.uuid4().hex, name=name, status=status, record=record or RunRecord(),
                      created_at=1_764_590_400.0)


pytestmark = pytest.mark.e2e  # a real MLflow store (importing MLflow and migrating its schema): the slow part


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
    code = "import sys, app.adapters.tracking; sys.exit('mlflow' in sys.modules or 'PIL' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---- the curve's chart, drawn at export ---------------------------------------------------------------------

ALERT_AT = 1_795_965_329.0


def sized_curve() -> Curve:
    """Three days of a working set climbing between restarts towards its 512Mi limit (MiB, 5-minute samples)."""
    points = [(ALERT_AT - 259_200 + i * 300, 180 + 27 * ((i * 300 / 3600) % 12)) for i in range(864)]
    return Curve(title="memory working set of checkout (all pods)", unit="MiB", points=points, end=ALERT_AT,
                 threshold=512.0, threshold_label="limit 512Mi", proposed=768.0,
                 stats={"min": 180.0, "p50": 341.5, "p95": 478.2, "max": 504.9},
                 promql='max by (pod) (container_memory_working_set_bytes{namespace="shop", container="checkout"})',
                 verdict="undersized: a plateau near the limit with spikes")


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk, after checking the signature and the chunk's CRC."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", data[:8]
    length, kind = struct.unpack(">I4s", data[8:16])
    assert (length, kind) == (13, b"IHDR")
    assert zlib.crc32(data[12:29]) == struct.unpack(">I", data[29:33])[0], "IHDR's CRC"
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", "ends with IEND"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_a_run_with_a_curve_gets_its_chart_as_a_png(store: tuple[str, Path], tmp_path: Path) -> None:
    uri, artifacts = store
    record = RunRecord(tags={"outcome": "pr_opened"}, artifacts={
        CURVE_ARTIFACT: sized_curve().model_dump_json(indent=2), "pr_body.md": "## Metrics\n"})
    handle = MlflowTracker(uri, artifact_root=artifacts).export(pending(record))
    client = MlflowClient(tracking_uri=uri)
    assert sorted(a.path for a in client.list_artifacts(handle.run_id, "metrics")) == [
        "metrics/curve.json", "metrics/curve.png"]
    local = Path(client.download_artifacts(handle.run_id, CURVE_PNG, dst_path=str(tmp_path)))
    data = local.read_bytes()
    assert png_size(data) == (png.WIDTH, png.HEIGHT) == (960, 540)
    assert data == png.draw(sized_curve()), "the same chart every export: a repeated export overwrites it alike"
    with Image.open(local) as image:  # decoded whole: the blue line, the red and green dashes are drawn
        image.load()
        colours = {colour for _, colour in image.getcolors(maxcolors=1 << 16)}
    assert {(0x25, 0x63, 0xEB), (0xDC, 0x26, 0x26), (0x16, 0xA3, 0x4A)} <= colours


@pytest.mark.parametrize("curve_json", ['{"title": "t"', Curve(title="t", unit="MiB", points=[(ALERT_AT, 1.0)])
                                        .model_dump_json()], ids=["unreadable", "one-sample"])
def test_a_curve_that_cannot_be_drawn_costs_the_image_not_the_export(store: tuple[str, Path],
                                                                     curve_json: str) -> None:
    uri, artifacts = store
    record = RunRecord(artifacts={CURVE_ARTIFACT: curve_json})
    handle = MlflowTracker(uri, artifact_root=artifacts).export(pending(record))
    client = MlflowClient(tracking_uri=uri)
    assert client.get_run(handle.run_id).info.status == "FINISHED"
    assert [a.path for a in client.list_artifacts(handle.run_id, "metrics")] == ["metrics/curve.json"]
