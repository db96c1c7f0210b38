"""JobStore: dedupe, leases and their expiry, exactly-once completion, retry/backoff, durability."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from app.adapters.store import JobStore
from app.errors import TemporaryError
from app.models.alertmanager import WebhookPayload
from app.models.outcome import Outcome
from app.worker import backoff_delay, run_next

REFERENCE = Path("/work/shared/reference")


def payload(name: str = "alertmanager-0.25-webhook-firing.json") -> WebhookPayload:
    return WebhookPayload.model_validate_json((REFERENCE / name).read_text())


class Clock:
    """Wall clock under the test's control, so lease expiry needs no sleeping."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> JobStore:
    s = JobStore(tmp_path / "jobs.sqlite3", clock=clock)
    yield s  # type: ignore[misc]
    s.close()


def test_enqueue_one_job_per_alert(store: JobStore) -> None:
    results = store.enqueue(payload())
    assert [r.duplicate for r in results] == [False, False]
    jobs = [store.get(r.job_id) for r in results]
    assert [j.fingerprint for j in jobs if j] == ["6f4aeb6ae5c7fa92", "d50960b227faa3f0"]
    job = jobs[0]
    assert job is not None and job.state == "queued" and job.attempts == 0
    assert job.alert["receiver"] == "ok" and job.alert["groupKey"].startswith("{}:")
    incident = job.incident()
    assert incident.alertname == "KubePodCrashLooping" and incident.pod == "checkout-7d9f8b6c5-fghij"


def test_repeated_delivery_is_recognised(store: JobStore) -> None:
    first = store.enqueue(payload())
    again = store.enqueue(payload())
    assert [r.job_id for r in again] == [r.job_id for r in first]
    assert all(r.duplicate for r in again)
    assert store.counts() == {"queued": 2, "running": 0, "done": 0, "failed": 0}


def test_resolution_is_a_new_job_for_the_same_fingerprint(store: JobStore) -> None:
    store.enqueue(payload())
    results = store.enqueue(payload("alertmanager-0.25-webhook-group-still-firing-one-alert-resolved.json"))
    # The still-firing alert is the same notification; the resolved one is new.
    assert [r.duplicate for r in results] == [True, False]
    assert [j.alert_status for j in store.find("d50960b227faa3f0")] == ["firing", "resolved"]


def test_lease_takes_oldest_and_counts_attempts(store: JobStore) -> None:
    ids = [r.job_id for r in store.enqueue(payload())]
    a = store.lease("w1", ttl=10)
    b = store.lease("w2", ttl=10)
    assert a is not None and b is not None
    assert (a.id, b.id) == (ids[0], ids[1])
    assert a.state == "running" and a.attempts == 1 and a.lease_owner == "w1"
    assert store.lease("w3", ttl=10) is None


def test_expired_lease_is_taken_over(store: JobStore, clock: Clock) -> None:
    store.enqueue(payload("alertmanager-0.25-webhook-all-resolved-after-resolve-timeout.json"))
    job = store.lease("dead", ttl=5)
    assert job is not None
    clock.now += 4
    assert store.lease("w2", ttl=5) is None  # not expired yet
    clock.now += 2
    again = store.lease("w2", ttl=5)
    assert again is not None and again.id == job.id and again.attempts == 2 and again.lease_owner == "w2"
    assert not store.heartbeat(job.id, "dead", 5)
    assert not store.complete(job.id, "dead", {"late": True})
    assert store.complete(job.id, "w2", {"outcome": "no_fix"})
    done = store.get(job.id)
    assert done is not None and done.state == "done" and done.result == {"outcome": "no_fix"}


def test_heartbeat_keeps_the_lease(store: JobStore, clock: Clock) -> None:
    store.enqueue(payload("alertmanager-0.25-webhook-all-resolved-after-resolve-timeout.json"))
    job = store.lease("w1", ttl=5)
    assert job is not None
    for _ in range(3):
        clock.now += 4
        assert store.heartbeat(job.id, "w1", 5)
    assert store.lease("w2", ttl=5) is None


