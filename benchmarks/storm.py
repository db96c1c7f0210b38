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
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sqlite3
import sys
import tempfile
import time
import uuid
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
    port, data_dir = c.free_port(), work / "data"
    url = f"http://127.0.0.1:{port}"
    with FakeGitHub("acme/gitops", token=TOKEN) as gh, KubeApiFake(objects, logs=logs) as kube:
        env = c.base_env(data_dir, KUBECONFIG=str(kube.write_kubeconfig(work / "kubeconfig")),
                         AUTOFIX_GIT_URL=str(bare), AUTOFIX_GITHUB_REPO="acme/gitops", GITHUB_TOKEN=TOKEN,
                         AUTOFIX_GITHUB_API_URL=gh.api_url, MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
                         AUTOFIX_WORKERS=str(args.workers), AUTOFIX_POLICY_DIR=str(policy_dir(work, args.budget)))
        proc = c.spawn([str(Path(c.PYTHON).parent / "autofix"), "serve", "--port", str(port)], env=env,
                       log=work / "service.log")
        try:
            c.wait_until(lambda: c.http_ok(f"{url}/readyz"), "the service", timeout=120)
            idle = c.rss_mb(proc.pid)
            figures = storm(args, url, objects, gh, proc.pid)
            figures["rss_idle_mb"] = idle["rss_mb"]
        finally:
            c.stop(proc)
        figures["github_requests"] = len(gh.requests)
        branches = {pr["head"]["ref"] for pr in gh.pulls.values()}
        figures["distinct_pr_branches"] = len(branches)
    with sqlite3.connect(data_dir / "jobs.sqlite3") as db:
        figures["jobs_by_state"] = dict(db.execute("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall())
        figures["jobs_stored"] = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        figures["outcomes"] = dict(db.execute(
            "SELECT json_extract(result, '$.outcome'), COUNT(*) FROM jobs WHERE result IS NOT NULL GROUP BY 1"))
        figures["waiting_reasons"] = dict(db.execute(
            "SELECT substr(error, 1, 40), COUNT(*) FROM jobs WHERE state = 'queued' GROUP BY 1"))
    return figures


def storm(args: argparse.Namespace, url: str, objects: list[dict[str, Any]], gh: Any, pid: int) -> dict[str, Any]:
    expected_prs = min(args.budget, args.workloads)
    started = time.monotonic()
    accepted, latencies, peak = 0, [], 0.0
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(args.workloads):
            due = started + i * args.seconds / args.workloads
            time.sleep(max(0.0, due - time.monotonic()))
            body = payload(alerts_for(objects, i), {"alertname": "OOM", "namespace": "shop"})
            sent = time.perf_counter()
            response = client.post("/webhooks/alertmanager", json=body)
            latencies.append((time.perf_counter() - sent) * 1000)
            accepted += len(response.json()["jobs"]) if response.status_code == 202 else 0
            peak = max(peak, c.rss_mb(pid)["peak_rss_mb"])
    last_pr_at, deadline = None, time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if len(gh.pulls) >= expected_prs and last_pr_at is None:
            last_pr_at = time.monotonic() - started
        if last_pr_at is not None and _settled(url):
            break
        time.sleep(0.5)
    time.sleep(2)  # anything past the budget would show now
    memory = c.rss_mb(pid)
    return {"alerts_posted": args.workloads * 10, "alerts_accepted": accepted,
            "webhook_p99_ms": round(c.percentile(latencies, 99), 1), "prs": len(gh.pulls),
            "expected_prs": expected_prs, "seconds_to_last_pr": round(last_pr_at, 1) if last_pr_at else None,
            "rss_after_mb": memory["rss_mb"], "rss_peak_mb": max(peak, memory["peak_rss_mb"])}


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-storm-") as tmp:
        figures = run(args, Path(tmp))
    ok = (figures["jobs_stored"] == figures["alerts_posted"] and figures["prs"] == figures["expected_prs"]
          and figures["distinct_pr_branches"] == figures["prs"] and figures["rss_peak_mb"] < 300
          and figures["jobs_by_state"].get("failed", 0) == 0)
    rows = [(k, v) for k, v in figures.items()]
    rows.append(("targets", "every alert stored, one PR per workload and cause, budget respected, peak RSS < 300 MB"))
    rows.append(("targets met", ok))
    print(c.table(f"Storm: {args.workloads * 10} alerts over {args.workloads} workloads in {args.seconds:g} s, "
                  f"budget {args.budget}/h, {args.workers} workers", rows))
    print(f"written to {c.save('storm', {'args': vars(args), **figures, 'targets_met': ok})}")


if __name__ == "__main__":
    main()
