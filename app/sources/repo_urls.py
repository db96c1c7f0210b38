"""Transitional (issue 11): moved to app/sources/deployers/repo_urls.py; app/pipeline.py still imports it
from here. Remove once the wiring imports ``app.sources.deployers.repo_urls``."""

from __future__ import annotations

from app.sources.deployers.repo_urls import RepoIdentity, normalize

__all__ = ["RepoIdentity", "normalize"]
