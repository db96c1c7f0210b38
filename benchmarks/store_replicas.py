"""The job store with one process on SQLite beside three replicas on one PostgreSQL database (issue 17).

    python benchmarks/store_replicas.py [--alerts 3000] [--workers 2]

Two phases, each timed from the first call to the last answer, on the store itself (no HTTP, no pipeline):
intake (``enqueue``: one webhook per alert, each posted to every replica as Alertmanager HA pairs and a load
balancer deliver them, so two thirds of the posts are repeats) and draining (``lease`` + ``complete`` with the
record into the outbox, ``--workers`` threads per process). SQLite: one process gets every post. PostgreSQL: a real
server from tests/fakes/postgres.py (fsync off, as a test server: the numbers show the protocol's and the locks'
cost, not a disk's), three processes. Checked, not only timed: one job per alert, each completed exactly once.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c  # noqa: E402
from benchmarks.alerts import oom_alert, payload  # noqa: E402

REPLICAS = 3


def _bodies(count: int) -> list[str]:
    return [json.dumps(payload([oom_alert("shop", f"checkout-{i:05d}", "app")], {"namespace": "shop"}))
            for i in range(count)]


def _intake(location: str, bodies: list[str], out: Any) -> None:
    from app.adapters.store import JobStore
    from app.models.alertmanager import WebhookPayload

    store = JobStore(Path(location) if not location.startswith("postgresql") else location)
    started = time.perf_counter()
    ids = [r.job_id for body in bodies for r in store.enqueue(WebhookPayload.model_validate_json(body))]
    out.put((time.perf_counter() - started, ids))
    store.close()


def _drain(location: str, workers: int, name: str, out: Any) -> None:
    from app.adapters.store import JobStore
    from app.models.runs import PendingRun, RunRecord

    store = JobStore(Path(location) if not location.startswith("postgresql") else location)
    done: list[int] = []

    def work(worker: str) -> None:
        while (job := store.lease(worker, ttl=60)) is not None:
            run = PendingRun(key=f"{job.id:032x}", name="bench", status="FINISHED", created_at=1.0,
                             record=RunRecord(params={}, tags={}))
            if store.complete(job.id, worker, {"outcome": "no_fix"}, run=run):
                done.append(job.id)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(f"{name}-{i}",)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put((time.perf_counter() - started, done))
    store.close()


def _phase(target: Any, args_per_process: list[tuple[Any, ...]]) -> tuple[float, list[int]]:
    queue: Any = multiprocessing.Queue()
    started = time.perf_counter()
    procs = [multiprocessing.Process(target=target, args=(*a, queue)) for a in args_per_process]
    for p in procs:
        p.start()
    results = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    return time.perf_counter() - started, [i for _, ids in results for i in ids]


def measure(location: str, processes: int, bodies: list[str], workers: int) -> dict[str, Any]:
    from app.adapters.store import JobStore

    JobStore(Path(location) if not location.startswith("postgresql") else location).close()  # migrated once
    posts = [bodies] * REPLICAS if processes == 1 else [bodies] * processes  # every post reaches the store 3 times
    intake_s, ids = _phase(_intake, [(location, [b for chunk in posts for b in chunk])] if processes == 1
                           else [(location, chunk) for chunk in posts])
    drain_s, done = _phase(_drain, [(location, workers, f"p{n}") for n in range(processes)])
    assert len(set(ids)) == len(bodies), "one job per alert"
    assert sorted(done) == sorted(set(ids)), "each job completed exactly once"
    return {"processes": processes, "posts": len(bodies) * REPLICAS, "jobs": len(bodies),
            "intake_posts_per_s": round(len(bodies) * REPLICAS / intake_s), "drain_jobs_per_s": round(len(done) / drain_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=3000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    from tests.fakes.postgres import PostgresServer

    bodies = _bodies(args.alerts)
    with tempfile.TemporaryDirectory() as tmp, PostgresServer.start() as server:
        figures = {"sqlite_1": measure(str(Path(tmp) / "jobs.sqlite3"), 1, bodies, args.workers),
                   "postgresql_3": measure(server.create_database("bench"), REPLICAS, bodies, args.workers)}
    print(json.dumps(figures, indent=2))
    c.save("store_replicas", figures)


if __name__ == "__main__":
    main()
