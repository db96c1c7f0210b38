"""Background workers: lease a job, run the handler, record how it ended.

Each worker thread loops: lease -> handle (while a heartbeat timer extends the lease) -> complete / retry /
fail. A TemporaryError is retried with exponential backoff; any other exception fails the job with its
message (the traceback goes to the log, never to the job record or the HTTP client). Nothing a handler raises
stops a thread. A worker killed mid-job leaves its lease to expire; another worker, here or in the next
process, takes the job up again (see app.adapters.store).

Every job has a wall-clock budget (AUTOFIX_JOB_BUDGET_SECONDS). The handler runs in a thread of its own under
an app.deadlines.Deadline and the worker waits at most the budget: past it the job fails naming the stage it
was in, the worker takes the next job, and the abandoned handler stops at its next ``deadlines.check()``.
Its late result is never written (only the worker writes, and the store refuses a second ending anyway).
Until it stops, ``WorkerPool.stuck`` reports it, and /readyz with it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from app import deadlines
from app.adapters.store import Job, JobStore
from app.deadlines import BudgetExceeded, Deadline
from app.errors import TemporaryError
from app.models.runs import run_of
from app.ports import Handler

log = logging.getLogger(__name__)

BACKOFF_CAP_SECONDS = 900.0
HEARTBEATS_PER_LEASE = 3  # extend well before expiry so one slow write does not lose the lease

T = TypeVar("T")


@dataclass(frozen=True)
class Finished:
    """How one attempt at a job ended, for the metrics (app/api/telemetry.py): the job's state after it (done,
    retry, failed, lease_lost), the outcome when done (empty otherwise), the cause and the handling time."""

    state: str
    outcome: str = ""
    cause: str | None = None
    seconds: float = 0.0


OutcomeObserver = Callable[[Finished], None]


def worker_name(index: int) -> str:
    """Unique across threads, processes and restarts: a lease must never look like it is still ours."""
    return f"{socket.gethostname()}:{os.getpid()}:{index}:{uuid.uuid4().hex[:8]}"


def backoff_delay(requested: float, attempts: int, *, cap: float = BACKOFF_CAP_SECONDS) -> float:
    """The handler's requested delay doubled for each attempt already made, capped."""
    exponent = max(attempts - 1, 0)
    return float(min(cap, max(requested, 0.0) * (2 ** min(exponent, 32))))


class _Heartbeat:
    """Extends a job's lease from a background thread while the handler runs."""

    def __init__(self, store: JobStore, job_id: int, worker: str, lease_seconds: float) -> None:
        self._store = store
        self._job_id = job_id
        self._worker = worker
        self._lease_seconds = lease_seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._lease_seconds)

    def _run(self) -> None:
        interval = self._lease_seconds / HEARTBEATS_PER_LEASE
        while not self._stop.wait(interval):
            try:
                if not self._store.heartbeat(self._job_id, self._worker, self._lease_seconds):
                    log.warning("job lease lost while running", extra={"job_id": self._job_id, "worker": self._worker})
                    return
            except Exception:
                # A missed heartbeat is survivable (the lease has slack); the next one may succeed.
                log.warning("job heartbeat failed", extra={"job_id": self._job_id}, exc_info=True)


# ---------------------------------------------------------------- the budget


@dataclass(frozen=True)
class Stuck:
    """A handler still running past its job's budget (abandoned by its worker, not yet at a check)."""

    job_id: int
    stage: str
    seconds: float
    budget: float

    def reason(self) -> str:
        return (f"job {self.job_id} stuck in stage {self.stage} for {self.seconds:.0f} s "
                f"(budget {self.budget:g} s)")


class _Attempt(Generic[T]):
    """One handler call in a thread of its own, under a deadline, so the caller can stop waiting for it."""

    def __init__(self, fn: Callable[[], T], deadline: Deadline, *, name: str,
                 on_exit: Callable[[], None] | None = None) -> None:
        self.fn = fn
        self.deadline = deadline
        self.on_exit = on_exit
        self.done = threading.Event()
        self.value: T | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            with deadlines.running(self.deadline):
                self.value = self.fn()
        except BaseException as err:  # handed to the caller, which re-raises it in its own thread
            self.error = err
        finally:
            self.done.set()
            if self.on_exit is not None:
                self.on_exit()