def test_complete_exactly_once_when_two_workers_race(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = JobStore(path, clock=clock)
    second = JobStore(path, clock=clock)  # a second connection, as another process would have
    try:
        [result] = first.enqueue(payload("alertmanager-0.25-webhook-all-resolved-after-resolve-timeout.json"))
        assert first.lease("slow", ttl=1) is not None
        clock.now += 2
        assert second.lease("fast", ttl=30) is not None
        barrier = threading.Barrier(2)
        wins: dict[str, bool] = {}

        def finish(store: JobStore, worker: str) -> None:
            barrier.wait(timeout=5)
            wins[worker] = store.complete(result.job_id, worker, {"by": worker})

        threads = [threading.Thread(target=finish, args=a) for a in ((first, "slow"), (second, "fast"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert wins == {"slow": False, "fast": True}
        job = first.get(result.job_id)
        assert job is not None and job.result == {"by": "fast"}
        assert not second.complete(result.job_id, "fast", {"by": "again"})
    finally:
        first.close()
        second.close()


def test_many_threads_lease_each_job_once(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    try:
        store.enqueue(payload())
        store.enqueue(payload("alertmanager-0.25-webhook-max-alerts-2-of-3-truncated.json"))
        taken: list[int] = []
        lock = threading.Lock()

        def drain(worker: str) -> None:
            while (job := store.lease(worker, ttl=30)) is not None:
                with lock:
                    taken.append(job.id)
                assert store.complete(job.id, worker, {})

        threads = [threading.Thread(target=drain, args=(f"w{i}",)) for i in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        assert sorted(taken) == sorted(set(taken)) and len(taken) == 4
        assert store.counts()["done"] == 4
    finally:
        store.close()


def test_retry_waits_then_fails_after_max_attempts(tmp_path: Path, clock: Clock) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3", clock=clock, max_attempts=3)
    try:
        [result] = store.enqueue(payload("alertmanager-0.25-webhook-all-resolved-after-resolve-timeout.json"))
        for attempt in (1, 2):
            job = store.lease("w", ttl=5)
            assert job is not None and job.attempts == attempt
            assert store.retry(job.id, "w", delay=60, error="temporary: cluster down")
            assert store.lease("w", ttl=5) is None  # not due yet
            clock.now += 61
        job = store.lease("w", ttl=5)
        assert job is not None and job.attempts == 3
        assert store.retry(job.id, "w", delay=60, error="temporary: still down")
        final = store.get(result.job_id)
        assert final is not None and final.state == "failed" and final.error == "temporary: still down"
    finally:
        store.close()


def test_job_that_keeps_killing_its_worker_fails(tmp_path: Path, clock: Clock) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3", clock=clock, max_attempts=2)
    try:
        store.enqueue(payload("alertmanager-0.25-webhook-all-resolved-after-resolve-timeout.json"))
        for _ in range(2):
            assert store.lease("crashes", ttl=1) is not None
            clock.now += 2
        assert store.lease("w", ttl=1) is None
        assert store.counts()["failed"] == 1
    finally:
        store.close()


@pytest.mark.parametrize(
    ("requested", "attempts", "expected"),
    [(30, 1, 30), (30, 2, 60), (30, 4, 240), (30, 10, 900), (0, 3, 0)],
    ids=["first", "second-doubles", "fourth", "capped", "zero"],
)
def test_backoff(requested: float, attempts: int, expected: float) -> None:
    assert backoff_delay(requested, attempts) == expected


class Flaky:
    def __init__(self) -> None:
        self.calls = 0

    def handle(self, incident: object) -> Outcome:
        self.calls += 1
        if self.calls == 1:
            raise TemporaryError("forge down", delay=10)
        return Outcome(alertname="A", fingerprint="f", outcome="no_fix", reason="ok")


def test_run_next_retries_temporary_errors(store: JobStore, clock: Clock) -> None:
    store.enqueue(payload("alertmanager-0.25-webhook-all-resolved-after-resolve-timeout.json"))
    handler = Flaky()
    job = run_next(store, handler)
    assert job is not None and job.state == "queued" and job.error == "temporary: forge down"
    assert job.available_at == clock.now + 10
    assert run_next(store, handler) is None
    clock.now += 10
    job = run_next(store, handler)
    assert job is not None and job.state == "done" and job.attempts == 2
    assert job.result is not None and job.result["outcome"] == "no_fix"


def test_other_errors_fail_the_job(store: JobStore) -> None:
    class Broken:
        def handle(self, incident: object) -> Outcome:
            raise ValueError("bug")

    store.enqueue(payload("alertmanager-0.25-webhook-all-resolved-after-resolve-timeout.json"))
    job = run_next(store, Broken())
    assert job is not None and job.state == "failed" and job.error == "ValueError: bug"


def test_jobs_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    results = store.enqueue(payload())
    job = store.lease("w", ttl=30)
    assert job is not None and store.complete(job.id, "w", {"outcome": "no_fix", "stages": []})
    store.close()
    reopened = JobStore(path)
    try:
        assert reopened.counts() == {"queued": 1, "running": 0, "done": 1, "failed": 0}
        assert all(r.duplicate for r in reopened.enqueue(payload()))
        done = reopened.get(results[0].job_id)
        assert done is not None and json.dumps(done.result) == '{"outcome": "no_fix", "stages": []}'
    finally:
        reopened.close()
