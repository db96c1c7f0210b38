"""slow_start: the liveness probe kills a container that its own logs show becoming ready later than the
probe allows; the fix is a startupProbe covering the observed start with margin."""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import pytest

from app import causes, validation, yaml_rt
from app.detectors import probes
from app.errors import NoFix
from app.models.causes import Cause, SlowStartFacts
from app.policies import StartupBounds
from tests.conftest import SCENARIOS
from tests.unit.detectors.support import POLICY, apply, container, ev_of, varied


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


# ---------------------------------------------------------------- a start always cut short: estimated

ADS = "real-slowstart-adservice"
ADS_LOG = "adservice-6d8c9b7f54-r7tvz/server"
ADS_MANIFEST = SCENARIOS / ADS / "repo/apps/online-boutique/kubernetes-manifests.yaml"


def _ads_lines(data: dict[str, Any]) -> list[str]:
    lines: list[str] = data["logs"][ADS_LOG].splitlines()
    return lines


def _set_ads_lines(data: dict[str, Any], lines: list[str]) -> None:
    data["logs"][ADS_LOG] = "\n".join(lines) + "\n"


def _ads_message(line: str, message: str) -> str:
    record = json.loads(line)
    record["message"] = message
    return json.dumps(record)


def _facts(d: Any) -> SlowStartFacts:
    assert isinstance(d.finding.facts, SlowStartFacts)
    return d.finding.facts


def test_cut_short_start_is_estimated_from_the_pace_of_its_counter() -> None:
    d = probes.detect_slow_start(ev_of(ADS))
    assert d is not None and d.fixable and d.cause == Cause.SLOW_START
    assert (_facts(d).observed_seconds, _facts(d).allowed_seconds, _facts(d).basis) == (89.0, 65.0, "progress")
    assert any("6400 of 9600 after 60 s" in line and "ready after about 89 s" in line for line in d.finding.evidence)
    assert any(line.startswith("previous revision 6 ") and "ready after 19 s" in line for line in d.finding.evidence)
    _, changed = apply_document(d, ADS_MANIFEST)
    assert changed.splitlines() == ["+        startupProbe:", "+          grpc:", "+            port: 9555",
                                    "+          periodSeconds: 15", "+          failureThreshold: 9"]


def test_a_start_that_says_how_long_it_took_is_not_estimated() -> None:
    d = probes.detect_slow_start(ev_of("slow-start"))
    assert d is not None and _facts(d).basis is None


@pytest.mark.parametrize("change", [
    # an error before the kill: the start fails, it is not slow
    lambda data: _set_ads_lines(data, [*_ads_lines(data)[:6], _ads_message(_ads_lines(data)[6], "ERROR reading ads.json"),
                                       *_ads_lines(data)[7:]]),
    # the counter stops 40 s before the kill: a hang, not a slow start
    lambda data: _set_ads_lines(data, [*_ads_lines(data)[:7], *_ads_lines(data)[-2:]]),
    # the process waits on something else, counting its attempts
    lambda data: _set_ads_lines(data, [_ads_message(line, m.replace("Indexed", "Catalog unreachable, retrying:"))
                                       if (m := json.loads(line).get("message", "")).startswith("Indexed") else line
                                       for line in _ads_lines(data)[:-2]]),
    # it answered requests: the process was up, the probe kills a running server
    lambda data: _set_ads_lines(data, [*_ads_lines(data)[:-2], '10.244.1.1 - - [23/Nov/2026:15:11:20 +0000] '
                                       '"GET /ads HTTP/1.1" 200 512 "-" "frontend"']),
    # killed by the kernel, not by the probe
    lambda data: data["pods"][0]["status"]["containerStatuses"][0]["lastState"]["terminated"].update(
        reason="OOMKilled", exitCode=137),
    # no log lines with a time
    lambda data: _set_ads_lines(data, ["AdService starting.", "Indexed 800 of 9600 ads", "Indexed 1600 of 9600 ads"]),
], ids=["error-line", "stalled", "retrying", "serving", "oom-killed", "no-timestamps"])
def test_not_a_start_cut_short(change: Any) -> None:
    assert probes.detect_slow_start(varied(ADS, change)) is None


def _ads_pods(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["metadata"]["name"]: p for p in data["pods"]}


def _old_ready_at(when: str) -> Any:
    def change(data: dict[str, Any]) -> None:
        old = _ads_pods(data)["adservice-7b9f5c6d48-k2xwq"]
        for cond in old["status"]["conditions"]:
            if cond["type"] == "Ready":
                cond["lastTransitionTime"] = when
    return change


def test_previous_revision_longer_than_the_pace_wins() -> None:
    d = probes.detect_slow_start(varied(ADS, _old_ready_at("2026-11-20T09:15:53Z")))
    assert d is not None and d.fixable
    assert (_facts(d).observed_seconds, _facts(d).basis) == (110.0, "previous revision")


def test_finished_counter_without_an_earlier_revision_is_reported_not_fixed() -> None:
    def change(data: dict[str, Any]) -> None:
        lines = _ads_lines(data)
        _set_ads_lines(data, [*lines[:-3], _ads_message(lines[-3], "Indexed 9600 of 9600 ads"), *lines[-2:]])
        data["pods"] = [p for p in data["pods"] if not p["metadata"]["name"].startswith("adservice-7b9f5c6d48")]
    d = probes.detect_slow_start(varied(ADS, change))
    assert d is not None and d.cause == Cause.SLOW_START and not d.fixable
    assert "still starting" in d.finding.root_cause and "65 s" in d.finding.root_cause
    assert "size it by hand" in str(d.no_fix_reason)


def test_estimate_beyond_the_policys_bound_is_not_fixed() -> None:
    d = probes.detect_slow_start(ev_of(ADS))
    assert d is not None
    bounded = POLICY.model_copy(update={"startup": StartupBounds(max_seconds=120)})
    with pytest.raises(NoFix) as err:
        causes.plan(d, yaml_rt.documents(ADS_MANIFEST.read_text())[_ads_index()], bounded)
    assert err.value.code == "at_cap"
    assert "about 89 s to start (estimated from its progress), 134 s with margin x1.5, above the policy's " \
           "startup.max_seconds 120" in err.value.message


def _ads_index() -> int:
    docs = yaml_rt.documents(ADS_MANIFEST.read_text())
    return next(i for i, d in enumerate(docs) if d and d["kind"] == "Deployment" and d["metadata"]["name"] == "adservice")


def apply_document(d: Any, manifest: Path) -> tuple[str, str]:
    """The plan applied to the workload's document of a multi-document file, validated like the pipeline does."""
    text = manifest.read_text()
    index = _ads_index()
    plan = causes.plan(d, yaml_rt.documents(text)[index], POLICY)
    new = yaml_rt.edit(text, document_index=index, changes=[(c.path, c.new) for c in plan.changes])
    validation.check(text, new, document_index=index, plan=plan)
    diff = difflib.unified_diff(text.splitlines(), new.splitlines(), lineterm="")
    return new, "\n".join(line for line in diff if line[:1] in "+-" and not line.startswith(("+++", "---")))
