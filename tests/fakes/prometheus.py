"""A real Prometheus over generated cAdvisor and kube-state-metrics series: the metrics a kube-prometheus-stack
install would hold for a workload, days before its alert.

    from tests.fakes.prometheus import DAY, HOUR, MINUTE, Container, PrometheusServer, Scenario, ramp

    scenario = Scenario(namespace="shop")                 # alert_at: an hour ago (Unix seconds), on the minute
    app = Container("checkout", image="ghcr.io/acme/checkout:1.4.2", memory=ramp(200 * MiB, per_hour=40 * MiB),
                    cpu=0.2, limits={"memory": "512Mi", "cpu": "500m"}, requests={"memory": "256Mi", "cpu": "100m"},
                    restarts=[-30 * HOUR, -20 * HOUR, -10 * HOUR])
    scenario.replica("checkout", "7d9f8b6c5", start=-3 * DAY, containers=[app])   # checkout-7d9f8b6c5-<5 chars>
    with PrometheusServer(scenario, tmp_path) as prom:   # promtool blocks + `prometheus` on 127.0.0.1:<free port>
        prom.url                                          # http://127.0.0.1:PORT
        scenario.starts_at                                # the alert's startsAt (datetime, UTC) for the payload

Time: every offset (a pod's ``start`` and ``end``, a container's ``restarts``) is in seconds relative to the
alert (``Scenario.alert_at``), negative before it. Samples are written every ``interval`` seconds (a scrape) from
each pod's start to its end, or to ``after`` seconds past the alert (data the bot must not read: its window ends
at startsAt). The alert is an hour in the past by default: promtool only imports samples older than now.

A container's ``memory`` (working-set bytes), ``cpu`` (cores in use) and ``throttled`` (share of CFS periods
throttled, 0..1) are constants or functions of the seconds since the container's current run started: a
restart (``restarts``: the kill times) starts the function again at 0, as a process killed at its limit starts
empty. The working set never exceeds the memory limit (the kernel kills there). Helpers: ``ramp`` (a leak:
base + per_hour, capped), ``spikes`` (a plateau with periodic peaks), ``step_at`` (one value before a run age,
another after). ``limits``/``requests`` take quantities ("512Mi", "500m") or numbers (bytes, cores).

What is written, as kube-prometheus-stack scrapes it (labels included):
- cAdvisor (job="kubelet", metrics_path="/metrics/cadvisor", endpoint="https-metrics"): per run of each container
  a series with its own ``id`` (the cgroup path with the container id) and ``name``: a restart starts new series,
  counters from 0 -- ``container_memory_working_set_bytes``, ``container_cpu_usage_seconds_total``, and with a CPU
  limit ``container_cpu_cfs_periods_total`` (10 per second) and ``container_cpu_cfs_throttled_periods_total``;
  plus what a reader must exclude: the pod's cgroup (no ``container``, ``image`` or ``name`` label) and the
  sandbox's pause container (``container="POD"``), unless ``Scenario(pause=False)``.
- kube-state-metrics (job="kube-state-metrics"): ``kube_pod_container_resource_limits`` and
  ``kube_pod_container_resource_requests`` (``resource`` memory/cpu, ``unit`` byte/core) and
  ``kube_pod_container_status_restarts_total``, while the pod exists.

Pods of other workloads (a name sharing the prefix, another namespace) are added the same way; a reader must
tell them apart. ``Scenario.openmetrics()`` is the text promtool reads (for a look, or another TSDB).

``PrometheusServer`` builds the blocks (``promtool tsdb create-blocks-from openmetrics``), starts the real
``prometheus`` on a free loopback port with an empty scrape configuration and a retention that keeps every
block, waits for /-/ready, and stops it when the block ends, or after ``max_seconds`` whatever happens (it stops
itself). ``free_port()`` gives a port nothing listens on ("Prometheus down").
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from app import quantities
from tests.fakes.http_base import StartStop

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
MiB = 1024 * 1024
GiB = 1024 * MiB

Curve = float | Callable[[float], float]  # a constant, or f(seconds since the container's run started)
Quantity = str | float | int

# Kubernetes' rand.SafeEncodeString alphabet: pod-template-hash and the 5-character pod suffix use it.
SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
PAUSE_IMAGE = "registry.k8s.io/pause:3.9"
KUBELET_SERVICE = "kube-prometheus-stack-kubelet"
KSM_SERVICE = "kube-prometheus-stack-kube-state-metrics"
KSM_INSTANCE = "10.0.2.7:8080"
CFS_PERIODS_PER_SECOND = 10.0  # the default CFS period is 100 ms
MAX_SECONDS = 600.0
READY_SECONDS = 30.0
BLOCK_SECONDS = 7200  # promtool's block duration (2 h)


def ramp(base: float, *, per_hour: float, cap: float | None = None) -> Callable[[float], float]:
    """A leak: ``base`` at the run's start, growing by ``per_hour``, never above ``cap``."""
    def at(age: float) -> float:
        value = base + per_hour * age / HOUR
        return min(value, cap) if cap is not None else value
    return at


