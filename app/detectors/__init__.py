"""Detectors: Evidence -> Diagnosis | None, one module per cause (or family of causes), pure.

Each module reads the evidence and hands its fixer the cause's typed facts (app/models/causes.py). Which
detectors run, in which order, and which fixer follows is the one registry in app/causes.py; this package
knows nothing of fixers. ``REASONS`` and ``ALERTS`` in a module name what an alert says when it is about
that module's cause (the ranking reads them from the registry).
"""
