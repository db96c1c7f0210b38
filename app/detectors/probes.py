"""Probes that kill or block a healthy container.

``detect`` (cause ``probe_misconfigured``): Unhealthy events for a probe whose port the container does not
declare (a number it does not listen on, a named port that does not exist), or HTTP probes answering 404.
Every probe of the container answering 404 is reported; a path is corrected only where the evidence shows
the path the container serves: another probe of it (or of another container of the pod) passing on the same
port, its own access log answering 2xx on a health path, or a health-check path declared for its pods (a
Service's load-balancer annotation). Where the cluster shows none, the finding stays unfixable and the declared
stage (app/stages/declared.py) looks in git: one path the manifests or the chart's values declare
(``declared_in_values``, ``declared_in_objects``) that no access log contradicts.

``detect_slow_start`` (cause ``slow_start``): the liveness probe kills a container that is still starting.
Either the log states how long the start took (Spring Boot's "Started X in 94.3 seconds", the time from the
first line to a "listening"/"ready" line), or the start is always cut short and never says: then the previous
log shows steady progress and no error until the kill (exit 137/143), and the time to ready is estimated from
the pace of its last counter ("Loaded 1200 of 5000", "Running migration 12/40") and from how long the
previous revision took to become ready, where the evidence holds both.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app import kube, podspecs
from app.detectors import loglines
from app.models.causes import Cause, Facts, ProbeChange, ProbeFacts, SlowStartFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

PROBES = {"livenessProbe": "Liveness", "readinessProbe": "Readiness", "startupProbe": "Startup"}
_STATUS_404 = "statuscode: 404"
_SPRING_STARTED = re.compile(r"\bStarted \S+ in (\d+(?:\.\d+)?) seconds")
_READY_LINE = re.compile(r"(?i)\b(listening|ready|started|startup complete|server running)\b")
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?")
# A process saying it is up (not another server it found listening): Spring's and Quarkus' "started in", Go and
# Node "listening on", gunicorn's "Listening at: http://...".
_UP = re.compile(r"(?i)\b(?:started (?:\S+ )?in \d|listening on\b|listening at: |now listening|server (?:is )?(?:running|"
                 r"started)|ready to (?:accept|serve)|startup complete)")
# A path a container answers for its health (the last segment): what an access log's 2xx must look like.
_HEALTH_PATH = re.compile(r"(?i)(?:^|/)_?(healthz?|health-?check|healthy|livez?|liveness|alive|readyz?|readiness|"
                          r"ready|ping|status|startupz?|started)/?$")
_PROBE_WORDS = {"livenessProbe": ("live", "alive", "health"), "readinessProbe": ("ready", "readiness"),
                "startupProbe": ("start",)}
# Cloud load balancers' health-check path annotations on a Service in front of the pods (and the AWS Load
# Balancer Controller's on an Ingress routing to them).
_LB_HEALTH_PATH = ("service.beta.kubernetes.io/aws-load-balancer-healthcheck-path",
                   "service.beta.kubernetes.io/azure-load-balancer-health-probe-request-path",
                   "service.beta.kubernetes.io/oci-load-balancer-health-check-path",
                   "service.beta.kubernetes.io/do-loadbalancer-healthcheck-path",
                   "service.beta.kubernetes.io/alibaba-cloud-loadbalancer-health-check-uri",
                   "alb.ingress.kubernetes.io/healthcheck-path")
# How the kubelet ends a container it kills: SIGTERM (143; 0 "Completed" when the process exits cleanly on it)
# or SIGKILL after the grace period (137). OOMKilled is the kernel's doing, not the probe's.
_KILL_EXITS = {(137, "Error"), (143, "Error"), (137, "Completed"), (143, "Completed"), (0, "Completed")}


# ---------------------------------------------------------------- probe on the wrong port or path


def detect(ev: Evidence) -> Diagnosis | None:
    pod_spec = kube.pod_spec_of(ev.object, str(ev.object.get("kind") or ev.workload.kind))
    containers = sorted(pod_spec.get("containers") or [], key=lambda c: c.get("name") != ev.incident.container)
    for c in containers:
        for probe in PROBES:
            diagnosis = _check_port(ev, c, probe)
            if diagnosis is not None:
                return diagnosis
        failing = [(probe, spec, failures) for probe in PROBES
                   if (found := _http_404(ev, c, probe)) is not None for spec, failures in [found]]
        if failing:
            return _wrong_paths(ev, c, failing)
    return None


def _check_port(ev: Evidence, c: dict[str, Any], probe: str) -> Diagnosis | None:
    handler, spec = _handler(c.get(probe))
    failures = probe_failures(ev, str(c.get("name")), probe)
    if handler is None or not failures:
        return None
    declared = podspecs.declared_ports(c)
    port = spec.get("port")
    # containerPorts are informational: an undeclared port is wrong only once the container is up and still
    # fails the probe there (a start the probe cuts short fails on the right port too).
    if declared and podspecs.resolve_port(port, declared) is None and _up(ev, c, probe):
        return _wrong_port(ev, c, probe, handler, port, declared, failures)
    return None


def _up(ev: Evidence, c: dict[str, Any], probe: str) -> bool:
    """Whether the container got up: another of its probes passes, or its log says it started or served."""
    name = str(c.get("name"))
    if any(other != probe and _handler(c.get(other))[0] and not probe_failures(ev, name, other) for other in PROBES):
        return True
    for key, text in ev.logs.items():
        if key.endswith(f"/{name}") and (start_seconds(text) is not None or any(
                _UP.search(line.text) or loglines.request(line) for line in loglines.parse(text))):
            return True
    return False


def _http_404(ev: Evidence, c: dict[str, Any], probe: str) -> tuple[dict[str, Any], list[str]] | None:
    handler, spec = _handler(c.get(probe))
    failures = probe_failures(ev, str(c.get("name")), probe)
    if handler != "httpGet" or not any(_STATUS_404 in m for m in failures):
        return None
    return spec, [m for m in failures if _STATUS_404 in m]


def _wrong_port(ev: Evidence, c: dict[str, Any], probe: str, handler: str, port: Any, declared: dict[str, int],
                failures: list[str]) -> Diagnosis:
    name = str(c.get("name"))
    new = _port_choice(ev, c, probe, declared)
    offered = ", ".join(f"{n} ({p})" if not n.isdigit() else n for n, p in declared.items())
    kind = "named port" if isinstance(port, str) and not port.isdigit() else "port"
    lines = [f"container {name} {probe}.{handler}.port={port}; declared containerPorts: {offered}",
             *failures[:4], *_kills(ev, name)[:2]]
    facts = ProbeFacts(container=name, init=False, probe=probe, handler=handler, field="port", old=port, new=new)
    finding = Finding(cause=Cause.PROBE_MISCONFIGURED, confidence=0.9, container=name, evidence=lines, facts=facts,
                      root_cause=f"The {PROBES[probe].lower()} probe of container {name} in {ev.workload.short} "
                                 f"targets {kind} {port}, which the container does not declare "
                                 f"(it declares {offered}), so the probe fails.")
    if new is None:
        return Diagnosis(detector="probes", finding=finding, fixable=False,
                         no_fix_reason=(f"the container declares several ports ({offered}) and none is named http: "
                                        "which one serves the probe is a guess; point the probe at it by hand"))
    return Diagnosis(detector="probes", finding=finding)


def _port_choice(ev: Evidence, c: dict[str, Any], probe: str, declared: dict[str, int]) -> str | int | None:
    """The named port http, else the single declared port, else the port another passing probe uses."""
    if "http" in declared:
        return "http"
    if len(declared) == 1:
        return next(iter(declared.values()))
    for other in PROBES:
        handler, spec = _handler(c.get(other))
        if other != probe and handler and podspecs.resolve_port(spec.get("port"), declared) is not None \
                and not probe_failures(ev, str(c.get("name")), other):
            port = str(spec.get("port"))
            return int(port) if port.isdigit() else port
    return None


@dataclass(frozen=True)
class _Served:
    """A path the container serves, and the evidence line that shows it."""

    path: str
    shown_by: str


def _wrong_paths(ev: Evidence, c: dict[str, Any], failing: list[tuple[str, dict[str, Any], list[str]]]) -> Diagnosis:
    """Every probe of the container answering 404, each with the path the evidence shows served (if any)."""
    name = str(c.get("name"))
    declared = podspecs.declared_ports(c)
    failing_paths = {str(spec.get("path", "/")) for _, spec, _ in failing}
    access = access_log(ev, name)
    pod = kube.pod_spec_of(ev.object, str(ev.object.get("kind") or ev.workload.kind))
    served = {probe: _served_path(ev, c, probe, spec, declared, failing_paths, access, pod=pod)
              for probe, spec, _ in failing}
    what = [f"{probe} GET {spec.get('path', '/')} on port {spec.get('port')}" for probe, spec, _ in failing]
    lines = [f"container {name} {w} answers HTTP 404" for w in what]
    lines += [f for _, _, failures in failing for f in failures[:2]]
    lines += [f"{probe}: {s.shown_by}" for probe, s in served.items() if s is not None]
    not_found = {r.path: r for r in reversed(access) if r.status == 404 and r.path in failing_paths}
    lines += [f"the container's own log answers {r.method} {r.path} with 404: {r.text}" for r in not_found.values()]
    lines += _kills(ev, name)[:2]
    changes = [ProbeChange(probe=probe, handler="httpGet", field="path", old=str(spec.get("path", "/")),
                           new=s.path if (s := served[probe]) is not None else None) for probe, spec, _ in failing]
    first, *rest = changes
    facts = ProbeFacts(container=name, init=False, probe=first.probe, handler="httpGet", field="path", old=first.old,
                       new=first.new, others=rest or None)
    probes = _and(f"{PROBES[p].lower()} probe" for p, _, _ in failing)
    where = _and(f"{p} at {spec.get('path', '/')}" for p, spec, _ in failing)
    root = (f"The {probes} of container {name} in {ev.workload.short} get{'s' if len(failing) == 1 else ''} "
            f"HTTP 404 ({where}): the application does not serve that path on that port.")
    unknown = [w for w, (probe, _, _) in zip(what, failing, strict=True) if served[probe] is None]
    if unknown:
        finding = Finding(cause=Cause.PROBE_MISCONFIGURED, confidence=0.7, container=name, evidence=lines,
                          facts=facts, root_cause=root)
        kubelet = "; ".join(dict.fromkeys(_message(f) for _, _, failures in failing for f in failures[:1]))
        return Diagnosis(detector="probes", finding=finding, fixable=False, no_fix_reason=(
            f"{_and(w + ' answers HTTP 404' for w in unknown)} (kubelet: {kubelet}), and nothing in the evidence "
            "shows which path the container serves (no other probe of it passing on the port, no 2xx on a health "
            "path in its access log, no health-check path declared for its pods): set the "
            f"{'path' if len(unknown) == 1 else 'paths'} by hand"))
    shown = "; ".join(f"{p} -> {s.path}: {s.shown_by}" for p, s in served.items() if s is not None)
    finding = Finding(cause=Cause.PROBE_MISCONFIGURED, confidence=0.8, container=name, evidence=lines, facts=facts,
                      root_cause=f"{root} The container serves it elsewhere ({shown}).")
    return Diagnosis(detector="probes", finding=finding)


def _served_path(ev: Evidence, c: dict[str, Any], probe: str, spec: dict[str, Any], declared: dict[str, int],
                 failing_paths: set[str], access: list[loglines.Request], *, pod: dict[str, Any]) -> _Served | None:
    """The path that serves ``probe``: another probe passing on its port (the container's own, or another
    container's of the pod probing that port), else a health path answering 2xx in the container's access log,
    else a health-check path declared for its pods."""
    port = podspecs.resolve_port(spec.get("port"), declared) if declared else spec.get("port")
    found: list[_Served] = []
    passing = (_passing_path(ev, c, probe, port, declared, str(spec.get("path", "/")))
               or _sidecar_path(ev, c, pod, port, failing_paths))
    if passing is not None:
        found.append(passing)
    ok = {r.path: r for r in access if 200 <= r.status < 300 and r.method in ("GET", "HEAD")
          and r.path not in failing_paths and _HEALTH_PATH.search(r.path)}
    if logged := _one_for(probe, sorted(ok)):
        r = ok[logged]
        found.append(_Served(logged, f"the container's own log answers {r.method} {r.path} with {r.status}: "
                                     f"{r.text}"))
    if lb := _one_for(probe, sorted(_declared_health_paths(ev) - failing_paths)):
        found.append(_Served(lb, f"a Service in front of the pods declares the health-check path {lb}"))
    if not found:
        return None
    # The strongest evidence decides (a probe passing, then the access log, then a declaration); the rest that
    # agree with it are shown with it.
    return _Served(found[0].path, "; ".join(f.shown_by for f in found if f.path == found[0].path))


def _one_for(probe: str, paths: list[str]) -> str | None:
    """The one candidate not named for another probe's purpose (never /livez for readiness), or the one named
    for this probe's (/readyz for readiness); None: a guess."""
    others = {w for other, words in _PROBE_WORDS.items() if other != probe for w in words} - {"health"}
    fitting = [p for p in paths if not any(w in p.lower() for w in others)]
    if len(fitting) == 1:
        return fitting[0]
    named = [p for p in fitting if any(w in p.lower() for w in _PROBE_WORDS[probe])]
    return named[0] if len(named) == 1 else None


def _passing_path(ev: Evidence, c: dict[str, Any], probe: str, port: Any, declared: dict[str, int],
                  path: str) -> _Served | None:
    for other in PROBES:
        handler, spec = _handler(c.get(other))
        if other == probe or handler != "httpGet" or spec.get("path", "/") == path:
            continue
        same_port = (podspecs.resolve_port(spec.get("port"), declared) if declared else spec.get("port")) == port
        if same_port and not probe_failures(ev, str(c.get("name")), other):
            found = str(spec.get("path", "/"))
            return _Served(found, f"{other} passes on the same port at {found}")
    return None


def _sidecar_path(ev: Evidence, c: dict[str, Any], pod: dict[str, Any], port: Any,
                  failing_paths: set[str]) -> _Served | None:
    """Another container of the pod whose HTTP probe targets the same port number (the pod shares one network)
    and passes: the one path such probes use."""
    found: dict[str, str] = {}
    for other in pod.get("containers") or []:
        if other.get("name") == c.get("name"):
            continue
        ports = podspecs.declared_ports(other)
        for probe in PROBES:
            handler, spec = _handler(other.get(probe))
            target = spec.get("port")  # a number needs no containerPort: the pod's containers share one network
            if isinstance(target, str) and not target.isdigit():
                target = podspecs.resolve_port(target, ports)
            path = str(spec.get("path", "/"))
            if handler == "httpGet" and str(target) == str(port) and path not in failing_paths \
                    and not probe_failures(ev, str(other.get("name")), probe):
                found.setdefault(path, f"container {other.get('name')}'s {probe} passes on port {port} at {path}")
    if len(found) != 1:
        return None
    [(path, shown)] = found.items()
    return _Served(path, shown)


def fits(probe: str, path: str) -> bool:
    """Whether ``path`` may serve ``probe``: not named for another probe's purpose (never /livez for readiness)."""
    return _one_for(probe, [path]) == path


def declared_in_values(sources: Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(path, where) of every health path a chart's values declare: a key under a probe or health-check key that
    ends in ``path``/``uri`` (``livenessProbe.httpGet.path``, bitnami-style ``startupProbe.path``,
    ``service.annotations[...healthcheck-path]``), each source given as (label, values)."""
    out = []
    for label, data in sources:
        for key, value in _leaves(data):
            words = [str(k).lower() for k in key]
            if words and words[-1].endswith(("path", "uri")) and any("probe" in w or "health" in w for w in words) \
                    and isinstance(value, str) and value.startswith("/"):
                out.append((value, f"{label} declares {'.'.join(str(k) for k in key)} {value}"))
    return out


def declared_in_objects(objects: Iterable[tuple[str, Any]]) -> list[tuple[str, str]]:
    """(path, where) of every health-check path manifests declare for a load balancer in front of the pods: a
    Service's or an Ingress' annotation, a GKE BackendConfig's ``spec.healthCheck.requestPath``."""
    out = []
    for label, obj in objects:
        if not isinstance(obj, dict):
            continue
        what = f"{obj.get('kind')} {kube.name(obj)}"
        for key, value in kube.annotations_of(obj).items():
            if key in _LB_HEALTH_PATH and str(value).startswith("/"):
                out.append((str(value), f"{label}: {what} declares {key}: {value}"))
        check = ((obj.get("spec") or {}).get("healthCheck") or {}) if obj.get("kind") == "BackendConfig" else {}
        if isinstance(check, dict) and str(check.get("requestPath") or "").startswith("/"):
            out.append((str(check["requestPath"]), f"{label}: {what} declares healthCheck.requestPath "
                                                   f"{check['requestPath']}"))
    return out


def _leaves(data: Any, key: tuple[Any, ...] = ()) -> Iterable[tuple[tuple[Any, ...], Any]]:
    if isinstance(data, dict):
        for k, v in data.items():
            yield from _leaves(v, (*key, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from _leaves(v, (*key, i))
    else:
        yield key, data


def access_log(ev: Evidence, container: str) -> list[loglines.Request]:
    """The requests the container's own log shows it answered."""
    return [r for key, text in sorted(ev.logs.items()) if key.endswith(f"/{container}")
            for r in loglines.requests(text)]


def _declared_health_paths(ev: Evidence) -> set[str]:
    return {str(v) for obj in ev.related if obj.get("kind") == "Service"
            for k, v in kube.annotations_of(obj).items() if k in _LB_HEALTH_PATH and str(v).startswith("/")}


def _message(event_line: str) -> str:
    """The kubelet's message of an event line (`kubectl get events`' last column)."""
    return re.sub(r" \(x\d+\)$", "", event_line.split(": ", 1)[-1])


def _and(items: Iterable[str]) -> str:
    words = list(items)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# ---------------------------------------------------------------- slow start killed by liveness


def detect_slow_start(ev: Evidence) -> Diagnosis | None:
    pod_spec = kube.pod_spec_of(ev.object, str(ev.object.get("kind") or ev.workload.kind))
    for c in sorted(pod_spec.get("containers") or [], key=lambda c: c.get("name") != ev.incident.container):
        name = str(c.get("name"))
        liveness = c.get("livenessProbe")
        kills = _kills(ev, name)
        if not liveness or not kills:
            continue
        allowed = podspecs.allowed_start(c)
        observed = max((s for key, text in ev.logs.items() if key.endswith(f"/{name}")
                        if (s := start_seconds(text)) is not None), default=None)
        if observed is not None:
            if observed > allowed:
                return _slow_start(ev, c, observed, allowed, kills, basis=None, lines=[
                    f"container {name}: the logs show it ready after {observed:g} s"])
            continue
        if (cut := _cut_short(ev, c, allowed, kills)) is not None:
            return cut
    return None


def _slow_start(ev: Evidence, c: dict[str, Any], observed: float, allowed: float, kills: list[str], *,
                basis: str | None, lines: list[str]) -> Diagnosis:
    name = str(c.get("name"))
    which = "startupProbe" if c.get("startupProbe") else "livenessProbe"
    needed = math.ceil(observed * podspecs.START_MARGIN)
    evidence = [*lines[:-1], f"{lines[-1]}; its {which} allows about {allowed:g} s "
                "(initialDelaySeconds + failureThreshold x periodSeconds)", *kills[:3],
                *probe_failures(ev, name, "livenessProbe")[:2]]
    facts = SlowStartFacts(container=name, init=False, observed_seconds=observed, allowed_seconds=allowed,
                           needed_seconds=needed, has_startup_probe=bool(c.get("startupProbe")), basis=basis)
    how = {None: "", "progress": " at the pace its log shows",
           "previous revision": ", as long as its previous revision took"}.get(basis, f" ({basis})")
    finding = Finding(cause=Cause.SLOW_START, confidence=0.85 if basis is None else 0.75, container=name,
                      evidence=evidence, facts=facts,
                      root_cause=f"Container {name} of {ev.workload.short} needs about {observed:g} s to start{how}, "
                                 f"but its liveness probe kills it after about {allowed:g} s: it restarts before it "
                                 "is ready.")
    return Diagnosis(detector="probes", finding=finding)


def start_seconds(log: str) -> float | None:
    """How long the process took to become ready, read from its own log; None when the log does not say."""
    if m := _SPRING_STARTED.search(log):
        return float(m.group(1))
    first: datetime | None = None
    for line in log.splitlines():
        m = _TIMESTAMP.search(line[:40])
        if m is None:
            continue
        stamp = datetime.fromisoformat(f"{m.group(1)}T{m.group(2)}.{(m.group(3) or '0')[:6].ljust(6, '0')}")
        if first is None:
            first = stamp  # the first line is the process starting, whatever it says
        elif _READY_LINE.search(line[m.end():]):
            return (stamp - first).total_seconds()
    return None


@dataclass(frozen=True)
class StartRead:
    """What one killed container's previous log says about its start."""

    progressing: bool  # it kept logging until the probe killed it, and not that it waits on something
    started: bool  # it says it is up: it answered requests, or logged that it listens or is ready
    counted: bool  # some of its lines count towards a total
    pace: loglines.Pace | None  # the pace of its last counter, when it was steady until the kill
    errors: list[str]
    last: str  # the last line it wrote before the kill
    pod: str = ""
    exit: str = ""  # "exitCode=143 reason=Error"


def read_start(log: str, *, allowed: float, period: float, started_at: datetime | None = None) -> StartRead | None:
    """How far a start cut short by the probe got, from the killed container's own log (None: no timestamps).

    The start is the container's (``started_at``, the kubelet's lastState.terminated.startedAt) when the log's
    clock agrees with it, else the log's first timestamped line. The kill comes ``allowed`` seconds after it
    (the probe's budget); what the process logs once it was told to stop, or after that, is its shutdown. A
    start is still progressing when its last line before the kill came within a few periods of the kill, and a
    counter's pace is steady when its last reading did (a start that hangs goes quiet long before the probe
    gives up)."""
    lines = loglines.parse(log)
    stamped = [line.at for line in lines if line.at is not None]
    if not stamped:
        return None
    agrees = started_at is not None and timedelta(0) <= stamped[0] - started_at <= timedelta(seconds=allowed)
    start = started_at if agrees and started_at is not None else stamped[0]
    kill = start + timedelta(seconds=allowed)
    before = [line for line in loglines.until_shutdown(lines)
              if line.at is None or line.at <= kill + timedelta(seconds=period)]
    last = next((line for line in reversed(before) if line.at is not None), None)
    pace = loglines.pace(before, start=start)
    tolerance = max(2 * period, 10.0, 3 * pace.step if pace else 0.0)
    steady = pace is not None and (kill - pace.last.at).total_seconds() <= tolerance
    progressing = last is not None and last.at is not None and not loglines.waiting(last) \
        and (kill - last.at).total_seconds() <= tolerance
    started = any(loglines.request(line) is not None or _UP.search(line.text) for line in before)
    return StartRead(progressing=progressing, started=started, counted=bool(loglines.readings(before)),
                     pace=pace if steady else None, errors=loglines.errors(before),
                     last=last.text if last is not None else "")


def _cut_short(ev: Evidence, c: dict[str, Any], allowed: float, kills: list[str]) -> Diagnosis | None:
    """A start the liveness probe always cuts short: steady progress and no error until each kill."""
    name = str(c.get("name"))
    if not probe_failures(ev, name, "livenessProbe"):
        return None
    probe = c.get("startupProbe") or c.get("livenessProbe") or {}
    period = float(probe.get("periodSeconds") or podspecs.DEFAULT_PERIOD)
    reads = _killed_starts(ev, name, allowed=allowed, period=period)
    if not reads or any(r.errors or r.started or not r.progressing for r in reads):
        return None  # an error, a process that is up (serving), or a start gone quiet: not a slow start
    paced = [r for r in reads if r.pace is not None]
    previous = _previous_start(ev, name)
    if not any(r.counted for r in reads) and (previous is None or previous[0] <= allowed):
        return None  # no counter shows progress, and no earlier revision took longer than the probe allows
    lines = [f"pod {r.pod} container {name}: lastState.terminated {r.exit}; killed while still logging, "
             f"no error in its log; last line: {r.last}" for r in reads[:2]]
    lines += [_pace_line(r, name) for r in paced[:2]]
    if previous is not None:
        lines.append(previous[1])
    estimates = [(r.pace.ready_after, "progress") for r in paced if r.pace is not None]
    estimates += [(previous[0], "previous revision")] if previous is not None else []
    if estimates and (best := max(estimates))[0] > allowed:
        lines.append(f"container {name}: estimated ready after {best[0]:.0f} s ({best[1]})")
        return _slow_start(ev, c, float(round(best[0])), allowed, kills, basis=best[1], lines=lines)
    why = ("its log shows no counter whose pace gives the time to ready"
           if not paced else "at the pace its log shows, the start should have ended before the kill: "
                             "what else it waits for is not in the log")
    finding = Finding(cause=Cause.SLOW_START, confidence=0.6, container=name, facts=Facts(),
                      evidence=[*lines, *kills[:2], *probe_failures(ev, name, "livenessProbe")[:2]],
                      root_cause=f"Container {name} of {ev.workload.short} is still starting (its log shows "
                                 f"progress and no error) when its liveness probe kills it after about "
                                 f"{allowed:g} s.")
    return Diagnosis(detector="probes", finding=finding, fixable=False,
                     no_fix_reason=f"{why}, and no earlier revision's start time is known: how long a startupProbe "
                                   "must allow is a guess; size it by hand")


def _killed_starts(ev: Evidence, container: str, *, allowed: float, period: float) -> list[StartRead]:
    """The start of each pod whose container the liveness probe killed, as its previous log tells it."""
    killed = {str((e.get("involvedObject") or {}).get("name")) for e in ev.events
              if e.get("reason") == "Killing" and _about(e, container)
              and "failed liveness probe" in str(e.get("message"))}
    out: list[StartRead] = []
    for pod in ev.pods:
        pod_name = kube.name(pod)
        term = next(((cs.get("lastState") or {}).get("terminated") or {} for cs, init in kube.container_statuses(pod)
                     if cs.get("name") == container and not init), {})
        code, reason = int(term.get("exitCode", -1)), str(term.get("reason", ""))
        log = ev.logs.get(f"{pod_name}/{container}")
        if pod_name not in killed or (code, reason) not in _KILL_EXITS or not log:
            continue
        started = _time(term["startedAt"]) if term.get("startedAt") else None
        if (read := read_start(log, allowed=allowed, period=period, started_at=started)) is not None:
            out.append(dataclasses.replace(read, pod=pod_name, exit=f"exitCode={code} reason={reason}"))
    return out


def _pace_line(r: StartRead, container: str) -> str:
    p = r.pace
    assert p is not None
    return (f"pod {r.pod} container {container}: {p.last.done:g} of {p.last.total:g} after {p.elapsed:.0f} s "
            f"(\"{p.last.text}\"), {p.rate:.3g}/s over {p.readings} readings: about {p.remaining:.0f} s more "
            f"to reach {p.last.total:g}, ready after about {p.ready_after:.0f} s")


def _previous_start(ev: Evidence, container: str) -> tuple[float, str] | None:
    """How long the newest earlier revision's running pods took from their container's start to Ready."""
    if len(ev.replicasets) < 2:
        return None
    older = {kube.meta(rs).get("uid"): rs for rs in ev.replicasets[1:]}
    found: list[tuple[int, float, str]] = []
    for pod in ev.pods:
        rs = next((older[ref.get("uid")] for ref in kube.meta(pod).get("ownerReferences") or []
                   if ref.get("uid") in older), None)
        started = next((((cs.get("state") or {}).get("running") or {}).get("startedAt")
                        for cs, init in kube.container_statuses(pod)
                        if cs.get("name") == container and not init and cs.get("ready")), None)
        ready = next((cond.get("lastTransitionTime") for cond in (pod.get("status") or {}).get("conditions") or []
                      if cond.get("type") == "Ready" and cond.get("status") == "True"), None)
        if rs is None or not started or not ready:
            continue
        seconds = (_time(ready) - _time(started)).total_seconds()
        if seconds > 0:
            found.append((kube.revision(rs), seconds,
                          f"previous revision {kube.revision(rs)} (ReplicaSet {kube.name(rs)}): pod {kube.name(pod)} "
                          f"container {container} started {started}, Ready {ready}: ready after {seconds:g} s"))
    if not found:
        return None
    newest = max(r for r, _, _ in found)
    seconds, line = max((s, line) for r, s, line in found if r == newest)
    return seconds, line


def _time(value: Any) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


# ---------------------------------------------------------------- shared readings of the evidence


def _handler(probe: Any) -> tuple[str | None, dict[str, Any]]:
    for handler in podspecs.HANDLERS:
        spec = (probe or {}).get(handler) if isinstance(probe, dict) else None
        if isinstance(spec, dict):
            return handler, spec
    return None, {}


def probe_failures(ev: Evidence, container: str, probe: str) -> list[str]:
    """Unhealthy event lines of one probe of one container, across the workload's pods."""
    label = PROBES[probe]
    return [kube.event_line(e) for e in ev.events
            if e.get("reason") == "Unhealthy" and _about(e, container)
            and str(e.get("message", "")).startswith((f"{label} probe failed", f"{label} probe errored"))]


def _kills(ev: Evidence, container: str) -> list[str]:
    return [kube.event_line(e) for e in ev.events
            if e.get("reason") == "Killing" and _about(e, container) and "failed liveness probe" in str(e.get("message"))]


def _about(event: dict[str, Any], container: str) -> bool:
    field = str((event.get("involvedObject") or {}).get("fieldPath") or "")
    return field.endswith(f"{{{container}}}") or (not field and container in str(event.get("message", "")))
