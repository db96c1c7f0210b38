"""Cooperative deadlines: a job's wall-clock budget, and the stage it is in.

Python cannot stop a thread from outside, so the worker runs each job's handler in a thread of its own
under a ``Deadline`` (a context variable of that thread) and waits at most the budget. Code that may run
long on untrusted input (walking parsed YAML, scanning a repository) calls ``check()`` in its loop: once
the budget is spent, that raises ``BudgetExceeded`` and the abandoned handler stops at its next check. A
thread blocked in I/O stops when the call returns (every call to the outside has its own timeout).

``enter(stage)`` records where the job is (the pipeline calls it for every stage), so the worker's
failure and ``/readyz`` can say which stage ran out of time. Without a current deadline (tests, tools)
both are no-ops. Pure: no I/O, only the clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from app.errors import PermanentError

DEFAULT_BUDGET_SECONDS = 120.0
START_STAGE = "start"


class BudgetExceeded(PermanentError):
    """The job used up its wall-clock budget; the message names the stage it was in."""

    code = "budget"


class Deadline:
    """One job's budget: when it ends, which stage the job is in, and whether it was given up on."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self.started = clock()
        self.stage = START_STAGE
        self.abandoned = False  # the worker stopped waiting: the handler must stop at its next check
        self.tripped: BudgetExceeded | None = None  # the error a check raised inside the handler, if any

    def elapsed(self) -> float:
        return self._clock() - self.started

    def remaining(self) -> float:
        return max(self.seconds - self.elapsed(), 0.0)

    def expired(self) -> bool:
        return self.abandoned or self.elapsed() >= self.seconds

    def abandon(self) -> None:
        self.abandoned = True

    def error(self) -> BudgetExceeded:
        return BudgetExceeded(f"job exceeded {self.seconds:g} s in stage {self.stage}", code="budget")


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


@contextmanager
def running(deadline: Deadline) -> Iterator[Deadline]:
    """Make ``deadline`` the current one in this thread (and context) for the duration of the block."""
    token = _current.set(deadline)
    try:
        yield deadline
    finally:
        _current.reset(token)
