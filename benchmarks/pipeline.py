"""Pipeline: wall time and per-stage time of `autofix handle` on the demo and on a 20,000-manifest repo.

    python benchmarks/pipeline.py [--runs 5] [--manifests 20000]

Deterministic path (no LLM), the demo's cluster snapshot, the local forge, a real git remote (bare repo)
and a real MLflow sqlite store. Each measured run deletes the bot's branch from the remote (so a PR is opened every time) and
keeps the data dir, as the service does (checkout and MLflow store already there); one warm-up run first.
Per-stage seconds come from the MLflow run (metrics ``seconds_<stage>``). Target: median < 1.5 s on the demo.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c  # noqa: E402

DEMO = c.ROOT / "examples" / "demo"


def seed(source: Path, bare: Path) -> None:
    from app.demo import seed_bare_repo

    seed_bare_repo(source, bare)


def reset(bare: Path) -> None:
    """Delete the bot's branches from the remote, so the next run opens its PR again (the base is untouched)."""
    refs = subprocess.run(["git", "for-each-ref", "--format=%(refname)", "refs/heads/autofix/"], cwd=bare,
                          check=True, capture_output=True, text=True, timeout=60).stdout.split()
    for ref in refs:
        subprocess.run(["git", "update-ref", "-d", ref], cwd=bare, check=True, capture_output=True, timeout=60)


def big_source(work: Path, manifests: int) -> Path:
    """The demo repo inside a generated monorepo of ``manifests`` Kubernetes objects."""
    from benchmarks import gen_repo

    root = work / "big-src"
    gen_repo.write(gen_repo.generate(manifests, 7), root)
    shutil.copytree(DEMO / "repo", root, dirs_exist_ok=True)
    return root


def handle_once(bare: Path, data_dir: Path, mlflow_uri: str) -> tuple[float, dict[str, Any]]:
    shutil.rmtree(data_dir / "prs", ignore_errors=True)
    env = c.base_env(data_dir, AUTOFIX_GIT_URL=str(bare), AUTOFIX_FORGE="local", AUTOFIX_GITHUB_REPO="acme/gitops",
                     MLFLOW_TRACKING_URI=mlflow_uri)
    started = time.perf_counter()
    proc = subprocess.run([str(Path(c.PYTHON).parent / "autofix"), "handle", str(DEMO / "alert.json"),
                           "--snapshot", str(DEMO / "cluster.json")], env=env, cwd=c.ROOT, capture_output=True,
                          text=True, timeout=600)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-3000:])
    results = json.loads(proc.stdout)["results"]
    opened = next((r for r in results if r["outcome"] == "pr_opened"), None)
    if opened is None:
        raise RuntimeError(f"no PR opened: {results}")
    return seconds, opened


def stage_seconds(mlflow_uri: str, run_id: str) -> dict[str, float]:
    from mlflow import MlflowClient

    metrics = MlflowClient(tracking_uri=mlflow_uri).get_run(run_id).data.metrics
    return {k.removeprefix("seconds_"): v for k, v in metrics.items() if k.startswith("seconds_")}


def warm(source: Path, work: Path, runs: int) -> dict[str, float]:
    """The service's case: the pipeline built once (MLflow imported, store open), then one alert at a time."""
    from app import settings as settings_mod
    from app.adapters.snapshot import SnapshotCluster
    from app.models.incident import Incident
    from app.payloads import read_payload
    from app.wiring import build_pipeline

    bare, data_dir = work / "warm.git", work / "warm-data"
    seed(source, bare)
    settings = settings_mod.load(AUTOFIX_GIT_URL=str(bare), AUTOFIX_FORGE="local", AUTOFIX_GITHUB_REPO="acme/gitops",
                                 AUTOFIX_DATA_DIR=data_dir, MLFLOW_TRACKING_URI=f"sqlite:///{work / 'warm.db'}")
    started = time.perf_counter()
    pipeline = build_pipeline(settings, cluster=SnapshotCluster.from_file(DEMO / "cluster.json"))
    build = time.perf_counter() - started
    alert = read_payload(DEMO / "alert.json").alerts[0]
    times = []
    for attempt in range(runs + 1):
        reset(bare)
        shutil.rmtree(data_dir / "prs", ignore_errors=True)
        started = time.perf_counter()
        outcome = pipeline.handle(Incident.from_alert(alert))
        if outcome.outcome != "pr_opened":
            raise RuntimeError(f"warm run did not open a PR: {outcome.reason}")
        if attempt:
            times.append(time.perf_counter() - started)
    return {"build_seconds": round(build, 3), "median_handle_seconds": round(c.median(times), 3)}


def measure(name: str, source: Path, work: Path, runs: int) -> dict[str, Any]:
    bare, data_dir = work / f"{name}.git", work / f"{name}-data"
    mlflow_uri = f"sqlite:///{work / f'{name}-mlflow.db'}"
    walls: list[float] = []
    stages: dict[str, list[float]] = {}
    seed(source, bare)
    for attempt in range(runs + 1):
        reset(bare)
        seconds, opened = handle_once(bare, data_dir, mlflow_uri)
        if attempt == 0:
            first = seconds  # cold: clone of the repo, MLflow store created
            continue
        walls.append(seconds)
        for stage, value in stage_seconds(mlflow_uri, opened["mlflow_run_id"]).items():
            stages.setdefault(stage, []).append(value)
    return {"cold_seconds": round(first, 3), "median_seconds": round(c.median(walls), 3),
            "runs_seconds": [round(w, 3) for w in walls],
            "stage_median_seconds": {k: round(c.median(v), 4) for k, v in stages.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--manifests", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        work = Path(tmp)
        figures: dict[str, Any] = {"demo": measure("demo", DEMO / "repo", work, args.runs)}
        figures["demo_warm"] = warm(DEMO / "repo", work, args.runs)
        if args.manifests:
            figures["big"] = measure("big", big_source(work, args.manifests), work, args.runs)
    rows: list[tuple[str, Any]] = []
    rows.append(("demo, in the service: pipeline build (s)", figures["demo_warm"]["build_seconds"]))
    rows.append(("demo, in the service: median per alert (s)", figures["demo_warm"]["median_handle_seconds"]))
    for name, f in figures.items():
        if name == "demo_warm":
            continue
        rows.append((f"{name}: median of {args.runs} (s)", f["median_seconds"]))
        rows.append((f"{name}: cold first run (s)", f["cold_seconds"]))
        rows += [(f"{name}:   {stage}", f"{value:.4f}") for stage, value in f["stage_median_seconds"].items()]
    rows.append(("target", "demo median < 1.5 s"))
    print(c.table(f"autofix handle ({args.manifests} manifests in the big repo)", rows))
    path = c.save("pipeline", {"runs": args.runs, "manifests": args.manifests, **figures,
                               "target_met": figures["demo"]["median_seconds"] < 1.5})
    print(f"written to {path}")


if __name__ == "__main__":
    main()
