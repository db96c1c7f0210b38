"""Detectors: Evidence -> Diagnosis | None, one module per cause, tried in the order of the registry.

Order matters: the most specific signal first (an OOM kill explains a crash loop; an application crash is
what is left when nothing else matched).
"""

from __future__ import annotations

from collections.abc import Callable

from app.detectors import (
    app_crash,
    commands,
    config_refs,
    cpu,
    hpa,
    image_pull,
    oom,
    probes,
    rollout,
    scheduling,
    storage,
)
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence

Detector = Callable[[Evidence], Diagnosis | None]

REGISTRY: list[tuple[str, Detector]] = [
    # alert-specific: they match only the alert that names their cause, so they explain it first
    ("cpu", cpu.detect),
    ("hpa", hpa.detect),
    ("oom", oom.detect),
    ("image_pull", image_pull.detect),
    ("scheduling", scheduling.detect),
    ("storage", storage.detect),
    ("config_refs", config_refs.detect),
    ("commands", commands.detect),
    ("probes", probes.detect),
    ("slow_start", probes.detect_slow_start),
    # the application crash is what is left when no specific signal explains the failure: keep it LAST
    ("app_crash", app_crash.detect),
]


# What an alert's own `reason` label (kube-state-metrics' waiting/terminated reason) or name says the
# cause is: a finding that matches it explains the alert better than one that merely comes first.
REASON_CAUSES: dict[str, frozenset[str]] = {
    "ImagePullBackOff": frozenset({"image_pull_after_rollout"}),
    "ErrImagePull": frozenset({"image_pull_after_rollout"}),
    "CreateContainerConfigError": frozenset({"config_reference", "missing_secret", "missing_config"}),
    "OOMKilled": frozenset({"oom_killed"}),
    "RunContainerError": frozenset({"bad_command"}),
    "StartError": frozenset({"bad_command"}),
    "ContainerCannotRun": frozenset({"bad_command"}),
}
ALERT_CAUSES: dict[str, frozenset[str]] = {
    "CPUThrottlingHigh": frozenset({"cpu_throttling"}),
    "KubeHpaMaxedOut": frozenset({"hpa_maxed_out"}),
    "KubernetesContainerOomKiller": frozenset({"oom_killed"}),
    "KubeJobFailed": frozenset({"oom_killed", "application_error"}),
}


def diagnose(evidence: Evidence) -> list[Diagnosis]:
    """Every detector that matched, the one that best explains the alert first, the rest noted."""
    found = [d for _, detect in REGISTRY if (d := detect(evidence)) is not None]
    return rollout.annotate(evidence, rank(evidence, found))  # a stuck rollout is the first finding's context


def rank(evidence: Evidence, found: list[Diagnosis]) -> list[Diagnosis]:
    """Stable order: findings the alert's reason/name points at, then its container, then registry order."""
    labels = evidence.incident.labels
    wanted = REASON_CAUSES.get(labels.get("reason", ""), frozenset()) | ALERT_CAUSES.get(
        evidence.incident.alertname, frozenset())
    container = labels.get("container")

    def key(d: Diagnosis) -> tuple[bool, bool]:
        return (bool(wanted) and d.cause not in wanted,
                bool(container) and d.finding.container not in (None, container))

    return sorted(found, key=key)
