"""Storm: 500 distinct firing alerts over 50 OOM-killed Deployments, arriving within a minute, handled by the
real service with the real pipeline against the loopback fakes.

    python benchmarks/storm.py [--workloads 50] [--seconds 60] [--budget 40] [--workers 2]

The cluster (tests/fakes/kube_api.py) serves 50 copies of the demo's OOM-killed shop/checkout, each with its
own names and uids; the GitOps repo (a bare git repo) holds their manifests and Argo CD Applications; GitHub
is tests/fakes/github_api.py (PyGithub spaces writes 1 s apart, as against github.com); MLflow is sqlite.
Each workload gets 10 distinct alerts (5 kubernetes-mixin alert names x 2 pods), posted as one webhook per
workload, the 50 webhooks spread evenly over ``--seconds`` (60: real time, not compressed).

The policy's PR budget is set to ``--budget`` new PRs per hour (below the number of workloads on purpose):
expected are exactly ``min(budget, workloads)`` PRs, one per workload and cause, the other jobs waiting for
budget (queued, not failed). Measured: every alert stored, PRs, time until the last PR, RSS idle and peak.

Replicas (issue 17): ``--replicas 3 --database postgres`` runs three `autofix serve` processes on one PostgreSQL
database (a real server from tests/fakes/postgres.py: fsync off, so the figures show the protocol and the locks, not
a disk), each with its own data dir (its checkout) and MLflow sqlite file. Webhook i goes to replica i mod 3, as a
load balancer would spread them, and the same webhook again to replica i+1 mod 3, as the second Alertmanager of an
HA pair would (``--no-ha-pair`` to post once). The checks are the same: one job per alert whoever received it,
exactly ``min(budget, workloads)`` PRs (the budget and the one-PR rule hold across processes), RSS per process.
Results: benchmarks/results/storm.json for the default, storm_<database>_<replicas>.json otherwise.

Interpreter: the service runs on ``--service-python`` (or AUTOFIX_BENCH_SERVICE_PYTHON; default this interpreter)
with this checkout first on its path, while this driver and the fakes stay here. Memory depends on it: the test
venv has the full ``mlflow`` (pandas, numpy, pyarrow: the tests start ``mlflow server``), the runtime only
``mlflow-skinny``; a venv with the runtime's dependencies alone (``python3 -m venv /tmp/rt && /tmp/rt/bin/pip install
.``) measures what ``make demo`` and the image run. The table and the JSON name the interpreter and those packages.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import _common as c  # noqa: E402
from benchmarks.alerts import fingerprint, payload  # noqa: E402

DEMO = c.ROOT / "examples" / "demo"
TOKEN = "ghs_storm_token_0123456789abcdefghij"
UID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ALERTNAMES = ["KubernetesContainerOomKiller", "KubePodCrashLooping", "KubePodNotReady", "KubeContainerWaiting",
              "KubeDeploymentReplicasMismatch"]


def copy_name(i: int) -> str:
    return f"checkout{i:02d}"


def _renamed(text: str, i: int) -> str:
    text = UID.sub(lambda m: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{i}/{m.group(0)}")), text)
    return text.replace("checkout", copy_name(i))


def cluster(workloads: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """50 renamed copies of the demo's workload (shared cluster-scoped and namespace objects kept once)."""
    snapshot = json.loads((DEMO / "cluster.json").read_text())
    shared = [o for o in snapshot["items"] if "checkout" not in json.dumps(o)]
    own = [o for o in snapshot["items"] if "checkout" in json.dumps(o)]
    objects, logs = list(shared), {}
    for i in range(workloads):
        objects += json.loads(_renamed(json.dumps(own), i))
        logs.update(json.loads(_renamed(json.dumps(snapshot.get("logs", {})), i)))
    return objects, logs


def repo(workloads: int, root: Path) -> Path:
    for i in range(workloads):
        for path in (DEMO / "repo").rglob("*.yaml"):
            relative = _renamed(str(path.relative_to(DEMO / "repo")), i)
            target = root / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(_renamed(path.read_text(), i))
    return root


def alerts_for(objects: list[dict[str, Any]], i: int) -> list[dict[str, Any]]:
    name = copy_name(i)
    pods = sorted(o["metadata"]["name"] for o in objects
                  if o["kind"] == "Pod" and o["metadata"]["name"].startswith(f"{name}-"))[:2]
    out = []
    for alertname in ALERTNAMES:
        for pod in pods:
            labels = {"alertname": alertname, "namespace": "shop", "pod": pod, "container": name,
                      "job": "kube-state-metrics", "prometheus": "monitoring/k8s", "severity": "warning"}
            if alertname == "KubeDeploymentReplicasMismatch":
                labels["deployment"] = name
            out.append({"status": "firing", "labels": labels, "annotations": {"summary": f"{alertname} on {pod}"},
                        "startsAt": "2026-11-23T15:15:16.846575773Z", "endsAt": "0001-01-01T00:00:00Z",
                        "generatorURL": "", "fingerprint": fingerprint(labels)})
    return out


