"""The outbox and its exporter: run records kept in the job store with the job's result, sent to MLflow in the
background, the PR body given its run's link, nothing lost while MLflow is down, nothing sent twice.

The store and the local forge are real (a sqlite file and a PostgreSQL database: each test runs on both; PR
folders on disk); MLflow is a RunSink that records what
it was sent and can be told to be down or to refuse, and, once, the real MlflowTracker on a sqlite store.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from app import render
from app.adapters.store import JobStore
from app.errors import PermanentError, TemporaryError
from app.exporter import Exporter, backoff
from app.forges.local import LocalForge
from app.models.alertmanager import WebhookPayload
from app.models.runs import PendingRun, RunRecord, record_ref
from app.ports import RunHandle
from tests.conftest import EXAMPLES
from tests.fakes.health import HealthRecorder

BRANCH = "autofix/shop/checkout/oom-killed"


@dataclass
class Sink:
    """The RunSink port: what was exported, in order; ``down`` raises as an unreachable MLflow does."""

    down: bool = False
    refuse: bool = False
    sent: list[str] = field(default_factory=list)
    runs: dict[str, str] = field(default_factory=dict)  # record key -> run id (found again on a repeat)

    def prepare(self) -> None:
        if self.down:
            raise TemporaryError("mlflow: get experiment failed: Connection refused", code="mlflow_unavailable",
                                 dependency="mlflow", kind="refused")

    def export(self, run: PendingRun) -> RunHandle:
        if self.down:
            raise TemporaryError("mlflow: get experiment failed: Connection refused", code="mlflow_unavailable",
                                 dependency="mlflow", kind="refused")
        if self.refuse:
            raise PermanentError("mlflow: log batch refused: INVALID_PARAMETER_VALUE", code="mlflow_refused")
        self.sent.append(run.key)
        run_id = self.runs.setdefault(run.key, uuid.uuid4().hex)
        return RunHandle(run_id=run_id, url=f"https://mlflow.example/#/experiments/1/runs/{run_id}")


class Clock:
    def __init__(self) -> None:
        self.now = 1_764_590_400.0

    def __call__(self) -> float:
        return self.now


def run_record(*, branch: str | None = None) -> PendingRun:
    return PendingRun(key=uuid.uuid4().hex, name="KubePodCrashLooping 5f1c", status="FINISHED", created_at=1.0,
                      record=RunRecord(params={"detector": "oom"}, tags={"outcome": "pr_opened"}), branch=branch)


def exporter(store: JobStore, sink: Sink, forge: LocalForge | None = None, health: HealthRecorder | None = None,
             owner: str = "exporter-a") -> Exporter:
    return Exporter(store, sink=lambda: sink, forge=forge, health=health, owner=owner)


def leased_job(store: JobStore) -> int:
    payload = WebhookPayload.model_validate_json((EXAMPLES / "demo" / "alert.json").read_bytes())
    store.enqueue(payload)
    job = store.lease("worker-1", ttl=60)
    assert job is not None
    return job.id


def test_the_record_is_stored_with_the_result_in_one_transaction(tmp_path: Path, store_location: Path | str) -> None:
    store = JobStore(store_location)
    run = run_record()
    job_id = leased_job(store)
    assert not store.complete(job_id, "worker-2", {"outcome": "pr_opened"}, run=run), "not our lease"
    assert store.export_of(run.key) is None, "no result stored, so no record either"
    assert store.complete(job_id, "worker-1", {"outcome": "pr_opened"}, run=run)
    stored = store.export_of(run.key)
    assert stored is not None and (stored.state, stored.job_id, stored.run) == ("pending", job_id, run)
    assert store.backlog()["pending"] == 1


def test_records_wait_while_mlflow_is_down_then_land_once_with_the_pr_linked(tmp_path: Path, store_location: Path | str) -> None:
    clock = Clock()
    store = JobStore(store_location, clock=clock)
    forge = LocalForge(tmp_path / "prs")
    run = run_record(branch=BRANCH)
    body = f"## Record\n\n{render.record_line(record_ref(run.key))}\n\nmore text\n"
    pr = forge.open_pr(branch=BRANCH, base="main", title="Raise memory", body=body, labels=["gitops-autofix"])
    store.add_run(run)
    sink, health = Sink(down=True), HealthRecorder()
    first = exporter(store, sink, forge, health)

    assert first.once().failed == 1
    assert store.backlog()["pending"] == 1 and health.kinds == [("error", "mlflow", "refused")]
    assert first.once().failed == 0, "not due again before its backoff"
    clock.now += backoff(1)
    sink.down = False
    done = first.once()
    assert (done.exported, done.linked, done.failed) == (1, 1, 0)
    assert sink.sent == [run.key] and health.kinds[-1] == ("ok", "mlflow")
    exported = store.export_of(run.key)
    assert exported is not None and exported.state == "done" and exported.run_id == sink.runs[run.key]
    new_body = (next((tmp_path / "prs").glob(f"{pr.number}-*/")) / "body.md").read_text()
    assert f"recorded in MLflow: https://mlflow.example/#/experiments/1/runs/{exported.run_id}" in new_body
    assert "autofix_record=" not in new_body and new_body.endswith("\n\nmore text\n")
    clock.now += 3600
    assert first.once().exported == 0 and sink.sent == [run.key], "exported once"


def test_two_exporters_never_send_the_same_record(tmp_path: Path, store_location: Path | str) -> None:
    store = JobStore(store_location)
    runs = [run_record() for _ in range(4)]
    for run in runs:
        store.add_run(run)
    sink = Sink()
    a = store.lease_exports("a", ttl=60, limit=2)
    b = store.lease_exports("b", ttl=60, limit=10)
    assert {r.run.key for r in a}.isdisjoint({r.run.key for r in b}) and len(a) + len(b) == 4
    assert exporter(store, sink, owner="c").once().exported == 0, "every record is leased to another exporter"


def test_a_record_mlflow_refuses_is_kept_failed_and_not_retried(tmp_path: Path, store_location: Path | str) -> None:
    clock = Clock()
    store = JobStore(store_location, clock=clock)
    run = run_record()
    store.add_run(run)
    sink = Sink(refuse=True)
    assert exporter(store, sink).once().failed == 1
    stored = store.export_of(run.key)
    assert stored is not None and stored.state == "failed" and "INVALID_PARAMETER_VALUE" in (stored.error or "")
    clock.now += 86400
    sink.refuse = False
    assert exporter(store, sink).once().exported == 0 and store.backlog()["failed"] == 1


def test_a_pr_a_human_edited_keeps_its_body(tmp_path: Path, store_location: Path | str) -> None:
    store = JobStore(store_location)
    forge = LocalForge(tmp_path / "prs")
    run = run_record(branch=BRANCH)
    forge.open_pr(branch=BRANCH, base="main", title="t", body="rewritten by a human\n", labels=[])
    store.add_run(run)
    assert exporter(store, Sink(), forge).once().exported == 1
    [folder] = (tmp_path / "prs").glob("*/")
    assert (folder / "body.md").read_text() == "rewritten by a human\n"
    stored = store.export_of(run.key)
    assert stored is not None and stored.state == "done"


def test_drain_stops_at_the_first_failure_and_leaves_the_rest(tmp_path: Path, store_location: Path | str) -> None:
    store = JobStore(store_location)
    for _ in range(3):
        store.add_run(run_record())
    left = exporter(store, Sink(down=True)).drain(seconds=30)
    assert left["pending"] == 3
    left = exporter(store, Sink(), owner="next-run").drain(seconds=30)
    assert left["pending"] == 0, "a later exporter sends what the earlier one left, once their backoff is due"


def test_purge_keeps_records_not_yet_exported(tmp_path: Path, store_location: Path | str) -> None:
    clock = Clock()
    store = JobStore(store_location, clock=clock)
    waiting, sent = run_record(), run_record()
    store.add_run(waiting)
    store.add_run(sent)
    assert sent.key in [r.run.key for r in store.lease_exports("x", ttl=60, limit=10)]
    store.exported(sent.key, "x", run_id="r1", run_url="u", linked=True)
    clock.now += 30 * 86400
    store.purge(older_than=14 * 86400)
    assert store.export_of(sent.key) is None and store.export_of(waiting.key) is not None


@pytest.mark.parametrize("attempts", [1, 2, 5, 40])
def test_backoff_doubles_and_is_capped(attempts: int) -> None:
    assert backoff(attempts) == min(300.0, 2.0 * 2 ** (attempts - 1))


def test_no_wait_asked_sends_nothing_and_leaves_no_thread(tmp_path: Path, store_location: Path | str) -> None:
    store = JobStore(store_location)
    store.add_run(run_record())
    built: list[Sink] = []

    def sink() -> Sink:
        built.append(Sink())
        return built[-1]

    left = Exporter(store, sink=sink, forge=None, owner="handle").drain(seconds=0)
    assert left["pending"] == 1 and built == [], "MLflow not even imported: the next run sends the record"
