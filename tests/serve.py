"""`autofix serve` as a subprocess on a free loopback port, as the e2e tests run the service: started, waited for
until /healthz answers 200 (failing at once, with its log, if the process exits first), stopped with SIGTERM
(uvicorn's graceful shutdown), killed only if that does not end it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.conftest import ROOT
from tests.edges.test_api import free_port


@dataclass(frozen=True)
class Served:
    proc: subprocess.Popen[bytes]
    base: str  # http://127.0.0.1:PORT
    log: Path  # where its stderr goes


def wait_for(check: Callable[[], bool], what: str, *, seconds: float = 90, every: float = 0.2) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def launch(env: dict[str, str], *, out: Path, err: Path | None = None, verbose: bool = False) -> Served:
    """Start it without waiting: stdout to ``out`` (appended), stderr too unless ``err`` names its own file."""
    port = free_port()
    err = err or out
    with out.open("ab") as stdout, err.open("ab") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", *(["-v"] if verbose else []), "serve",
                                 "--port", str(port)], env=env, cwd=ROOT, stdout=stdout, stderr=stderr)
    return Served(proc, f"http://127.0.0.1:{port}", err)


def wait_healthy(served: Served, *, seconds: float = 90) -> None:
    def up() -> bool:
        assert served.proc.poll() is None, served.log.read_text(errors="replace")[-3000:]
        return answers(f"{served.base}/healthz")

    wait_for(up, f"autofix serve on {served.base} to start", seconds=seconds)


def stop(*procs: subprocess.Popen[bytes], seconds: float = 40) -> None:
    """SIGTERM to every one first (they shut down side by side), then wait for each, killing what outstays."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def serving(env: dict[str, str], *, out: Path, err: Path | None = None, verbose: bool = False,
            start_seconds: float = 90, stop_seconds: float = 40) -> Iterator[Served]:
    """One `autofix serve`, healthy inside the block, stopped after it."""
    served = launch(env, out=out, err=err, verbose=verbose)
    try:
        wait_healthy(served, seconds=start_seconds)
        yield served
    finally:
        stop(served.proc, seconds=stop_seconds)
