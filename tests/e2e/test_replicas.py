"""Three replicas on one PostgreSQL database (issue 17): the same alert storm posted to each, one replica SIGKILLed
while it holds a job's lease, and still every alert ends with exactly one PR per workload and cause, no job is
lost, and the hourly PR budget holds across the three processes.

Real components: three `autofix serve` subprocesses (the real pipeline, PyGithub, the kubernetes client, git,
psycopg) with AUTOFIX_DATABASE_URL on a real PostgreSQL server (tests/fakes/postgres.py), the GitHub and
Kubernetes API fakes on loopback, one bare git remote. MLflow is down (a closed port): the records wait in the
shared outbox, which is not what this test is about.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from app.demo import seed_bare_repo
from benchmarks import alerts as alert_bodies
from benchmarks import storm
from tests.conftest import ROOT
from tests.edges.test_api import free_port
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake
from tests.fakes.postgres import PostgresServer
from tests.serve import Served, launch, stop, wait_for, wait_healthy

pytestmark = pytest.mark.e2e

GH_TOKEN = "ghs_replicas_token_0123456789abcdefghij"
WEBHOOK_TOKEN = "replicas-webhook-token-5e2a"
HEADERS = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
LEASE_SECONDS = 3  # a SIGKILLed replica's job is taken over this long after its last heartbeat
STORM = (0, 1, 2)  # workloads whose alerts (10 each) are posted to every replica
KILLED = 3  # the workload of the one alert whose job is held, then its replica SIGKILLed
BUDGETED = (4, 5, 6, 7)  # the second phase: one alert each, a budget of 2 PRs per hour
REPLICAS = 3


@contextmanager
def replicas(env: dict[str, str], work: Path, phase: str) -> Iterator[list[tuple[subprocess.Popen[bytes], str]]]:
    """Three `autofix serve` on one database, each with its own data dir (its checkout) and port."""
    started: list[Served] = []
    try:
        for n in range(REPLICAS):  # all launched before any is waited for: they start side by side
            started.append(launch({**env, "AUTOFIX_DATA_DIR": str(work / f"{phase}-data-{n}")},
                                  out=work / f"{phase}-serve-{n}.log"))
        for served in started:
            wait_healthy(served, seconds=45)
        yield [(served.proc, served.base) for served in started]
    except BaseException:
        for log in sorted(work.glob(f"{phase}-serve-*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-6000:]}")
        raise
    finally:
        stop(*(served.proc for served in started), seconds=30)


def post(base: str, alerts: list[dict[str, Any]]) -> list[int]:
    body = alert_bodies.payload(alerts, {"namespace": "shop"})
    response = httpx.post(f"{base}/webhooks/alertmanager", json=body, headers=HEADERS, timeout=30)
    assert response.status_code == 202, response.text
    return list(response.json()["jobs"])


def jobs(url: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT id, fingerprint, state, attempts, lease_owner, result, error FROM jobs"
                            " ORDER BY id").fetchall()
    return [{"id": r[0], "fingerprint": r[1], "state": r[2], "attempts": r[3], "owner": r[4],
             "outcome": json.loads(r[5])["outcome"] if r[5] else None, "error": r[6]} for r in rows]


def ledger(url: str) -> list[tuple[str, int]]:
    with psycopg.connect(url) as conn:
        return [(r[0], int(r[1])) for r in conn.execute("SELECT branch, pr_number FROM ledger ORDER BY branch")]


def branches(gh: FakeGitHub) -> list[str]:
    return sorted(pr["head"]["ref"] for pr in gh.pulls.values())


@pytest.mark.timeout(150)
def test_three_replicas_one_database_one_pr_per_workload_no_job_lost_budget_held(
        tmp_path: Path, postgres: PostgresServer) -> None:
    workloads = max(BUDGETED) + 1
    objects, logs = storm.cluster(workloads)
    bare = tmp_path / "gitops.git"
    seed_bare_repo(storm.repo(workloads, tmp_path / "src"), bare)
    alerts = {i: storm.alerts_for(objects, i) for i in range(workloads)}
    with ExitStack() as stack:
        gh = stack.enter_context(FakeGitHub("acme/gitops", token=GH_TOKEN))
        kube = stack.enter_context(KubeApiFake(objects, logs=logs))
        env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
               "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops", "GITHUB_TOKEN": GH_TOKEN,
               "AUTOFIX_GITHUB_API_URL": gh.api_url, "AUTOFIX_GITHUB_WRITE_SPACING": "0",
               "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN, "AUTOFIX_LEASE_SECONDS": str(LEASE_SECONDS),
               "AUTOFIX_WORKERS": "2", "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}",
               "AUTOFIX_EXPORT_WAIT_SECONDS": "0", "PYTHONPATH": str(ROOT)}

        # 1. The storm: every replica gets the same webhooks; the killed workload's one alert is held in the
        #    cluster API (its pod read) until its replica is SIGKILLed, holding the job's lease.
        url = postgres.create_database()
        env1 = {**env, "AUTOFIX_DATABASE_URL": url, "AUTOFIX_POLICY_DIR": str(storm.policy_dir(tmp_path / "p1", 20))}
        held_alert = alerts[KILLED][0]
        hold = kube.hold("GET", f"/pods/{held_alert['labels']['pod']}")
        with replicas(env1, tmp_path, "storm") as procs:
            [held_job] = post(procs[0][1], [held_alert])
            hold.wait_reached(30)
            [owner] = [j["owner"] for j in jobs(url) if j["id"] == held_job]
            assert owner is not None, jobs(url)
            pid = int(owner.split(":")[-3])  # worker ids are host:pid:index:random (app/worker.py)
            [victim] = [proc for proc, _ in procs if proc.pid == pid]
            ids = {held_job}
            for i in STORM:
                for _, base in procs:  # the same body to each replica: one job per alert, whoever gets it
                    ids |= set(post(base, alerts[i]))
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            hold.drop()

            def decided() -> bool:
                return all(j["state"] in ("done", "failed") for j in jobs(url))

            wait_for(decided, "every job decided", seconds=60)
        stored = jobs(url)
        assert {j["id"] for j in stored} == ids and len(ids) == 1 + 10 * len(STORM), "one job per alert"
        assert [j for j in stored if j["state"] != "done"] == [], "no job lost or failed"
        [taken_over] = [j for j in stored if j["id"] == held_job]
        assert taken_over["attempts"] == 2 and taken_over["outcome"] == "pr_opened", taken_over
        expected = sorted(f"autofix/shop/{storm.copy_name(i)}/oom-killed" for i in (*STORM, KILLED))
        assert branches(gh) == expected, "exactly one PR per workload and cause"
        # Each PR in the ledger once (a PR the killed replica opened before its ledger row is recorded by the job's
        # next attempt, as a duplicate of it), every job's outcome a PR or a duplicate of one.
        assert ledger(url) == sorted((pr["head"]["ref"], pr["number"]) for pr in gh.pulls.values())
        assert {j["outcome"] for j in stored} <= {"pr_opened", "duplicate"}, stored

        # 2. The budget: two new PRs per hour, four workloads, three replicas: two PRs, the rest wait for it. A new
        #    database and GitHub (the ledger would be rebuilt from the first phase's PRs, which count).
        url2 = postgres.create_database()
        gh = stack.enter_context(FakeGitHub("acme/gitops", token=GH_TOKEN))
        env2 = {**env, "AUTOFIX_DATABASE_URL": url2, "AUTOFIX_GITHUB_API_URL": gh.api_url,
                "AUTOFIX_POLICY_DIR": str(storm.policy_dir(tmp_path / "p2", 2))}
        with replicas(env2, tmp_path, "budget") as procs:
            budgeted = [alerts[i][0] for i in BUDGETED]
            for _, base in procs:
                post(base, budgeted)

            def settled() -> bool:
                rows = jobs(url2)
                return all(j["attempts"] >= 1 and j["state"] in ("done", "queued", "failed") for j in rows)

            wait_for(settled, "every budgeted job tried", seconds=60)
        stored = jobs(url2)
        new = branches(gh)
        assert len(new) == 2 and len(set(new)) == 2, (new, [j["error"] for j in stored])
        assert sorted(j["state"] for j in stored) == ["done", "done", "queued", "queued"], stored
        assert all("budget" in (j["error"] or "") for j in stored if j["state"] == "queued"), stored
