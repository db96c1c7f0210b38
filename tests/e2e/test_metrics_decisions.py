"""Deciding from the curve, end to end: `autofix handle` with AUTOFIX_PROMETHEUS_URL pointing at the real Prometheus
(tests/fakes/prometheus.py: promtool blocks of cAdvisor and kube-state-metrics series as kube-prometheus-stack
scrapes them) over the scenarios' clusters and repos, each with the series that tell its story up to the alert's
startsAt. Assertions are on what users see: the pushed branch's diff (or no branch), the PR's text, the reason.

- leak: checkout's three pods grow +40 MiB/h from 200 MiB after each restart and are killed at 512 Mi every
  7 h 48 min (the cluster's last kills, each run 7 h 48 min long): escalated with the growth and the time to
  the limit, no branch;
- regression after a release: revision 5b6c8d9f47 (1.4.1) ran flat at about 210 MiB; 45 min before the alert
  7d9f8b6c5 (1.4.2) rolled out and climbs to 512 Mi within 5 min of every start: the image is rolled back;
- undersized with spikes: a plateau at 440-448 MiB, peaks at 505 MiB every 4 h: raised to 505 x 1.25;
- throttled: search-api busy 12 h a day at 0.48 cores with 63% of CFS periods throttled, 0.15 at night:
  limits.cpu from the p95 of usage and the throttled share;
- over-requested Pending pod: report-builder was recreated (a selector change) asking 24Gi; its earlier
  ReplicaSet's pod peaked at 9420 MiB over the week: the request goes to that peak x 1.25;
- HPA at its ceiling: frontend's ten pods at 85% of their CPU request against a 70% target: 13 replicas.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from app.demo import seed_bare_repo
from tests.conftest import ROOT, SCENARIOS
from tests.e2e.test_e2e_handle import TOKEN, branch_diff, changed_lines, git
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake
from tests.fakes.prometheus import DAY, HOUR, MINUTE, Container, MiB, PrometheusServer, Scenario, ramp, spikes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]  # a real prometheus and a whole pipeline run each

Items = list[dict[str, Any]]
CHECKOUT = ("abcde", "fghij", "x2v7q")  # the cluster's pods of revision 7d9f8b6c5
OLD_PODS = ("kq7zt", "m2xw9", "tg4rn")  # revision 5b6c8d9f47's, gone from the cluster
LEAK_PERIOD = (512 - 200) / 40 * HOUR  # 7 h 48 min from a restart to the limit at +40 MiB/h


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def alert_at(scenario: str) -> float:
    """The scenario's alert startsAt (to the second, as the reader anchors its window)."""
    raw = json.loads((SCENARIOS / scenario / "alert.json").read_text())["alerts"][0]["startsAt"]
    return float(int(epoch(raw[:19] + "Z")))


def iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cluster(scenario: str, tmp_path: Path, change: Callable[[Items], None] | None = None) -> Path:
    data = json.loads((SCENARIOS / scenario / "cluster.json").read_text())
    if change is not None:
        change(data["items"])
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(data))
    return path


def item(items: Items, kind: str, name: str) -> dict[str, Any]:
    return next(i for i in items if i["kind"] == kind and i["metadata"]["name"] == name)


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub("acme/gitops", token=TOKEN) as gh:
        yield gh