def policy_dir(work: Path, budget: int) -> Path:
    target = work / "policies"
    shutil.copytree(c.ROOT / "policies", target)
    default = target / "default.yaml"
    default.write_text(re.sub(r"prs_per_hour: \d+", f"prs_per_hour: {budget}", default.read_text()))
    return target


def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from app.demo import seed_bare_repo
    from tests.fakes.github_api import FakeGitHub
    from tests.fakes.kube_api import KubeApiFake

    objects, logs = cluster(args.workloads)
    bare = work / "gitops.git"
    seed_bare_repo(repo(args.workloads, work / "repo-src"), bare)
    with ExitStack() as stack:
        gh = stack.enter_context(FakeGitHub("acme/gitops", token=TOKEN))
        kube = stack.enter_context(KubeApiFake(objects, logs=logs))
        database = _database(args, work, stack)
        env = c.base_env(work / "data", KUBECONFIG=str(kube.write_kubeconfig(work / "kubeconfig")),
                         AUTOFIX_GIT_URL=str(bare), AUTOFIX_GITHUB_REPO="acme/gitops", GITHUB_TOKEN=TOKEN,
                         AUTOFIX_GITHUB_API_URL=gh.api_url, AUTOFIX_WORKERS=str(args.workers),
                         AUTOFIX_POLICY_DIR=str(policy_dir(work, args.budget)))
        if database.startswith("postgresql"):
            env["AUTOFIX_DATABASE_URL"] = database
        procs, urls = [], []
        try:
            for n in range(args.replicas):
                port = c.free_port()
                suffix = "" if args.replicas == 1 else f"-{n}"  # one replica: the paths as before issue 17
                procs.append(c.spawn(
                    [args.service_python, "-m", "app.cli", "serve", "--port", str(port)],
                    env={**env, "AUTOFIX_DATA_DIR": str(work / f"data{suffix}"),
                         "MLFLOW_TRACKING_URI": f"sqlite:///{work / f'mlflow{suffix}.db'}"},
                    log=work / f"service{suffix}.log"))
                urls.append(f"http://127.0.0.1:{port}")
            for url in urls:
                c.wait_until(lambda u=url: c.http_ok(f"{u}/readyz"), "the service", timeout=120)
            idle = [c.rss_mb(p.pid)["rss_mb"] for p in procs]
            figures = storm(args, urls, objects, gh, [p.pid for p in procs])
            figures["rss_idle_mb"] = idle[0] if args.replicas == 1 else idle
        finally:
            for proc in procs:
                c.stop(proc)
        figures["github_requests"] = len(gh.requests)
        figures["distinct_pr_branches"] = len({pr["head"]["ref"] for pr in gh.pulls.values()})
        figures.update(_jobs(database))
    return figures


def _database(args: argparse.Namespace, work: Path, stack: ExitStack) -> str:
    """The SQLite file of the single replica's data dir, or a new database on a PostgreSQL server started here."""
    if args.database == "sqlite":
        if args.replicas != 1:
            raise SystemExit("SQLite serves one replica: use --database postgres with --replicas > 1")
        return str(work / "data" / "jobs.sqlite3")
    from tests.fakes.postgres import PostgresServer

    return stack.enter_context(PostgresServer.start()).create_database("storm")


def _jobs(database: str) -> dict[str, Any]:
    """What the store holds after the storm (the same figures from either database)."""
    query = "SELECT state, result, error FROM jobs"
    if database.startswith("postgresql"):
        import psycopg

        with psycopg.connect(database) as pg:
            rows = pg.execute(query).fetchall()
    else:
        with sqlite3.connect(database) as db:
            rows = db.execute(query).fetchall()
    states: dict[str, int] = {}
    outcomes: dict[str, int] = {}
    waiting: dict[str, int] = {}
    for state, result, error in rows:
        states[state] = states.get(state, 0) + 1
        if result is not None:
            outcome = json.loads(result).get("outcome")
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        if state == "queued":
            waiting[(error or "")[:40]] = waiting.get((error or "")[:40], 0) + 1
    return {"jobs_by_state": states, "jobs_stored": len(rows), "outcomes": outcomes, "waiting_reasons": waiting}


