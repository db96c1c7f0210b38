"""`autofix demo` as a newcomer runs it, then the commands it prints, pasted into a shell as printed:
`autofix explain` finds each alert's job, `autofix runs show` reads each run from the demo's MLflow store
(no web UI, no flask), and a run is found by its record key too (the PR body's name for it)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

AUTOFIX = Path(sys.executable).parent / "autofix"


def _env(data_dir: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOFIX_", "MLFLOW_"))}
    return {**clean, "AUTOFIX_DATA_DIR": str(data_dir)}


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_the_commands_the_demo_prints_work_as_printed(tmp_path: Path) -> None:
    demo = subprocess.run([str(AUTOFIX), "demo"], cwd=tmp_path, env=_env(tmp_path / "data"), capture_output=True,
                          text=True, timeout=200, check=False)
    assert demo.returncode == 0, demo.stderr[-2000:]
    printed = demo.stdout.split("\nWhy each alert was decided as it was (the job store):\n", 1)[1]
    explains = re.findall(r"^  (AUTOFIX_DATA_DIR=\S+ \S+ explain ([0-9a-f]{16}))$", printed, re.M)
    shows = re.findall(r"^  (AUTOFIX_DATA_DIR=\S+ \S+ runs show ([0-9a-f]{32}))$", printed, re.M)
    assert [fp for _, fp in explains] == ["d09fc39d073c7e73", "295bbc2666a0c0e3"]
    assert len(shows) == 2
    assert "pip install 'gitops-autofix[ui]'" in printed and "mlflow ui --backend-store-uri sqlite:///" in printed

    elsewhere = tmp_path / "elsewhere"  # pasted in another directory, with another data dir in the environment
    elsewhere.mkdir()
    pasted = _env(elsewhere / "data")
    for line, fingerprint in explains:
        done = subprocess.run(["bash", "-c", line], cwd=elsewhere, env=pasted, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("job ") and "  diagnosis " in done.stdout and "oom: oom_killed" in done.stdout
        assert re.search(r"^  record: [0-9a-f]{32}: in MLflow", done.stdout, re.M)
        decided = {"d09fc39d073c7e73": "pr_opened", "295bbc2666a0c0e3": "duplicate"}[fingerprint]
        assert f"  outcome: {decided}: " in done.stdout  # this alert's job, not another's

    records = []
    for line, run_id in shows:
        done = subprocess.run(["bash", "-c", line], cwd=elsewhere, env=pasted, capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        header = done.stdout.splitlines()[0]
        assert header.startswith(f"run {run_id}  record ")
        records.append(header.rsplit(" ", 1)[1])
        assert "  detector = oom" in done.stdout and "  fingerprint = " in done.stdout
        assert "  pr_body.md" in done.stdout and "read from: sqlite:///" in done.stdout
    assert not (elsewhere / "data").exists()  # nothing read or created in the shell's own data dir

    # The PR body names the record key before the export: found by its tag, with only the MLflow store at hand.
    store = re.search(r"mlflow ui --backend-store-uri (\S+)", printed)
    assert store is not None
    by_key = subprocess.run([str(AUTOFIX), "runs", "show", records[0], "--json"], cwd=elsewhere,
                            env={**pasted, "MLFLOW_TRACKING_URI": store.group(1)}, capture_output=True, text=True,
                            timeout=60, check=False)
    assert by_key.returncode == 0, by_key.stderr
    assert f'"run_id": "{shows[0][1]}"' in by_key.stdout and f'"record": "{records[0]}"' in by_key.stdout
