"""The metrics harness (tests/fakes/prometheus.py) writes series as kube-prometheus-stack scrapes them: the label
sets of cAdvisor through the kubelet and of kube-state-metrics, one cAdvisor series per run of a container, the
pod cgroup and pause series, counters from 0, the working set capped at the limit. No server: the text only."""

from __future__ import annotations

import re

from tests.fakes.prometheus import HOUR, Container, MiB, Scenario, ramp

LINE = re.compile(r'^(?P<name>[a-z_]+)\{(?P<labels>[^}]*)\} (?P<value>\S+) (?P<t>\S+)$')


def samples(text: str) -> list[tuple[str, dict[str, str], float, float]]:
    found = []
    for line in text.splitlines():
        match = LINE.match(line)
        if match:
            labels = dict(re.findall(r'(\w+)="([^"]*)"', match["labels"]))
            found.append((match["name"], labels, float(match["value"]), float(match["t"])))
    return found


def scenario() -> Scenario:
    s = Scenario(namespace="shop", alert_at=1_700_000_000.0, after=0)
    s.replica("checkout", "7d9f8b6c5", suffix="x2v7q", start=-2 * HOUR, containers=[
        Container("checkout", image="ghcr.io/acme/checkout:1.4.2", memory=ramp(400 * MiB, per_hour=200 * MiB),
                  cpu=0.25, limits={"memory": "512Mi", "cpu": "500m"}, requests={"memory": "256Mi"},
                  restarts=[-1 * HOUR])])
    return s


def test_cadvisor_and_kube_state_metrics_label_sets() -> None:
    found = samples(scenario().openmetrics())
    keys = {(name, tuple(sorted(labels))) for name, labels, _, _ in found}
    cadvisor = ("container", "endpoint", "id", "image", "instance", "job", "metrics_path", "name", "namespace", "node",
                "pod", "service")
    assert ("container_memory_working_set_bytes", cadvisor) in keys
    assert ("container_memory_working_set_bytes", tuple(k for k in cadvisor if k not in ("container", "image",
                                                                                          "name"))) in keys
    assert ("kube_pod_container_resource_limits", ("container", "endpoint", "instance", "job", "namespace", "node",
                                                   "pod", "resource", "service", "uid", "unit")) in keys
    memory = {labels.get("container", ""): labels for name, labels, _, _ in found
              if name == "container_memory_working_set_bytes"}
    assert set(memory) == {"checkout", "POD", ""}
    assert memory["checkout"]["job"] == "kubelet" and memory["checkout"]["metrics_path"] == "/metrics/cadvisor"
    assert memory["checkout"]["id"].startswith("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod")
    assert memory["POD"]["image"] == "registry.k8s.io/pause:3.9"
    units = {(labels["resource"], labels["unit"], value) for name, labels, value, _ in found
             if name == "kube_pod_container_resource_limits"}
    assert units == {("memory", "byte", 512 * MiB), ("cpu", "core", 0.5)}


def test_a_restart_starts_new_cadvisor_series_from_zero_and_the_working_set_stops_at_the_limit() -> None:
    found = samples(scenario().openmetrics())
    usage = [(labels["id"], value) for name, labels, value, _ in found
             if name == "container_cpu_usage_seconds_total" and labels.get("container") == "checkout"]
    runs = list(dict.fromkeys(cid for cid, _ in usage))
    assert len(runs) == 2, "one series per run of the container"
    assert [v for cid, v in usage if cid == runs[1]][0] == 0.0
    memory = [v for name, labels, v, _ in found
              if name == "container_memory_working_set_bytes" and labels.get("container") == "checkout"]
    assert max(memory) == 512 * MiB
    restarts = [v for name, _, v, _ in found if name == "kube_pod_container_status_restarts_total"]
    assert (restarts[0], restarts[-1]) == (0.0, 1.0)
