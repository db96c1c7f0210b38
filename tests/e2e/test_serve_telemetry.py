"""What an operator gets from a running `autofix serve`: JSON log lines and a /metrics page Prometheus accepts.

`autofix serve` runs as a subprocess with the chart's LOG_FORMAT=json (the real pipeline, the loopback Kubernetes
API serving the demo cluster, a real bare git repo, the local forge). The demo's alert is handled to a PR, a
webhook with a wrong token is refused; then every line the service wrote to stderr must parse as JSON, the
"job decided" and "webhook rejected" lines carry their fields, the token appears nowhere, and `promtool check
metrics` accepts the scraped page, which has the split labels and the new series and no `_created` series.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES
from tests.fakes.kube_api import KubeApiFake
from tests.serve import serving

pytestmark = pytest.mark.e2e

DEMO = EXAMPLES / "demo"
WEBHOOK_TOKEN = "telemetry-webhook-token-4e9a1c"
WRONG_TOKEN = "not-the-token-b7d3f2e8a1"
PROMTOOL = "/usr/bin/promtool"


def wait_for(check: Callable[[], Any], what: str, *, seconds: float = 90) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        try:
            value = check()
        except httpx.TransportError:
            value = None
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def scrape_series(text: str) -> dict[str, float]:
    """`name{labels}` -> value, for every sample line."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            out[series] = float(value)
    return out


@pytest.mark.timeout(240)
def test_serve_logs_json_lines_and_exposes_metrics_promtool_accepts(tmp_path: Path) -> None:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(DEMO / "repo", bare)
    stderr_path = tmp_path / "serve.stderr"
    with KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
        env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
               "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_FORGE": "local", "AUTOFIX_GITHUB_REPO": "acme/gitops",
               "AUTOFIX_DATA_DIR": str(tmp_path / "data"), "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
               "LOG_FORMAT": "json"}
        env.pop("LOG_LEVEL", None)  # serve's own default: INFO
        with serving(env, out=tmp_path / "serve.stdout", err=stderr_path, stop_seconds=60) as served:
            base = served.base
            refused = httpx.post(f"{base}/webhooks/alertmanager", content=b'{"version": "4"}',
                                 headers={"Authorization": f"Bearer {WRONG_TOKEN}"}, timeout=10)
            assert refused.status_code == 401
            accepted = httpx.post(f"{base}/webhooks/alertmanager", content=(DEMO / "alert.json").read_bytes(),
                                  headers={"Authorization": f"Bearer {WEBHOOK_TOKEN}"}, timeout=10)
            assert accepted.status_code == 202, accepted.text
            auth = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
            jobs = [wait_for(lambda i=i: (j := httpx.get(f"{base}/jobs/{i}", headers=auth, timeout=10).json())
                             ["state"] in ("done", "failed") and j, f"job {i}") for i in accepted.json()["jobs"]]
            opened = [j for j in jobs if j["result"]["outcome"] == "pr_opened"]
            assert len(opened) == 1, jobs
            scraped = httpx.get(f"{base}/metrics", timeout=10).text
    # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully.
    assert served.proc.returncode in (0, -signal.SIGTERM), stderr_path.read_text()[-3000:]

    checked = subprocess.run([PROMTOOL, "check", "metrics"], input=scraped, capture_output=True, text=True,
                             timeout=30)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", ""), checked
    assert "_created" not in scraped
    series = scrape_series(scraped)
    assert series['autofix_jobs_finished_total{outcome="pr_opened",state="done"}'] == 1.0
    assert series['autofix_pull_requests_total{cause="oom_killed",outcome="pr_opened"}'] == 1.0
    assert series['autofix_webhook_rejected_total{reason="auth"}'] == 1.0
    # Both alerts (two pods of one Deployment) went through every stage: the second is the first PR's duplicate.
    assert series['autofix_jobs_finished_total{outcome="duplicate",state="done"}'] == 1.0
    for stage in ("intake", "target", "evidence", "diagnosis", "plan", "validate", "risk", "publish"):
        assert series[f'autofix_stage_duration_seconds_count{{stage="{stage}"}}'] == 2.0, stage
    assert series["autofix_jobs_oldest_queued_seconds"] == 0.0
    assert series["autofix_jobs_oldest_undecided_seconds"] == 0.0
    assert series["process_resident_memory_bytes"] > 0
    assert any(s.startswith("python_info{") for s in series)
    assert any(s.startswith("python_gc_collections_total{") for s in series)
    [build] = [s for s in series if s.startswith("autofix_build_info{")]
    assert 'version="0.1.0"' in build and 'kustomize="' in build and 'helm="' in build, build

    text = stderr_path.read_text()
    assert WRONG_TOKEN not in text and WEBHOOK_TOKEN not in text
    lines = [json.loads(line) for line in text.splitlines()]  # every line is JSON, uvicorn's included
    assert all({"timestamp", "level", "logger", "message"} <= line.keys() for line in lines)
    assert any(line["logger"].startswith("uvicorn") for line in lines), "uvicorn's lines go through our format"
    [decided] = [line for line in lines if line["message"] == "job decided" and line["outcome"] == "pr_opened"]
    job = opened[0]
    assert decided["level"] == "INFO"
    assert {k: decided[k] for k in ("job_id", "fingerprint", "alertname", "namespace", "workload", "cause",
                                    "outcome", "pr_url", "attempt")} == {
        "job_id": job["id"], "fingerprint": job["fingerprint"], "alertname": "KubePodCrashLooping",
        "namespace": "shop", "workload": "Deployment/shop/checkout", "cause": "oom_killed",
        "outcome": "pr_opened", "pr_url": job["result"]["pr_url"], "attempt": 1}
    assert isinstance(decided["duration_seconds"], float) and decided["duration_seconds"] > 0
    [rejected] = [line for line in lines if line["message"] == "webhook rejected"]
    assert rejected["level"] == "WARNING"
    assert {k: rejected[k] for k in ("reason", "status", "content_length", "detail")} == {
        "reason": "auth", "status": 401, "content_length": len(b'{"version": "4"}'), "detail": "wrong bearer token"}
    assert rejected["remote_addr"].startswith("127.0.0.1:")
