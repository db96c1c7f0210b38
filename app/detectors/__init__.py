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


def diagnose(evidence: Evidence) -> list[Diagnosis]:
    """Every detector that matched, in registry order: the first explains the alert, the rest are noted."""
    found = [d for _, detect in REGISTRY if (d := detect(evidence)) is not None]
    return rollout.annotate(evidence, found)  # a stuck rollout is the context of the first finding