class RunningJobs:
    """The handler threads a pool started and that have not ended yet, by job id."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: dict[int, list[_Attempt[Any]]] = {}

    def add(self, job_id: int, attempt: _Attempt[Any]) -> None:
        with self._lock:
            self._attempts.setdefault(job_id, []).append(attempt)

    def remove(self, job_id: int, attempt: _Attempt[Any]) -> None:
        with self._lock:
            left = [a for a in self._attempts.get(job_id, []) if a is not attempt]
            if left:
                self._attempts[job_id] = left
            else:
                self._attempts.pop(job_id, None)

    def __len__(self) -> int:
        """Handler threads not ended yet (an abandoned one counts until it reaches a check and stops)."""
        with self._lock:
            return sum(len(items) for items in self._attempts.values())

    def wait_idle(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` seconds) until every handler thread has ended; True when none is left.

        A one-shot command calls it before it exits: an abandoned handler still finishing its record (its bounded
        call returned at the budget) must not be cut by the interpreter's exit, which aborts the whole process
        when a daemon thread is inside a C++ extension (re2, in the redaction) at that moment."""
        give_up = time.monotonic() + timeout
        while True:
            with self._lock:
                threads = [a.thread for items in self._attempts.values() for a in items]
            alive = [t for t in threads if t.is_alive()]
            if not alive:
                return True
            left = give_up - time.monotonic()
            if left <= 0:
                return False
            alive[0].join(left)

    def stuck(self) -> list[Stuck]:
        """Handlers running past their budget, oldest first."""
        with self._lock:
            attempts = [(job_id, a) for job_id, items in self._attempts.items() for a in items]
        found = [Stuck(job_id=job_id, stage=a.deadline.stage, seconds=a.deadline.elapsed(),
                       budget=a.deadline.seconds)
                 for job_id, a in attempts if a.deadline.expired() and not a.done.is_set()]
        return sorted(found, key=lambda s: -s.seconds)


def call_within(fn: Callable[[], T], deadline: Deadline, *, name: str, running: RunningJobs | None = None,
                job_id: int = 0) -> T:
    """``fn()`` in its own thread under ``deadline``, waiting at most what is left of it.

    BudgetExceeded (naming the stage) when the budget runs out first, or when a ``deadlines.check`` inside
    stopped the handler (the pipeline turns that into a failed outcome; the caller sees the budget);
    DependencyTimeout (temporary, naming the dependency and the call) when the handler was waiting for one.
    """
    attempt: _Attempt[T] = _Attempt(fn, deadline, name=name)
    if running is not None:
        attempt.on_exit = lambda: running.remove(job_id, attempt)
        running.add(job_id, attempt)
    attempt.thread.start()
    if not attempt.done.wait(deadline.remaining()):
        # The stage it is in now, or the dependency it waits for; its next check raises: the runaway work stops.
        raise deadline.give_up()
    if deadline.tripped is not None:
        raise deadline.tripped
    if attempt.error is not None:
        raise attempt.error
    return cast(T, attempt.value)


# ---------------------------------------------------------------- one job


def retry_reason(err: TemporaryError, *, attempts: int, last: bool) -> str:
    """One line for the job record: code and message (which starts with the dependency, when one failed);
    on the last attempt, how many were made."""
    line = " ".join(f"{err.code}: {err}".split())
    return f"gave up after {attempts} attempts: {line}" if last else line


def run_job(
    store: JobStore,
    handler: Handler,
    job: Job,
    *,
    worker: str,
    lease_seconds: float,
    budget_seconds: float = deadlines.DEFAULT_BUDGET_SECONDS,
    running: RunningJobs | None = None,
    on_outcome: OutcomeObserver | None = None,
    health: deadlines.Observer | None = None,
) -> str:
    """Handle one leased job and record its end. Returns the label recorded ("done:<outcome>", "retry", ...).

    ``health`` receives the result of every dependency call the job makes (app.dependencies)."""
    extra: dict[str, Any] = {"job_id": job.id, "worker": worker, "attempt": job.attempts,
                             "fingerprint": job.fingerprint, "alertname": job.alertname}
    log.info("job started", extra=extra)
    incident = job.incident()
    deadline = Deadline(budget_seconds, observer=health)
    started = time.monotonic()
    result: dict[str, Any] = {}
    error = ""  # why it failed, as the job record says
    try:
        with _Heartbeat(store, job.id, worker, lease_seconds):
            outcome = call_within(lambda: handler.handle(incident), deadline, name=f"autofix-job-{job.id}",
                                  running=running, job_id=job.id)
        result = outcome.model_dump(mode="json")
    except BudgetExceeded as err:
        log.error("job exceeded its budget", extra={**extra, "stage": deadline.stage, "budget": budget_seconds})
        error = f"{err.code}: {err}"
        label = "budget" if store.fail(job.id, worker, error=error) else "lease_lost"
    except TemporaryError as err:
        delay = backoff_delay(err.delay, job.attempts)
        last = job.attempts >= store.max_attempts  # the store fails it instead of queueing it again
        reason = error = retry_reason(err, attempts=job.attempts, last=last)
        log.warning("job will be retried" if not last else "job failed: out of attempts",
                    extra={**extra, "delay": delay, "error": reason, "dependency": err.dependency})
        label = (("failed" if last else "retry")
                 if store.retry(job.id, worker, delay=delay, error=reason, run=run_of(err)) else "lease_lost")
    except Exception as err:
        log.exception("job failed", extra=extra)
        error = f"{getattr(err, 'code', type(err).__name__)}: {err}"
        label = "failed" if store.fail(job.id, worker, error=error, run=run_of(err)) else "lease_lost"
    else:
        ok = store.complete(job.id, worker, result, run=getattr(outcome, "run", None))
        label = f"done:{result.get('outcome', 'unknown')}" if ok else "lease_lost"
    seconds = round(time.monotonic() - started, 3)
    if label == "lease_lost":
        log.warning("job result dropped: lease no longer ours", extra=extra)
    elif label != "retry":
        _log_decision(job, result, extra=extra, seconds=seconds, error=error)
    if on_outcome is not None:
        state, _, done_as = label.partition(":")
        on_outcome(Finished(state="failed" if state == "budget" else state, outcome=done_as,
                            cause=result.get("cause"), seconds=seconds))
    return label


