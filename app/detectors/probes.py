"""Probes that kill or block a healthy container.

``detect`` (cause ``probe_misconfigured``): Unhealthy events for a probe whose port the container does not
declare (a number it does not listen on, a named port that does not exist), or a 404 on a path when another
probe of the container succeeds on the same port at another path.

``detect_slow_start`` (cause ``slow_start``): the liveness probe kills a container that the logs show
becoming ready later than the probe allows (Spring Boot's "Started X in 94.3 seconds", or the time from
the first log line to a "listening"/"ready"/"started" line).
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Any

from app import kube, podspecs
from app.models.causes import Cause, ProbeFacts, SlowStartFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

PROBES = {"livenessProbe": "Liveness", "readinessProbe": "Readiness", "startupProbe": "Startup"}
_STATUS_404 = "statuscode: 404"
_SPRING_STARTED = re.compile(r"\bStarted \S+ in (\d+(?:\.\d+)?) seconds")
_READY_LINE = re.compile(r"(?i)\b(listening|ready|started|startup complete|server running)\b")
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?")


# ---------------------------------------------------------------- probe on the wrong port or path


def detect(ev: Evidence) -> Diagnosis | None:
    pod_spec = kube.pod_spec_of(ev.object, str(ev.object.get("kind") or ev.workload.kind))
    containers = sorted(pod_spec.get("containers") or [], key=lambda c: c.get("name") != ev.incident.container)
    for c in containers:
        for probe in PROBES:
            diagnosis = _check_probe(ev, c, probe)
            if diagnosis is not None:
                return diagnosis
    return None


def _check_probe(ev: Evidence, c: dict[str, Any], probe: str) -> Diagnosis | None:
    handler, spec = _handler(c.get(probe))
    failures = probe_failures(ev, str(c.get("name")), probe)
    if handler is None or not failures:
        return None
    declared = podspecs.declared_ports(c)
    port = spec.get("port")
    if declared and podspecs.resolve_port(port, declared) is None:
        return _wrong_port(ev, c, probe, handler, port, declared, failures)
    if handler == "httpGet" and any(_STATUS_404 in m for m in failures):
        return _wrong_path(ev, c, probe, spec, declared, failures)
    return None


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


def _wrong_path(ev: Evidence, c: dict[str, Any], probe: str, spec: dict[str, Any], declared: dict[str, int],
                failures: list[str]) -> Diagnosis:
    name, path = str(c.get("name")), spec.get("path", "/")
    port = podspecs.resolve_port(spec.get("port"), declared) if declared else spec.get("port")
    passing = _passing_path(ev, c, probe, port, declared, path)
    lines = [f"container {name} {probe}.httpGet path={path} port={spec.get('port')}", *failures[:4],
             *_kills(ev, name)[:2]]
    facts = ProbeFacts(container=name, init=False, probe=probe, handler="httpGet", field="path", old=path,
                       new=passing)
    root = (f"The {PROBES[probe].lower()} probe of container {name} in {ev.workload.short} gets HTTP 404 at "
            f"{path}: the application does not serve that path on port {spec.get('port')}.")
    if passing is None:
        finding = Finding(cause=Cause.PROBE_MISCONFIGURED, confidence=0.7, container=name, evidence=lines, facts=facts, root_cause=root)
        return Diagnosis(detector="probes", finding=finding, fixable=False,
                         no_fix_reason=("no other probe of the container shows which path the application serves: "
                                        "set the probe's path by hand"))
    lines.append(f"{_other_probe_text(c, probe, passing)} passes on the same port at {passing}")
    finding = Finding(cause=Cause.PROBE_MISCONFIGURED, confidence=0.8, container=name, evidence=lines, facts=facts,
                      root_cause=root + f" Another probe of the container succeeds there at {passing}.")
    return Diagnosis(detector="probes", finding=finding)


def _passing_path(ev: Evidence, c: dict[str, Any], probe: str, port: Any, declared: dict[str, int],
                  path: str) -> str | None:
    for other in PROBES:
        handler, spec = _handler(c.get(other))
        if other == probe or handler != "httpGet" or spec.get("path", "/") == path:
            continue
        same_port = (podspecs.resolve_port(spec.get("port"), declared) if declared else spec.get("port")) == port
        if same_port and not probe_failures(ev, str(c.get("name")), other):
            return str(spec.get("path", "/"))
    return None


def _other_probe_text(c: dict[str, Any], probe: str, path: str) -> str:
    for other in PROBES:
        if other != probe and ((c.get(other) or {}).get("httpGet") or {}).get("path") == path:
            return other
    return "another probe"


# ---------------------------------------------------------------- slow start killed by liveness


def detect_slow_start(ev: Evidence) -> Diagnosis | None:
    pod_spec = kube.pod_spec_of(ev.object, str(ev.object.get("kind") or ev.workload.kind))
    for c in sorted(pod_spec.get("containers") or [], key=lambda c: c.get("name") != ev.incident.container):
        name = str(c.get("name"))
        liveness = c.get("livenessProbe")
        kills = _kills(ev, name)
        if not liveness or not kills:
            continue
        observed = max((s for key, text in ev.logs.items() if key.endswith(f"/{name}")
                        if (s := start_seconds(text)) is not None), default=None)
        allowed = podspecs.allowed_start(c)
        if observed is None or observed <= allowed:
            continue
        return _slow_start(ev, c, observed, allowed, kills)
    return None


def _slow_start(ev: Evidence, c: dict[str, Any], observed: float, allowed: float, kills: list[str]) -> Diagnosis:
    name = str(c.get("name"))
    which = "startupProbe" if c.get("startupProbe") else "livenessProbe"
    needed = math.ceil(observed * podspecs.START_MARGIN)
    lines = [f"container {name}: the logs show it ready after {observed:g} s; its {which} allows about "
             f"{allowed:g} s (initialDelaySeconds + failureThreshold x periodSeconds)", *kills[:3],
             *probe_failures(ev, name, "livenessProbe")[:2]]
    facts = SlowStartFacts(container=name, init=False, observed_seconds=observed, allowed_seconds=allowed,
                           needed_seconds=needed, has_startup_probe=bool(c.get("startupProbe")))
    finding = Finding(cause=Cause.SLOW_START, confidence=0.85, container=name, evidence=lines, facts=facts,
                      root_cause=f"Container {name} of {ev.workload.short} needs about {observed:g} s to start, but its "
                                 f"liveness probe kills it after about {allowed:g} s: it restarts before it is ready.")
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
