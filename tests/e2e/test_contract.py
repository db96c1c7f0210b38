"""The contract a refactoring must keep: the demo's PR (title, labels, branch, body), its commit and diff, and
its MLflow run (params, tags, metric names, risk metrics) byte for byte against tests/golden/contract/demo.json.

Run ids, temporary paths and stage timings change from run to run and are normalised. After an intended
change of output, rewrite the golden file with `AUTOFIX_UPDATE_GOLDEN=1 pytest tests/e2e/test_contract.py` and
review its diff like any other change.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from app import settings as settings_mod
from app.adapters.snapshot import SnapshotCluster
from app.demo import seed_bare_repo
from app.oneshot import handle_and_export
from app.payloads import read_payload
from tests.conftest import EXAMPLES, ROOT, mlflow_run

pytestmark = pytest.mark.e2e

GOLDEN = ROOT / "tests" / "golden" / "contract" / "demo.json"
RUN_ID = re.compile(r"\b[0-9a-f]{32}\b")
# Relative to the decision time (the wall clock): how long the alert has fired, when the cooldown would end.
FIRING_FOR = re.compile(r"\(for [0-9a-z ]+ when this was decided\)")
COOLDOWN_END = re.compile(r"not before `\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`")


def _normal(text: str, tmp_path: Path) -> str:
    text = FIRING_FOR.sub("(for <duration> when this was decided)", text)
    text = COOLDOWN_END.sub("not before `<decision time + cooldown>`", text)
    return RUN_ID.sub("<run-id>", text.replace(str(tmp_path), "<tmp>"))


def _git(*argv: str, cwd: Path) -> str:
    return subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True, text=True, timeout=30).stdout


def _record(tmp_path: Path) -> dict[str, Any]:
    demo = EXAMPLES / "demo"
    bare = tmp_path / "gitops.git"
    seed_bare_repo(demo / "repo", bare)
    settings = settings_mod.load(AUTOFIX_GIT_URL=str(bare), AUTOFIX_FORGE="local", AUTOFIX_GITHUB_REPO="acme/gitops",
                                 AUTOFIX_DATA_DIR=tmp_path / "data",
                                 MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    results, _ = handle_and_export(settings, read_payload(demo / "alert.json"),
                                   cluster=SnapshotCluster.from_file(demo / "cluster.json"), wait=60)
    [pr_dir] = sorted((tmp_path / "data" / "prs").glob("*/"))
    meta = json.loads((pr_dir / "pr.json").read_text())
    branch = meta["branch"]

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=settings.tracking_uri)
    runs = []
    for result in results:
        run = mlflow_run(settings.tracking_uri, result["record_id"])
        runs.append({
            "params": dict(sorted(run.data.params.items())),
            "tags": {k: _normal(v, tmp_path) for k, v in sorted(run.data.tags.items()) if not k.startswith("mlflow.")},
            "metrics": {k: ("<seconds>" if "seconds" in k else v) for k, v in sorted(run.data.metrics.items())},
            "artifacts": sorted(a.path for a in client.list_artifacts(run.info.run_id)),
        })
    return {
        "results": [{k: _normal(str(v), tmp_path) for k, v in r.items()} for r in results],
        "pr": {"title": meta["title"], "labels": meta["labels"], "branch": branch,
               "body": _normal((pr_dir / "body.md").read_text(), tmp_path)},
        "commit_message": _git("log", "-1", "--format=%B", branch, cwd=bare),
        "diff": _git("diff", "main", branch, cwd=bare),
        "runs": runs,
    }


@pytest.mark.timeout(120)
def test_demo_pr_and_mlflow_record_are_unchanged(tmp_path: Path) -> None:
    record = _record(tmp_path)
    if os.environ.get("AUTOFIX_UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert record["pr"]["body"] == golden["pr"]["body"]
    assert record == golden
