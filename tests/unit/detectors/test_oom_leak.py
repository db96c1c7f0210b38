"""A leak is escalated, never raised: the signs app/detectors/oom.py reads (the killed runs, a size growing in the
log) and the judgement app/fixers/memory.py makes with the policy's memory.leak thresholds."""

from __future__ import annotations

import pytest

from app import policies, targets
from app.adapters.snapshot import SnapshotCluster
from app.detectors import oom
from app.errors import NoFix
from app.fixers import memory
from app.models.alertmanager import WebhookPayload
from app.models.causes import KilledRun, LeakSigns, LogGrowth
from app.models.evidence import Evidence
from app.models.incident import Incident
from app.settings import DEFAULT_POLICY_DIR
from app.stages import evidence as evidence_stage
from tests.conftest import ROOT
from tests.unit.detectors.support import ev_of

FIXTURE = ROOT / "tests" / "fixtures" / "real-history-checkoutservice"
POLICY = policies.load(DEFAULT_POLICY_DIR)
RULE = POLICY.memory.leak
H = 3600.0


def fixture_evidence(cluster: str) -> Evidence:
    snapshot = SnapshotCluster.from_file(FIXTURE / cluster)
    incident = Incident.from_alert(WebhookPayload.model_validate_json((FIXTURE / "alert.json").read_text()).alerts[0])
    return evidence_stage.gather(snapshot, targets.resolve(snapshot, incident), incident)


def test_the_leak_fixture_shows_regular_runs_and_a_growing_cache() -> None:
    diagnosis = oom.detect(fixture_evidence("cluster-leak.json"))
    assert diagnosis is not None
    signs = diagnosis.finding.facts.leak_signs  # type: ignore[attr-defined]
    assert signs == LeakSigns(
        runs=(KilledRun(pod="checkoutservice-7c9f6d8b54-h2xkq", seconds=119 * 60, restarts=5, mean_seconds=120 * 60),),
        growth=(LogGrowth(pod="checkoutservice-7c9f6d8b54-h2xkq", what="shipping quote cache: # entries", samples=7,
                          first=1843, last=12925, never_shrinks=True),))
    assert "pod checkoutservice-7c9f6d8b54-h2xkq: the OOM-killed run lived 1 h 59 min; 5 restarts, 2 h 00 min per " \
           "run on average" in diagnosis.finding.evidence
    assert memory.leak_reason(signs, RULE) is not None
    with pytest.raises(NoFix, match="^escalated: memory grows steadily") as raised:
        memory.plan(diagnosis.finding.facts, {"kind": "Deployment"}, POLICY)  # type: ignore[arg-type]
    assert raised.value.code == "memory_leak"


@pytest.mark.parametrize("scenario", ["oom-deployment", "oom-statefulset", "oom-cronjob"])
def test_other_oom_kills_carry_no_signs_and_read_as_before(scenario: str) -> None:
    diagnosis = oom.detect(ev_of(scenario))
    assert diagnosis is not None and diagnosis.finding.facts.leak_signs is None  # type: ignore[attr-defined]
    assert "leak_signs" not in diagnosis.model_dump(mode="json")["finding"]["facts"]


def test_a_backlog_that_kills_within_minutes_is_a_size_growing_but_no_leak() -> None:
    """oom-multidoc: settlement batches pile up in memory (1200 -> 6620) and the runs last 11 and 13 minutes."""
    diagnosis = oom.detect(ev_of("oom-multidoc"))
    assert diagnosis is not None
    signs = diagnosis.finding.facts.leak_signs  # type: ignore[attr-defined]
    assert signs is not None and {g.what for g in signs.growth} == {
        "settlement batch #: loaded # transactions, # in memory"}
    assert memory.leak_reason(signs, RULE) is None


def test_the_recent_raise_fixture_is_no_leak() -> None:
    diagnosis = oom.detect(fixture_evidence("cluster-raised-3h.json"))
    assert diagnosis is not None and diagnosis.finding.facts.leak_signs is None  # type: ignore[attr-defined]


def run(hours: float, *, restarts: int = 1, mean: float | None = None, pod: str = "p") -> KilledRun:
    return KilledRun(pod=pod, seconds=hours * H, restarts=restarts, mean_seconds=None if mean is None else mean * H)


CACHE = LogGrowth(pod="p", what="cache: # entries", samples=7, first=1843, last=12925, never_shrinks=True)


@pytest.mark.parametrize(("signs", "leak"), [
    pytest.param(LeakSigns(runs=(run(2, restarts=5, mean=2.05),), growth=(CACHE,)), True, id="one-pod-regular"),
    pytest.param(LeakSigns(runs=(run(2), run(2.1, pod="q"), run(1.9, pod="r")), growth=(CACHE,)), True,
                 id="three-pods-regular"),
    pytest.param(LeakSigns(runs=(run(2, restarts=5, mean=2.05),), growth=()), False, id="no-size-growing"),
    pytest.param(LeakSigns(runs=(run(2, restarts=5, mean=6),), growth=(CACHE,)), False, id="irregular"),
    pytest.param(LeakSigns(runs=(run(0.2, restarts=5, mean=0.21),), growth=(CACHE,)), False, id="killed-soon"),
    pytest.param(LeakSigns(runs=(run(2, restarts=2, mean=2),), growth=(CACHE,)), False, id="too-few-kills"),
    pytest.param(LeakSigns(runs=(run(2, restarts=5),), growth=(CACHE,)), False, id="one-run-known"),
    pytest.param(LeakSigns(runs=(run(2, restarts=5, mean=2),), growth=(CACHE.model_copy(update={"never_shrinks": False}),)),
                 False, id="size-shrank"),
    pytest.param(LeakSigns(runs=(run(2, restarts=5, mean=2),), growth=(CACHE.model_copy(update={"last": 3000}),)),
                 False, id="grew-too-little"),
    pytest.param(LeakSigns(runs=(run(2, restarts=5, mean=2),), growth=(CACHE.model_copy(update={"samples": 3}),)),
                 False, id="too-few-samples"),
    pytest.param(None, False, id="no-signs"),
])
def test_leak_judgement(signs: LeakSigns | None, leak: bool) -> None:
    assert (memory.leak_reason(signs, RULE) is not None) is leak


def test_the_policy_can_turn_the_rule_off() -> None:
    signs = LeakSigns(runs=(run(2, restarts=5, mean=2.05),), growth=(CACHE,))
    off = RULE.model_copy(update={"enabled": False})
    assert memory.leak_reason(signs, off) is None


@pytest.mark.parametrize(("log", "whats"), [
    pytest.param("queue depth=10\nqueue depth=40\nqueue depth=90\n", {"queue depth=#"}, id="logfmt"),
    pytest.param('{"msg":"flushed","pending_items":10}\n{"msg":"flushed","pending_items":25}\n',
                 {"flushed pending_items=#"}, id="json-field"),
    pytest.param('{"msg":"served","responseTime":10}\n{"msg":"served","responseTime":900}\n', set(),
                 id="latency-is-not-a-size"),
    pytest.param("2026-11-23T10:00:00Z took 10 ms\n2026-11-23T10:30:00Z took 30 ms\n", set(), id="no-size-word"),
    pytest.param("cache size 50\ncache size 20\n", set(), id="shrinking"),
])
def test_sizes_are_read_next_to_their_words(log: str, whats: set[str]) -> None:
    assert {g.what for g in oom._growth("p", log)} == whats
