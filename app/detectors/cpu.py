"""CPU throttling: CPUThrottlingHigh says the container's CFS quota (its CPU limit) is cut off too often.

The alert is the signal (cAdvisor's throttled periods are not in the evidence); the live container spec
gives the limit. No CPU limit means no CFS quota: the alert cannot come from git, so no fix.
"""

from __future__ import annotations

import re

from app import kube
from app.models.causes import Cause, CpuFacts
from app.models.diagnosis import Diagnosis, Finding
from app.models.evidence import Evidence

ALERT = "CPUThrottlingHigh"
ALERTS = frozenset({ALERT})
_PERCENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)% throttling")


def detect(ev: Evidence) -> Diagnosis | None:
    container = ev.incident.container
    if ev.incident.alertname != ALERT or not container:
        return None
    spec, init = kube.container_spec(kube.pod_spec_of(ev.object, str(ev.object.get("kind") or ev.workload.kind)),
                                     container)
    if spec is None:
        return None
    resources = spec.get("resources") or {}
    limit = (resources.get("limits") or {}).get("cpu")
    request = (resources.get("requests") or {}).get("cpu")
    match = _PERCENT.search(ev.incident.annotations.get("description", ""))
    share = f"{match.group(1)}%" if match else "more than 25%"
    lines = [f"alert {ALERT}: {share} of CFS periods throttled for container {container}"
             + (f" in pod {ev.incident.pod}" if ev.incident.pod else ""),
             f"cpu limit={limit or 'none'} request={request or 'none'}",
             *[f"pod {kube.name(p)}: phase={(p.get('status') or {}).get('phase')} restarts="
               f"{sum(int(cs.get('restartCount') or 0) for cs, _ in kube.container_statuses(p))}" for p in ev.pods[:3]]]
    finding = Finding(
        cause=Cause.CPU_THROTTLING, confidence=0.85, container=container, evidence=lines,
        root_cause=(f"Container {container} of {ev.workload.short} is throttled in {share} of CPU periods: its "
                    f"CPU limit of {limit or 'none'} is too low for its load (latency grows while it waits)."),
        facts=CpuFacts(container=container, init=init, observed_limit=limit, observed_request=request,
                       throttled=share),
    )
    if limit is None:
        return Diagnosis(detector="cpu", finding=finding, fixable=False,
                         no_fix_reason=(f"container {container} has no CPU limit in the cluster, so there is no CFS "
                                        "quota to raise: the throttling does not come from git"))
    return Diagnosis(detector="cpu", finding=finding)
