"""Faults around the pipeline: the forge failing, the Kubernetes API failing, two workers on one workload,
SIGKILL of the service in each stage, the LLM answering garbage, the base branch moving. Real components over
loopback: the real pipeline (PyGithub, the kubernetes client, git, MLflow sqlite) against tests/fakes, the
real job store and worker code; a store clock the test moves, so "retry later" needs no sleeping.

Assertions are on what users see: the PRs the GitHub fake received, the branches in the bare remote, the
job's state and reason, and how many requests each fake counted (no retry storm).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app import settings as settings_mod
from app.adapters.store import Job, JobStore
from app.demo import seed_bare_repo
from app.models.alertmanager import WebhookPayload
from app.pipeline import Pipeline
from app.wiring import build_pipeline
from app.worker import WorkerPool, run_next
from tests.conftest import EXAMPLES, ROOT, SCENARIOS
from tests.e2e.test_e2e_handle import TOKEN as E2E_TOKEN
from tests.e2e.test_llm import MODEL as LLM_MODEL
from tests.e2e.test_llm import _handle_with_llm
from tests.e2e.test_restart import free_port
from tests.fakes.github_api import SECONDARY_RATE_LIMIT, FakeGitHub
from tests.fakes.kube_api import KubeApiFake
from tests.fakes.openai_api import FakeOpenAI

pytestmark = pytest.mark.e2e  # real servers, binaries or whole pipeline runs: the slow part

TOKEN = "ghs_faults_token_0123456789abcdefghij"
DEMO = EXAMPLES / "demo"
BRANCH = "autofix/shop/checkout/oom-killed"


class Clock:
    """The job store's clock, moved by the test: a retry 'later' without sleeping."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    gh: FakeGitHub
    kube: KubeApiFake
    bare: Path
    store: JobStore
    clock: Clock
    pipeline: Pipeline

    def enqueue(self, alerts: int = 1) -> list[int]:
        payload = json.loads((DEMO / "alert.json").read_text())
        payload["alerts"] = payload["alerts"][:alerts]
        return [r.job_id for r in self.store.enqueue(WebhookPayload.model_validate(payload))]

    def run(self) -> Job:
        job = run_next(self.store, self.pipeline, lease_seconds=60)
        assert job is not None, "no job was due"
        return job

    def pr_posts(self) -> int:
        return len(self.gh.requests_to("POST", "/pulls"))

    def branches(self) -> list[str]:
        out = subprocess.run(["git", "branch", "--format=%(refname:short)"], cwd=self.bare, check=True,
                             capture_output=True, text=True, timeout=30).stdout
        return sorted(out.split())


@pytest.fixture
def world(tmp_path: Path, mlflow_uri: str) -> Iterator[World]:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(DEMO / "repo", bare)
    with FakeGitHub("acme/gitops", token=TOKEN) as gh, KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
        settings = settings_mod.load(
            AUTOFIX_GIT_URL=str(bare), AUTOFIX_GITHUB_REPO="acme/gitops", GITHUB_TOKEN=TOKEN,
            AUTOFIX_GITHUB_API_URL=gh.api_url, AUTOFIX_DATA_DIR=tmp_path / "data", MLFLOW_TRACKING_URI=mlflow_uri,
            KUBECONFIG=str(kube.write_kubeconfig(tmp_path / "kubeconfig")), AUTOFIX_GITHUB_WRITE_SPACING=0)
        clock = Clock()
        store = JobStore(tmp_path / "jobs.sqlite3", clock=clock)
        yield World(gh=gh, kube=kube, bare=bare, store=store, clock=clock, pipeline=build_pipeline(settings))
        store.close()


# ---- the forge --------------------------------------------------------------------------------------


