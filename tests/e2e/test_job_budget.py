"""A job cannot hang the workers: every job has a wall-clock budget, enforced.

Past AUTOFIX_JOB_BUDGET_SECONDS the job ends `failed` naming the stage it was in, its worker takes the next
job, the abandoned handler stops at its next deadline check and its late result is never written, and
/readyz answers 503 naming the job while a handler runs past its budget. When the budget runs out while the
job waits for a dependency (a held Kubernetes API request), the job is requeued naming the dependency and the
call instead, and the held call itself ends at the budget. Real parts throughout: the job store, the worker
pool, the FastAPI app under uvicorn, the real pipeline against a loopback Kubernetes API, a bare git remote,
the local forge and MLflow sqlite. The YAML alias bomb of the issue, planted in the demo's real Deployment
manifest, is refused by name.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import deadlines, validation
from app import settings as settings_mod
from app.adapters.store import JobStore
from app.demo import seed_bare_repo
from app.models.alertmanager import WebhookPayload
from app.models.incident import Incident
from app.models.outcome import Outcome
from app.settings import Settings
from app.wiring import build_pipeline
from app.worker import RunningJobs, run_next
from tests.conftest import EXAMPLES, ROOT
from tests.e2e.test_faults import _commit_on_main
from tests.edges.test_api import serve
from tests.fakes.kube_api import KubeApiFake
from tests.unit.test_aliases import MANIFEST_PATH, bomb, planted

DEMO = EXAMPLES / "demo"
WAIT = 60.0  # bounds every wait below; none of them is a timing assertion


def demo_alerts(*, count: int = 2) -> bytes:
    payload = json.loads((DEMO / "alert.json").read_text())
    payload["alerts"] = payload["alerts"][:count]
    return json.dumps(payload).encode()


def wait_for(check: Any, what: str, timeout: float = WAIT) -> Any:
    """Poll ``check`` until it returns something truthy (returned), failing after ``timeout``."""
    give_up = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < give_up, f"timed out waiting for {what}"
        time.sleep(0.05)
    return value


# ---------------------------------------------------------------- the deadline itself


def test_deadline_names_the_stage_it_ran_out_in_and_is_a_no_op_without_one() -> None:
    deadlines.check()  # no current deadline: nothing happens (tests, tools)
    deadlines.enter("validate")
    deadline = deadlines.Deadline(3600)
    with deadlines.running(deadline):
        deadlines.enter("evidence")
        deadlines.check()
        deadline.abandon()
        with pytest.raises(deadlines.BudgetExceeded, match="job exceeded 3600 s in stage evidence"):
            deadlines.enter("diagnosis")  # a job out of time stops at the next stage, named by the one it left
    assert deadline.stage == "evidence" and deadline.tripped is not None
    assert deadlines.current() is None


# ---------------------------------------------------------------- a CPU-bound stage, stopped cooperatively


@dataclass
class WalkingHandler:
    """Walks a 9**9-leaf graph with the validation's own diff in stage "validate" for the first alert (real CPU
    work, checking the deadline as it goes); answers the others at once."""

    slow_pod: str
    stopped_by: list[str]

    def handle(self, incident: Incident) -> Outcome:
        deadlines.enter("intake")
        if incident.labels.get("pod") == self.slow_pod:
            deadlines.enter("validate")
            level: Any = ["lol"] * 9
            for _ in range(8):
                level = [level] * 9
            try:
                changed = list(validation.leaf_diff({"x": level, "n": 1}, {"x": level, "n": 2}))
            except deadlines.BudgetExceeded as err:
                self.stopped_by.append(type(err).__name__)
                # What the pipeline does with it: a failed outcome, returned late. It must not be recorded.
                return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome="failed",
                               reason=str(err))
            return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome="no_fix",
                           reason=f"walked {len(changed)}")
        return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome="no_fix",
                       reason="quick")


@pytest.mark.timeout(120)
def test_cpu_bound_stage_is_stopped_at_the_budget_and_the_worker_takes_the_next_job(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    payload = WebhookPayload.model_validate_json(demo_alerts())
    slow, quick = [r.job_id for r in store.enqueue(payload)]
    handler = WalkingHandler(slow_pod=payload.alerts[0].labels["pod"], stopped_by=[])
    running = RunningJobs()

    job = run_next(store, handler, budget_seconds=1, running=running)

    assert job is not None and job.id == slow
    assert job.state == "failed" and job.result is None
    assert job.error == "budget: job exceeded 1 s in stage validate"
    wait_for(lambda: len(running) == 0, "the abandoned walk to stop at a deadline check")
    assert handler.stopped_by == ["BudgetExceeded"]
    after = store.get(slow)
    assert after is not None and (after.state, after.result, after.error) == ("failed", None, job.error), \
        "the late outcome must not be recorded"

    nxt = run_next(store, handler, budget_seconds=1, running=running)
    assert nxt is not None and nxt.id == quick
    assert nxt.state == "done" and nxt.result is not None and nxt.result["reason"] == "quick"
    store.close()


# ---------------------------------------------------------------- the real pipeline, stuck in a stage


@dataclass
class World:
    kube: KubeApiFake
    bare: Path
    settings: Settings

    def prs(self) -> list[dict[str, Any]]:
        return [json.loads(p.read_text()) for p in sorted((self.settings.data_dir / "prs").glob("*/pr.json"))]


@pytest.fixture
def world(tmp_path: Path, mlflow_uri: str) -> Iterator[World]:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(DEMO / "repo", bare)
    with KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
        settings = settings_mod.load(
            AUTOFIX_GIT_URL=str(bare), AUTOFIX_FORGE="local", AUTOFIX_GITHUB_REPO="acme/gitops",
            AUTOFIX_DATA_DIR=tmp_path / "data", MLFLOW_TRACKING_URI=mlflow_uri,
            KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")), AUTOFIX_WORKERS=1,
            AUTOFIX_LEASE_SECONDS=30, AUTOFIX_JOB_BUDGET_SECONDS=3)
        yield World(kube=kube, bare=bare, settings=settings)


def job(client: httpx.Client, job_id: int) -> dict[str, Any]:
    answer: dict[str, Any] = client.get(f"/jobs/{job_id}").json()
    return answer


def post_alerts(client: httpx.Client, body: bytes) -> list[int]:
    response = client.post("/webhooks/alertmanager", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    return [int(j) for j in response.json()["jobs"]]


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_cluster_request_held_past_the_budget_requeues_the_job_naming_the_call_and_the_worker_goes_on(
        world: World) -> None:
    """A held request is a dependency that does not answer: the job is cut at its budget and requeued (temporary),
    naming the dependency and the call; the held call itself ends there too (its timeout is the budget's rest)."""
    hold = world.kube.hold("GET", "/log")  # the evidence stage's first log read never answers until released
    with serve(world.settings, build_pipeline(world.settings)) as client:  # type: ignore[arg-type]
        assert client.get("/readyz").status_code == 200
        stuck_id, next_id = post_alerts(client, demo_alerts())
        hold.wait_reached(WAIT)

        requeued = wait_for(lambda: (j := job(client, stuck_id))["state"] == "queued" and j["attempts"] == 1 and j,
                            "the job to be requeued")
        error = requeued["error"]
        assert error.startswith(("dependency_timeout: cluster: no answer within the job budget of 3 s (GET pods/",
                                 "cluster_unavailable: cluster: the Kubernetes API did not answer within ")), error
        assert "/log container checkout in namespace shop" in error, error
        assert requeued["result"] is None
        # One worker: the next job could only run because the held one let it go.
        done = wait_for(lambda: (j := job(client, next_id))["state"] == "done" and j, "the next job")
        assert done["result"]["outcome"] == "pr_opened", done
        ready = wait_for(lambda: (r := client.get("/readyz")).status_code == 200 and r, "ready: no handler held")
        assert ready.json()["dependencies"]["cluster"]["state"] == "up", "the next job's reads answered"
        hold.release()
    assert len(world.prs()) == 1, "the requeued job did not go on: no second PR"


@dataclass
class IgnoringHandler:
    """Blocks in stage "validate" without ever checking its deadline (as a C extension would) until released."""

    release: threading.Event

    def handle(self, incident: Incident) -> Outcome:
        deadlines.enter("validate")
        self.release.wait(WAIT)
        return Outcome(alertname=incident.alertname, fingerprint=incident.fingerprint, outcome="no_fix",
                       reason="late")


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_handler_stuck_past_the_budget_fails_the_job_frees_the_worker_and_readyz_names_it(world: World) -> None:
    release = threading.Event()
    settings = world.settings.model_copy(update={"job_budget_seconds": 1.0})
    with serve(settings, IgnoringHandler(release)) as client:  # type: ignore[arg-type]
        [stuck_id] = post_alerts(client, demo_alerts(count=1))
        ready = wait_for(lambda: (r := client.get("/readyz")).status_code == 503 and r, "/readyz to report it")
        assert ready.json()["checks"]["jobs_within_budget"] is False
        assert ready.json()["reason"].startswith(f"job {stuck_id} stuck in stage validate for "), ready.json()
        assert ready.json()["reason"].endswith("(budget 1 s)")
        failed = wait_for(lambda: (j := job(client, stuck_id))["state"] == "failed" and j, "the job to fail")
        assert failed["error"] == "budget: job exceeded 1 s in stage validate"
        assert client.get("/readyz").status_code == 503, "still stuck: the handler has not returned"

        release.set()
        wait_for(lambda: client.get("/readyz").status_code == 200, "/readyz to recover once the handler stopped")
        late = job(client, stuck_id)
        assert (late["state"], late["error"], late["result"]) == ("failed", failed["error"], None), \
            "the abandoned handler's late result must not be recorded"


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_autofix_handle_honours_the_budget_and_goes_on_with_the_next_alert(world: World, tmp_path: Path) -> None:
    hold = world.kube.hold("GET", "/log")
    payload = tmp_path / "alerts.json"
    payload.write_bytes(demo_alerts())
    env = {**os.environ, "KUBECONFIG": str(world.settings.kubeconfig), "AUTOFIX_GIT_URL": str(world.bare),
           "AUTOFIX_FORGE": "local", "AUTOFIX_GITHUB_REPO": "acme/gitops",
           "AUTOFIX_DATA_DIR": str(world.settings.data_dir), "MLFLOW_TRACKING_URI": str(world.settings.tracking_uri),
           "AUTOFIX_JOB_BUDGET_SECONDS": "3"}
    proc = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(payload)], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 3, proc.stderr  # one result failed (README, exit statuses)
    assert hold.reached.is_set()
    first, second = json.loads(proc.stdout)["results"]
    assert first["outcome"] == "failed", first
    assert first["reason"].startswith("temporary failure, retry later: cluster: "), first  # the dependency named
    assert "/log container checkout in namespace shop" in first["reason"], first
    assert second["outcome"] == "pr_opened", second
    assert len(world.prs()) == 1


