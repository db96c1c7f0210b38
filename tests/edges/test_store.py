"""JobStore: dedupe, leases and their expiry, exactly-once completion, retry/backoff, durability.

Every test taking ``store`` or ``store_location`` runs twice: on a SQLite file and on a real PostgreSQL server
(tests/conftest.py); corruption and the files' bytes are SQLite's own."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from app.adapters.store import JobStore
from app.errors import StartupError, TemporaryError
from app.models.alertmanager import WebhookPayload
from app.models.outcome import Outcome
from app.worker import backoff_delay, run_next
from tests.conftest import REFERENCE_DIR

REFERENCE = REFERENCE_DIR


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
def store(store_location: Path | str, clock: Clock) -> JobStore:
    s = JobStore(store_location, clock=clock)
    yield s  # type: ignore[misc]
    s.close()


def test_enqueue_one_job_per_alert(store: JobStore) -> None:
    results = store.enqueue(payload())
    assert [r.duplicate for r in results] == [False, False]
    jobs = [store.get(r.job_id) for r in results]
    assert [j.fingerprint for j in jobs if j] == ["6f4aeb6ae5c7fa92", "d50960b227faa3f0"]
    job = jobs[0]
    assert job is not None and job.state == "queued" and job.attempts == 0
    # Only what replay needs: not the receiver, group key or common labels; the graph link (the PR shows it).
    assert set(job.alert) == {"alert"} and set(job.alert["alert"]) == {
        "status", "startsAt", "endsAt", "fingerprint", "labels", "annotations", "generatorURL"}
    incident = job.incident()
    links = [a.generatorURL for a in payload().alerts]
    assert [j.incident().generator_url for j in jobs if j] == links and any(links)
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


def test_complete_exactly_once_when_two_workers_race(store_location: Path | str, clock: Clock) -> None:
    path = store_location
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


def test_many_threads_lease_each_job_once(store_location: Path | str) -> None:
    store = JobStore(store_location)
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


def test_retry_waits_then_fails_after_max_attempts(store_location: Path | str, clock: Clock) -> None:
    store = JobStore(store_location, clock=clock, max_attempts=3)
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


def test_job_that_keeps_killing_its_worker_fails(store_location: Path | str, clock: Clock) -> None:
    store = JobStore(store_location, clock=clock, max_attempts=2)
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


def test_jobs_survive_reopen(store_location: Path | str) -> None:
    path = store_location
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


# --- retention ----------------------------------------------------------------------------------------


def test_finished_jobs_are_purged_after_retention_queued_and_ledger_kept(store: JobStore, clock: Clock) -> None:
    first, second = store.enqueue(payload())
    job = store.lease("w", ttl=60)
    assert job is not None and job.id == first.job_id
    store.complete(job.id, "w", {"outcome": "no_fix"})
    clock.now += 13 * 86400
    assert store.purge(older_than=14 * 86400) == 0
    clock.now += 2 * 86400
    assert store.purge(older_than=14 * 86400) == 1
    assert store.get(first.job_id) is None
    assert store.get(second.job_id) is not None, "a queued job is never purged"


# --- corruption ---------------------------------------------------------------------------------------


def _many_alerts(store: JobStore, count: int) -> None:
    raw = json.loads((REFERENCE / "alertmanager-0.25-webhook-firing.json").read_text())
    template = raw["alerts"][0]
    raw["alerts"] = [{**template, "fingerprint": f"{i:016x}"} for i in range(count)]
    store.enqueue(WebhookPayload.model_validate(raw))


def _damage_jobs_table(path: Path) -> None:
    """What a bad disk sector does: garbage over the jobs table's root page (the schema page stays sound)."""
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'jobs'").fetchone()[0]
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    with path.open("r+b") as f:
        f.seek((root - 1) * page_size)
        f.write(bytes((i * 37 + 11) % 256 for i in range(page_size)))


def _damaged_store(tmp_path: Path) -> Path:
    """A store with 200 jobs, closed, then damaged on disk."""
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    _many_alerts(store, 200)
    store.close()
    _damage_jobs_table(path)
    return path


