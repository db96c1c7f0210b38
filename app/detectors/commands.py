"""Wrong command or entrypoint: the runtime cannot exec the container's command
(``exec: "gunicron": executable file not found in $PATH``). Fix: the command and args of the previous
ReplicaSet whose pods ran; no such revision (or the executable is the image's own entrypoint): no fix.
"""

from __future__ import annotations

import re
from typing import Any

from app import kube
from app.models.causes import Cause, CommandFacts, CommandRollbackFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

# runc's wording, wrapped by containerd and the kubelet: "... exec: \"x\": executable file not found in $PATH"
_EXEC = re.compile(r'exec: "([^"]+)": (executable file not found in \$PATH|stat [^:]+: no such file or directory'
                   r'|permission denied)')
START_REASONS = frozenset({"StartError", "ContainerCannotRun", "RunContainerError"})
REASONS = START_REASONS


def detect(ev: Evidence) -> Diagnosis | None:
    failing = _failing(ev)
    if not failing:
        return None
    failing.sort(key=lambda f: f["container"] != ev.incident.container)
    hit = failing[0]
    container, executable = str(hit["container"]), str(hit["executable"])
    spec, init = kube.container_spec(kube.pod_spec_of(ev.object, str(ev.object.get("kind") or ev.workload.kind)),
                                     container)
    command, args = (spec or {}).get("command"), (spec or {}).get("args")
    lines = [f"pod {hit['pod']} container {container}: {hit['reason']}: {hit['message']}",
             f"command={command} args={args} image={(spec or {}).get('image')}",
             *[kube.event_line(e) for e in ev.events_for("Pod", str(hit["pod"])) if e.get("reason") == "Failed"][:3]]
    facts = CommandFacts(container=container, init=init, executable=executable, pod=hit["pod"],
                         failing_command=command, failing_args=args)
    root = (f"The runtime cannot start container {container} of {ev.workload.short}: {executable!r} "
            f"{hit['problem']}.")
    finding = Finding(cause=Cause.BAD_COMMAND, confidence=0.9, container=container, evidence=lines, facts=facts,
                      root_cause=root)
    first = [*(command or [])[:1], *(args or [])[:1]]
    if executable not in first:
        return Diagnosis(detector="commands", finding=finding, fixable=False,
                         no_fix_reason=(f"{executable} is not the command or args in the pod template but the image's "
                                        f"own entrypoint: the image {(spec or {}).get('image')} is broken, not git"))
    previous = _previous_working(ev, container, command, args)
    if previous is None:
        return Diagnosis(detector="commands", finding=finding, fixable=False,
                         no_fix_reason=(f"no previous working revision of {ev.workload.short} ran another command for "
                                        f"container {container}: correct the command by hand"))
    rs, good = previous
    rollback = CommandRollbackFacts(**facts.model_dump(), previous_command=good.get("command"),
                                    previous_args=good.get("args"), previous_replicaset=kube.name(rs),
                                    previous_revision=kube.revision(rs))
    lines.append(f"replicaset {kube.name(rs)} (revision {kube.revision(rs)}) ran command={good.get('command')} "
                 f"args={good.get('args')} with {(rs.get('status') or {}).get('readyReplicas', 0)} ready pod(s)")
    finding = finding.model_copy(update={
        "facts": rollback, "evidence": lines,
        "root_cause": root + f" Revision {kube.revision(rs)} ran command {good.get('command')} fine."})
    return Diagnosis(detector="commands", finding=finding)


def _failing(ev: Evidence) -> list[dict[str, Any]]:
    out = []
    for pod in ev.pods:
        for cs, _init in kube.container_statuses(pod):
            for state in (cs.get("state") or {}, cs.get("lastState") or {}):
                detail = state.get("terminated") or state.get("waiting") or {}
                message = str(detail.get("message") or "")
                m = _EXEC.search(message)
                if detail.get("reason") in START_REASONS and m:
                    out.append({"pod": kube.name(pod), "container": cs.get("name"), "reason": detail.get("reason"),
                                "message": message, "executable": m.group(1), "problem": m.group(2)})
                    break
    return out


def _previous_working(ev: Evidence, container: str, command: Any, args: Any) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The newest ReplicaSet that served ready pods with another command or args for ``container``."""
    for rs in ev.replicasets:  # newest revision first
        spec, _ = kube.container_spec(kube.pod_spec_of(rs, "ReplicaSet"), container)
        if spec is None or (spec.get("command"), spec.get("args")) == (command, args):
            continue
        status = rs.get("status") or {}
        # Only a ReplicaSet seen serving proves the command runs: no fix beats a wrong fix.
        if int(status.get("readyReplicas") or 0) > 0 or int(status.get("availableReplicas") or 0) > 0:
            return rs, spec
    return None
