"""The one place that runs renderers: kustomize and Helm, found on PATH, each in a sandboxed child process.

Which program renders (looked up at each call, so one installed or removed while the service runs counts):
- Kustomize: a standalone `kustomize` (`kustomize build DIR`, the image's v5) if on PATH, else `kubectl kustomize
  DIR` (kubectl embeds a kustomize: v2.0.3 up to kubectl 1.20, Debian bookworm's; v5 in current kubectl).
- Helm: a `helm` binary (`helm template`) if on PATH, else helm-python-sdk (Helm as a Go library in a wheel).
``renderer_versions`` names them and their versions (cached per program: `autofix_build_info`, the start-up
check ``check_at_start`` and `autofix doctor` read it); a kustomize older than v4 cannot render modern overlays
(`patches:`, components), so their fixes go out "not verified".

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
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
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

_HELM_VERSION_SCRIPT = "import helm_python\nprint(helm_python.helm_sdk_version())"


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


# Kustomize v4 is the first to render what overlays are written with today (`patches:` with targets, components
# without alpha flags, `labels:`); v2 (kubectl <= 1.20) rejects them.
MIN_KUSTOMIZE = (4, 0, 0)
# The kustomize each kubectl embeds, for the kubectls that do not print it (`kubectl version` shows it from 1.24;
# kubernetes CHANGELOGs): up to 1.20 the frozen v2.0.3, then v4.
_KUBECTL_KUSTOMIZE = {21: "v4.0.5", 22: "v4.2.0", 23: "v4.4.1"}
ABSENT = "absent"
UNKNOWN = "unknown"
_VERSION = re.compile(r"v?(\d+)\.(\d+)\.(\d+)")


# Tool kinds: the program names looked up on PATH, and the SDK.
KUSTOMIZE_BIN, KUBECTL, HELM_BIN, HELM_SDK = "kustomize", "kubectl", "helm", "helm-python-sdk"


@dataclass(frozen=True)
class Tool:
    """One renderer program: ``kind`` is kustomize, kubectl, helm or helm-python-sdk; ``path`` its executable
    (the SDK: the Python running us)."""

    kind: str
    path: str

    @property
    def label(self) -> str:
        """How the PR and logs name the render command."""
        return {KUSTOMIZE_BIN: "kustomize build", KUBECTL: "kubectl kustomize", HELM_BIN: "helm template"}.get(
            self.kind, self.kind)


def kustomize_tool(search_path: str | None = None) -> Tool | None:
    """The standalone kustomize if on ``search_path`` (default PATH), else kubectl, else None."""
    for kind in (KUSTOMIZE_BIN, KUBECTL):
        exe = shutil.which(kind, path=search_path)
        if exe is not None:
            return Tool(kind, exe)
    return None


def helm_tool(search_path: str | None = None, *, sdk: bool = True) -> Tool | None:
    """A `helm` binary if on ``search_path``, else helm-python-sdk when importable (and ``sdk``), else None."""
    exe = shutil.which(HELM_BIN, path=search_path)
    if exe is not None:
        return Tool(HELM_BIN, exe)
    return Tool(HELM_SDK, sys.executable) if sdk and helm_available() else None


def helm_available() -> bool:
    return importlib.util.find_spec("helm_python") is not None


def _probe(argv: list[str], *, pythonpath: bool = False) -> str:
    """stdout of a short query (help, version) run in the sandbox; "" when it fails or hangs. ``pythonpath``:
    the child imports from our own import path (helm_python), as the Helm render's child does."""
    with tempfile.TemporaryDirectory(prefix="autofix-probe-") as tmp:
        env = sandbox_env(tmp)
        if pythonpath:
            env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        try:
            proc = subprocess.run(_limited(argv), cwd=tmp, capture_output=True, text=True, timeout=TIMEOUT,
                                  check=False, env=env)
        except (subprocess.TimeoutExpired, OSError):
            return ""
    return proc.stdout if proc.returncode == 0 else ""


