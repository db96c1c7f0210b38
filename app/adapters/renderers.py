"""The one place that runs renderers: `kubectl kustomize` and Helm (helm-python-sdk, in a child process).

An adapter (it runs programs) behind the ``Renderer`` port (app/ports.py): ``SandboxedRenderer`` is what
wiring hands the layouts; the pure comparison of what they render lives in app/sources/layouts/renders.py.

Renderers get a private temporary directory holding only the files they need (written from texts, so the
"after" render sees the edited files without touching the checkout), argv lists, a timeout, and no
network-facing flags. A missing renderer is not an error: callers say "not verified" in the PR.

The repository is untrusted, so every renderer runs sandboxed even though app/sources/layouts/kustomize.py
refuses remote references before rendering: a field that check misses must still not reach the network, and
a template that loops for ever or allocates gigabytes must not take the worker or the pod with it.
- Network: the child's environment is built from nothing (no token or key of ours is inherited); every
  proxy variable points at the discard port on loopback, where nothing listens, so Go's net/http (kustomize's
  remote files) and git's curl fail at once; git may use no transport at all (a remote base is a `git
  fetch`); no kubeconfig, HOME is the temporary directory.
- Resources: a data-segment limit (the heap) and a CPU-time limit, set by a small launcher in the child
  before it execs the renderer (not ``preexec_fn``: that runs Python between fork and exec, which the
  Python docs say may deadlock in a threaded program like our workers), plus the wall-clock timeout.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from app import aliases
from app.errors import PermanentError

log = logging.getLogger(__name__)

TIMEOUT = 60.0
# Heap limit of a renderer child (RLIMIT_DATA: private writable memory). Not RLIMIT_AS: a Go program reserves
# address space it never touches, and kubectl did not even start under 700 MiB of it (measured). A normal
# render needs well under 100 MiB (kubectl kustomize of deploy/kustomize: 48 MB resident; a Helm render in
# the Python child: 70 MB); a Helm `range` over a huge list took 1.85 GB before this limit. 512 MiB leaves
# room for big trees and keeps a runaway child inside the chart's 1 GiB pod limit next to the service.
MEMORY_LIMIT = 512 * 1024 * 1024
# CPU seconds of a renderer child, all its threads together: a Go renderer spinning on many cores is killed
# (SIGKILL at the hard limit; Go ignores SIGXCPU) before it has burnt more than the wall-clock TIMEOUT.
CPU_LIMIT = int(TIMEOUT)
# Where proxy variables send every request: the discard port on loopback, where nothing listens.
NOWHERE = "http://127.0.0.1:9"

# Run first in every renderer child. The limits are set by the child on itself, after fork and exec, so the
# parent runs no Python code in a forked child (see the module docstring).
_LIMITS = f"""
import resource
resource.setrlimit(resource.RLIMIT_DATA, ({MEMORY_LIMIT}, {MEMORY_LIMIT}))
resource.setrlimit(resource.RLIMIT_CPU, ({CPU_LIMIT}, {CPU_LIMIT}))
"""
# argv: LAUNCHER program args...: limits, then the program replaces the launcher (same pid, limits kept).
_LAUNCHER = _LIMITS + """
import os, sys
os.execv(sys.argv[1], sys.argv[1:])
"""
_HELM_SCRIPT = _LIMITS + """
import json, sys
import helm_python as helm
req = json.load(sys.stdin)
with helm.Chart.load(req["chart"]) as chart:
    out = chart.render(req["values"], name=req["name"], namespace=req["namespace"])