def _log_decision(job: Job, result: dict[str, Any], *, extra: dict[str, Any], seconds: float, error: str) -> None:
    """The one line per decided job (done, or failed for good) an operator greps for: which alert, which
    workload, what was done, how long it took. A failed job has no result: its error is the reason."""
    workload = result.get("workload")  # kind/namespace/name once the target stage found it
    namespace = str(workload).split("/")[1] if workload and str(workload).count("/") == 2 else None
    labels = job.alert.get("alert", {}).get("labels", {})
    log.info("job decided", extra={
        **extra, "namespace": namespace or labels.get("namespace"), "workload": workload,
        "cause": result.get("cause"), "outcome": result.get("outcome", "failed"),
        "reason": result.get("reason") or error, "pr_url": result.get("pr_url"), "duration_seconds": seconds})


def run_next(
    store: JobStore, handler: Handler, *, worker: str = "sync", lease_seconds: float = 60.0,
    budget_seconds: float = deadlines.DEFAULT_BUDGET_SECONDS, running: RunningJobs | None = None,
    health: deadlines.Observer | None = None,
) -> Job | None:
    """Lease and run one job synchronously (tests, tools); returns the job as stored after, or None."""
    job = store.lease(worker, ttl=lease_seconds)
    if job is None:
        return None
    run_job(store, handler, job, worker=worker, lease_seconds=lease_seconds, budget_seconds=budget_seconds,
            running=running, health=health)
    return store.get(job.id)


class WorkerPool:
    """N daemon threads draining the store. ``wake`` after an enqueue skips the poll wait."""

    def __init__(
        self,
        store: JobStore,
        handler: Handler,
        *,
        workers: int,
        lease_seconds: float,
        poll_interval: float = 0.2,
        budget_seconds: float = deadlines.DEFAULT_BUDGET_SECONDS,
        on_outcome: OutcomeObserver | None = None,
        health: deadlines.Observer | None = None,
    ) -> None:
        self.store = store
        self.handler = handler
        self.health = health  # every job's dependency results go there (app.dependencies.DependencyHealth)
        self.workers = workers
        self.lease_seconds = lease_seconds
        self.budget_seconds = budget_seconds
        self.running = RunningJobs()
        self.poll_interval = poll_interval
        self.on_outcome = on_outcome
        self._stopping = threading.Event()
        self._wakeup = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        if self._threads:
            return
        self._stopping.clear()
        for index in range(self.workers):
            name = worker_name(index)
            thread = threading.Thread(target=self._loop, args=(name,), name=f"autofix-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.info("worker pool started", extra={"workers": self.workers, "lease_seconds": self.lease_seconds,
                                               "budget_seconds": self.budget_seconds})

    def stop(self, timeout: float = 10.0) -> bool:
        """Ask the threads to stop and wait; True when all stopped. A job still running keeps its lease,
        which expires and lets the next process take the job up again."""
        self._stopping.set()
        self._wakeup.set()
        for thread in self._threads:
            thread.join(timeout=timeout)
        stopped = not any(t.is_alive() for t in self._threads)
        if not stopped:
            log.warning("worker pool stop timed out with jobs still running", extra={"timeout": timeout})
        self._threads = []
        return stopped

    def wake(self) -> None:
        self._wakeup.set()

    def alive(self) -> bool:
        """True when started and every worker thread is running."""
        return bool(self._threads) and all(t.is_alive() for t in self._threads) and not self._stopping.is_set()

    def stuck(self) -> list[Stuck]:
        """Handlers still running past their job's budget (their workers have moved on)."""
        return self.running.stuck()

    def _loop(self, worker: str) -> None:
        while not self._stopping.is_set():
            try:
                job = self.store.lease(worker, ttl=self.lease_seconds)
            except Exception:
                log.warning("job lease failed", extra={"worker": worker}, exc_info=True)
                job = None
            if job is None:
                self._wakeup.wait(self.poll_interval)
                self._wakeup.clear()
                continue
            try:
                run_job(self.store, self.handler, job, worker=worker, lease_seconds=self.lease_seconds,
                        budget_seconds=self.budget_seconds, running=self.running, on_outcome=self.on_outcome,
                        health=self.health)
            except Exception:
                # Only the store's own writes can land here; the lease expires and the job is retried.
                log.exception("job bookkeeping failed", extra={"job_id": job.id, "worker": worker})