def test_forge_502_beyond_client_retries_keeps_the_job_and_opens_the_pr_once_recovered(world: World) -> None:
    [job_id] = world.enqueue()
    world.gh.fail_next(10, 502, method="POST", path="/pulls")  # more than PyGithub's own retries
    job = world.run()
    assert job.state == "queued", job.error
    assert "502" in (job.error or "")
    assert job.available_at > world.clock.now, "retried later, not at once"
    attempts_at_fake = world.pr_posts()
    assert 2 <= attempts_at_fake <= 4, "PyGithub retries a few times with backoff, not a storm"
    assert world.gh.pulls == {}

    world.gh.recover()
    world.clock.now = job.available_at + 1
    done = world.run()
    assert done.state == "done" and done.result is not None, done.error
    assert done.result["outcome"] == "pr_opened"
    assert len(world.gh.pulls) == 1
    assert world.branches() == sorted(["main", BRANCH])


@pytest.mark.parametrize(
    ("status", "headers", "body", "delay"),
    [
        (429, {"Retry-After": "120"}, {"message": "Too Many Requests"}, 120),
        (403, {"Retry-After": "90"}, SECONDARY_RATE_LIMIT, 90),
    ],
    ids=["429-retry-after", "403-secondary-rate-limit"],
)
def test_forge_rate_limits_are_waited_out_as_the_headers_say(world: World, status: int, headers: dict[str, str],
                                                             body: dict[str, str], delay: int) -> None:
    world.enqueue()
    world.gh.fail_next(1, status, headers, body, method="POST", path="/pulls")
    job = world.run()
    assert job.state == "queued", job.error
    # The job comes back when GitHub said so (the first attempt: no doubling yet), not sooner.
    assert job.available_at - world.clock.now == pytest.approx(delay, abs=2)
    assert world.pr_posts() == 1, "a wait longer than the client's cap is not slept inside a worker"
    world.clock.now = job.available_at + 1
    done = world.run()
    assert done.state == "done" and done.result is not None and done.result["outcome"] == "pr_opened"
    assert len(world.gh.pulls) == 1


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (404, {"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}, "not found (404)"),
        (401, {"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}, "401"),
    ],
    ids=["404", "401"],
)
def test_forge_permanent_errors_fail_the_job_with_a_reason_and_no_retry(world: World, status: int,
                                                                        body: dict[str, str], reason: str) -> None:
    world.enqueue()
    world.gh.fail_next(100, status, body=body)  # every request from now on
    job = world.run()
    assert job.state == "done" and job.result is not None, job.error
    assert job.result["outcome"] == "failed"
    assert reason in job.result["reason"]
    assert len(world.gh.requests) <= 3, [f"{r.method} {r.path}" for r in world.gh.requests]
    assert world.gh.pulls == {}
    world.clock.now += 3600
    assert world.store.lease("again", ttl=60) is None, "a permanent failure is not retried"


# ---- the Kubernetes API -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/events", "/log"], ids=["events", "logs"])
def test_cluster_500_in_any_evidence_list_aborts_and_retries_without_a_pr(world: World, path: str) -> None:
    world.enqueue()
    hold = world.kube.hold("GET", path)
    hold.drop()  # that one request answers 503, as an overloaded API server does
    job = world.run()
    assert hold.reached.is_set(), f"the evidence stage never read {path}"
    assert job.state == "queued", f"a partial evidence must not go on: {job.result}"
    assert "cluster" in (job.error or "")
    assert world.gh.requests_to("POST") == [] and world.branches() == ["main"]
    world.clock.now = job.available_at + 1
    done = world.run()
    assert done.result is not None and done.result["outcome"] == "pr_opened"


def test_cluster_timeout_is_retried_later_never_a_pr(world: World) -> None:
    world.enqueue()
    world.pipeline.cluster._timeout = (1.0, 0.5)  # type: ignore[attr-defined]  # noqa: SLF001 - keep it short
    world.kube.delay_next(50, 3.0)
    started = time.monotonic()
    job = world.run()
    assert time.monotonic() - started < 10
    assert job.state == "queued", job.result
    assert "cluster" in (job.error or ""), job.error
    assert world.gh.requests_to("POST") == [] and world.branches() == ["main"]


# ---- concurrency ------------------------------------------------------------------------------------


def test_two_alerts_for_one_workload_and_cause_with_four_workers_open_one_pr(world: World) -> None:
    jobs = world.enqueue(alerts=2)  # two pods of shop/checkout, both OOMKilled
    assert len(set(jobs)) == 2
    pool = WorkerPool(world.store, world.pipeline, workers=4, lease_seconds=60, poll_interval=0.05)
    pool.start()
    try:
        deadline = time.monotonic() + 120
        while world.store.counts()["done"] < 2:
            assert time.monotonic() < deadline, world.store.counts()
            time.sleep(0.1)
    finally:
        pool.stop(30)
    outcomes = sorted(str((world.store.get(j).result or {}).get("outcome")) for j in jobs)  # type: ignore[union-attr]
    assert outcomes == ["duplicate", "pr_opened"]
    assert len(world.gh.pulls) == 1 and world.pr_posts() == 1


# ---- SIGKILL in each stage --------------------------------------------------------------------------

# A kill right after intake (job stored, not started) is tests/e2e/test_restart.py's case; each start here costs
# seconds (MLflow), so the chain covers the stages inside the pipeline.
KILL_POINTS = [
    ("mid-evidence, before the diagnosis", "kube", "GET", "/log"),
    ("after the push, before the PR", "github", "POST", "/pulls"),
    ("after the PR, before labels and the ledger", "github", "POST", "/labels"),
]


def _service(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def _wait(check: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_sigkill_in_each_stage_then_restart_opens_exactly_one_pr(tmp_path: Path, mlflow_uri: str) -> None:
    """One alert; the service is SIGKILLed at each stage in turn and restarted: one PR at the end, none lost."""
    bare = tmp_path / "gitops.git"
    seed_bare_repo(DEMO / "repo", bare)
    port, log = free_port(), tmp_path / "service.log"
    url = f"http://127.0.0.1:{port}"
    payload = json.loads((DEMO / "alert.json").read_text())
    payload["alerts"] = payload["alerts"][:1]
    with FakeGitHub("acme/gitops", token=TOKEN) as gh, KubeApiFake.from_snapshot(DEMO / "cluster.json") as kube:
        env = {**os.environ, "PYTHONPATH": str(ROOT), "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kc")),
               "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops", "GITHUB_TOKEN": TOKEN,
               "AUTOFIX_GITHUB_API_URL": gh.api_url, "AUTOFIX_DATA_DIR": str(tmp_path / "data"),
               "MLFLOW_TRACKING_URI": mlflow_uri, "AUTOFIX_WORKERS": "1", "AUTOFIX_LEASE_SECONDS": "2",
               "AUTOFIX_GITHUB_WRITE_SPACING": "0"}
        fakes = {"kube": kube, "github": gh}
        holds = [fakes[fake].hold(method, path) for _, fake, method, path in KILL_POINTS]
        proc = _service(port, env, log)
        try:
            _wait(lambda: _ready(url), "the service")
            answer = httpx.post(f"{url}/webhooks/alertmanager", json=payload, timeout=10)
            assert answer.status_code == 202, answer.text
            [job_id] = answer.json()["jobs"]
            for (stage, *_), hold in zip(KILL_POINTS, holds, strict=True):
                hold.wait_reached(90)
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
                hold.drop()
                proc = _service(port, env, log)
                _wait(lambda: _ready(url), f"the service after a kill {stage}")

            def finished() -> bool:
                return bool(httpx.get(f"{url}/jobs/{job_id}", timeout=5).json()["state"] in ("done", "failed"))

            _wait(finished, "the job to finish after the last restart", 90)
            job = httpx.get(f"{url}/jobs/{job_id}", timeout=5).json()
        except BaseException:
            print(log.read_text(errors="replace")[-20000:])
            raise
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=30)
    assert job["state"] == "done", job
    assert job["result"]["outcome"] in ("pr_opened", "duplicate"), job["result"]
    assert len(gh.pulls) == 1, "exactly one PR, whatever stage the service died in"
    [pr] = gh.pulls.values()
    assert pr["head"]["ref"] == BRANCH
    assert "autofix" in {label["name"] for label in pr["labels"]}, "the PR a crash interrupted is completed"
    created = [r for r in gh.requests_to("POST", "/pulls")]
    assert len(created) == 1, "the PR was created once (held and dropped requests are not recorded)"


# ---- the LLM ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("reply", ['{"narrative": "cut'],
                         ids=["truncated-json"])
