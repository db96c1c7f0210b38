"""`autofix doctor`'s Prometheus row against the real prometheus (tests/fakes/prometheus.py): reachable, and the
series the sizing reads scraped now with the policy's label names; what is missing says where it comes from."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app import doctor
from app import settings as settings_mod
from tests.fakes.prometheus import HOUR, MINUTE, Container, MiB, PrometheusServer, Scenario, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]  # a real prometheus


def scraped_now() -> Scenario:
    """checkout's pod scraped until a minute ago (the doctor asks about now)."""
    s = Scenario(namespace="shop", alert_at=float(int(time.time() // 60 * 60 - 2 * HOUR)), after=2 * HOUR)
    s.replica("checkout", "7d9f8b6c5", suffix="x2v7q", start=-HOUR, containers=[
        Container("checkout", image="ghcr.io/acme/checkout:1.4.2", memory=300 * MiB, cpu=0.2,
                  limits={"memory": "512Mi", "cpu": "500m"}, requests={"memory": "256Mi", "cpu": "100m"})])
    return s


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with PrometheusServer(scraped_now(), tmp_path_factory.mktemp("prometheus")) as server:
        yield server


def check(tmp_path: Path, url: str | None, *, policy: str | None = None) -> doctor.Check:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir(exist_ok=True)
    (policy_dir / "default.yaml").write_text((settings_mod.DEFAULT_POLICY_DIR / "default.yaml").read_text())
    if policy is not None:
        (policy_dir / "zz-install.yaml").write_text(policy)
    return doctor.check_prometheus(settings_mod.load(prometheus_url=url, policy_dir=policy_dir))


def test_every_series_the_sizing_reads_is_scraped(tmp_path: Path, prometheus: PrometheusServer) -> None:
    row = check(tmp_path, prometheus.url)
    assert (row.name, row.status, row.detail) == (
        "prometheus", "ok", f"{prometheus.url}: reachable; 7 of 7 series the sizing reads are scraped (cAdvisor, "
                            "kube-state-metrics) with labels namespace, pod, container")


def test_an_install_whose_labels_the_policy_names_otherwise_is_told_to_set_metrics_labels(
        tmp_path: Path, prometheus: PrometheusServer) -> None:
    row = check(tmp_path, prometheus.url, policy="metrics:\n  labels:\n    pod: pod_name\n    container: container_name\n")
    assert row.status == "fail"
    assert row.detail.startswith(f"{prometheus.url}: reachable; scraped without labels namespace, pod_name, "
                                 "container_name: container_memory_working_set_bytes, ")
    assert "(set metrics.labels in the policy to this install's names)" in row.detail


def test_without_kube_state_metrics_the_missing_series_and_their_source_are_named(tmp_path: Path) -> None:
    text = "".join(line for line in scraped_now().openmetrics().splitlines(keepends=True)
                   if "kube_pod_container" not in line)
    with PrometheusServer(None, tmp_path / "prometheus", openmetrics=text) as server:
        row = check(tmp_path, server.url)
    assert (row.status, row.detail) == ("fail", (
        f"{server.url}: reachable; not scraped now: kube_pod_container_resource_limits, "
        "kube_pod_container_resource_requests, kube_pod_container_status_restarts_total (kube-state-metrics): "
        "those fixes are sized without metrics"))


def test_prometheus_down_fails_naming_it(tmp_path: Path) -> None:
    row = check(tmp_path, f"http://127.0.0.1:{free_port()}")
    assert (row.status, row.detail) == ("fail", "prometheus: connection refused (GET /api/v1/query)")


def test_no_url_is_skipped(tmp_path: Path) -> None:
    row = check(tmp_path, None)
    assert (row.status, row.detail) == ("skip", "no AUTOFIX_PROMETHEUS_URL: fixes are sized without metrics "
                                                "(the PR says so)")


def test_samples_older_than_the_lookback_are_not_scraped_now(tmp_path: Path) -> None:
    stale = scraped_now()
    stale.after = -30 * MINUTE  # the pod's last sample half an hour before the doctor asks... and more
    with PrometheusServer(stale, tmp_path / "prometheus") as server:
        row = check(tmp_path, server.url)
    assert row.status == "fail" and "not scraped now: container_memory_working_set_bytes" in row.detail