# ---------------------------------------------------------------- the alias bomb of the issue, end to end


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_alias_bomb_in_the_workload_manifest_is_refused_by_name_and_the_worker_goes_on(
        world: World, tmp_path: Path) -> None:
    repo = tmp_path / "bombed"
    subprocess.run(["cp", "-r", str(DEMO / "repo"), str(repo)], check=True, timeout=30)
    (repo / MANIFEST_PATH).write_text(planted(9))
    seed_bare_repo(repo, world.bare)
    # A generous budget: the refusal must come from the YAML check, not from the budget.
    settings = world.settings.model_copy(update={"job_budget_seconds": 120.0})
    with serve(settings, build_pipeline(settings)) as client:  # type: ignore[arg-type]
        [bombed] = post_alerts(client, demo_alerts(count=1))
        refused = wait_for(lambda: (j := job(client, bombed))["state"] in ("done", "failed") and j, "the refusal")
        assert refused["state"] == "done" and refused["result"]["outcome"] == "failed", refused
        reason = refused["result"]["reason"]
        assert reason.startswith(f"{MANIFEST_PATH}: YAML document 0 expands its aliases to over "), reason
        assert "alias bomb" in reason

        # The team removes the bomb; the next alert for the workload is handled by the same single worker.
        _commit_on_main(world.bare, tmp_path, MANIFEST_PATH, "x-defaults:\n" + bomb(9), "")
        payload = json.loads(demo_alerts())
        payload["alerts"] = payload["alerts"][1:]
        [after] = post_alerts(client, json.dumps(payload).encode())
        done = wait_for(lambda: (j := job(client, after))["state"] in ("done", "failed") and j, "the next job")
        assert done["state"] == "done" and done["result"]["outcome"] == "pr_opened", done
        assert client.get("/readyz").status_code == 200
    [pr] = world.prs()
    assert "shop/checkout" in pr["title"], pr


