"""Detectors: Evidence -> Diagnosis | None, one module per cause, tried in the order of the registry.

Order matters: the most specific signal first (an OOM kill explains a crash loop; an application crash is
what is left when nothing else matched).
"""

from __future__ import annotations

from collections.abc import Callable

from app.detectors import image_pull, oom
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence

Detector = Callable[[Evidence], Diagnosis | None]

REGISTRY: list[tuple[str, Detector]] = [
    ("oom", oom.detect),
    ("image_pull", image_pull.detect),
]


def diagnose(evidence: Evidence) -> list[Diagnosis]:
    """Every detector that matched, in registry order: the first explains the alert, the rest are noted."""
    return [d for _, detect in REGISTRY if (d := detect(evidence)) is not None]
