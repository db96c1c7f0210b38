"""The exporter: run records from the job store's outbox to MLflow, off the path from alert to PR.

The pipeline never waits for MLflow. Each handling's record goes into the outbox with the job's result (one
transaction, app/adapters/store.py); this exporter sends it to MLflow in the background (``run`` in
`autofix serve`), or within a bounded wait at the end of `autofix handle` (``drain``). What is left is sent
by the next `serve` or `handle` that opens the same data dir.

The PR's link to its run: the PR body is written before the run exists in MLflow, so its "Record" section
names the record key and the MLflow tag to search for (``autofix_record=<key>``). Once the run is exported,
the exporter replaces that line in the open PR's body with the link to the run (render.link_record). A body
a human has edited (the line is gone) is left alone; the tag still finds the run.

Retries: a record MLflow could not take (unreachable, timed out, 5xx) waits with exponential backoff
(EXPORT_BACKOFF_SECONDS, doubled per attempt, capped at EXPORT_BACKOFF_CAP_SECONDS) and is never dropped: it
is the only copy of the audit trail. A record MLflow refused (a 4xx: PermanentError) is marked failed and
kept for `autofix explain`. Each row is leased while it is sent, and the sink finds an earlier attempt's run
by its tag, so a record lands exactly once even when a process dies half-way through an export.
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
from typing import Protocol

from app import render
from app.adapters.store import Export, JobStore
from app.errors import PermanentError
from app.ports import Forge, RunSink

log = logging.getLogger(__name__)

EXPORT_BACKOFF_SECONDS = 2.0
EXPORT_BACKOFF_CAP_SECONDS = 300.0
LEASE_SECONDS = 120.0  # longer than one export's worst case (MLflow's timeouts x retries, tracking.py)
POLL_SECONDS = 1.0


class HealthReport(Protocol):
    """Where the exporter says how MLflow answered (app/dependencies.py's registry)."""

    def ok(self, dependency: str) -> None: ...

    def error(self, dependency: str, kind: str, message: str) -> None: ...


@dataclass(frozen=True)
class Pass:
    exported: int  # records now in MLflow
    linked: int  # PR bodies given their run's link
    failed: int  # attempts that failed (retried later, or refused for good)


def backoff(attempts: int) -> float:
    return float(min(EXPORT_BACKOFF_CAP_SECONDS, EXPORT_BACKOFF_SECONDS * 2 ** min(max(attempts - 1, 0), 16)))


class Exporter:
    """Sends due outbox rows to the sink (built on first use: importing MLflow costs seconds)."""

    def __init__(self, store: JobStore, *, sink: Callable[[], RunSink], forge: Forge | None,
                 health: HealthReport | None = None, owner: str | None = None,
                 forges: Callable[[str], Forge | None] | None = None) -> None:
        """``forges``: the forge of a repository by its name (repositories.yaml), for the PR a record links to:
        the one its ledger row names; ``forge`` when it is not given (one repository)."""
        self.store = store
        self._make_sink = sink
        self._sink: RunSink | None = None
        self._sink_lock = threading.Lock()
        self.forge = forge
        self.forges = forges
        self.health = health
        self.owner = owner or f"exporter:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def once(self, *, limit: int = 10, due_only: bool = True) -> Pass:
        """One pass over the rows due now (``due_only`` False: those waiting out a backoff too)."""
        exported = linked = failed = 0
        for row in self.store.lease_exports(self.owner, ttl=LEASE_SECONDS, limit=limit, due_only=due_only):
            try:
                if row.state == "pending":
                    handle = self.sink().export(row.run)
                    run_id, run_url = handle.run_id, handle.url
                    exported += 1
                    self._report_ok()
                else:  # exported earlier, the PR link still missing
                    run_id, run_url = row.run_id or "", row.run_url or ""
                done = self._link(row, run_url)
                linked += int(done and row.run.branch is not None)
                self.store.exported(row.run.key, self.owner, run_id=run_id, run_url=run_url, linked=done)
            except PermanentError as err:
                failed += 1
                log.error("run record refused by mlflow", extra={"record": row.run.key, "error": str(err)})
                self._report_error(err)
                self.store.export_failed(row.run.key, self.owner, error=str(err), delay=0, permanent=True)
            except Exception as err:  # noqa: BLE001 - any failure: try again later, never lose the record
                failed += 1
                delay = backoff(row.attempts)
                self._report_error(err)
                log.warning("run record export failed, will retry",
                            extra={"record": row.run.key, "attempt": row.attempts, "delay": delay,
                                   "error": str(err)[:300]})
                self.store.export_failed(row.run.key, self.owner, error=str(err), delay=delay)
        return Pass(exported=exported, linked=linked, failed=failed)

    def warm_up(self) -> threading.Thread:
        """Import MLflow and open its store in a background thread while the alerts are handled (a one-shot
        command): the export after them does not pay for it. Its failure is the export's to report."""

        def prepare() -> None:
            try:
                self.sink().prepare()
            except Exception as err:  # noqa: BLE001 - the export that follows meets it again and reports it
                log.debug("mlflow warm-up failed", extra={"error": str(err)[:300]})

        thread = threading.Thread(target=prepare, name="autofix-export-warm-up", daemon=True)
        thread.start()
        return thread

    def sink(self) -> RunSink:
        with self._sink_lock:
            if self._sink is None:
                self._sink = self._make_sink()
            return self._sink

    def _link(self, row: Export, run_url: str) -> bool:
        """Put the run's link into the PR body; True when nothing is left to do for this row."""
        branch = row.run.branch
        forge = self._forge_of(row)
        if branch is None or forge is None:
            return True
        pr = forge.find_open_pr(branch)
        if pr is None:
            return True  # merged or closed meanwhile: the tag still finds the run
        body = render.link_record(pr.body, key=row.run.key, run_url=run_url)
        if body is not None:
            forge.set_body(pr, body)
            log.info("pull request linked to its run", extra={"pr": pr.number, "record": row.run.key})
        return True

    def _forge_of(self, row: Export) -> Forge | None:
        """The forge of the repository the record's PR is in: its ledger row (same branch, same record) names it."""
        if self.forges is None or row.run.branch is None:
            return self.forge
        rows = [e for e in self.store.entries(branch=row.run.branch) if e.record_id == row.run.key]
        return self.forges(rows[-1].repo) if rows else self.forge

    def _report_ok(self) -> None:
        if self.health is not None:
            self.health.ok("mlflow")

    def _report_error(self, err: Exception) -> None:
        if self.health is not None:
            self.health.error("mlflow", getattr(err, "kind", None) or "unreachable", str(err)[:300])

    # ---------------------------------------------------------------- loops

    def run(self, stop: threading.Event, *, poll: float = POLL_SECONDS) -> None:
        """The service's background loop: until ``stop`` is set; nothing it meets stops it."""
        first = True  # at start, what earlier processes left is tried at once, whatever its backoff
        while not stop.is_set():
            try:
                did = self.once(limit=100, due_only=not first)
                first = False
            except Exception:  # the store busy or gone for a moment: the next pass tries again
                log.warning("run export pass failed", exc_info=True)
                did = Pass(0, 0, 0)
            if did.exported == did.linked == did.failed == 0 or did.failed:
                stop.wait(poll)

    def drain(self, *, seconds: float, clock: Callable[[], float] = time.monotonic) -> dict[str, float]:
        """Export until the outbox is empty, an attempt failed (MLflow is down: waiting longer will not help
        a command that is about to exit), or ``seconds`` passed (`autofix handle`); returns what is left.

        Runs in a thread of its own, so a call that hangs past the wait does not hold the process: it is
        abandoned (its lease expires) and the record is sent again, to the same run, by the next exporter."""
        if seconds <= 0:
            return self.store.backlog()  # no wait asked: no thread either (nothing left running at exit)
        stop = threading.Event()
        deadline = clock() + seconds

        def loop() -> None:
            first = True
            while not stop.is_set():
                try:
                    did = self.once(limit=100, due_only=not first)
                    first = False
                    left = self.store.backlog()
                except Exception:  # the store busy: what is left waits for the next exporter
                    log.warning("run export pass failed", exc_info=True)
                    return
                if did.failed or left["pending"] + left["linking"] == 0 or did.exported + did.linked == 0:
                    return

        worker = threading.Thread(target=loop, name="autofix-export-drain", daemon=True)
        worker.start()
        worker.join(timeout=max(deadline - clock(), 0.0))
        stop.set()
        return self.store.backlog()
