"""Realistic Alertmanager v4 webhook bodies (kubernetes-mixin names and labels) for the benchmarks."""

from __future__ import annotations

import hashlib
from typing import Any

STARTS = "2026-11-23T15:15:16.846575773Z"
NEVER = "0001-01-01T00:00:00Z"
EXTERNAL = "http://alertmanager.monitoring.svc:9093"


def fingerprint(labels: dict[str, str]) -> str:
    """16 hex chars from the label set only, as Alertmanager does (stable across repeats)."""
    text = ",".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def crashloop_alert(namespace: str, workload: str, pod_suffix: str, *, starts: str = STARTS) -> dict[str, Any]:
    pod = f"{workload}-7d9f8b6c5-{pod_suffix}"
    labels = {"alertname": "KubePodCrashLooping", "container": workload, "job": "kube-state-metrics",
              "namespace": namespace, "pod": pod, "prometheus": "monitoring/k8s", "reason": "CrashLoopBackOff",
              "severity": "warning"}
    return _alert(labels, starts, {
        "description": f'Pod {namespace}/{pod} ({workload}) is in waiting state (reason: "CrashLoopBackOff").',
        "runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping",
        "summary": "Pod is crash looping."})


def oom_alert(namespace: str, pod: str, container: str, *, starts: str = STARTS) -> dict[str, Any]:
    labels = {"alertname": "KubernetesContainerOomKiller", "container": container, "namespace": namespace,
              "pod": pod, "prometheus": "monitoring/k8s", "severity": "warning"}
    return _alert(labels, starts, {
        "summary": "Kubernetes container oom killer (instance)",
        "description": f"Container {container} in pod {namespace}/{pod} has been OOMKilled 1 times in the last "
                       "10 minutes."})


def _alert(labels: dict[str, str], starts: str, annotations: dict[str, str]) -> dict[str, Any]:
    return {"status": "firing", "labels": labels, "annotations": annotations, "startsAt": starts, "endsAt": NEVER,
            "generatorURL": "http://prometheus.monitoring.svc:9090/graph?g0.expr=...",
            "fingerprint": fingerprint(labels)}


def payload(alerts: list[dict[str, Any]], group_labels: dict[str, str]) -> dict[str, Any]:
    common = {k: v for k, v in alerts[0]["labels"].items() if all(a["labels"].get(k) == v for a in alerts)}
    return {"receiver": "gitops-autofix", "status": "firing", "alerts": alerts, "groupLabels": group_labels,
            "commonLabels": common, "commonAnnotations": {}, "externalURL": EXTERNAL, "version": "4",
            "groupKey": "{}/{}:" + "{" + ",".join(f'{k}="{v}"' for k, v in group_labels.items()) + "}",
            "truncatedAlerts": 0}
