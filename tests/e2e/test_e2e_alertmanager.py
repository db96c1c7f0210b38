"""The whole chain with real components: Debian's Alertmanager → `autofix serve` (subprocess, real pipeline)
→ the loopback Kubernetes API (the demo cluster) → a real bare git repo → the GitHub fake, with the run
recorded in a real `mlflow server` (sqlite backend).

An alert is posted to Alertmanager's v2 API as Prometheus would; Alertmanager groups it (group_wait 1 s) and
delivers the webhook with the bearer token from `credentials_file`. The PR must arrive with the right diff
on the pushed branch and the MLflow run must exist; then the alert resolves and the PR gets a comment.
The time from the alert posted to the PR created is printed (pytest -s) and written to e2e-timing.json.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES, ROOT
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

pytestmark = pytest.mark.e2e  # real servers, binaries or whole pipeline runs: the slow part

T = TypeVar("T")
GITHUB_TOKEN = "ghs_e2e_token_0123456789abcdefghijkl"
WEBHOOK_TOKEN = "am-webhook-token-6f1d2c3b4a59"
BRANCH = "autofix/shop/checkout/oom-killed"
GROUP_WAIT = "1s"
GROUP_INTERVAL = "2s"  # resolved notifications go out at the next group_interval
DEADLINE = 90.0  # seconds for any one wait below


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http(method: str, url: str, body: Any = None, *, timeout: float = 5.0) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - loopback only
        raw = response.read()
    return json.loads(raw) if raw.strip().startswith((b"{", b"[")) else raw.decode()


def wait_for(what: str, probe: Callable[[], T | None], procs: list[tuple[str, subprocess.Popen[bytes], Path]],
             timeout: float = DEADLINE) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for name, proc, log in procs:
            assert proc.poll() is None, f"{name} exited ({proc.returncode}):\n{log.read_text()[-3000:]}"
        try:
            value = probe()
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            value = None
        if value:
            return value
        time.sleep(0.1)
    logs = "\n".join(f"--- {name}\n{log.read_text()[-3000:]}" for name, _, log in procs)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")


@pytest.fixture
def processes() -> Iterator[list[tuple[str, subprocess.Popen[bytes], Path]]]:
    """Started servers; stopped in reverse order (the bot before the MLflow server it writes to), each with
    its whole process group: `mlflow server` forks uvicorn and job-queue consumers."""
    started: list[tuple[str, subprocess.Popen[bytes], Path]] = []
    yield started
    for name, proc, _ in reversed(started):
        stopping = time.monotonic()
        _signal_group(proc, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        _signal_group(proc, signal.SIGKILL)  # whatever the leader left behind
        print(f"{name} stopped in {time.monotonic() - stopping:.1f} s")


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)  # the group this test created with start_new_session


def start(procs: list[tuple[str, subprocess.Popen[bytes], Path]], name: str, argv: list[str], *,
          env: dict[str, str], cwd: Path, log_dir: Path) -> None:
    log = log_dir / f"{name}.log"
    handle = log.open("wb")
    proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    handle.close()  # the child holds its own descriptor
    procs.append((name, proc, log))


def alertmanager_config(tmp_path: Path, webhook: str) -> Path:
    token_file = tmp_path / "webhook-token"
    token_file.write_text(WEBHOOK_TOKEN)
    config = {
        "route": {"receiver": "gitops-autofix", "group_by": ["namespace", "alertname"],
                  "group_wait": GROUP_WAIT, "group_interval": GROUP_INTERVAL, "repeat_interval": "1h"},
        "receivers": [{"name": "gitops-autofix", "webhook_configs": [{
            "url": webhook, "send_resolved": True, "max_alerts": 50,
            "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(token_file)}}}]}],
    }
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def demo_alerts(*, ends_at: str | None) -> list[dict[str, Any]]:
    """The demo's alerts as Prometheus posts them to Alertmanager (labels, annotations, times)."""
    payload = json.loads((EXAMPLES / "demo" / "alert.json").read_text())
    starts = (datetime.now(UTC) - timedelta(minutes=15)).isoformat()
    alerts = []
    for alert in payload["alerts"]:
        posted = {"labels": alert["labels"], "annotations": alert["annotations"], "startsAt": starts,
                  "generatorURL": alert["generatorURL"]}
        if ends_at:
            posted["endsAt"] = ends_at
        alerts.append(posted)
    return alerts


def mlflow_runs(base: str) -> list[dict[str, Any]]:
    experiment = http("GET", f"{base}/api/2.0/mlflow/experiments/get-by-name?experiment_name=gitops-autofix")
    found = http("POST", f"{base}/api/2.0/mlflow/runs/search",
                 {"experiment_ids": [experiment["experiment"]["experiment_id"]], "max_results": 50})
    runs: list[dict[str, Any]] = found.get("runs", [])
    return runs