def test_llm_invalid_answer_leaves_the_rules_fix_standing(tmp_path: Path, mlflow_uri: str, reply: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A timeout is the same path (AdvisorError, see tests/e2e/test_llm.py at the adapter's 0.5 s timeout)."""
    with FakeOpenAI(models=(LLM_MODEL,)) as model, FakeGitHub("acme/gitops", token=E2E_TOKEN) as gh:
        model.reply_content(reply)
        model.reply_content(reply)  # the adapter may retry once
        result = _handle_with_llm(SCENARIOS / "oom-deployment", tmp_path, mlflow_uri, gh, model, monkeypatch)
    assert result["outcome"] == "pr_opened", result
    (pr,) = [r.body for r in gh.requests_to("POST", "/pulls")]
    assert pr["title"] == "Raise memory limit of shop/checkout to 768Mi after OOMKilled"
    assert "Model's explanation" not in pr["body"], "no half-parsed model text reaches the PR"


# ---- the base moves ---------------------------------------------------------------------------------


def _commit_on_main(bare: Path, tmp_path: Path, path: str, old: str, new: str) -> None:
    """Someone else's commit on the base branch (a clone, an edit, a push), as a teammate would."""
    work = tmp_path / "teammate"
    env = {**os.environ, "GIT_AUTHOR_NAME": "Teammate", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "Teammate", "GIT_COMMITTER_EMAIL": "t@example.com"}
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True, timeout=60)
    target = work / path
    assert old in target.read_text()
    target.write_text(target.read_text().replace(old, new))
    for argv in (["git", "commit", "-qam", "teammate's change"], ["git", "push", "-q", "origin", "main"]):
        subprocess.run(argv, cwd=work, env=env, check=True, capture_output=True, timeout=60)


def _next_episode(world: World, minutes: int) -> None:
    payload = json.loads((DEMO / "alert.json").read_text())
    alert = payload["alerts"][0]
    payload["alerts"] = [{**alert, "startsAt": alert["startsAt"].replace("T15:", f"T{15 + minutes // 60}:")}]
    world.store.enqueue(WebhookPayload.model_validate(payload))


def test_base_moved_after_the_pr_the_same_fix_is_recognised_not_reopened(world: World, tmp_path: Path) -> None:
    world.enqueue()
    assert world.run().result["outcome"] == "pr_opened"  # type: ignore[index]
    _commit_on_main(world.bare, tmp_path, "apps/checkout/service.yaml", "port: 9464", "port: 9465")
    _next_episode(world, 60)
    again = world.run()
    assert again.result is not None and again.result["outcome"] == "duplicate", again.result
    assert len(world.gh.pulls) == 1 and world.pr_posts() == 1


def test_base_already_carrying_the_fix_drops_it(world: World, tmp_path: Path) -> None:
    world.enqueue()
    assert world.run().result["outcome"] == "pr_opened"  # type: ignore[index]
    _commit_on_main(world.bare, tmp_path, "apps/checkout/deployment.yaml", 'memory: "512Mi"', 'memory: "768Mi"')
    _next_episode(world, 60)
    again = world.run()
    assert again.result is not None and again.result["outcome"] == "no_fix", again.result
    assert "waiting to be synced" in again.result["reason"]
    assert len(world.gh.pulls) == 1 and world.gh.requests_to("PATCH") == [], "the open PR is left alone"