@pytest.mark.e2e
@pytest.mark.timeout(240)
def test_megabyte_event_and_annotation_are_handled_within_the_budget_and_the_worker_goes_on(
        world: World, tmp_path: Path) -> None:
    """The issue's quadratic inputs (on main: a 1 MB event message ran > 5 min, a 128 KB annotation 158 s)."""
    snapshot = json.loads((DEMO / "cluster.json").read_text())
    deployment = next(o for o in snapshot["items"] if o["kind"] == "Deployment")
    deployment["metadata"].setdefault("annotations", {})["acme.io/notes"] = "Ab3" * (128 * 1024 // 3)
    event = next(o for o in snapshot["items"] if o["kind"] == "Event")
    event["message"] = "Back-off restarting failed container " + "x9Y" * (1024 * 1024 // 3)
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(snapshot))
    settings = world.settings.model_copy(update={"job_budget_seconds": 30.0})
    with KubeApiFake.from_snapshot(path) as kube:
        settings = settings.model_copy(update={"kubeconfig": str(kube.write_kubeconfig(tmp_path / "kc2"))})
        with serve(settings, build_pipeline(settings)) as client:  # type: ignore[arg-type]
            first, second = post_alerts(client, demo_alerts())
            ended = [wait_for(lambda j=j: (x := job(client, j))["state"] in ("done", "failed") and x, f"job {j}")
                     for j in (first, second)]
            assert client.get("/readyz").status_code == 200
    assert [e["state"] for e in ended] == ["done", "done"], ended
    assert [e["result"]["outcome"] for e in ended] == ["pr_opened", "duplicate"], ended
