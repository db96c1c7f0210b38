"""Application crash: a container exits non-zero (not an OOM kill, not a probe kill, no config error) and
its previous log holds a traceback, a panic or a fatal error. Never fixed from git: the report quotes the
exception (already redacted), the log lines that matter and the revision and image that introduced it.

Registered last: it is what is left when no more specific signal explains the crash.
"""

from __future__ import annotations

import re
from typing import Any

from app import kube
from app.models.causes import Cause, CrashFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

ALERTS = frozenset({"KubeJobFailed"})
MAX_QUOTE = 300
MAX_CONTEXT = 6
# Most specific first: the root cause of a Java chain, Python's final exception line, Go's panic, ...
_EXCEPTIONS: list[re.Pattern[str]] = [
    re.compile(r"^\s*Caused by: (\S+(?:Exception|Error)\b.*)$"),
    re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Failure)(?::\s.*)?)$"),
    re.compile(r"^((?:panic|fatal error): .*)$"),
    re.compile(r"^(Exception in thread .*)$"),
    re.compile(r"^\s*(\w*(?:Error|Exception)\b:.*)$"),
]
_ERRORISH = re.compile(r"(?i)(traceback \(most recent call last\)|^panic: |\bexception\b|\bfatal\b|\berror\b|\bcritical\b)")
_FATAL_LEVEL = re.compile(r"(?i)(\bFATAL\b|\bCRITICAL\b|level=fatal|\"level\":\s*\"?(fatal|60)\b)")
_CONFIG_WAIT = {"CreateContainerConfigError", "CreateContainerError"}


def detect(ev: Evidence) -> Diagnosis | None:
    if _config_signal(ev):
        return None
    crashes = _crashes(ev)
    if not crashes:
        return None
    crashes.sort(key=lambda c: (c["container"] != ev.incident.container, c["quote"] is None))
    hit = crashes[0]
    container, pod = str(hit["container"]), str(hit["pod"])
    quote = hit["quote"] or hit["last"] or f"exit code {hit['exit_code']} with an empty log"
    revision_line, rollback = _revision(ev, pod, container)
    lines = [f"pod {pod} container {container}: lastState.terminated reason={hit['reason']} "
             f"exitCode={hit['exit_code']} restartCount={hit['restarts']}", *hit["context"],
             *([revision_line] if revision_line else []), *([rollback] if rollback else [])]
    finding = Finding(
        cause=Cause.APPLICATION_ERROR, confidence=0.85 if hit["quote"] else 0.5, container=container, evidence=lines,
        root_cause=(f"Container {container} of {ev.workload.short} crashes with exit code {hit['exit_code']}: "
                    f"{quote[:MAX_QUOTE]}"),
        facts=CrashFacts(container=container, pod=pod, exit_code=hit["exit_code"], exception=quote[:MAX_QUOTE],
                         restarts=hit["restarts"]),
    )
    reason = ("the application fails at run time (see the exception and log lines); no manifest field the bot "
              "may change fixes it: correct the application or what it depends on")
    if revision_line:
        reason += f". {revision_line}"
    if rollback:
        reason += f"; {rollback}"
    return Diagnosis(detector="app_crash", finding=finding, fixable=False, no_fix_reason=reason)


def _config_signal(ev: Evidence) -> bool:
    return any(((cs.get("state") or {}).get("waiting") or {}).get("reason") in _CONFIG_WAIT
               for pod in ev.pods for cs, _ in kube.container_statuses(pod))


def _crashes(ev: Evidence) -> list[dict[str, Any]]:
    probe_killed = {str((e.get("involvedObject") or {}).get("name")) for e in ev.events
                    if e.get("reason") == "Killing" and "failed liveness probe" in str(e.get("message"))}
    out = []
    for pod in ev.pods:
        if kube.name(pod) in probe_killed:
            continue  # the kubelet killed it: exit code and log are the probe's doing, not a crash
        for cs, _init in kube.container_statuses(pod):
            term = (cs.get("lastState") or {}).get("terminated") or (cs.get("state") or {}).get("terminated") or {}
            code = int(term.get("exitCode") or 0)
            # OOMKilled is the kernel's doing; StartError/ContainerCannotRun: the process never ran at all
            if code == 0 or term.get("reason") in ("OOMKilled", "StartError", "ContainerCannotRun"):
                continue
            log = ev.logs.get(f"{kube.name(pod)}/{cs.get('name')}", "")
            quote, context = read_crash(log)
            last = next((line.strip() for line in reversed(log.splitlines()) if line.strip()), None)
            out.append({"pod": kube.name(pod), "container": cs.get("name"), "exit_code": code,
                        "reason": term.get("reason"), "restarts": int(cs.get("restartCount") or 0),
                        "quote": quote, "context": context, "last": last})
    return out


def read_crash(log: str) -> tuple[str | None, list[str]]:
    """The exception (or fatal line) a crashed process left, and the first log lines that matter."""
    lines = [line.rstrip() for line in log.splitlines()]
    quote = _exception(lines)
    first = next((i for i, line in enumerate(lines) if _ERRORISH.search(line)), None)
    context = [] if first is None else [line[:MAX_QUOTE] for line in lines[first:first + MAX_CONTEXT] if line.strip()]
    if quote and quote not in "\n".join(context):
        context.append(quote[:MAX_QUOTE])
    return quote, context


def _exception(lines: list[str]) -> str | None:
    for pattern in _EXCEPTIONS:
        found = [m.group(1).strip() for line in lines if (m := pattern.match(line))]
        if found:
            # the last one: Python prints the final exception last, Java the root "Caused by" last
            return found[-1]
    fatal = [line.strip() for line in lines if _FATAL_LEVEL.search(line)]
    return fatal[-1] if fatal else None


def _revision(ev: Evidence, pod_name: str, container: str) -> tuple[str | None, str | None]:
    """Which revision (and image) the crashing pod runs, and whether an older revision ran fine."""
    pod = ev.pod_named(pod_name) or {}
    owner = (kube.controller_of(pod) or {}).get("name")
    current = next((rs for rs in ev.replicasets if kube.name(rs) == owner), None)
    if current is None:
        spec, _ = kube.container_spec(pod.get("spec") or {}, container)
        return (f"image {(spec or {}).get('image')}" if spec else None), None
    spec, _ = kube.container_spec(kube.pod_spec_of(current, "ReplicaSet"), container)
    image = (spec or {}).get("image")
    line = f"Introduced by revision {kube.revision(current)} (replicaset {kube.name(current)}) running image {image}"
    for rs in ev.replicasets:
        if kube.revision(rs) >= kube.revision(current):
            continue
        status = rs.get("status") or {}
        if int(status.get("readyReplicas") or 0) > 0 or int(status.get("availableReplicas") or 0) > 0:
            old_spec, _ = kube.container_spec(kube.pod_spec_of(rs, "ReplicaSet"), container)
            old_image = (old_spec or {}).get("image")
            same = "the same image: the change that broke it is not the image" if old_image == image else \
                f"image {old_image}"
            return line, f"the previous revision {kube.revision(rs)} ran fine with {same}"
    return line, None
