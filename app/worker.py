"""Background workers: lease a job, run the handler, record how it ended.

Each worker thread loops: lease -> handle (while a heartbeat timer extends the lease) -> complete / retry /
fail. A TemporaryError is retried with exponential backoff; any other exception fails the job with its
message (the traceback goes to the log, never to the job record or the HTTP client). Nothing a handler raises
stops a thread. A worker killed mid-job leaves its lease to expire; another worker, here or in the next
process, takes the job up again (see app.adapters.store).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

from app.adapters.store import Job, JobStore
from app.errors import TemporaryError
from app.ports import Handler

log = logging.getLogger(__name__)

BACKOFF_CAP_SECONDS = 900.0
HEARTBEATS_PER_LEASE = 3  # extend well before expiry so one slow write does not lose the lease

OutcomeObserver = Callable[[str], None]


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


def run_job(
    store: JobStore,
    handler: Handler,
    job: Job,
    *,
    worker: str,
    lease_seconds: float,
    on_outcome: OutcomeObserver | None = None,
) -> str:
    """Handle one leased job and record its end. Returns the label recorded ("done:<outcome>", "retry", ...)."""
    extra: dict[str, Any] = {"job_id": job.id, "worker": worker, "attempt": job.attempts,
                             "fingerprint": job.fingerprint, "alertname": job.alertname}
    log.info("job started", extra=extra)
    try:
        with _Heartbeat(store, job.id, worker, lease_seconds):
            outcome = handler.handle(job.incident())
        result: dict[str, Any] = outcome.model_dump(mode="json")
    except TemporaryError as err:
        delay = backoff_delay(err.delay, job.attempts)
        log.warning("job will be retried", extra={**extra, "delay": delay, "error": str(err)})
        label = "retry" if store.retry(job.id, worker, delay=delay, error=f"{err.code}: {err}") else "lease_lost"
    except Exception as err:
        log.exception("job failed", extra=extra)
        code = getattr(err, "code", type(err).__name__)
        label = "failed" if store.fail(job.id, worker, error=f"{code}: {err}") else "lease_lost"
    else:
        ok = store.complete(job.id, worker, result)
        label = f"done:{result.get('outcome', 'unknown')}" if ok else "lease_lost"
        log.info("job finished", extra={**extra, "outcome": result.get("outcome"), "recorded": ok})
    if label == "lease_lost":
        log.warning("job result dropped: lease no longer ours", extra=extra)
    if on_outcome is not None:
        on_outcome(label)
    return label


def run_next(
    store: JobStore, handler: Handler, *, worker: str = "sync", lease_seconds: float = 60.0
) -> Job | None:
    """Lease and run one job synchronously (tests, `autofix handle`); returns the job as stored after, or None."""
    job = store.lease(worker, ttl=lease_seconds)
    if job is None:
        return None
    run_job(store, handler, job, worker=worker, lease_seconds=lease_seconds)
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
        on_outcome: OutcomeObserver | None = None,
    ) -> None:
        self.store = store
        self.handler = handler
        self.workers = workers
        self.lease_seconds = lease_seconds
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
        log.info("worker pool started", extra={"workers": self.workers, "lease_seconds": self.lease_seconds})

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
                        on_outcome=self.on_outcome)
            except Exception:
                # Only the store's own writes can land here; the lease expires and the job is retried.
                log.exception("job bookkeeping failed", extra={"job_id": job.id, "worker": worker})