def handle(scenario: str, snapshot: Path, tmp_path: Path, mlflow_uri: str, gh: FakeGitHub,
           prometheus: PrometheusServer) -> tuple[dict[str, Any], Path]:
    """`autofix handle` on the scenario's alert, as a user runs it, Prometheus configured."""
    bare = tmp_path / "gitops.git"
    seed_bare_repo(SCENARIOS / scenario / "repo", bare)
    with KubeApiFake.from_snapshot(snapshot) as kube:
        env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
               "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops", "GITHUB_TOKEN": TOKEN,
               "AUTOFIX_GITHUB_API_URL": gh.api_url, "AUTOFIX_GITHUB_WRITE_SPACING": "0",
               "AUTOFIX_DATA_DIR": str(tmp_path / "data"), "MLFLOW_TRACKING_URI": mlflow_uri,
               "AUTOFIX_PROMETHEUS_URL": prometheus.url,
               "AUTOFIX_EXPORT_WAIT_SECONDS": "0"}  # no test here reads the MLflow run: records stay in the outbox
        proc = subprocess.run([sys.executable, "-m", "app.cli", "handle", str(SCENARIOS / scenario / "alert.json")],
                              env=env, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    return result, bare


def branches(bare: Path) -> list[str]:
    return [b.strip() for b in git("branch", "--format=%(refname:short)", cwd=bare).splitlines()]


def changed(bare: Path, branch: str) -> list[str]:
    """The branch's changed lines, indentation dropped: ["-memory: 512Mi", "+memory: 632Mi"]."""
    return [line[0] + line[1:].strip() for line in changed_lines(branch_diff(bare, branch))]


def pull_request(gh: FakeGitHub) -> dict[str, Any]:
    [pr] = [r.body for r in gh.requests_to("POST", "/pulls")]
    return pr


def checkout_container(memory: Any, *, image: str = "ghcr.io/acme/checkout:1.4.2",
                       restarts: list[float] | None = None) -> Container:
    return Container("checkout", image=image, memory=memory, cpu=0.12, limits={"memory": "512Mi"},
                     requests={"cpu": "250m", "memory": "256Mi"}, restarts=restarts or [])


# ---------------------------------------------------------------- OOMKilled


def test_leak_is_escalated_with_growth_and_time_to_the_limit(tmp_path: Path, mlflow_uri: str,
                                                             github: FakeGitHub) -> None:
    at = alert_at("oom-deployment")
    started = epoch("2026-11-20T10:01:12Z") - at
    finished: dict[str, float] = {}

    def runs_of_hours(items: Items) -> None:
        """The cluster's last kills, each ending a run of 7 h 48 min (the leak's pace), the counts to match."""
        for suffix in CHECKOUT:
            pod = item(items, "Pod", f"checkout-7d9f8b6c5-{suffix}")
            [status] = pod["status"]["containerStatuses"]
            last = status["lastState"]["terminated"]
            finished[suffix] = epoch(last["finishedAt"]) - at
            last["startedAt"] = iso(epoch(last["finishedAt"]) - LEAK_PERIOD)
            status["restartCount"] = len(kills(suffix))

    def kills(suffix: str) -> list[float]:
        found, k = [], finished[suffix]
        while k > started:
            found.append(k)
            k -= LEAK_PERIOD
        return sorted(found)

    snapshot = cluster("oom-deployment", tmp_path, runs_of_hours)
    s = Scenario(namespace="shop", alert_at=at)
    for suffix in CHECKOUT:
        s.replica("checkout", "7d9f8b6c5", suffix=suffix, start=started,
                  containers=[checkout_container(ramp(200 * MiB, per_hour=40 * MiB), restarts=kills(suffix))])
    with PrometheusServer(s, tmp_path / "prometheus") as prometheus:
        result, bare = handle("oom-deployment", snapshot, tmp_path, mlflow_uri, github, prometheus)
    assert result["outcome"] == "no_fix", result
    assert branches(bare) == ["main"], "a leak is never raised"
    assert github.requests_to("POST", "/pulls") == []
    reason = result["reason"]
    assert reason.startswith("escalated: leak: the working set grows steadily between restarts, +40Mi/h"), reason
    assert "3 pod(s) of revision(s) 7d9f8b6c5, image ghcr.io/acme/checkout:1.4.2" in reason
    assert "to the limit 512Mi in about 7 h 4" in reason
    assert "a higher limit would only delay the next kill" in reason


def test_regression_after_a_release_rolls_the_image_back(tmp_path: Path, mlflow_uri: str,
                                                         github: FakeGitHub) -> None:
    at = alert_at("oom-deployment")
    rollout = -45 * MINUTE

    def released_45_minutes_ago(items: Items) -> None:
        item(items, "ReplicaSet", "checkout-7d9f8b6c5")["metadata"]["creationTimestamp"] = iso(at + rollout)
        for i, suffix in enumerate(CHECKOUT):
            pod = item(items, "Pod", f"checkout-7d9f8b6c5-{suffix}")
            pod["metadata"]["creationTimestamp"] = pod["status"]["startTime"] = iso(at + rollout + i * MINUTE)

    snapshot = cluster("oom-deployment", tmp_path, released_45_minutes_ago)
    s = Scenario(namespace="shop", alert_at=at)
    for i, suffix in enumerate(OLD_PODS):  # flat well under the limit, replaced pod by pod by the rollout
        wobble = spikes(205 * MiB, peak=216 * MiB, every=37 * MINUTE, width=6 * MINUTE)
        s.replica("checkout", "5b6c8d9f47", suffix=suffix, start=-3.5 * DAY, end=rollout + (i + 1) * MINUTE,
                  containers=[checkout_container(wobble, image="ghcr.io/acme/checkout:1.4.1")])
    for i, suffix in enumerate(CHECKOUT):  # 180 MiB at start, the limit 5 min later, killed, again
        start = rollout + i * MINUTE
        climb = ramp(180 * MiB, per_hour=(512 - 180) * MiB * 12)
        s.replica("checkout", "7d9f8b6c5", suffix=suffix, start=start,
                  containers=[checkout_container(climb, restarts=[start + k * 6 * MINUTE for k in range(1, 8)])])
    with PrometheusServer(s, tmp_path / "prometheus") as prometheus:
        result, bare = handle("oom-deployment", snapshot, tmp_path, mlflow_uri, github, prometheus)
    assert result["outcome"] == "pr_opened", result
    assert result["branch"] == "autofix/shop/checkout/oom-killed"
    assert changed_lines(branch_diff(bare, result["branch"])) == [
        "-          image: ghcr.io/acme/checkout:1.4.2", "+          image: ghcr.io/acme/checkout:1.4.1"]
    assert pull_request(github)["title"] == \
        "Roll back image of shop/checkout to ghcr.io/acme/checkout:1.4.1 after OOMKilled"
    body = pull_request(github)["body"]
    assert ("memory regression in ghcr.io/acme/checkout:1.4.2: back to ghcr.io/acme/checkout:1.4.1 of revision 1 "
            "(replicaset checkout-5b6c8d9f47), which ran 25 d") in body
    assert "regression: revision 7d9f8b6c5 reached the limit within 5 min of its rollout, 5b6c8d9f47 peaked at " \
           "216Mi" in body
    assert "xychart-beta" in body, "the PR shows the curve"


def test_undersized_with_spikes_is_raised_to_the_peak_with_headroom(tmp_path: Path, mlflow_uri: str,
                                                                    github: FakeGitHub) -> None:
    at = alert_at("oom-deployment")
    s = Scenario(namespace="shop", alert_at=at)
    for i, suffix in enumerate(CHECKOUT):
        plateau = spikes((440 + 4 * i) * MiB, peak=505 * MiB, every=4 * HOUR, width=2 * MINUTE)
        s.replica("checkout", "7d9f8b6c5", suffix=suffix, start=epoch("2026-11-20T10:01:12Z") - at,
                  containers=[checkout_container(plateau, restarts=[-40 * MINUTE + i * MINUTE,
                                                                   -25 * MINUTE + i * MINUTE])])
    with PrometheusServer(s, tmp_path / "prometheus") as prometheus:
        result, bare = handle("oom-deployment", cluster("oom-deployment", tmp_path), tmp_path, mlflow_uri, github,
                              prometheus)
    assert result["outcome"] == "pr_opened", result
    lines = changed(bare, result["branch"])
    assert lines == ['-memory: "512Mi"', '+memory: "632Mi"']  # ceil(505 MiB x 1.25)
    body = pull_request(github)["body"]
    assert "observed peak 505Mi x1.25 headroom (policy memory.curve.headroom)" in body
    assert "undersized: peaks at 505Mi (99% of the limit 512Mi)" in body
    assert "xychart-beta" in body and "container_memory_working_set_bytes" in body


# ---------------------------------------------------------------- CPU throttling


def test_throttled_cpu_limit_from_usage_percentiles(tmp_path: Path, mlflow_uri: str, github: FakeGitHub) -> None:
    at = alert_at("cpu-throttling")
    start = epoch("2026-11-19T16:40:22Z") - at

    def busy(day: float, night: float) -> Callable[[float], float]:
        """Busy from 08:00 to 20:00 UTC (the age counts from the pod's start)."""
        return lambda age: day if 8 * HOUR <= (at + start + age) % DAY < 20 * HOUR else night

    s = Scenario(namespace="shop", alert_at=at)
    for suffix in ("b7lzg", "v4qpc"):
        s.replica("search-api", "9c6d5b8f7", suffix=suffix, start=start, containers=[Container(
            "search-api", image="ghcr.io/acme/search-api:5.0.3", memory=310 * MiB, cpu=busy(0.48, 0.15),
            throttled=busy(0.63, 0.02), limits={"cpu": "500m", "memory": "512Mi"},
            requests={"cpu": "250m", "memory": "512Mi"})])
    with PrometheusServer(s, tmp_path / "prometheus") as prometheus:
        result, bare = handle("cpu-throttling", cluster("cpu-throttling", tmp_path), tmp_path, mlflow_uri, github,
                              prometheus)
    assert result["outcome"] == "pr_opened", result
    lines = changed(bare, result["branch"])
    assert lines == ["-cpu: 500m", "+cpu: 940m"]  # 0.48 x (1 + 0.63) x 1.2 = 0.939 cores, up to 10m
    body = pull_request(github)["body"]
    assert ("p95 of usage 0.48 cores over the window x (1 + 63% of periods throttled, p95) = 0.782 cores of demand, "
            "x1.2 headroom") in body
    assert "xychart-beta" in body


# ---------------------------------------------------------------- unschedulable


def test_over_requested_pending_pod_gets_the_earlier_pods_peak_with_headroom(tmp_path: Path, mlflow_uri: str,
                                                                            github: FakeGitHub) -> None:
    at = alert_at("unschedulable")
    recreated = epoch("2026-11-23T14:48:16Z") - at
    s = Scenario(namespace="analytics", alert_at=at)
    nightly = spikes(6 * 1024 * MiB, peak=9420 * MiB, every=DAY, width=HOUR)
    s.replica("report-builder", "7f8d9c5b6", suffix="q4mzt", start=-6.5 * DAY, end=recreated, containers=[Container(
        "report-builder", image="ghcr.io/acme/report-builder:2.2.1", memory=nightly, cpu=0.9,
        limits={"memory": "12Gi"}, requests={"cpu": "2", "memory": "12Gi"})])
    with PrometheusServer(s, tmp_path / "prometheus") as prometheus:
        result, bare = handle("unschedulable", cluster("unschedulable", tmp_path), tmp_path, mlflow_uri, github,
                              prometheus)
    assert result["outcome"] == "pr_opened", result
    lines = changed(bare, result["branch"])
    assert lines == ["-memory: 24Gi", "+memory: 11775Mi"]  # 9420 MiB x 1.25 (without metrics: 14318Mi)
    body = pull_request(github)["body"]
    assert ("peak memory usage 9420Mi of 1 earlier pod(s) (revision(s) 7f8d9c5b6) over the window x1.25 headroom "
            "(policy requests.headroom), never below that peak") in body
    assert "## Risk: high" in body


# ---------------------------------------------------------------- HPA at its ceiling


def test_hpa_at_its_ceiling_gets_what_its_formula_wants(tmp_path: Path, mlflow_uri: str,
                                                        github: FakeGitHub) -> None:
    at = alert_at("hpa-maxed-out")
    s = Scenario(namespace="shop", alert_at=at)
    frontend = Container("frontend", image="ghcr.io/acme/frontend:7.12.0", memory=180 * MiB, cpu=0.17,
                         limits={"memory": "512Mi"}, requests={"cpu": "200m", "memory": "256Mi"})
    for suffix in ("2g9q5", "bqvq4", "bxjwh"):
        s.replica("frontend", "84f7c9d6b", suffix=suffix, start=epoch("2026-11-17T11:25:40Z") - at,
                  containers=[frontend])
    # scaled to 10 at 13:36:58 (the SuccessfulRescale event), the new pods ready within a minute
    for i, suffix in enumerate(("jpnbq", "f5mkg", "zsvqz", "svhrh", "4bv2t", "dwtpk", "qrvrm")):
        s.replica("frontend", "84f7c9d6b", suffix=suffix, start=epoch("2026-11-23T13:37:10Z") - at + i * 5,
                  containers=[frontend])
    with PrometheusServer(s, tmp_path / "prometheus") as prometheus:
        result, bare = handle("hpa-maxed-out", cluster("hpa-maxed-out", tmp_path), tmp_path, mlflow_uri, github,
                              prometheus)
    assert result["outcome"] == "pr_opened", result
    lines = changed(bare, result["branch"])
    assert lines == ["-maxReplicas: 10", "+maxReplicas: 13"]  # ceil(10 x 85% / 70%); the quota has room for 14
    body = pull_request(github)["body"]
    assert "the HPA would have wanted up to 13 replicas: CPU utilization up to 85% of request" in body