def spikes(base: float, *, peak: float, every: float, width: float = 2 * MINUTE) -> Callable[[float], float]:
    """A plateau at ``base`` with a peak of ``peak`` lasting ``width`` seconds every ``every`` seconds."""
    def at(age: float) -> float:
        return peak if age % every < width else base
    return at


def step_at(age: float, before: float, after: float) -> Callable[[float], float]:
    """``before`` until the run is ``age`` seconds old, ``after`` from then on (warm-up, a load change)."""
    return lambda t: before if t < age else after


def _value(curve: Curve, age: float) -> float:
    return float(curve(age)) if callable(curve) else float(curve)


def _token(seed: str, length: int, alphabet: str = SAFE_ALPHABET) -> str:
    digest = hashlib.sha256(seed.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:length])


def _memory(value: Quantity) -> float:
    return float(quantities.parse_bytes(value)) if isinstance(value, str) else float(value)


def _cpu(value: Quantity) -> float:
    return quantities.parse_cpu_millis(value) / 1000 if isinstance(value, str) else float(value)


@dataclass
class Container:
    """One container of a pod (see the module docstring for units and time)."""

    name: str
    image: str
    memory: Curve = 64 * MiB
    cpu: Curve = 0.05
    throttled: Curve = 0.0
    limits: dict[str, Quantity] = field(default_factory=dict)  # "memory", "cpu"
    requests: dict[str, Quantity] = field(default_factory=dict)
    restarts: Sequence[float] = ()  # offsets from the alert when it was killed and started again

    def limit(self, resource: str) -> float | None:
        value = self.limits.get(resource)
        return None if value is None else (_memory(value) if resource == "memory" else _cpu(value))

    def request(self, resource: str) -> float | None:
        value = self.requests.get(resource)
        return None if value is None else (_memory(value) if resource == "memory" else _cpu(value))


@dataclass
class Pod:
    name: str
    containers: list[Container]
    start: float  # offset from the alert (seconds), negative
    end: float | None = None  # when it was deleted; None: it still runs
    node: str = "ip-10-0-1-12.eu-west-1.compute.internal"
    instance: str = "10.0.1.12:10250"  # the kubelet's address
    namespace: str | None = None  # None: the scenario's

    @property
    def uid(self) -> str:
        h = hashlib.sha256(f"uid/{self.name}".encode()).hexdigest()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"

    @property
    def qos(self) -> str:
        limits = [(c.limit(r), c.request(r)) for c in self.containers for r in ("memory", "cpu")]
        if all(lim is None and req is None for lim, req in limits):
            return "besteffort"
        if all(lim is not None and (req is None or req == lim) for lim, req in limits):
            return "guaranteed"
        return "burstable"

    def cgroup(self) -> str:
        """The pod's cgroup as cAdvisor names it under the systemd driver (containerd)."""
        uid = self.uid.replace("-", "_")
        if self.qos == "guaranteed":
            return f"/kubepods.slice/kubepods-pod{uid}.slice"
        return f"/kubepods.slice/kubepods-{self.qos}.slice/kubepods-{self.qos}-pod{uid}.slice"