def tags(run: dict[str, Any]) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_alertmanager_to_pull_request(tmp_path: Path, processes: list[tuple[str, subprocess.Popen[bytes], Path]],
                                      ) -> None:
    alertmanager = shutil.which("prometheus-alertmanager")
    assert alertmanager, "Debian's prometheus-alertmanager is required (.ci/run installs it)"
    mlflow = Path(sys.executable).parent / "mlflow"
    assert mlflow.exists(), "the full mlflow package is required for `mlflow server` (extra `e2e`)"
    begin = time.monotonic()
    bare = tmp_path / "gitops.git"
    seed_bare_repo(EXAMPLES / "demo" / "repo", bare)
    am_port, bot_port, ml_port = free_port(), free_port(), free_port()
    am, bot, ml = (f"http://127.0.0.1:{p}" for p in (am_port, bot_port, ml_port))

    with KubeApiFake.from_snapshot(EXAMPLES / "demo" / "cluster.json") as kube, \
            FakeGitHub("acme/gitops", token=GITHUB_TOKEN) as github:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AUTOFIX_", "MLFLOW_", "OPENAI_"))}
        start(processes, "mlflow", [str(mlflow), "server", "--backend-store-uri", f"sqlite:///{tmp_path}/ml.db",
                                    "--default-artifact-root", str(tmp_path / "ml-artifacts"), "--host",
                                    "127.0.0.1", "--port", str(ml_port), "--workers", "1"],
              env=base_env, cwd=tmp_path, log_dir=tmp_path)
        bot_env = {**base_env, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
                   "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops", "GITHUB_TOKEN": GITHUB_TOKEN,
                   "AUTOFIX_GITHUB_API_URL": github.api_url, "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
                   "MLFLOW_TRACKING_URI": ml, "AUTOFIX_MLFLOW_UI_URL": ml, "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN}
        start(processes, "autofix", [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1",
                                     "--port", str(bot_port)], env=bot_env, cwd=ROOT, log_dir=tmp_path)
        config = alertmanager_config(tmp_path, f"{bot}/webhooks/alertmanager")
        start(processes, "alertmanager", [alertmanager, f"--config.file={config}",
                                          f"--storage.path={tmp_path / 'am-data'}",
                                          f"--web.listen-address=127.0.0.1:{am_port}",
                                          f"--web.external-url={am}", "--cluster.listen-address="],
              env=base_env, cwd=tmp_path, log_dir=tmp_path)
        wait_for("alertmanager ready", lambda: http("GET", f"{am}/-/ready") is not None, processes)
        wait_for("autofix ready", lambda: http("GET", f"{bot}/readyz") is not None, processes)
        wait_for("mlflow server", lambda: http("GET", f"{ml}/health") is not None, processes)
        print(f"\nall three servers ready after {time.monotonic() - begin:.1f} s")

        posted = time.monotonic()
        http("POST", f"{am}/api/v2/alerts", demo_alerts(ends_at=None))
        pr = wait_for("the pull request", lambda: github.pulls.get(1), processes)
        seconds = time.monotonic() - posted

        assert pr["head"]["ref"] == BRANCH and pr["base"]["ref"] == "main"
        assert "768Mi" in pr["title"]
        [create] = github.requests_to("POST", "/pulls")
        assert create.headers["Authorization"] == f"token {GITHUB_TOKEN}"
        diff = subprocess.run(["git", "diff", "main", BRANCH], cwd=bare, capture_output=True, text=True,
                              check=True, timeout=30).stdout
        changed = [line for line in diff.splitlines() if line[:1] in "+-" and not line.startswith(("+++", "---"))]
        assert changed == ['-              memory: "512Mi"', '+              memory: "768Mi"']

        runs = wait_for("the MLflow run of the PR", lambda: [
            r for r in mlflow_runs(ml) if tags(r).get("outcome") == "pr_opened" and r["info"]["status"] == "FINISHED"],
            processes)
        assert tags(runs[0])["pr_url"] == pr["html_url"]
        assert len(github.pulls) == 1  # the second pod's alert joined the same PR, never a second one

        http("POST", f"{am}/api/v2/alerts", demo_alerts(ends_at=datetime.now(UTC).isoformat()))
        resolved = time.monotonic()
        comments = wait_for("the comment on the resolved alert", lambda: github.comments.get(1), processes)
        print(f"resolved alert posted -> PR comment: {time.monotonic() - resolved:.2f} s")
        assert "resolved" in comments[-1]["body"].lower()

    record = {"alert_to_pr_seconds": round(seconds, 2), "group_wait": GROUP_WAIT, "group_interval": GROUP_INTERVAL}
    (tmp_path / "e2e-timing.json").write_text(json.dumps(record))
    print(f"\nalert posted to Alertmanager -> PR created: {seconds:.2f} s (group_wait {GROUP_WAIT})")
    assert seconds < 30
