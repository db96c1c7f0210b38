"""A service SIGKILLed mid-job finishes that job exactly once after a restart (lease expiry + re-lease)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import REFERENCE_DIR

pytestmark = pytest.mark.e2e  # real servers, binaries or whole pipeline runs: the slow part

REPO = Path(__file__).resolve().parents[2]
PAYLOAD = REFERENCE_DIR / "alertmanager-0.25-webhook-all-resolved-after-resolve-timeout.json"
FINGERPRINT = "6f4aeb6ae5c7fa92"
WAIT_SECONDS = 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def start_service(port: int, marker: Path, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AUTOFIX_DATA_DIR": str(data_dir), "AUTOFIX_LEASE_SECONDS": "1",
           "AUTOFIX_WORKERS": "1", "PYTHONPATH": str(REPO)}
    env.pop("AUTOFIX_WEBHOOK_TOKEN", None)
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "tests.fakes.serve_with_handler", str(port), str(marker)],
                                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


def ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def lines(marker: Path) -> list[str]:
    return marker.read_text().splitlines() if marker.exists() else []


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=WAIT_SECONDS)


def test_sigkill_mid_job_then_restart_finishes_it_once(tmp_path: Path) -> None:
    marker, data_dir, log = tmp_path / "marker.txt", tmp_path / "data", tmp_path / "service.log"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    first = start_service(port, marker, data_dir, log)
    second: subprocess.Popen[bytes] | None = None
    try:
        wait_until(lambda: ready(url), "the first service")
        response = httpx.post(f"{url}/webhooks/alertmanager", content=PAYLOAD.read_bytes(), timeout=5)
        assert response.status_code == 202, response.text
        [job_id] = response.json()["jobs"]
        wait_until(lambda: lines(marker) == [f"start {FINGERPRINT}"], "the job to start")

        first.send_signal(signal.SIGKILL)
        first.wait(timeout=WAIT_SECONDS)

        second = start_service(port, marker, data_dir, log)
        wait_until(lambda: ready(url), "the second service")

        def done() -> bool:
            return bool(httpx.get(f"{url}/jobs/{job_id}", timeout=2).json()["state"] == "done")

        wait_until(done, "the job to finish after restart")
        job = httpx.get(f"{url}/jobs/{job_id}", timeout=2).json()
        assert job["attempts"] == 2
        assert job["result"]["outcome"] == "no_fix"
        assert job["result"]["stages"] == [{"stage": "marker", "seconds": 0.0, "decision": "attempt 2"}]
        time.sleep(1.5)  # longer than a lease: nothing else may pick the job up again
        assert lines(marker) == [f"start {FINGERPRINT}", f"start {FINGERPRINT}", f"end {FINGERPRINT}"]
        again = httpx.post(f"{url}/webhooks/alertmanager", content=PAYLOAD.read_bytes(), timeout=5)
        assert again.json() == {"jobs": [job_id], "duplicates": 1}
    except BaseException:
        print(log.read_text(errors="replace"))
        raise
    finally:
        stop(first)
        if second is not None:
            stop(second)