json.dump(out, sys.stdout)
"""


def sandbox_env(home: str) -> dict[str, str]:
    """The whole environment of a renderer child: nothing inherited, no way out to the network."""
    proxies = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    return {
        "PATH": "/usr/bin:/bin", "HOME": home, "LC_ALL": "C", "KUBECONFIG": os.devnull,
        **dict.fromkeys(proxies, NOWHERE),
        # Empty: no host is exempt from the proxy. (Go's net/http still exempts "localhost" and loopback IP
        # literals whatever NO_PROXY says; nothing of ours listens there for a renderer to reach.)
        "NO_PROXY": "", "no_proxy": "",
        "GOPROXY": "off",  # no module download, should anything in the child run the go command
        # No transport at all: git refuses every protocol not listed, and nothing is (a colon-separated
        # allowlist; "none" names no real protocol). A remote kustomize base is a `git fetch`.
        "GIT_ALLOW_PROTOCOL": "none", "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull,
    }


def _limited(argv: list[str]) -> list[str]:
    """``argv`` run under the renderer limits (see _LAUNCHER)."""
    return [sys.executable, "-I", "-S", "-c", _LAUNCHER, *argv]


def _why(proc: subprocess.CompletedProcess[str]) -> str:
    """One line for the PR and the job: a limit that stopped the child, else the tail of its stderr."""
    fatal = next((line for line in proc.stderr.splitlines()
                  if line.startswith("fatal error:") or "pthread_create failed" in line), "")
    # A Go child at the data limit fails either allocating ("fatal error: runtime: out of memory") or, when it
    # needs one more OS thread, mapping the thread's stack ("runtime/cgo: pthread_create failed: Resource
    # temporarily unavailable"): thread stacks count against RLIMIT_DATA.
    if "memory" in fatal or "pthread_create failed" in fatal or "\nMemoryError" in proc.stderr:
        return f"stopped at the renderer memory limit ({MEMORY_LIMIT >> 20} MiB): {fatal or 'MemoryError'}"
    if proc.returncode == -signal.SIGKILL:
        return f"killed (renderer CPU limit {CPU_LIMIT} s)"
    return proc.stderr.strip()[-500:]


@functools.lru_cache(maxsize=8)
def _load_restrictor(exe: str) -> tuple[str, ...]:
    """LoadRestrictionsRootOnly, kustomize's default, said explicitly so that no version's default can differ,
    when this kubectl knows the flag: kubectl 1.21+ (kustomize v4+) does; Debian bookworm's kubectl 1.20
    (kustomize v2, the image's) rejects it as an unknown flag, and loads from the kustomization root only."""
    with tempfile.TemporaryDirectory(prefix="autofix-kustomize-") as tmp:
        try:
            proc = subprocess.run(_limited([exe, "kustomize", "--help"]), cwd=tmp, capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False, env=sandbox_env(tmp))
        except subprocess.TimeoutExpired:
            return ()
    return ("--load-restrictor", "LoadRestrictionsRootOnly") if "--load-restrictor" in proc.stdout else ()


def kubectl() -> str | None:
    """Path of kubectl (it ships kustomize), or None."""
    return shutil.which("kubectl")


def helm_available() -> bool:
    return importlib.util.find_spec("helm_python") is not None


def _write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts:
            raise PermanentError(f"refusing to render a file outside the repo: {rel}", code="render_failed")
        target = root.joinpath(*pure.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def kustomize(files: Mapping[str, str], directory: str) -> list[dict[str, Any]]:
    """Objects `kubectl kustomize DIRECTORY` renders from ``files`` (repo-relative path -> text)."""
    exe = kubectl()
    if exe is None:
        raise PermanentError("kubectl not found", code="renderer_missing")
    with tempfile.TemporaryDirectory(prefix="autofix-kustomize-") as tmp:
        root = Path(tmp)
        _write(root, files)
        try:
            # Never --enable-helm, --enable-exec or --enable-alpha-plugins: they run programs.
            argv = [exe, "kustomize", directory or ".", *_load_restrictor(exe)]
            proc = subprocess.run(_limited(argv), cwd=root, capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False, env=sandbox_env(tmp))
        except subprocess.TimeoutExpired as err:
            raise PermanentError(f"kubectl kustomize {directory} timed out", code="render_failed") from err
    if proc.returncode != 0:
        log.warning("kustomize render failed", extra={"dir": directory, "stderr": proc.stderr[-2000:]})
        raise PermanentError(f"kubectl kustomize {directory} failed: {_why(proc)}", code="render_failed")
    documents = aliases.load_all(proc.stdout, source=f"kubectl kustomize {directory or '.'} output")
    return [d for d in documents if isinstance(d, dict)]


def helm(files: Mapping[str, str], chart_dir: str, *, values: dict[str, Any], release: str,
         namespace: str) -> list[dict[str, Any]]:
    """Objects the chart in ``chart_dir`` renders with ``values`` (Helm SDK, offline, in a child process)."""
    if not helm_available():
        raise PermanentError("no Helm renderer installed (helm-python-sdk)", code="renderer_missing")
    with tempfile.TemporaryDirectory(prefix="autofix-helm-") as tmp:
        root = Path(tmp)
        _write(root, files)
        request = json.dumps({"chart": str(root / chart_dir), "values": values, "name": release,
                              "namespace": namespace})
        try:
            # The child imports helm_python from our own import path, and nothing else of our environment.
            env = {**sandbox_env(tmp), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
            proc = subprocess.run([sys.executable, "-c", _HELM_SCRIPT], input=request, capture_output=True,
                                  text=True, timeout=TIMEOUT, check=False, cwd=root, env=env)
        except subprocess.TimeoutExpired as err:
            raise PermanentError(f"helm render of {chart_dir} timed out", code="render_failed") from err
    if proc.returncode != 0:
        log.warning("helm render failed", extra={"dir": chart_dir, "stderr": proc.stderr[-2000:]})
        raise PermanentError(f"helm render of {chart_dir} failed: {_why(proc)}", code="render_failed")
    rendered: dict[str, str] = json.loads(proc.stdout)
    out: list[dict[str, Any]] = []
    for name in sorted(rendered):
        if name.endswith("NOTES.txt"):
            continue
        out += [d for d in aliases.load_all(rendered[name], source=f"helm render of {chart_dir}: {name}")
                if isinstance(d, dict)]
    return out


class SandboxedRenderer:
    """The ``Renderer`` port over the functions above: kubectl and Helm found at each call (never cached, so
    a renderer installed or removed while the service runs is seen by the next job)."""

    def kustomize_installed(self) -> bool:
        return kubectl() is not None

    def helm_installed(self) -> bool:
        return helm_available()

    def kustomize(self, files: Mapping[str, str], directory: str) -> list[dict[str, Any]]:
        return kustomize(files, directory)

    def helm(self, files: Mapping[str, str], chart_dir: str, *, values: Mapping[str, Any], release: str,
             namespace: str) -> list[dict[str, Any]]:
        return helm(files, chart_dir, values=dict(values), release=release, namespace=namespace)