@functools.lru_cache(maxsize=8)
def _load_restrictor(tool: Tool) -> tuple[str, ...]:
    """LoadRestrictionsRootOnly, kustomize's default, said explicitly so that no version's default can differ,
    when this program knows the flag: kustomize v4+ and kubectl 1.21+ do; Debian bookworm's kubectl 1.20
    (kustomize v2) rejects it as an unknown flag, and loads from the kustomization root only."""
    sub = "build" if tool.kind == KUSTOMIZE_BIN else "kustomize"
    found = "--load-restrictor" in _probe([tool.path, sub, "--help"])
    return ("--load-restrictor", "LoadRestrictionsRootOnly") if found else ()


def _kustomize_argv(tool: Tool, directory: str) -> list[str]:
    # Never --enable-helm, --enable-exec or --enable-alpha-plugins: they run programs.
    sub = "build" if tool.kind == KUSTOMIZE_BIN else "kustomize"
    return [tool.path, sub, directory or ".", *_load_restrictor(tool)]


# ---------------------------------------------------------------- versions


def _stamp(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@functools.lru_cache(maxsize=16)
def _tool_version(tool: Tool, _mtime: float) -> str:
    """The version a renderer program reports ("v5.5.0"), or "unknown". Cached per program and its mtime."""
    if tool.kind == HELM_SDK:  # asked in a child: importing helm_python maps Helm's Go runtime for good (~50 MB)
        return _probe([sys.executable, "-c", _HELM_VERSION_SCRIPT], pythonpath=True).strip() or UNKNOWN
    if tool.kind == HELM_BIN:
        found = _VERSION.search(_probe([tool.path, "version", "--short"]))
        return f"v{found[1]}.{found[2]}.{found[3]}" if found else UNKNOWN
    if tool.kind == KUSTOMIZE_BIN:  # v5 prints "v5.5.0", v3/v4 "{Version:kustomize/v4.5.7 GitCommit:...}"
        found = _VERSION.search(_probe([tool.path, "version"]))
        return f"v{found[1]}.{found[2]}.{found[3]}" if found else UNKNOWN
    return _kubectl_kustomize(_probe([tool.path, "version", "--client", "-o", "json"]))


def _kubectl_kustomize(output: str) -> str:
    """The kustomize inside a kubectl, from `kubectl version --client -o json`."""
    try:
        report = json.loads(output)
    except ValueError:
        return UNKNOWN
    if report.get("kustomizeVersion"):
        return str(report["kustomizeVersion"])
    found = _VERSION.search(str((report.get("clientVersion") or {}).get("gitVersion", "")))
    if found is None or int(found[1]) != 1:
        return UNKNOWN
    minor = int(found[2])
    return "v2.0.3" if minor <= 20 else _KUBECTL_KUSTOMIZE.get(minor, UNKNOWN)


def version_of(tool: Tool | None) -> str:
    return ABSENT if tool is None else _tool_version(tool, _stamp(tool.path))


def too_old(version: str) -> bool:
    """Whether a kustomize version is known and older than MIN_KUSTOMIZE."""
    found = _VERSION.fullmatch(version)
    return found is not None and tuple(int(part) for part in found.groups()) < MIN_KUSTOMIZE


def _via(tool: Tool | None) -> str:
    if tool is None:
        return "none"
    if tool.kind == HELM_SDK:
        import importlib.metadata

        return f"helm-python-sdk {importlib.metadata.version('helm-python-sdk')}"
    return f"{tool.kind} {tool.path}"


def renderer_versions(search_path: str | None = None) -> dict[str, str]:
    """The renderers a render would use now: ``kustomize`` and ``helm`` versions ("v5.5.0", "unknown",
    "absent"), and ``kustomize_via``/``helm_via`` the program ("kubectl /usr/bin/kubectl", "none"). Cheap after
    the first call: each program's version is cached (until the file changes)."""
    kustomize_at, helm_at = kustomize_tool(search_path), helm_tool(search_path)
    return {"kustomize": version_of(kustomize_at), "kustomize_via": _via(kustomize_at),
            "helm": version_of(helm_at), "helm_via": _via(helm_at)}


def check_at_start(search_path: str | None = None) -> dict[str, str]:
    """Log the renderers once at start (`autofix serve`, `autofix handle`): INFO when fine, WARNING naming the
    version and the consequence when kustomize is missing or too old, or no Helm renderer is found."""
    found = renderer_versions(search_path)
    fields = {f"renderer_{key}": value for key, value in found.items()}
    if found["kustomize"] == ABSENT:
        log.warning("no kustomize renderer (neither kustomize nor kubectl on PATH): fixes in kustomize trees are "
                    "planned on the live object and go out not verified", extra=fields)
    elif too_old(found["kustomize"]):
        log.warning("kustomize renderer older than v4: modern overlays (patches:, components) do not render, so "
                    "their fixes go out not verified and are planned on the live object; install kustomize v5",
                    extra=fields)
    if found["helm"] == ABSENT:
        log.warning("no Helm renderer (neither helm nor helm-python-sdk): Helm fixes go out not verified",
                    extra=fields)
    log.info("renderers found", extra=fields)
    return found


def _write(root: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        pure = PurePosixPath(rel)
        if pure.is_absolute() or ".." in pure.parts:
            raise PermanentError(f"refusing to render a file outside the repo: {rel}", code="render_failed")
        target = root.joinpath(*pure.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")


def _render(argv: list[str], *, cwd: Path, env: dict[str, str], what: str, renderer: str, directory: str,
            stdin: str | None = None) -> str:
    """A renderer's output, run sandboxed within TIMEOUT; a timeout or a failure is a PermanentError that names
    ``what`` ran (its stderr logged, cut to its end)."""
    try:
        proc = subprocess.run(argv, cwd=cwd, input=stdin, capture_output=True, text=True, timeout=TIMEOUT,
                              check=False, env=env)
    except subprocess.TimeoutExpired as err:
        raise PermanentError(f"{what} timed out", code="render_failed") from err
    if proc.returncode != 0:
        log.warning("render failed", extra={"renderer": renderer, "dir": directory, "stderr": proc.stderr[-2000:]})
        raise PermanentError(f"{what} failed: {_why(proc)}", code="render_failed")
    return proc.stdout


def kustomize(files: Mapping[str, str], directory: str, *, tool: Tool | None = None) -> list[dict[str, Any]]:
    """Objects `kustomize build DIRECTORY` (or `kubectl kustomize`) renders from ``files`` (path -> text);
    ``tool``: the program, found on PATH when not given."""
    tool = tool or kustomize_tool()
    if tool is None:
        raise PermanentError("no kustomize renderer (kustomize or kubectl) found", code="renderer_missing")
    with tempfile.TemporaryDirectory(prefix="autofix-kustomize-") as tmp:
        root = Path(tmp)
        _write(root, files)
        out = _render(_limited(_kustomize_argv(tool, directory)), cwd=root, env=sandbox_env(tmp),
                      what=f"{tool.label} {directory}", renderer="kustomize", directory=directory)
    documents = aliases.load_all(out, source=f"{tool.label} {directory or '.'} output")
    return [d for d in documents if isinstance(d, dict)]


def helm(files: Mapping[str, str], chart_dir: str, *, values: dict[str, Any], release: str,
         namespace: str, tool: Tool | None = None) -> list[dict[str, Any]]:
    """Objects the chart in ``chart_dir`` renders with ``values``, offline: `helm template` when ``tool`` (found
    on PATH when not given) is a helm binary, else the Helm SDK in a child process."""
    tool = tool or helm_tool()
    if tool is None:
        raise PermanentError("no Helm renderer installed (helm or helm-python-sdk)", code="renderer_missing")
    if tool.kind == HELM_BIN:
        return _helm_binary(tool, files, chart_dir, values=values, release=release, namespace=namespace)
    with tempfile.TemporaryDirectory(prefix="autofix-helm-") as tmp:
        root = Path(tmp)
        _write(root, files)
        request = json.dumps({"chart": str(root / chart_dir), "values": values, "name": release,
                              "namespace": namespace})
        # The child imports helm_python from our own import path, and nothing else of our environment.
        env = {**sandbox_env(tmp), "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        printed = _render([sys.executable, "-c", _HELM_SCRIPT], cwd=root, env=env, stdin=request,
                          what=f"helm render of {chart_dir}", renderer="helm", directory=chart_dir)
    rendered: dict[str, str] = json.loads(printed)
    out: list[dict[str, Any]] = []
    for name in sorted(rendered):
        if name.endswith("NOTES.txt"):
            continue
        out += [d for d in aliases.load_all(rendered[name], source=f"helm render of {chart_dir}: {name}")
                if isinstance(d, dict)]
    return out


def helm_env(home: Path) -> dict[str, str]:
    """The sandbox plus Helm's own homes under ``home``: no plugin (an empty plugin directory), no repository
    or registry configured, nothing cached, so `helm template` of a chart in the tree can only read the tree."""
    plugins = home / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    return {**sandbox_env(str(home)), "HELM_PLUGINS": str(plugins),
            "HELM_CONFIG_HOME": str(home / "config"), "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
            "HELM_REPOSITORY_CONFIG": str(home / "config" / "repositories.yaml"),
            "HELM_REPOSITORY_CACHE": str(home / "cache" / "repository"),
            "HELM_REGISTRY_CONFIG": str(home / "config" / "registry.json")}


def _helm_binary(tool: Tool, files: Mapping[str, str], chart_dir: str, *, values: dict[str, Any], release: str,
                 namespace: str) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory(prefix="autofix-helm-") as tmp:
        root, home = Path(tmp) / "tree", Path(tmp) / "home"
        _write(root, files)
        values_file = home / "values.json"  # JSON is YAML: the merged values, exactly
        helm_home = helm_env(home)
        values_file.write_text(json.dumps(values), encoding="utf-8")
        argv = [tool.path, "template", release, str(root / chart_dir), "--namespace", namespace,
                "--values", str(values_file)]
        out = _render(_limited(argv), cwd=root, env=helm_home, what=f"helm template {chart_dir}",
                      renderer="helm", directory=chart_dir)
    documents = aliases.load_all(out, source=f"helm template {chart_dir} output")
    return [d for d in documents if isinstance(d, dict)]


class SandboxedRenderer:
    """The ``Renderer`` port over the functions above: the programs found at each call (never cached, so a
    renderer installed or removed while the service runs is seen by the next job). ``search_path`` replaces PATH
    for the lookup and ``helm_sdk=False`` leaves the SDK out (a machine without renderers, in tests)."""

    def __init__(self, *, search_path: str | None = None, helm_sdk: bool = True) -> None:
        self.search_path = search_path
        self.helm_sdk = helm_sdk

    def kustomize_installed(self) -> bool:
        return kustomize_tool(self.search_path) is not None

    def helm_installed(self) -> bool:
        return helm_tool(self.search_path, sdk=self.helm_sdk) is not None

    def kustomize(self, files: Mapping[str, str], directory: str) -> list[dict[str, Any]]:
        tool = kustomize_tool(self.search_path)
        if tool is None:
            raise PermanentError("no kustomize renderer (kustomize or kubectl) found", code="renderer_missing")
        return kustomize(files, directory, tool=tool)

    def helm(self, files: Mapping[str, str], chart_dir: str, *, values: Mapping[str, Any], release: str,
             namespace: str) -> list[dict[str, Any]]:
        tool = helm_tool(self.search_path, sdk=self.helm_sdk)
        if tool is None:
            raise PermanentError("no Helm renderer installed (helm or helm-python-sdk)", code="renderer_missing")
        return helm(files, chart_dir, values=dict(values), release=release, namespace=namespace, tool=tool)
