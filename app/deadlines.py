"""Cooperative deadlines: a job's wall-clock budget, and the stage it is in.

Python cannot stop a thread from outside, so the worker runs each job's handler in a thread of its own
under a ``Deadline`` (a context variable of that thread) and waits at most the budget. Code that may run
long on untrusted input (walking parsed YAML, scanning a repository) calls ``check()`` in its loop: once
the budget is spent, that raises ``BudgetExceeded`` and the abandoned handler stops at its next check. A
thread blocked in I/O stops when the call returns (every call to the outside has its own timeout).

``enter(stage)`` records where the job is (the pipeline calls it for every stage), so the worker's
failure and ``/readyz`` can say which stage ran out of time. Without a current deadline (tests, tools)
both are no-ops. Pure: no I/O, only the clock.

Calls to the outside (app.dependencies names them) are bounded by the same budget, and each dependency has a
retry budget per job. An adapter:

- asks ``timeout(seconds)`` for its connect/read timeouts: never more than what is left of the job's budget,
  so a server that accepts and never answers cannot hold the job past it;
- wraps the call in ``calling(dependency, what)``: if the budget runs out meanwhile, the worker's error names
  the dependency and the call (a ``DependencyTimeout``, temporary: the job is requeued), not only the stage;
  and once the dependency's retry budget in this job is spent, ``calling`` refuses at once
  (``RetryBudgetSpent``, temporary, naming it) instead of waiting out another timeout;
- reports the result: ``answered(dependency)``, or ``failed(error)`` with the AutofixError it raises (its
  ``dependency`` and ``kind``). A failure of a retryable kind (timeout, refused, 5xx, rate limit) spends one
  attempt of the budget; a client library's own retry loop asks ``retry_allowed(dependency)`` first and
  reports each failed attempt with ``spend``. The results reach the health registry the worker gave the
  deadline (``observer``, app.dependencies.DependencyHealth), which /readyz and /metrics read.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from app import dependencies
from app.errors import AutofixError, PermanentError, TemporaryError

DEFAULT_BUDGET_SECONDS = 120.0
DEFAULT_ATTEMPTS_PER_DEPENDENCY = 3  # failed attempts (timeouts, refusals, 5xx) of one dependency per job
MIN_CALL_SECONDS = 0.05  # a call is never given less: the budget check after it names what ran out
START_STAGE = "start"
RETRY_DELAY_SECONDS = 30.0


class Observer(Protocol):
    """Where a job's dependency results go (app.dependencies.DependencyHealth)."""

    def ok(self, dependency: str) -> None: ...

    def error(self, dependency: str, kind: str, message: str) -> None: ...


class BudgetExceeded(PermanentError):
    """The job used up its wall-clock budget in its own work; the message names the stage it was in."""

    code = "budget"


class DependencyTimeout(TemporaryError):
    """The job's budget ran out while it waited for a dependency: not the job's fault, retry it later."""

    code = "dependency_timeout"


class RetryBudgetSpent(TemporaryError):
    """A dependency failed as often as one job may let it: the job stops early and is retried later."""

    code = "retry_budget"


@dataclass(frozen=True)
class Call:
    """A call to a dependency in flight: which one, and what was asked ("GET pods/x/log in namespace shop")."""

    dependency: str
    what: str


class Deadline:
    """One job's budget: when it ends, which stage the job is in, and whether it was given up on; per
    dependency, the failed attempts so far and the call in flight."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic,
                 attempts: int = DEFAULT_ATTEMPTS_PER_DEPENDENCY, observer: Observer | None = None) -> None:
        self.seconds = seconds
        self._clock = clock
        self.started = clock()
        self.stage = START_STAGE
        self.abandoned = False  # the worker stopped waiting: the handler must stop at its next check
        self.tripped: AutofixError | None = None  # the error a check raised inside the handler, if any
        self.attempts = attempts
        self.observer = observer
        self.failures: dict[str, list[str]] = {}  # dependency -> kinds of its failed attempts in this job
        self.calling: Call | None = None

    def elapsed(self) -> float:
        return self._clock() - self.started

    def remaining(self) -> float:
        return max(self.seconds - self.elapsed(), 0.0)

    def expired(self) -> bool:
        return self.abandoned or self.elapsed() >= self.seconds

    def abandon(self) -> None:
        self.abandoned = True

    def error(self) -> AutofixError:
        """Why the budget ran out: waiting for a dependency (temporary, naming it), else the stage's own work."""
        call = self.calling
        if call is not None:
            return DependencyTimeout(f"no answer within the job budget of {self.seconds:g} s ({call.what}, stage "
                                     f"{self.stage})", dependency=call.dependency, kind=dependencies.TIMEOUT,
                                     delay=RETRY_DELAY_SECONDS)
        return BudgetExceeded(f"job exceeded {self.seconds:g} s in stage {self.stage}", code="budget")

    def give_up(self) -> AutofixError:
        """The worker stops waiting: the error it records, reported to the observer when a dependency is to blame."""
        err = self.error()
        self.abandon()
        if err.dependency is not None and self.observer is not None:
            self.observer.error(err.dependency, err.kind or dependencies.TIMEOUT, str(err))
        return err

    # ---- dependencies -------------------------------------------------------------------------------

    def spend(self, dependency: str, kind: str) -> None:
        if kind in dependencies.RETRYABLE_KINDS:
            self.failures.setdefault(dependency, []).append(kind)

    def retry_allowed(self, dependency: str) -> bool:
        """Another attempt may be made: attempts left for it in this job, and time left at all."""
        return len(self.failures.get(dependency, ())) < self.attempts and not self.expired()

    def spent_error(self, dependency: str) -> RetryBudgetSpent:
        kinds = self.failures.get(dependency, [])
        counted = ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds)) or "none"
        return RetryBudgetSpent(f"gave up after {len(kinds)} failed attempts in this job ({counted}; budget "
                                f"{self.attempts} per job)", dependency=dependency, kind=dependencies.BUDGET,
                                delay=RETRY_DELAY_SECONDS)