@dataclass
class Scenario:
    """The pods of one or more workloads, their containers' usage over time, and the alert's time."""

    namespace: str = "shop"
    alert_at: float = field(default_factory=lambda: float(int(time.time() // 60 * 60 - HOUR)))
    interval: float = 60.0  # seconds between samples (kube-prometheus-stack scrapes cAdvisor every 30 s)
    after: float = 30 * MINUTE  # samples written past the alert (the bot's window ends at startsAt)
    pause: bool = True  # write the pod cgroup and container="POD" series a reader must exclude
    pods: list[Pod] = field(default_factory=list)

    @property
    def starts_at(self) -> datetime:
        return datetime.fromtimestamp(self.alert_at, tz=UTC)

    def at(self, offset: float) -> float:
        """Unix seconds of an offset from the alert."""
        return self.alert_at + offset

    def pod(self, name: str, *, containers: list[Container], start: float, end: float | None = None,
            node: str | None = None, namespace: str | None = None) -> Pod:
        pod = Pod(name=name, containers=containers, start=start, end=end, namespace=namespace)
        if node is not None:
            pod.node = node
        self.pods.append(pod)
        return pod

    def replica(self, deployment: str, revision: str, *, containers: list[Container], start: float,
                end: float | None = None, suffix: str | None = None, node: str | None = None) -> Pod:
        """A Deployment's pod: ``<deployment>-<revision>-<5 chars>``, revision being the pod-template-hash."""
        suffix = suffix or _token(f"{deployment}/{revision}/{start}/{len(self.pods)}", 5)
        return self.pod(f"{deployment}-{revision}-{suffix}", containers=containers, start=start, end=end, node=node)

    # ---- OpenMetrics ----------------------------------------------------------------------------------

    def openmetrics(self) -> str:
        """The whole OpenMetrics text (for a look, or another TSDB); PrometheusServer writes it per block."""
        lines: list[str] = []
        for name, (kind, help_, samples) in self._families().items():
            if samples:
                lines += [f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *(line for _, line in samples)]
        return "\n".join([*lines, "# EOF"]) + "\n"

    def openmetrics_blocks(self) -> dict[int, str]:
        """The OpenMetrics text per 2-hour TSDB block (block start -> text): promtool reads its whole input once
        per block it writes, so one input per block keeps the backfill linear in the number of samples."""
        windows: dict[int, list[str]] = {}
        for name, (kind, help_, samples) in self._families().items():
            per_window: dict[int, list[str]] = {}
            for t, line in samples:
                per_window.setdefault(int(t // BLOCK_SECONDS) * BLOCK_SECONDS, []).append(line)
            for window, lines in per_window.items():
                windows.setdefault(window, []).extend([f"# HELP {name} {help_}", f"# TYPE {name} {kind}", *lines])
        return {w: "\n".join([*lines, "# EOF"]) + "\n" for w, lines in sorted(windows.items())}

    def _families(self) -> dict[str, tuple[str, str, list[tuple[float, str]]]]:
        families: dict[str, tuple[str, str, list[tuple[float, str]]]] = {
            name: (kind, help_, []) for name, kind, help_ in _FAMILIES}
        for pod in self.pods:
            self._pod_samples(pod, families)
        return families

    def write(self, path: Path) -> Path:
        path.write_text(self.openmetrics(), encoding="utf-8")
        return path

    def _times(self, pod: Pod) -> list[float]:
        first = math.ceil(self.at(pod.start) / self.interval) * self.interval
        last = self.at(pod.end) if pod.end is not None else self.alert_at + self.after
        last = min(last, time.time() - MINUTE)  # promtool refuses nothing, but Prometheus reads only the past
        count = int((last - first) // self.interval) + 1
        return [first + i * self.interval for i in range(max(count, 0))]

    def _pod_samples(self, pod: Pod, families: dict[str, tuple[str, str, list[tuple[float, str]]]]) -> None:
        times = self._times(pod)
        namespace = pod.namespace or self.namespace
        kubelet = {"endpoint": "https-metrics", "instance": pod.instance, "job": "kubelet",
                   "metrics_path": "/metrics/cadvisor", "namespace": namespace, "node": pod.node,
                   "pod": pod.name, "service": KUBELET_SERVICE}
        ksm = {"endpoint": "http", "instance": KSM_INSTANCE, "job": "kube-state-metrics",
               "namespace": namespace, "node": pod.node, "pod": pod.name, "service": KSM_SERVICE,
               "uid": pod.uid}
        pod_memory = [0.0] * len(times)
        pod_cpu = [0.0] * len(times)
        for container in pod.containers:
            memory, cpu = self._container(pod, container, times, kubelet, families)
            pod_memory = [a + b for a, b in zip(pod_memory, memory, strict=True)]
            pod_cpu = [a + b for a, b in zip(pod_cpu, cpu, strict=True)]
            self._state(pod, container, times, ksm, families)
        if self.pause and times:
            sandbox = hashlib.sha256(f"sandbox/{pod.name}".encode()).hexdigest()
            pause = {**kubelet, "container": "POD", "id": f"{pod.cgroup()}/cri-containerd-{sandbox}.scope",
                     "image": PAUSE_IMAGE, "name": sandbox}
            _gauge(families, "container_memory_working_set_bytes", pause, times, [450_560.0] * len(times))
            _counter(families, "container_cpu_usage_seconds_total", pause, times, [0.0001] * len(times),
                     self.interval)
            whole = {**kubelet, "id": pod.cgroup()}  # the pod's cgroup: no container, image or name label
            _gauge(families, "container_memory_working_set_bytes", whole, times, [m + 450_560.0 for m in pod_memory])
            _counter(families, "container_cpu_usage_seconds_total", whole, times, pod_cpu, self.interval)

    def _runs(self, pod: Pod, container: Container, times: list[float]) -> Iterator[tuple[int, float, list[float]]]:
        """(run index, run start, its sample times) for each run of the container between restarts."""
        kills = sorted(self.at(r) for r in container.restarts if pod.start < r)
        bounds = [self.at(pod.start), *kills]
        for index, begin in enumerate(bounds):
            end = bounds[index + 1] if index + 1 < len(bounds) else math.inf
            yield index, begin, [t for t in times if begin <= t < end]

    def _container(self, pod: Pod, container: Container, times: list[float], kubelet: dict[str, str],
                   families: dict[str, tuple[str, str, list[tuple[float, str]]]]) -> tuple[list[float], list[float]]:
        limit = container.limit("memory")
        all_memory: list[float] = []
        all_cpu: list[float] = []
        for index, begin, run in self._runs(pod, container, times):
            if not run:
                continue
            cid = hashlib.sha256(f"cid/{pod.name}/{container.name}/{index}".encode()).hexdigest()
            labels = {**kubelet, "container": container.name, "id": f"{pod.cgroup()}/cri-containerd-{cid}.scope",
                      "image": container.image, "name": cid}
            memory = [_value(container.memory, t - begin) for t in run]
            if limit is not None:
                memory = [min(m, limit) for m in memory]
            cpu = [max(_value(container.cpu, t - begin), 0.0) for t in run]
            _gauge(families, "container_memory_working_set_bytes", labels, run, memory)
            _counter(families, "container_cpu_usage_seconds_total", labels, run, cpu, self.interval)
            if container.limit("cpu") is not None:
                periods = [CFS_PERIODS_PER_SECOND] * len(run)
                throttled = [CFS_PERIODS_PER_SECOND * min(max(_value(container.throttled, t - begin), 0.0), 1.0)
                             for t in run]
                _counter(families, "container_cpu_cfs_periods_total", labels, run, periods, self.interval)
                _counter(families, "container_cpu_cfs_throttled_periods_total", labels, run, throttled, self.interval)
            all_memory += memory
            all_cpu += cpu
        return all_memory, all_cpu

    def _state(self, pod: Pod, container: Container, times: list[float], ksm: dict[str, str],
               families: dict[str, tuple[str, str, list[tuple[float, str]]]]) -> None:
        if not times:
            return
        labels = {**ksm, "container": container.name}
        for family, get in (("kube_pod_container_resource_limits", container.limit),
                            ("kube_pod_container_resource_requests", container.request)):
            for resource, unit in (("memory", "byte"), ("cpu", "core")):
                value = get(resource)
                if value is not None:
                    _gauge(families, family, {**labels, "resource": resource, "unit": unit}, times,
                           [value] * len(times))
        kills = sorted(self.at(r) for r in container.restarts if pod.start < r)
        restarts = [float(sum(1 for k in kills if k <= t)) for t in times]
        _gauge(families, "kube_pod_container_status_restarts_total", labels, times, restarts)


_FAMILIES = (
    ("container_memory_working_set_bytes", "gauge", "Current working set of the container in bytes"),
    ("container_cpu_usage_seconds", "counter", "Cumulative cpu time consumed in seconds."),
    ("container_cpu_cfs_periods", "counter", "Number of elapsed enforcement period intervals."),
    ("container_cpu_cfs_throttled_periods", "counter", "Number of throttled period intervals."),
    ("kube_pod_container_resource_limits", "gauge",
     "The number of requested limit resource by a container. It is recommended to use the "
     "kube_pod_resource_limits metric exposed by kube-scheduler instead, as it is more precise."),
    ("kube_pod_container_resource_requests", "gauge",
     "The number of requested request resource by a container. It is recommended to use the "
     "kube_pod_resource_requests metric exposed by kube-scheduler instead, as it is more precise."),
    ("kube_pod_container_status_restarts", "counter",
     "The number of container restarts per container."),
)


def _family(name: str) -> str:
    return name.removesuffix("_total") if name.endswith("_total") else name


def _series(name: str, labels: dict[str, str]) -> str:
    body = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{body}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _gauge(families: dict[str, tuple[str, str, list[tuple[float, str]]]], name: str, labels: dict[str, str],
           times: list[float], values: list[float]) -> None:
    head = _series(name, labels)
    families[_family(name)][2].extend((t, f"{head} {v!r} {t:.3f}") for t, v in zip(times, values, strict=True))


def _counter(families: dict[str, tuple[str, str, list[tuple[float, str]]]], name: str, labels: dict[str, str],
             times: list[float], rates: list[float], interval: float) -> None:
    """A counter from 0 at the series' first sample, growing by rate x interval per sample."""
    total, values = 0.0, []
    for index, rate in enumerate(rates):
        if index:
            total += rate * interval
        values.append(round(total, 6))
    _gauge(families, name, labels, times, values)


# ---- the server --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nothing listens on (right now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_blocks(blocks: dict[int, str], data: Path, *, workdir: Path) -> None:
    """promtool's backfill of each 2-hour input (Scenario.openmetrics_blocks) into TSDB blocks under ``data``,
    a few at a time."""
    promtool = shutil.which("promtool")
    if promtool is None:
        raise RuntimeError("promtool not found: install the Debian package `prometheus` (scripts/system-deps.sh)")
    data.mkdir(parents=True, exist_ok=True)

    def one(window: int, text: str) -> None:
        source, out = workdir / f"block-{window}.om.txt", workdir / f"block-{window}"
        source.write_text(text, encoding="utf-8")
        done = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "-q", str(source), str(out)],
                              capture_output=True, text=True, timeout=300, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"promtool failed on {source.name}: {done.stderr.strip()[-2000:]}")
        for block in out.iterdir():
            block.rename(data / block.name)
        out.rmdir()
        source.unlink()

    with ThreadPoolExecutor(max_workers=max(os.cpu_count() or 1, 2)) as pool:
        for future in [pool.submit(one, window, text) for window, text in blocks.items()]:
            future.result()


class PrometheusServer(StartStop):
    """The real ``prometheus`` on 127.0.0.1 over a scenario's series (or an OpenMetrics text), stopped on exit."""

    def __init__(self, scenario: Scenario | None, directory: Path, *, openmetrics: str | None = None,
                 max_seconds: float = MAX_SECONDS, web_config: str | None = None, ca_file: Path | None = None) -> None:
        """``web_config``: Prometheus' --web.config.file (tls_server_config: the URL is https, and ``ca_file``
        is what the readiness check trusts)."""
        self.directory = directory
        self.scenario = scenario
        self._text = openmetrics
        self._web_config = web_config
        self._ca_file = ca_file
        self.scheme = "https" if web_config and "tls_server_config" in web_config else "http"
        self._max_seconds = max_seconds
        self._process: subprocess.Popen[bytes] | None = None
        self._timer: threading.Timer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self) -> None:
        binary = shutil.which("prometheus")
        if binary is None:
            raise RuntimeError("prometheus not found: install the Debian package `prometheus` "
                               "(scripts/system-deps.sh)")
        self.directory.mkdir(parents=True, exist_ok=True)
        data = self.directory / "tsdb"
        if self._text is not None:
            blocks = {0: self._text}
        else:
            blocks = (self.scenario or Scenario()).openmetrics_blocks()
        build_blocks(blocks, data, workdir=self.directory)
        config = self.directory / "prometheus.yml"
        config.write_text("# no scrape configs: the TSDB holds backfilled blocks only\n", encoding="utf-8")
        web = []
        if self._web_config is not None:
            (self.directory / "web.yml").write_text(self._web_config, encoding="utf-8")
            web = [f"--web.config.file={self.directory / 'web.yml'}"]
        for _attempt in range(3):  # a free port may be taken between the check and the bind
            self.port = free_port()
            log = (self.directory / "prometheus.log").open("wb")
            # coreutils' timeout stops prometheus after max_seconds even if this process dies without cleaning up.
            limit = [timeout, "-k", "5", f"{self._max_seconds:.0f}"] if (timeout := shutil.which("timeout")) else []
            self._process = subprocess.Popen(
                [*limit, binary, f"--config.file={config}", f"--storage.tsdb.path={data}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=100y",
                 "--log.level=warn", *web],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
            if self._wait_ready():
                break
            self._kill()
        else:
            raise RuntimeError(f"prometheus did not become ready: {self.log()[-2000:]}")
        self._timer = threading.Timer(self._max_seconds, self._kill)
        self._timer.daemon = True
        self._timer.start()

    def log(self) -> str:
        path = self.directory / "prometheus.log"
        return path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._kill()

    def _kill(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def _wait_ready(self) -> bool:
        give_up = time.monotonic() + READY_SECONDS
        while time.monotonic() < give_up:
            if self._process is None or self._process.poll() is not None:
                return False
            context = ssl.create_default_context(cafile=str(self._ca_file)) if self._ca_file else None
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2, context=context) as response:
                    if response.status == 200:
                        return True
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        return False
