"""Renderers cannot reach the network or exhaust the machine, whatever the GitOps repository holds.

Two layers, each tested on its own: app/sources/layouts/kustomize.py refuses a tree naming anything remote before
a renderer runs (the end-to-end test below), and app/adapters/renderers.py runs `kubectl kustomize` and the
Helm child sandboxed (no inherited environment, proxies pointing nowhere, no git transport, memory and CPU
limits), so a field the check misses still cannot fetch (the tests calling the adapter directly).

A loopback listener stands in for the attacker's server: it records every connection (an HTTP GET, git's
smart-HTTP request, a TLS or SSH greeting) and answers GETs with a valid kustomize plugin config, so that a
renderer which does reach it renders successfully, as it did on the unfixed code ("Render verified").
"""

from __future__ import annotations

import json
import shutil
import socket
import socketserver
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from app.adapters import renderers
from app.errors import PermanentError
from tests.conftest import SCENARIOS
from tests.e2e.test_e2e_handle import TOKEN, git, run_handle
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

pytestmark = pytest.mark.e2e  # the real kubectl and Helm renderers

# What the attacker's server answers: builtin plugin configs kustomize applies without any flag.
TRANSFORMER = """apiVersion: builtin
kind: LabelTransformer
metadata:
  name: injected
labels:
  injected-by: remote-transformer
fieldSpecs:
- path: metadata/labels
  create: true
"""
GENERATOR = """apiVersion: builtin
kind: ConfigMapGenerator
metadata:
  name: injected
literals:
- injected=remote-generator
"""


class Listener:
    """A TCP listener on 127.0.0.1 (ephemeral port) recording the first bytes of every connection; it answers
    HTTP GETs for /transformer.yaml and /generator.yaml. Stops on exit, or by itself after ``lifetime``."""

    def __init__(self, lifetime: float = 120.0) -> None:
        self.connections: list[bytes] = []
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.settimeout(5)
                try:
                    first = self.request.recv(4096)
                except OSError:
                    first = b""
                outer.connections.append(first)
                if first.startswith(b"GET "):
                    path = first.split(b" ", 2)[1].decode()
                    body = {"/transformer.yaml": TRANSFORMER, "/generator.yaml": GENERATOR}.get(path)
                    status = "200 OK" if body else "404 Not Found"
                    data = (body or "").encode()
                    self.request.sendall(f"HTTP/1.1 {status}\r\nContent-Length: {len(data)}\r\n"
                                         "Connection: close\r\n\r\n".encode() + data)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._deadline = threading.Timer(lifetime, self._server.shutdown)
        self._deadline.daemon = True

    def __enter__(self) -> Listener:
        self._thread.start()
        self._deadline.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._deadline.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture
def listener() -> Iterator[Listener]:
    with Listener() as server:
        yield server


def _probe(server: Listener) -> None:
    """One connection of our own after the run: proves the listener was up and recording all along."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"PROBE\r\n\r\n")
        sock.recv(16)
    assert server.connections[-1:] == [b"PROBE\r\n\r\n"]
    server.connections.pop()


# ---------------------------------------------------------------- the check: nothing remote is rendered


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_remote_transformer_and_generator_are_refused_and_never_fetched(tmp_path: Path, mlflow_uri: str,
                                                                        listener: Listener) -> None:
    """The overlay Argo CD deploys gains a remote `transformers:` and `generators:` entry; `autofix handle`
    over the real chain (loopback API server, bare git repo, GitHub fake) answers no_fix naming the remote
    reference, pushes nothing, and the attacker's server hears nothing. (Before the fix: a PR saying
    "Render verified" with the remote transformer applied, and two GETs on the listener.)"""
    scenario = tmp_path / "scenario"
    shutil.copytree(SCENARIOS / "layout-kustomize-patch", scenario)
    overlay = scenario / "repo" / "apps" / "checkout" / "overlays" / "prod" / "kustomization.yaml"
    overlay.write_text(overlay.read_text() + "transformers:\n"
                       f"  - http://127.0.0.1:{listener.port}/transformer.yaml\n"
                       "generators:\n"
                       f"  - http://127.0.0.1:{listener.port}/generator.yaml\n")
    with FakeGitHub("acme/gitops", token=TOKEN) as gh, KubeApiFake.from_snapshot(scenario / "cluster.json") as kube:
        [result] = run_handle(scenario, tmp_path, mlflow_uri, gh, kube, export=False)
        pulls = gh.requests_to("POST", "/pulls")

    _probe(listener)
    assert listener.connections == []
    assert result["outcome"] == "no_fix", result
    assert "remote reference" in result["reason"] and f"127.0.0.1:{listener.port}" in result["reason"]
    assert pulls == []
    branches = git("branch", "--format=%(refname:short)", cwd=tmp_path / "gitops.git").split()
    assert branches == ["main"]


# ---------------------------------------------------------------- the sandbox: even an unchecked field


SETTINGS = """apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  LOG_LEVEL: info
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("field", "url"), [
    ("resources", "http://LOCALHOST:{port}/deploy.yaml"),  # kustomize's HTTP loader (Go net/http)
    ("resources", "https://LOCALHOST:{port}/acme/base.git//deploy?ref=main"),  # HTTP loader, then `git fetch`
    ("resources", "ssh://git@127.0.0.1:{port}/acme/base.git//deploy"),  # `git fetch` over ssh
    ("transformers", "http://LOCALHOST:{port}/transformer.yaml"),
    ("generators", "http://LOCALHOST:{port}/generator.yaml"),
], ids=["http-file", "git-https", "git-ssh", "transformer", "generator"])
def test_the_renderer_cannot_fetch_even_when_the_check_is_bypassed(listener: Listener, field: str,
                                                                   url: str) -> None:
    """adapters.renderers.kustomize called directly, so nothing refuses the remote entry first.

    The host is spelled LOCALHOST on purpose: Go's net/http never proxies "localhost" or a loopback IP
    literal (whatever NO_PROXY says), so only a name outside that exemption shows the proxy variables at
    work on a loopback-only test machine; /etc/hosts resolves it, case-insensitively, to 127.0.0.1. Without
    the sandbox every case here connects to the listener (measured: the HTTP GET, git's info/refs request,
    a TLS ClientHello, an SSH greeting)."""
    remote = url.format(port=listener.port)
    extra = f"- {remote}\n" if field == "resources" else f"{field}:\n- {remote}\n"
    files = {"kustomization.yaml": "resources:\n- settings.yaml\n" + extra, "settings.yaml": SETTINGS}
    with pytest.raises(PermanentError) as err:
        renderers.kustomize(files, "")
    _probe(listener)
    assert listener.connections == []
    assert err.value.code == "render_failed"


