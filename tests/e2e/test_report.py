"""Reports end to end: `autofix report` as a subprocess and GET /report under a real uvicorn, both reading the
job store a service left behind (ledger rows with their life, finished jobs with their no_fix reasons)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.adapters.store import JobStore
from app.models.alertmanager import WebhookPayload
from app.ports import Remediation
from app.settings import Settings
from tests.edges.test_api import TOKEN, RecordingHandler, reference, serve

ROOT = Path(__file__).resolve().parents[2]
HOUR, DAY = 3600.0, 86400.0


def _fill(data_dir: Path) -> None:
    """Three oom_killed PRs in the window (one effective after 2 h to merge, one closed, one open), one of 40 days
    ago, and the two alerts of the reference payload ended no_fix: one in cooldown, one escalated."""
    now = time.time()
    store = JobStore(data_dir / "jobs.sqlite3")
    try:
        for number, state, opened, final in [(1, "merged", now - 3 * DAY, "effective"), (2, "closed", now - DAY, None),
                                             (3, "open", now - HOUR, None), (4, "merged", now - 40 * DAY, "reverted")]:
            merged = opened + 2 * HOUR if state == "merged" else None
            store.record(Remediation(
                workload=f"Deployment/shop/w{number}", cause="oom_killed", branch=f"autofix/shop/w{number}/oom-killed",
                pr_number=number, pr_url=f"https://github.com/acme/gitops/pull/{number}", state=state,
                opened_at=opened, merged_at=merged, closed_at=opened + HOUR if state == "closed" else None,
                synced_at=merged + 600 if merged else None, resolved_at=merged + 1800 if merged else None,
                final=final, final_at=merged + DAY if merged else None))
        store.enqueue(WebhookPayload.model_validate_json(reference()))
        for code in ("cooldown", "escalated"):
            job = store.lease("w1", ttl=30)
            assert job is not None
            store.complete(job.id, "w1", {"alertname": job.alertname, "fingerprint": job.fingerprint,
                                          "outcome": "no_fix", "reason": code, "code": code, "cause": "oom_killed",
                                          "workload": "Deployment/shop/checkout", "stages": []})
    finally:
        store.close()


def _check(data: dict[str, object]) -> None:
    [oom] = data["causes"]  # type: ignore[misc]
    assert (oom["cause"], oom["opened"], oom["still_open"], oom["merged"], oom["closed"]) == ("oom_killed", 3, 1, 1, 1)
    assert (oom["effective"], oom["reverted"], oom["merged_rate"], oom["effective_rate"]) == (1, 0, 0.3333, 1.0)
    assert (oom["median_merge_s"], oom["median_sync_s"], oom["median_resolve_s"]) == (2 * HOUR, 600.0, 1800.0)
    assert oom["no_fix"] == {"cooldown": 1, "escalated": 1}


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOFIX_")}
    env["AUTOFIX_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "app.cli", "report", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.timeout(120)
def test_autofix_report_prints_the_table_and_the_json(tmp_path: Path) -> None:
    _fill(tmp_path)
    as_json = _cli(tmp_path, "--days", "30", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["days"] == 30
    _check(data)
    table = _cli(tmp_path, "--days", "30")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0] == "Last 30 day(s): 1 cause(s); times are medians"
    assert lines[3].split() == ["oom_killed", "3", "1", "1", "1", "1", "0", "33%", "100%", "0%", "2.0h", "10m", "30m",
                                "2", "0"]
    assert "  oom_killed: cooldown 1, escalated 1" in lines
    wider = json.loads(_cli(tmp_path, "--days", "60", "--json").stdout)
    assert wider["causes"][0]["opened"] == 4 and wider["causes"][0]["reverted"] == 1
    refused = _cli(tmp_path, "--days", "0")
    assert refused.returncode == 2 and "days must be in (0, 3660]" in refused.stderr


@pytest.mark.timeout(120)
def test_get_report_needs_the_token_and_says_the_same(tmp_path: Path) -> None:
    _fill(tmp_path)
    settings = Settings(data_dir=tmp_path, workers=1, lease_seconds=30, webhook_token=TOKEN)
    with serve(settings, RecordingHandler()) as client:
        assert client.get("/report").status_code == 401
        auth = {"Authorization": f"Bearer {TOKEN}"}
        answer = client.get("/report", params={"days": 30}, headers=auth)
        assert answer.status_code == 200, answer.text
        _check(answer.json())
        assert client.get("/report", params={"days": 60}, headers=auth).json()["causes"][0]["opened"] == 4
        for bad in ("0", "-1", "nan", "inf", "99999"):
            assert client.get("/report", params={"days": bad}, headers=auth).status_code == 422, bad
        assert client.get("/report", headers=auth).json()["days"] == 30, "30 days unless asked"
