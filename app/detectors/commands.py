"""Wrong command or entrypoint: the runtime cannot exec the container's command
(``exec: "gunicron": executable file not found in $PATH``). Fix: the command and args of the previous
ReplicaSet shown to have worked (app/detectors/revisions.py); no such revision (or the executable is the
image's own entrypoint): no fix.
"""

from __future__ import annotations

import re
from typing import Any

from app import kube
from app.detectors import revisions
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
    if isinstance(previous, revisions.Unproven):
        unproven = finding.model_copy(update={"evidence": [*lines, *previous.lines]})
        return Diagnosis(detector="commands", finding=unproven, fixable=False,
                         no_fix_reason=f"{previous.reason}: correct the command by hand")
    rs = previous.replicaset
    good = _spec_of(rs, container) or {}
    rollback = CommandRollbackFacts(**facts.model_dump(), previous_command=good.get("command"),
                                    previous_args=good.get("args"), previous_replicaset=kube.name(rs),
                                    previous_revision=kube.revision(rs), previous_ran_seconds=previous.ran_seconds)
    ran = "fine" if previous.ran_seconds is None else previous.summary
    finding = finding.model_copy(update={
        "facts": rollback, "evidence": [*lines, *previous.lines],
        "root_cause": root + f" Revision {kube.revision(rs)} ran command {good.get('command')} {ran}."})
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


def _spec_of(rs: dict[str, Any], container: str) -> dict[str, Any] | None:
    spec, _ = kube.container_spec(kube.pod_spec_of(rs, "ReplicaSet"), container)
    return spec


def _previous_working(ev: Evidence, container: str, command: Any,
                      args: Any) -> revisions.Worked | revisions.Unproven | None:
    """The newest ReplicaSet that ran another command or args for ``container``, judged on the evidence that it
    worked (serving now, or running until this rollout scaled it down): no fix beats a wrong fix."""
    def differs(rs: dict[str, Any]) -> bool:
        spec = _spec_of(rs, container)
        return spec is not None and (spec.get("command"), spec.get("args")) != (command, args)

    def ran(rs: dict[str, Any]) -> str:
        spec = _spec_of(rs, container) or {}
        return f"command={spec.get('command')} args={spec.get('args')}"

    return revisions.previous(ev, differs=differs, ran=ran)
