"""`autofix demo`: the whole pipeline on the shipped example, with no cluster, no GitHub and no LLM.

The example's GitOps repo is copied into a local bare repo (the "remote"), the cluster is read from its
snapshot, and the local forge writes the pull request under the data dir (``<data dir>/demo``, wiped at each
run). The alerts take the service's path: one job each in the job store, run by a worker, so `autofix explain`
finds them; their run records go to MLflow (a sqlite file in the same dir) through the outbox. The demo ends
with the commands that read it all back, with the environment they need, as they can be pasted.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.models.alertmanager import WebhookPayload
    from app.ports import ClusterReader
    from app.settings import Settings

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def seed_bare_repo(source: Path, bare: Path, *, branch: str = "main") -> None:
    """A bare repository whose `branch` holds a copy of ``source`` in one commit."""
    if bare.exists():
        shutil.rmtree(bare)
    env = {**os.environ, "GIT_AUTHOR_NAME": "Demo Team", "GIT_AUTHOR_EMAIL": "team@example.com",
           "GIT_COMMITTER_NAME": "Demo Team", "GIT_COMMITTER_EMAIL": "team@example.com",
           "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp) / "work"
        shutil.copytree(source, work)
        for argv in (["git", "init", "-q", "-b", branch], ["git", "add", "-A"],
                     ["git", "commit", "-q", "-m", "Initial GitOps repo"]):
            subprocess.run(argv, cwd=work, env=env, check=True, capture_output=True, timeout=60)
        subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], env=env, check=True,
                       capture_output=True, timeout=60)


def run(example: Path | None = None) -> int:
    from app import settings as settings_mod
    from app.adapters.snapshot import SnapshotCluster
    from app.payloads import read_payload

    example = example or EXAMPLES / "demo"
    base = settings_mod.load()
    data_dir = (base.data_dir / "demo").resolve()
    if data_dir.exists():
        shutil.rmtree(data_dir)  # every demo run starts from the same state
    data_dir.mkdir(parents=True)
    bare = data_dir / "gitops.git"
    seed_bare_repo(example / "repo", bare)
    settings = settings_mod.load(AUTOFIX_GIT_URL=str(bare), AUTOFIX_FORGE="local",
                                 AUTOFIX_GITHUB_REPO="acme/gitops", AUTOFIX_DATA_DIR=data_dir,
                                 MLFLOW_TRACKING_URI=f"sqlite:///{data_dir / 'mlflow.db'}")
    results, runs = _handle_as_jobs(settings, read_payload(example / "alert.json"),
                                    cluster=SnapshotCluster.from_file(example / "cluster.json"))
    _report(results, data_dir, settings.tracking_uri, runs)
    return 0 if all(r["outcome"] != "failed" for r in results) else 1


def _handle_as_jobs(settings: Settings, payload: WebhookPayload, *, cluster: ClusterReader,
                    ) -> tuple[list[dict[str, Any]], list[str]]:
    """The payload as `serve` takes it: one job per alert in the job store, each run by a worker and recorded
    with its result, then the outbox drained to MLflow. Returns the results and, per record, the MLflow run id
    (the record key while it is still in the outbox)."""
    from app import worker
    from app.adapters.store import JobStore
    from app.models.outcome import Outcome
    from app.wiring import build_exporter, build_pipeline

    store = JobStore(settings.store_path)
    try:
        pipeline = build_pipeline(settings, cluster=cluster, store=store)
        exporter = build_exporter(settings, store, forge=pipeline.forge)
        exporter.warm_up()  # MLflow's import and store, beside the pipeline
        job_ids = [queued.job_id for queued in store.enqueue(payload)]
        while worker.run_next(store, pipeline, lease_seconds=settings.lease_seconds,
                              budget_seconds=settings.job_budget_seconds) is not None:
            pass
        exporter.drain(seconds=max(settings.export_wait_seconds, 60.0))
        jobs = [job for job in map(store.get, job_ids) if job is not None]
        results = [Outcome.model_validate(job.result).result() if job.result else
                   {"alertname": job.alertname, "fingerprint": job.fingerprint, "outcome": "failed",
                    "reason": job.error or job.state} for job in jobs]
        exports = [(key, store.export_of(key)) for key in (str(r["record_id"]) for r in results if r.get("record_id"))]
    finally:
        store.close()
    return results, [e.run_id if e is not None and e.run_id else key for key, e in exports]


def _autofix() -> str:
    """How to call this same `autofix` from a shell: by name when PATH finds this one, else by its path."""
    script = Path(sys.executable).parent / "autofix"  # the venv's script (sys.executable: not resolved)
    found = shutil.which("autofix")
    if found and script.exists() and Path(found).resolve() == script.resolve():
        return "autofix"
    if script.exists():
        relative = os.path.relpath(script)
        return shlex.quote(relative if not relative.startswith("..") else str(script))
    return f"{shlex.quote(sys.executable)} -m app.cli"


def _report(results: list[dict[str, Any]], data_dir: Path, tracking_uri: str, runs: list[str]) -> None:
    out = sys.stdout
    for r in results:
        print(f"== alert {r['alertname']} {r['fingerprint']}: {r['outcome']}", file=out)
        print(f"   {r['reason']}", file=out)
    opened = [r for r in results if r["outcome"] in ("pr_opened", "pr_updated")]
    for pr_dir in sorted((data_dir / "prs").glob("*/")):
        meta = json.loads((pr_dir / "pr.json").read_text())
        print(f"\n== pull request #{meta['number']} on branch {meta['branch']} (labels: {', '.join(meta['labels'])})",
              file=out)
        print(f"   {meta['title']}\n", file=out)
        print((pr_dir / "body.md").read_text(), file=out)
        print(f"   written to {pr_dir}", file=out)
    if not opened:
        print("\nno pull request was opened", file=out)
    print("\nJSON results:", file=out)
    print(json.dumps({"results": results}, indent=2), file=out)
    # Last, where a terminal leaves them in view: commands that work as pasted, from any directory.
    env = f"AUTOFIX_DATA_DIR={shlex.quote(str(data_dir))}"
    if os.environ.get("MLFLOW_TRACKING_URI"):  # the demo's store, not the one this shell names
        env += f" MLFLOW_TRACKING_URI={shlex.quote(tracking_uri)}"
    cli = _autofix()
    print("\nWhy each alert was decided as it was (the job store):", file=out)
    for fingerprint in dict.fromkeys(str(r["fingerprint"]) for r in results):
        print(f"  {env} {cli} explain {fingerprint}", file=out)
    print("Each run's params, metrics, tags and artifacts (MLflow, or the outbox before export):", file=out)
    for ident in runs:
        print(f"  {env} {cli} runs show {ident}", file=out)
    if not runs:
        print("  (no run record)", file=out)
    print("MLflow's web UI needs the `ui` extra (pip install 'gitops-autofix[ui]': the full mlflow, with flask), "
          f"then:\n  mlflow ui --backend-store-uri {shlex.quote(tracking_uri)}", file=out)
