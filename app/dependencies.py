"""What the bot last saw of each dependency it talks to: a thread-safe health registry (pure: no I/O).

Dependencies by name: ``cluster`` (the Kubernetes API), ``git`` (the GitOps remote), ``forge`` (GitHub),
``llm``, ``mlflow``, ``prometheus``. The first three are needed for a pull request (``REQUIRED``): one of
them down makes the service not ready; the others only degrade what the bot records or says.

Who reports:
- calls made inside a job report through the job's deadline (``app.deadlines.answered`` / ``failed``): each
  adapter names its dependency there, and the worker connects every job's deadline to the one registry that
  ``app.main.create_app`` makes (``WorkerPool(health=...)``). Adapters never see the registry itself.
- code outside jobs holds the registry and reports directly; the MLflow exporter does::

      health.ok("mlflow")                                   # a call answered
      health.error("mlflow", "timeout", "MLflow did not answer within 10 s (POST /api/2.0/mlflow/runs/create)")

``kind`` says how a call failed (``KINDS``): ``timeout``, ``refused``, ``unreachable`` (DNS, reset, TLS),
``http_5xx``, ``http_4xx``, ``rate_limited``, ``invalid_response`` (an answer we cannot read), ``budget``
(the job's retry budget for it is spent). ``kind_of(err)`` and ``http_kind(status)`` classify for adapters.

Readers: ``snapshot()`` (one ``DependencyState`` per dependency, by name) for /readyz and /metrics,
``readiness()`` for the verdict. A dependency is ``down`` after a call that could not reach it or got a 5xx
(``DOWN_KINDS``), until a call answers again, or until ``down_for`` seconds pass without any call: then it
is ``unknown`` again, so an idle service is not kept out of its Service's endpoints for good by one old
failure. A 4xx, a rate limit or an unreadable answer is counted but leaves it ``up``: it answered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

CLUSTER = "cluster"
GIT = "git"
FORGE = "forge"
LLM = "llm"
MLFLOW = "mlflow"
PROMETHEUS = "prometheus"
NAMES = (CLUSTER, GIT, FORGE, LLM, MLFLOW, PROMETHEUS)
REQUIRED = frozenset({CLUSTER, GIT, FORGE})  # without any of them no pull request can be opened

TIMEOUT = "timeout"
REFUSED = "refused"
UNREACHABLE = "unreachable"
HTTP_5XX = "http_5xx"
HTTP_4XX = "http_4xx"
RATE_LIMITED = "rate_limited"
INVALID_RESPONSE = "invalid_response"
BUDGET = "budget"
KINDS = (TIMEOUT, REFUSED, UNREACHABLE, HTTP_5XX, HTTP_4XX, RATE_LIMITED, INVALID_RESPONSE, BUDGET)
DOWN_KINDS = frozenset({TIMEOUT, REFUSED, UNREACHABLE, HTTP_5XX, BUDGET})  # it did not answer, or answered 5xx
RETRYABLE_KINDS = DOWN_KINDS | {RATE_LIMITED}  # what a job's retry budget counts (app.deadlines)

DOWN_FOR_SECONDS = 120.0
MESSAGE_LIMIT = 300

State = Literal["up", "down", "unknown"]


@dataclass(frozen=True)
class DependencyState:
    """One dependency as last seen; ``errors`` counts failed calls by kind since the process started."""

    name: str
    state: State
    required: bool
    oks: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    last_kind: str | None = None
    last_error: str | None = None
    seconds_since_error: float | None = None

    def as_dict(self) -> dict[str, object]:
        body: dict[str, object] = {"state": self.state, "required": self.required}
        if self.last_error is not None:
            body.update(last_error=self.last_error, last_kind=self.last_kind,
                        seconds_since_error=round(self.seconds_since_error or 0.0, 1))
        return body


@dataclass(frozen=True)
class Readiness:
    """The verdict: ``ready`` unless a required dependency is down; ``degraded`` when an optional one is."""

    ready: bool
    degraded: bool
    down: tuple[str, ...]
    reason: str | None


@dataclass
class _Entry:
    oks: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    ok_last: bool | None = None  # None: never called
    last_at: float = 0.0
    last_kind: str | None = None
    last_error: str | None = None
    last_error_at: float = 0.0


class DependencyHealth:
    """Per dependency: the last result and counts. Every method is safe from any thread."""

    def __init__(self, known: Iterable[str] = (), *, down_for: float = DOWN_FOR_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {name: _Entry() for name in known}
        self._down_for = down_for
        self._clock = clock

    def ok(self, dependency: str) -> None:
        """A call to ``dependency`` answered (a 404 that means "absent" is an answer too)."""
        with self._lock:
            entry = self._entries.setdefault(dependency, _Entry())
            entry.oks += 1
            entry.ok_last = True
            entry.last_at = self._clock()

    def error(self, dependency: str, kind: str, message: str) -> None:
        """A call to ``dependency`` failed; ``kind`` is one of KINDS, ``message`` one line for operators."""
        line = " ".join(message.split())[:MESSAGE_LIMIT]
        with self._lock:
            entry = self._entries.setdefault(dependency, _Entry())
            entry.errors[kind] = entry.errors.get(kind, 0) + 1
            now = self._clock()
            # A 4xx or a rate limit is an answer: the dependency stays up, the error is still counted and shown.
            entry.ok_last = kind not in DOWN_KINDS
            entry.last_at = now
            entry.last_kind, entry.last_error, entry.last_error_at = kind, line, now

    def state(self, dependency: str) -> DependencyState:
        with self._lock:
            return self._state(dependency, self._entries.get(dependency, _Entry()), self._clock())

    def snapshot(self) -> list[DependencyState]:
        """Every dependency known or reported so far, by name."""
        with self._lock:
            now = self._clock()
            return [self._state(name, entry, now) for name, entry in sorted(self._entries.items())]

    def readiness(self) -> Readiness:
        states = self.snapshot()
        down = tuple(s.name for s in states if s.state == "down")
        blocking = [s for s in states if s.state == "down" and s.required]
        optional = [s for s in states if s.state == "down" and not s.required]
        reason = "; ".join(f"{s.name} down: {s.last_error}" for s in blocking + optional) or None
        return Readiness(ready=not blocking, degraded=bool(optional), down=down, reason=reason)

    def _state(self, name: str, entry: _Entry, now: float) -> DependencyState:
        if entry.ok_last is None or (not entry.ok_last and now - entry.last_at >= self._down_for):
            state: State = "unknown"
        else:
            state = "up" if entry.ok_last else "down"
        since = now - entry.last_error_at if entry.last_error is not None else None
        return DependencyState(name=name, state=state, required=name in REQUIRED, oks=entry.oks,
                               errors=dict(entry.errors), last_kind=entry.last_kind, last_error=entry.last_error,
                               seconds_since_error=since)


# ---------------------------------------------------------------- classifying failures for adapters


def http_kind(status: int) -> str:
    """The kind of an HTTP error status (429 is a rate limit; GitHub's 403 rate limits are told by the forge)."""
    if status == 429:
        return RATE_LIMITED
    if status >= 500:
        return HTTP_5XX
    return HTTP_4XX


def kind_of(err: BaseException) -> str:
    """Timeout, refused or unreachable, from a client library's exception and everything it wraps.

    Looks through ``__cause__``, ``__context__``, ``reason`` (urllib3) and ``args`` by type name, so this pure
    module needs none of the client libraries: ``ReadTimeoutError``, ``ConnectTimeout``, ``APITimeoutError``,
    ``socket.timeout``... are timeouts; ``ConnectionRefusedError`` anywhere in the chain is a refusal.
    """
    seen: set[int] = set()
    stack: list[BaseException] = [err]
    found = UNREACHABLE
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError):
            return REFUSED
        if isinstance(current, TimeoutError) or "Timeout" in type(current).__name__:
            found = TIMEOUT
        linked = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        stack.extend(item for item in linked if isinstance(item, BaseException))
    return found