_current: ContextVar[Deadline | None] = ContextVar("autofix_deadline", default=None)


def current() -> Deadline | None:
    return _current.get()


def check() -> None:
    """Raise BudgetExceeded when the current job's budget is spent (cheap: call it in long loops)."""
    deadline = _current.get()
    if deadline is not None and deadline.expired():
        err = deadline.error()
        if deadline.tripped is None:
            deadline.tripped = err
        raise err


def enter(stage: str) -> None:
    """The current job enters ``stage``; a job already out of time stops here, named by the stage it left."""
    deadline = _current.get()
    if deadline is None:
        return
    check()
    deadline.stage = stage


def timeout(seconds: float) -> float:
    """``seconds`` for one call, bounded by what is left of the current job's budget (no deadline: unchanged).

    A job already out of time stops here (the budget's error), rather than start a call it cannot wait for.
    """
    deadline = _current.get()
    if deadline is None:
        return seconds
    check()
    return max(min(seconds, deadline.remaining()), MIN_CALL_SECONDS)


def shown(seconds: float) -> str:
    """``seconds`` as a message shows it. A call bounded by the budget gets what is left of it, a little under the
    budget (the time since the job or stage started): from half a second up, the value is rounded up to a tenth
    (slack up to 90 ms), so a call cut by a 1 s budget reads "1 s", not "0.97 s"; shorter ones keep two digits."""
    if seconds < 0.5:
        return f"{seconds:.2g}"
    return f"{math.ceil(seconds * 10 - 0.01) / 10:g}"


@contextmanager
def calling(dependency: str, what: str) -> Iterator[None]:
    """A call to ``dependency`` is in flight for the duration of the block (see the module docstring).

    Refuses at once (RetryBudgetSpent, naming it) when the dependency already failed as often as a job allows.
    """
    deadline = _current.get()
    if deadline is None:
        yield
        return
    if len(deadline.failures.get(dependency, ())) >= deadline.attempts:
        raise deadline.spent_error(dependency)
    previous = deadline.calling
    deadline.calling = Call(dependency=dependency, what=what)
    try:
        yield
    finally:
        deadline.calling = previous


def answered(dependency: str) -> None:
    """A call to ``dependency`` answered: reported to the job's health observer."""
    deadline = _current.get()
    if deadline is not None and deadline.observer is not None and not deadline.abandoned:
        deadline.observer.ok(dependency)


def failed(error: AutofixError, *, spend_attempt: bool = True) -> AutofixError:
    """Report the error an adapter is about to raise (its ``dependency`` and ``kind``) and, for a retryable kind,
    spend one attempt of the job's retry budget for it. Returns ``error``: ``raise deadlines.failed(err) from x``.

    Once the worker gave up on the job, its late failures are not reported again (the worker did)."""
    deadline = _current.get()
    if deadline is None or error.dependency is None or deadline.abandoned:
        return error
    kind = error.kind or dependencies.UNREACHABLE
    if spend_attempt:
        deadline.spend(error.dependency, kind)
    if deadline.observer is not None:
        deadline.observer.error(error.dependency, kind, str(error))
    return error


def spend(dependency: str, kind: str) -> None:
    """One failed attempt inside a client library's own retry loop (reported once, by the call's ``failed``)."""
    deadline = _current.get()
    if deadline is not None:
        deadline.spend(dependency, kind)


def retry_allowed(dependency: str) -> bool:
    """Whether a client library may try ``dependency`` again within this job (always, outside a job)."""
    deadline = _current.get()
    return deadline is None or deadline.retry_allowed(dependency)


@contextmanager
def running(deadline: Deadline) -> Iterator[Deadline]:
    """Make ``deadline`` the current one in this thread (and context) for the duration of the block."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)
