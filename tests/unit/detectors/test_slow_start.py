"""slow_start: the liveness probe kills a container that its own logs show becoming ready later than the
probe allows; the fix is a startupProbe covering the observed start with margin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.detectors import probes
from app.models.causes import Cause, SlowStartFacts
from tests.conftest import SCENARIOS
from tests.unit.detectors.support import apply, container, ev_of, varied


@pytest.mark.parametrize(("log", "seconds"), [
    ("2026-11-23T15:08:20.000Z  INFO 1 --- [main] c.a.l.LedgerApplication : Started LedgerApplication in 94.3 "
     "seconds (process running for 95.1)\n", 94.3),
    ('2026-11-23 15:00:01,200 INFO booting\n2026-11-23 15:00:05,000 INFO loading model weights\n'
     "2026-11-23 15:01:23,700 INFO Uvicorn running, listening on 0.0.0.0:8000\n", 82.5),
    ("2026-11-23T15:00:01Z starting\n2026-11-23T15:00:59Z still warming caches\n", None),
    ("no timestamps here\nready\n", None),
], ids=["spring-boot", "timestamps-to-listening", "never-ready", "no-timestamps"])
def test_start_seconds(log: str, seconds: float | None) -> None:
    assert probes.start_seconds(log) == seconds


def test_slow_start_adds_a_startup_probe_covering_observed_start_with_margin() -> None:
    d = probes.detect_slow_start(ev_of("slow-start"))
    assert d is not None and d.fixable and d.cause == Cause.SLOW_START
    assert isinstance(d.finding.facts, SlowStartFacts)
    assert (d.finding.facts.observed_seconds, d.finding.facts.allowed_seconds) == (71.6, 60.0)
    _, changed = apply(d, SCENARIOS / "slow-start/repo/apps/ledger/deployment.yaml")
    assert changed.splitlines() == [
        "+          startupProbe:", "+            httpGet:", "+              path: /actuator/health/liveness",
        "+              port: http", "+            periodSeconds: 10", "+            failureThreshold: 11"]


def test_slow_start_with_a_startup_probe_raises_its_failure_threshold() -> None:
    def change(data: dict[str, Any]) -> None:
        container(data)["startupProbe"] = {"httpGet": {"path": "/actuator/health/liveness", "port": "http"},
                                           "periodSeconds": 10, "failureThreshold": 5}
    d = probes.detect_slow_start(varied("slow-start", change))
    assert d is not None and isinstance(d.finding.facts, SlowStartFacts)
    assert d.finding.facts.allowed_seconds == 50.0
    text = (SCENARIOS / "slow-start/repo/apps/ledger/deployment.yaml").read_text() + (
        "          startupProbe:\n            httpGet:\n              path: /actuator/health/liveness\n"
        "              port: http\n            periodSeconds: 10\n            failureThreshold: 5\n")
    _, changed = apply(d, Path("unused"), text)
    assert changed == "-            failureThreshold: 5\n+            failureThreshold: 11"


@pytest.mark.parametrize("change", [
    lambda data: data["logs"].clear(),
    lambda data: container(data)["livenessProbe"].update({"initialDelaySeconds": 90}),
    lambda data: data.update(events=[e for e in data["events"] if e["reason"] != "Killing"]),
], ids=["no-logs", "probe-allows-enough", "no-liveness-kills"])
def test_slow_start_needs_kills_and_a_measured_start_beyond_the_probe(change: Any) -> None:
    assert probes.detect_slow_start(varied("slow-start", change)) is None


def test_fast_start_killed_by_a_wrong_port_is_not_slow_start() -> None:
    assert probes.detect_slow_start(ev_of("probe-wrong-port")) is None