def test_corrupt_store_is_refused_at_start_in_one_line(tmp_path: Path) -> None:
    path = _damaged_store(tmp_path)
    with pytest.raises(StartupError) as caught:
        JobStore(path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message and "corrupt" in message


@pytest.mark.timeout(60)
def test_serve_on_a_corrupt_store_exits_with_one_line(tmp_path: Path) -> None:
    _damaged_store(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "AUTOFIX_DATA_DIR": str(tmp_path), "AUTOFIX_FORGE": "local",
           "AUTOFIX_GIT_URL": str(tmp_path), "HOME": str(tmp_path),
           "AUTOFIX_WEBHOOK_TOKEN": "t0ken-for-this-test"}
    proc = subprocess.run([sys.executable, "-m", "app.cli", "serve", "--port", "0"], env=env, capture_output=True,
                          text=True, timeout=50, check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert "is corrupt" in proc.stderr and "Traceback" not in proc.stderr


def test_corruption_found_while_running_fails_readiness_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store = JobStore(path)
    _many_alerts(store, 200)
    assert store.readiness() is None
    _damage_jobs_table(path)
    with sqlite3.connect(path) as other:  # another writer: our connection's page cache is no longer trusted
        other.execute("CREATE TABLE IF NOT EXISTS touched (x)")
    other.close()
    reason = store.readiness()
    assert reason is not None and "corrupt" in reason and "\n" not in reason
    assert store.readiness() == reason, "once seen, corruption stays reported"
    store.close()


def test_the_store_keeps_alerts_redacted(tmp_path: Path) -> None:
    raw = json.loads((REFERENCE / "alertmanager-0.25-webhook-firing.json").read_text())
    raw["alerts"][0]["labels"]["db_password"] = "Tr0ub4dor-and-3"
    raw["alerts"][0]["annotations"]["description"] = (
        "backend down: DATABASE_URL=postgres://app:s3cr/et-pw@orders-db:5432/orders")
    store = JobStore(tmp_path / "jobs.sqlite3")
    [first, _] = store.enqueue(WebhookPayload.model_validate_json(json.dumps(raw)))
    job = store.get(first.job_id)
    store.close()
    assert job is not None
    assert job.incident().labels["db_password"] == "[REDACTED]"
    assert "orders-db:5432" in job.incident().annotations["description"]
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("jobs.sqlite3*"))
    assert b"Tr0ub4dor" not in stored and b"s3cr/et-pw" not in stored


def test_a_store_made_before_the_outcomes_gets_its_column_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    old = sqlite3.connect(path)  # the ledger as the previous version created it, with one row
    old.executescript(
        "CREATE TABLE ledger (pr_number INTEGER PRIMARY KEY, workload TEXT NOT NULL, cause TEXT NOT NULL,"
        " branch TEXT NOT NULL, pr_url TEXT NOT NULL, state TEXT NOT NULL, before TEXT NOT NULL, after TEXT NOT NULL,"
        " fingerprint TEXT NOT NULL, images TEXT NOT NULL, opened_at REAL NOT NULL, merged_at REAL, closed_at REAL,"
        " resolved_at REAL, escalated_at REAL, updated_at REAL NOT NULL);"
        "INSERT INTO ledger VALUES (7, 'Deployment/shop/checkout', 'oom_killed', 'autofix/shop/checkout/oom-killed',"
        " 'https://github.com/acme/gitops/pull/7', 'merged', '{}', '{}', 'd09fc39d073c7e73', '[]', 1.0, 2.0, NULL,"
        " NULL, NULL, 2.0);")
    old.close()
    store = JobStore(path)
    [row] = store.entries()
    assert (row.pr_number, row.state, row.final, row.record_id) == (7, "merged", None, "")
    store.record(replace(row, final="effective", final_at=9.0, record_id="0" * 32, risk=0.29))
    [again] = store.entries()
    assert (again.final, again.final_at, again.record_id, again.risk) == ("effective", 9.0, "0" * 32, 0.29)
