"""The one place that runs renderers: `kubectl kustomize` and Helm (helm-python-sdk, in a child process).

An adapter (it runs programs); the pure comparison of what they render lives in app/sources/render.py.

Renderers get a private temporary directory holding only the files they need (written from texts, so the
"after" render sees the edited files without touching the checkout), argv lists, a timeout, and no
network-facing flags. A missing renderer is not an error: callers say "not verified" in the PR.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from app import aliases
from app.errors import PermanentError

log = logging.getLogger(__name__)

TIMEOUT = 60.0
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_HELM_SCRIPT = """
import json, sys
import helm_python as helm
req = json.load(sys.stdin)
with helm.Chart.load(req["chart"]) as chart:
    out = chart.render(req["values"], name=req["name"], namespace=req["namespace"])
json.dump(out, sys.stdout)
"""


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
            proc = subprocess.run([exe, "kustomize", directory or "."], cwd=root, capture_output=True, text=True,
                                  timeout=TIMEOUT, check=False, env={"PATH": "/usr/bin:/bin", "HOME": tmp})
        except subprocess.TimeoutExpired as err:
            raise PermanentError(f"kubectl kustomize {directory} timed out", code="render_failed") from err
    if proc.returncode != 0:
        log.warning("kustomize render failed", extra={"dir": directory, "stderr": proc.stderr[-2000:]})
        raise PermanentError(f"kubectl kustomize {directory} failed: {proc.stderr.strip()[-500:]}",
                             code="render_failed")
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
            proc = subprocess.run([sys.executable, "-c", _HELM_SCRIPT], input=request, capture_output=True,
                                  text=True, timeout=TIMEOUT, check=False, cwd=root)
        except subprocess.TimeoutExpired as err:
            raise PermanentError(f"helm render of {chart_dir} timed out", code="render_failed") from err
    if proc.returncode != 0:
        log.warning("helm render failed", extra={"dir": chart_dir, "stderr": proc.stderr[-2000:]})
        raise PermanentError(f"helm render of {chart_dir} failed: {proc.stderr.strip()[-500:]}",
                             code="render_failed")
    rendered: dict[str, str] = json.loads(proc.stdout)
    out: list[dict[str, Any]] = []
    for name in sorted(rendered):
        if name.endswith("NOTES.txt"):
            continue
        out += [d for d in aliases.load_all(rendered[name], source=f"helm render of {chart_dir}: {name}")
                if isinstance(d, dict)]
    return out
