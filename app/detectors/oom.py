"""OOMKilled: the container hit its memory limit. Fix: raise the limit (policy step, capped)."""

from __future__ import annotations

from typing import Any

from app import kube
from app.models.causes import Cause, OomFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

# What an alert says when it is about this cause (app/causes.py ranks the findings by it).
REASONS = frozenset({"OOMKilled"})
ALERTS = frozenset({"KubernetesContainerOomKiller", "KubeJobFailed"})


def detect(ev: Evidence) -> Diagnosis | None:
    hits = _oom_kills(ev)
    if not hits:
        return None
    # Prefer the container the alert names; else the one killed most often.
    wanted = ev.incident.container
    hits.sort(key=lambda h: (h["container"] != wanted, -h["restarts"]))
    hit = hits[0]
    container, pod = hit["container"], hit["pod"]
    spec, init = kube.container_spec(kube.pod_spec_of(ev.object, _template_kind(ev)), container)
    limits = ((spec or {}).get("resources") or {}).get("limits") or {}
    requests = ((spec or {}).get("resources") or {}).get("requests") or {}
    lines = [
        f"pod {pod} container {container}: lastState.terminated reason=OOMKilled exitCode={hit['exit_code']}"
        f" finishedAt={hit['finished_at']}",
        f"restartCount={hit['restarts']} across {len({h['pod'] for h in hits})} pod(s)",
        f"memory limit={limits.get('memory', 'none')} request={requests.get('memory', 'none')}",
        *[kube.event_line(e) for e in ev.events_for("Pod", pod) if e.get("type") == "Warning"][:5],
    ]
    finding = Finding(
        cause=Cause.OOM_KILLED,
        confidence=0.95,
        container=container,
        root_cause=(f"Container {container} of {ev.workload.short} was killed by the kernel for exceeding its "
                    f"memory limit of {limits.get('memory', 'none')} (OOMKilled, exit code 137)."),
        evidence=lines,
        facts=OomFacts(container=container, init=init, observed_limit=limits.get("memory"),
                       observed_request=requests.get("memory"), restarts=hit["restarts"], pod=pod),
    )
    if "memory" not in limits:
        return Diagnosis(detector="oom", finding=finding, fixable=False,
                         no_fix_reason=(f"container {container} has no memory limit: the OOM kill came from node "
                                        "memory pressure, not from a limit in git"))
    return Diagnosis(detector="oom", finding=finding)


def _template_kind(ev: Evidence) -> str:
    return str(ev.object.get("kind") or ev.workload.kind)


def _oom_kills(ev: Evidence) -> list[dict[str, Any]]:
    hits = []
    for pod in ev.pods:
        for cs, init in kube.container_statuses(pod):
            for state_key in ("lastState", "state"):
                term = (cs.get(state_key) or {}).get("terminated") or {}
                if term.get("reason") == "OOMKilled":
                    hits.append({"pod": kube.name(pod), "container": cs.get("name"), "init": init,
                                 "exit_code": term.get("exitCode"), "finished_at": term.get("finishedAt"),
                                 "restarts": int(cs.get("restartCount") or 0)})
                    break
    return hits
