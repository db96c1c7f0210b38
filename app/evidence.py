"""The evidence stage moved to app/stages/evidence.py; ``gather`` stays importable from here."""

from __future__ import annotations

from app.stages.evidence import gather

__all__ = ["gather"]
