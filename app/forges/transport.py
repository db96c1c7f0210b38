"""What the forges say when a call got no HTTP answer (shared by the GitHub and GitLab forges): the dependency
and the call named, the kind (timeout, refused, unreachable) for the health registry."""

from __future__ import annotations

from urllib.parse import urlsplit

from app import deadlines, dependencies
from app.errors import TemporaryError


def call_of(request: object, action: str) -> str:
    """``METHOD /path`` of the request that failed (never its query or host), else the action we were taking."""
    method, url = getattr(request, "method", None), str(getattr(request, "url", "") or "")
    return f"{method} {urlsplit(url).path}" if request is not None and url else action


def unanswered(service: str, action: str, err: Exception, *, read_seconds: float, code: str) -> TemporaryError:
    """No HTTP answer: ``service`` did not answer in time, refused the connection, or cannot be reached."""
    kind = dependencies.kind_of(err)
    call = call_of(getattr(err, "request", None), action)
    if kind == dependencies.TIMEOUT:
        text = f"{service} did not answer within {deadlines.shown(read_seconds)} s ({call})"
    elif kind == dependencies.REFUSED:
        text = f"{service} unreachable: connection refused ({call})"
    else:
        text = f"{service} unreachable while trying to {action}: {type(err).__name__} ({call})"
    return TemporaryError(text, code=code, dependency=dependencies.FORGE, kind=kind)
