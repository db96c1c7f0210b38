"""`autofix calibrate` as a user runs it: runs logged into a real MLflow sqlite store the way the exporter and the
outcome follow-up leave them (metric ``risk`` and ``risk_<factor>``, tags ``cause``, ``outcome.final`` and ``outcome.pr_state``), then
the command in a subprocess. Checked: the table's counts, the proposed diff of the policy file (which stays
unchanged), the PNG, the one line below the policy's minimum sample size, and the one line without scikit-learn.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from app.settings import DEFAULT_POLICY_DIR

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

RUNS = 160
FACTORS = ("blast_radius", "resource_sensitivity", "rollback_complexity", "namespace_scope", "change_magnitude")


def _generated(seed: int) -> list[tuple[float, str]]:
    """(risk, outcome.final) with P(safe) = 1 - risk; the unsafe ends spread over the other outcomes."""
    rng = random.Random(seed)
    out = []
    for _ in range(RUNS):
        score = round(rng.random(), 4)
        final = "effective" if rng.random() < 1 - score else rng.choice(("reverted", "ineffective", "rejected"))
        out.append((score, final))
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, str]]]:
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    data = tmp_path_factory.mktemp("calibrate")
    client = MlflowClient(tracking_uri=f"sqlite:///{data / 'mlflow.db'}")
    experiment = client.create_experiment("gitops-autofix", artifact_location=(data / "mlartifacts").as_uri())
    runs = _generated(seed=5)
    for i, (score, final) in enumerate(runs):
        run = client.create_run(experiment, run_name=f"KubePodCrashLooping shop/checkout-{i}",
                                tags={"cause": "oom_killed", "outcome": "pr_opened", "autofix_record": f"r{i}",
                                      "outcome.final": final,
                                      "outcome.pr_state": "closed" if final == "rejected" else "merged"})
        metrics = [Metric("risk", score, 0, 0), *(Metric(f"risk_{f}", score, 0, 0) for f in FACTORS)]
        client.log_batch(run.info.run_id, metrics=metrics)
        client.set_terminated(run.info.run_id)
    # still followed, and a run that opened no PR: both left out
    pending = client.create_run(experiment, tags={"outcome": "pr_opened"})
    client.log_batch(pending.info.run_id, metrics=[Metric("risk", 0.2, 0, 0)])
    client.create_run(experiment, tags={"outcome": "no_fix", "outcome.final": "stale"})
    return data, runs


def _policies(tmp_path: Path, *, min_samples: int) -> Path:
    folder = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, folder)
    text = (folder / "default.yaml").read_text(encoding="utf-8")
    assert "  min_samples: 50" in text
    (folder / "default.yaml").write_text(text.replace("  min_samples: 50", f"  min_samples: {min_samples}"),
                                         encoding="utf-8")
    return folder


def _calibrate(data: Path, policies: Path, *argv: str, pythonpath: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "AUTOFIX_DATA_DIR": str(data), "AUTOFIX_POLICY_DIR": str(policies),
           "MLFLOW_TRACKING_URI": f"sqlite:///{data / 'mlflow.db'}"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "app.cli", "calibrate", *argv], env=env, capture_output=True,
                          text=True, timeout=150, check=False)


def test_calibrate_prints_the_table_the_diff_and_draws_the_curve(
        store: tuple[Path, list[tuple[float, str]]], tmp_path: Path) -> None:
    data, runs = store
    policies = _policies(tmp_path, min_samples=100)
    before = (policies / "default.yaml").read_text(encoding="utf-8")
    png = tmp_path / "out" / "curve.png"
    done = _calibrate(data, policies, "--png", str(png))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    rows = {ln.split()[0]: ln.split()[1:] for ln in lines if ln[:3] in {f"0.{i}" for i in range(10)}}
    low = [f for s, f in runs if s < 0.1]
    assert rows["0.0-0.1"][:4] == [str(len(low)), str(sum(f != "rejected" for f in low)),
                                   str(low.count("effective")), str(low.count("reverted"))]
    assert sum(int(r[0]) for r in rows.values()) == RUNS  # the pending run and the run without a score left out
    assert f"{RUNS} finished fixes" in done.stdout
    assert "--- a/default.yaml\n+++ b/default.yaml\n" in done.stdout
    removed = [ln for ln in lines if ln.startswith("-    medium:") or ln.startswith("-    high:")]
    added = [ln for ln in lines if ln.startswith("+    medium:") or ln.startswith("+    high:")]
    assert removed and len(added) == len(removed)
    assert (policies / "default.yaml").read_text(encoding="utf-8") == before  # proposed, never applied
    image = png.read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and image[12:16] == b"IHDR"
    assert struct.unpack(">II", image[16:24]) == (960, 540)

    as_json = _calibrate(data, policies, "--json", "--png", str(tmp_path / "j.png"))
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["samples"] == RUNS and report["diff"] in done.stdout
    assert 0.0 < report["proposed"]["medium"] <= report["proposed"]["high"] <= 1.0


def test_below_the_minimum_sample_size_it_proposes_nothing(
        store: tuple[Path, list[tuple[float, str]]], tmp_path: Path) -> None:
    data, _ = store
    png = tmp_path / "none.png"
    done = _calibrate(data, _policies(tmp_path, min_samples=RUNS + 1), "--png", str(png))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{RUNS} finished fix(es) in MLflow, the policy's calibration.min_samples is {RUNS + 1}: nothing proposed"]
    assert not png.exists()


def test_without_scikit_learn_it_says_how_to_install_it(
        store: tuple[Path, list[tuple[float, str]]], tmp_path: Path) -> None:
    """An install without the `calibrate` extra: a sklearn package that cannot be imported shadows the real one."""
    shadow = tmp_path / "shadow" / "sklearn"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named sklearn')\n", encoding="utf-8")
    data, _ = store
    done = _calibrate(data, _policies(tmp_path, min_samples=100), "--png", str(tmp_path / "x.png"),
                      pythonpath=str(shadow.parent))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == \
        "autofix: autofix calibrate needs scikit-learn: pip install 'gitops-autofix[calibrate]'"
    assert not (tmp_path / "x.png").exists()