@pytest.mark.parametrize(("help_text", "restrictor"), [
    ("      --load-restrictor='LoadRestrictionsRootOnly':", " --load-restrictor LoadRestrictionsRootOnly"),
    ("  -h, --help   help for kustomize", ""),  # kubectl <= 1.20 (Debian bookworm): no such flag
], ids=["kubectl-1.21+", "kubectl-1.20"])
def test_the_renderer_child_gets_limits_and_no_inherited_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                help_text: str, restrictor: str) -> None:
    """A stand-in kubectl (a shell script first on PATH, as in the kustomize-too-old test) reports the
    environment and limits it was started with: the real launcher and exec, only the program is ours. Its
    `kustomize --help` decides whether the load restrictor is passed (an old kubectl rejects the flag)."""
    fake = tmp_path / "bin" / "kubectl"
    report = tmp_path / "report.txt"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\nif [ \"$2\" = --help ]; then echo \"{help_text}\"; exit 0; fi\n"
                    f"{{ env; echo \"data=$(ulimit -d) cpu=$(ulimit -t)\"; echo \"argv=$*\"; }} > {report}\n"
                    "exit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_canary_must_not_reach_the_renderer")
    with pytest.raises(PermanentError):
        renderers.kustomize({"kustomization.yaml": "resources: []\n"}, "")
    seen = report.read_text().splitlines()
    env = dict(line.split("=", 1) for line in seen if "=" in line and not line.startswith(("data=", "argv=")))
    assert "GITHUB_TOKEN" not in env and not [line for line in seen if "ghs_canary" in line]
    proxies = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
    assert {name: env.get(name) for name in proxies} == dict.fromkeys(proxies, "http://127.0.0.1:9")
    assert (env["NO_PROXY"], env["no_proxy"], env["GIT_ALLOW_PROTOCOL"], env["GIT_TERMINAL_PROMPT"]) == ("", "", "none", "0")
    assert env["HOME"].startswith(tempfile.gettempdir()) and "autofix-kustomize-" in env["HOME"]
    assert f"data={renderers.MEMORY_LIMIT // 1024} cpu={renderers.CPU_LIMIT}" in seen
    assert f"argv=kustomize .{restrictor}" in seen


# ---------------------------------------------------------------- limits: a render cannot take the machine


HUGE_RANGE = """apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-big
data:
{{- range untilStep 0 100000000 1 }}
  key-{{ . }}: "{{ $.Values.filler }}"
{{- end }}
"""


@pytest.mark.timeout(120)
def test_a_helm_template_with_a_huge_range_is_stopped_at_the_memory_limit() -> None:
    """untilStep builds a list of 10^8 integers before the range even starts (1.85 GB measured for a render
    like it): the child stops at the renderer's memory limit and the render is refused, cleanly."""
    if not renderers.helm_available():
        pytest.fail("helm-python-sdk is a test dependency (the helm extra); install it with `make setup-test`")
    files = {"chart/Chart.yaml": "apiVersion: v2\nname: big\nversion: 0.1.0\n",
             "chart/values.yaml": "filler: x\n", "chart/templates/configmap.yaml": HUGE_RANGE}
    with pytest.raises(PermanentError) as err:
        renderers.helm(files, "chart", values={"filler": "x" * 64}, release="r", namespace="shop")
    assert err.value.code == "render_failed"
    assert f"memory limit ({renderers.MEMORY_LIMIT >> 20} MiB)" in err.value.message, err.value.message
    # The same chart with a small range renders: the limit stops runaways, not charts.
    files["chart/templates/configmap.yaml"] = HUGE_RANGE.replace("100000000", "10")
    [config] = renderers.helm(files, "chart", values={"filler": "x"}, release="r", namespace="shop")
    assert len(config["data"]) == 10 and json.dumps(config).count('"x"') == 10


@pytest.mark.parametrize("stderr", [
    "fatal error: runtime: out of memory\n\nruntime stack:\n",
    "runtime/cgo: pthread_create failed: Resource temporarily unavailable\nSIGABRT: abort\nPC=0x4a5f81 m=3 sigcode=18446744073709551610\n",
], ids=["allocation", "thread-stack"])
def test_a_go_child_at_the_data_limit_is_named_as_such(stderr: str) -> None:
    import subprocess

    why = renderers._why(subprocess.CompletedProcess(["helm"], 2, "", stderr))
    assert why.startswith("stopped at the renderer memory limit (512 MiB): "), why
