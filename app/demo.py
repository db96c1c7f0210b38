"""`autofix demo`: the whole pipeline on the shipped example, with no cluster, no GitHub and no LLM.

The example's GitOps repo is copied into a local bare repo (the "remote"), the cluster is read from its
snapshot, and the local forge writes the pull request under the data dir.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

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
    from app.adapters.store import JobStore
    from app.oneshot import handle_and_export
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
    results, _ = handle_and_export(settings, read_payload(example / "alert.json"),
                                   cluster=SnapshotCluster.from_file(example / "cluster.json"),
                                   wait=max(settings.export_wait_seconds, 60.0))
    store = JobStore(settings.store_path)
    exports = [store.export_of(str(r["record_id"])) for r in results if r.get("record_id")]
    store.close()
    run_ids = sorted(e.run_id for e in exports if e is not None and e.run_id)
    _report(results, data_dir, settings.tracking_uri, run_ids)
    return 0 if all(r["outcome"] != "failed" for r in results) else 1


def _report(results: list[dict[str, object]], data_dir: Path, tracking_uri: str, run_ids: list[str]) -> None:
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
    print(f"\nMLflow run(s): {', '.join(run_ids) or 'not exported yet (kept in the job store)'}", file=out)
    print(f"Look at them with:  mlflow ui --backend-store-uri {tracking_uri}", file=out)
    print("(mlflow ui needs the full `mlflow` package: pip install mlflow)", file=out)
    print("\nJSON results:", file=out)
    print(json.dumps({"results": results}, indent=2), file=out)