def storm(args: argparse.Namespace, urls: list[str], objects: list[dict[str, Any]], gh: Any,
          pids: list[int]) -> dict[str, Any]:
    expected_prs = min(args.budget, args.workloads)
    started = time.monotonic()
    accepted, jobs, latencies = 0, set(), []
    peaks = [0.0] * len(pids)
    clients = [httpx.Client(base_url=url, timeout=30) for url in urls]
    try:
        for i in range(args.workloads):
            due = started + i * args.seconds / args.workloads
            time.sleep(max(0.0, due - time.monotonic()))
            body = payload(alerts_for(objects, i), {"alertname": "OOM", "namespace": "shop"})
            for client in _targets(clients, i, ha_pair=args.ha_pair):
                sent = time.perf_counter()
                response = client.post("/webhooks/alertmanager", json=body)
                latencies.append((time.perf_counter() - sent) * 1000)
                if response.status_code == 202:
                    accepted += len(response.json()["jobs"])
                    jobs.update(response.json()["jobs"])
            peaks = [max(peak, c.rss_mb(pid)["peak_rss_mb"]) for peak, pid in zip(peaks, pids, strict=True)]
    finally:
        for client in clients:
            client.close()
    posted_for = time.monotonic() - started
    last_pr_at, deadline = None, time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if len(gh.pulls) >= expected_prs and last_pr_at is None:
            last_pr_at = time.monotonic() - started
        if last_pr_at is not None and all(_settled(url) for url in urls):
            break
        time.sleep(0.5)
    time.sleep(2)  # anything past the budget would show now
    memory = [c.rss_mb(pid) for pid in pids]
    after = [m["rss_mb"] for m in memory]
    peak = [max(p, m["peak_rss_mb"]) for p, m in zip(peaks, memory, strict=True)]
    figures: dict[str, Any] = {
        "alerts_posted": args.workloads * 10, "alerts_accepted": accepted,
        "webhook_p99_ms": round(c.percentile(latencies, 99), 1), "prs": len(gh.pulls),
        "expected_prs": expected_prs, "seconds_to_last_pr": round(last_pr_at, 1) if last_pr_at else None,
        "rss_after_mb": after[0], "rss_peak_mb": peak[0]}
    if len(urls) > 1 or args.ha_pair:
        figures.update({
            "replicas": len(urls), "database": args.database, "posts": len(latencies),
            "distinct_jobs_answered": len(jobs), "webhook_p50_ms": round(c.percentile(latencies, 50), 1),
            "posts_per_s_offered": round(len(latencies) / posted_for, 2),
            "rss_after_mb": after, "rss_peak_mb": peak})
    return figures


def _targets(clients: list[httpx.Client], i: int, *, ha_pair: bool) -> list[httpx.Client]:
    """The replica a load balancer picks for webhook i, and the one its HA twin's copy lands on."""
    first = clients[i % len(clients)]
    return [first, clients[(i + 1) % len(clients)]] if ha_pair else [first]


def _settled(url: str) -> bool:
    """No job running and none due now (jobs waiting for budget are queued with a later time)."""
    text = httpx.get(f"{url}/metrics", timeout=5).text
    running = sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith('autofix_jobs{state="running"'))
    return running == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--budget", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--replicas", type=int, default=1, help="autofix serve processes on one database")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--service-python", default=os.environ.get("AUTOFIX_BENCH_SERVICE_PYTHON", c.PYTHON),
                        help="interpreter running `autofix serve` (default: this one; e.g. a venv with only the "
                             "runtime dependencies, mlflow-skinny, as the image has: /tmp/rt/bin/python)")
    parser.add_argument("--ha-pair", action=argparse.BooleanOptionalAction, default=None,
                        help="post each webhook to a second replica too (default: with --replicas > 1)")
    args = parser.parse_args()
    if args.ha_pair is None:
        args.ha_pair = args.replicas > 1
    service = c.interpreter(args.service_python)
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        figures = run(args, Path(tmp))
    figures["service_python"] = service["python"]
    figures["service_packages"] = f"{service['set']}: " + ", ".join(
        f"{name} {version}" for name, version in service["packages"].items() if version)
    peaks = figures["rss_peak_mb"] if isinstance(figures["rss_peak_mb"], list) else [figures["rss_peak_mb"]]
    correct = (figures["jobs_stored"] == figures["alerts_posted"] and figures["prs"] == figures["expected_prs"]
               and figures["distinct_pr_branches"] == figures["prs"] and figures["jobs_by_state"].get("failed", 0) == 0)
    ok = correct and max(peaks) < 300
    rows = [(k, v) for k, v in figures.items()]
    rows.append(("targets", "every alert stored, one PR per workload and cause, budget respected, peak RSS < 300 MB"))
    rows.append(("targets met", ok))
    where = "" if args.replicas == 1 and args.database == "sqlite" else f", {args.replicas} x {args.database}"
    print(c.table(f"Storm: {args.workloads * 10} alerts over {args.workloads} workloads in {args.seconds:g} s, "
                  f"budget {args.budget}/h, {args.workers} workers{where}", rows))
    name = "storm" if not where else f"storm_{args.database}_{args.replicas}"
    print(f"written to {c.save(name, {'args': vars(args), **figures, 'targets_met': ok})}")
    if not correct:  # a lost alert, a PR too many or too few: the run is wrong, not slow
        sys.exit(1)


if __name__ == "__main__":
    main()
