"""Sizing from the curve: each decision the fixers make from Prometheus' series (app/curves.py), on the scenarios'
evidence (statuses, events and ReplicaSets as the cluster has them) with series shaped like the real ones
(tests/unit/shapes.py): per pod, restarts as drops, revisions told apart by their pod-template-hash.

Without metrics (Evidence.metrics None: not looked) every plan is today's; with metrics that cannot be used the
plan is today's and says why (Plan.sizing_note)."""

from __future__ import annotations

from typing import Any

import pytest

from app import causes, fieldpaths, risk
from app.errors import NoFix
from app.models import metrics as m
from app.models.causes import OomFacts
from app.models.changes import Plan
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.models.metrics import Metrics
from app.policies import Policy
from tests.unit import shapes as s
from tests.unit.detectors.support import DEFAULT, SHIPPED, Items, ev_of, evidence, git, item
from tests.unit.shapes import DAY, HOUR, MINUTE, GiB, MiB
from tests.unit.test_curves import leaking, released, spiky

DOWN = Metrics(status="unavailable", reason="prometheus: connection refused",
               source="http://prometheus.monitoring.svc:9090")
CHECKOUT = "apps/checkout/deployment.yaml"
IMAGE = "spec.template.spec.containers[name=checkout].image"
LIMIT = "spec.template.spec.containers[name=checkout].resources.limits.memory"


def diagnosed(ev: Evidence, metrics: Metrics | None) -> Diagnosis:
    found = causes.diagnose(ev.model_copy(update={"metrics": metrics}))
    assert found, "a detector must recognise the failure"
    return found[0]


def planned(ev: Evidence, metrics: Metrics | None, manifest: tuple[str, str], *,
            policy: Policy = DEFAULT) -> Plan:
    diagnosis = diagnosed(ev, metrics)
    assert diagnosis.fixable, diagnosis.no_fix_reason
    return causes.plan(diagnosis, git(*manifest), policy, metrics=metrics)


def refused(ev: Evidence, metrics: Metrics | None, manifest: tuple[str, str]) -> NoFix:
    with pytest.raises(NoFix) as err:
        planned(ev, metrics, manifest)
    return err.value


def changed(plan: Plan) -> dict[str, Any]:
    assert all(any(fieldpaths.matches(c.path, g) for g in SHIPPED["causes"][plan.cause]["paths"])
               for c in plan.changes), "the shipped policy must allow the change"
    return {c.path: c.new for c in plan.changes}


# ---------------------------------------------------------------- OOM kills


def rolled_out_45_minutes_ago(items: Items) -> None:
    """oom-deployment, its last rollout (1.4.1 -> 1.4.2) 45 min before the alert instead of three days."""
    item(items, "ReplicaSet", "checkout-7d9f8b6c5")["metadata"]["creationTimestamp"] = "2026-11-23T14:30:16Z"
    for pod in (i for i in items if i["kind"] == "Pod"):
        pod["metadata"]["creationTimestamp"] = pod["status"]["startTime"] = "2026-11-23T14:30:16Z"


def failing_before_the_rollout(items: Items) -> None:
    rolled_out_45_minutes_ago(items)
    [available] = [c for c in item(items, "Deployment")["status"]["conditions"] if c["type"] == "Available"]
    available["lastTransitionTime"] = "2026-11-23T12:02:40Z"


def test_undersized_is_raised_to_the_observed_peak_with_headroom() -> None:
    plan = planned(ev_of("oom-deployment"), s.metrics(*spiky()), ("oom-deployment", CHECKOUT))
    assert changed(plan) == {LIMIT: "632Mi"}  # ceil(505Mi x 1.25)
    assert "observed peak 505Mi x1.25 headroom" in plan.changes[0].reason
    assert "peaks at 505Mi (99% of the limit 512Mi)" in plan.changes[0].reason
    curve = plan.curve
    assert curve is not None and curve.threshold == 512 and curve.proposed == 632 and curve.unit == "MiB"
    assert curve.stats["max"] == pytest.approx(505) and curve.promql == s.PROMQL[m.MEMORY]
    assert curve.verdict.startswith("undersized") and plan.sizing_note == ""


def test_undersized_within_the_policys_caps() -> None:
    capped = DEFAULT.model_copy(update={"memory": DEFAULT.memory.model_copy(update={"max": "600Mi"})})
    plan = planned(ev_of("oom-deployment"), s.metrics(*spiky()), ("oom-deployment", CHECKOUT), policy=capped)
    assert changed(plan) == {LIMIT: "600Mi"} and plan.summary.endswith("(capped by policy)")


def test_a_leak_is_escalated_with_its_growth_and_time_to_the_limit_never_raised() -> None:
    err = refused(ev_of("oom-deployment"), s.metrics(*leaking()), ("oom-deployment", CHECKOUT))
    assert err.code == "memory_leak"
    assert err.message.startswith("escalated: leak: the working set grows steadily between restarts, +40Mi/h")
    assert "to the limit 512Mi in about 7 h 4" in err.message
    assert "a higher limit would only delay the next kill" in err.message


def test_a_regression_after_a_release_rolls_the_image_back() -> None:
    ev = evidence("oom-deployment", mutate=rolled_out_45_minutes_ago)
    diagnosis = diagnosed(ev, s.metrics(*released()))
    assert isinstance(diagnosis.finding.facts, OomFacts)
    earlier = diagnosis.finding.facts.earlier
    assert earlier is not None and (earlier.image, earlier.pod_template_hash) == ("ghcr.io/acme/checkout:1.4.1",
                                                                                   "5b6c8d9f47")
    plan = planned(ev, s.metrics(*released()), ("oom-deployment", CHECKOUT))
    assert changed(plan) == {IMAGE: "ghcr.io/acme/checkout:1.4.1"}
    assert plan.summary == ("Roll back image of container checkout to ghcr.io/acme/checkout:1.4.1 (memory regression "
                            "in ghcr.io/acme/checkout:1.4.2)")
    reason = plan.changes[0].reason
    assert reason.startswith("memory regression in ghcr.io/acme/checkout:1.4.2: back to ghcr.io/acme/checkout:1.4.1 "
                             "of revision 1 (replicaset checkout-5b6c8d9f47), which ran 25 d 1 h until the release "
                             "replaced it; a higher limit would hide the regression")
    assert reason.endswith("reached 461Mi (90% of the limit 512Mi) within 5 min of its rollout")
    assert plan.curve is not None and plan.curve.verdict.startswith("regression")


def test_a_regression_whose_previous_revision_is_not_proven_names_the_release() -> None:
    ev = evidence("oom-deployment", mutate=failing_before_the_rollout)
    err = refused(ev, s.metrics(*released()), ("oom-deployment", CHECKOUT))
    assert err.code == "memory_regression"
    assert "it was failing already" in err.message
    assert "revert the release of revision 7d9f8b6c5 (ghcr.io/acme/checkout:1.4.2, after revision 5b6c8d9f47 with " \
           "ghcr.io/acme/checkout:1.4.1) by hand" in err.message


def test_a_kill_between_two_samples_keeps_the_step_and_says_so() -> None:
    flat = [s.container(pod, "checkout", image="ghcr.io/acme/checkout:1.4.2", memory=s.flat(230 * MiB, 10 * MiB),
                        start=-2 * DAY) for pod in ("checkout-7d9f8b6c5-abcde", "checkout-7d9f8b6c5-fghij")]
    plan = planned(ev_of("oom-deployment"), s.metrics(*flat), ("oom-deployment", CHECKOUT))
    assert changed(plan) == {LIMIT: "768Mi"}
    assert "shorter than the scrape interval" in plan.changes[0].reason
    assert plan.curve is not None and plan.curve.proposed == 768


def test_without_metrics_the_oom_plan_is_todays() -> None:
    ev = ev_of("oom-deployment")
    plain = planned(ev, None, ("oom-deployment", CHECKOUT))
    assert changed(plain) == {LIMIT: "768Mi"} and plain.curve is None and plain.sizing_note == ""
    assert plain.changes[0].reason == "x1.5 of the observed limit 512Mi"
    down = planned(ev, DOWN, ("oom-deployment", CHECKOUT))
    assert down.changes == plain.changes and down.curve is None
    assert down.sizing_note == "sized without metrics: prometheus: connection refused"
    # diagnosis.json as before unless the series were read (then where a rollback would go: 1.4.1 ran before)
    assert "earlier" not in diagnosed(ev, DOWN).finding.facts.model_dump()
    facts = diagnosed(ev, s.metrics(*spiky())).finding.facts
    assert isinstance(facts, OomFacts) and facts.earlier is not None and facts.earlier.replicaset == "checkout-5b6c8d9f47"


# ---------------------------------------------------------------- CPU throttling


def search_api(cpu: float, throttled: float) -> Metrics:
    return s.metrics(*[s.container(f"search-api-9c6d5b8f7-{x}", "search-api", image="ghcr.io/acme/search-api:5.0.3",
                                   cpu=s.flat(cpu, 0.05), throttled=s.flat(throttled, 0.05), start=-3 * DAY - HOUR,
                                   limits={"cpu": 0.5, "memory": 512 * MiB}) for x in ("b7lzg", "v4qpc")])


CPU = "spec.template.spec.containers[name=search-api].resources.limits.cpu"
SEARCH = ("cpu-throttling", "apps/search-api/deployment.yaml")


def test_cpu_limit_from_the_p95_of_usage_and_the_throttled_share() -> None:
    plan = planned(ev_of("cpu-throttling"), search_api(0.45, 0.6), SEARCH)
    assert changed(plan) == {CPU: "990m"}  # p95 0.5 cores x (1 + 65% throttled) x 1.2, up to 10m
    assert plan.changes[0].reason.startswith("p95 of usage 0.5 cores over the window x (1 + 65% of periods "
                                             "throttled, p95) = 0.825 cores of demand, x1.2 headroom")
    assert plan.curve is not None and plan.curve.threshold == 0.5 and plan.curve.proposed == 0.99


def test_cpu_bursts_the_scrape_cannot_see_keep_the_step() -> None:
    plan = planned(ev_of("cpu-throttling"), search_api(0.2, 0.6), SEARCH)
    assert changed(plan) == {CPU: "750m"}
    assert "bursts shorter than the scrape interval" in plan.changes[0].reason


def test_cpu_sized_within_the_caps_and_without_metrics_as_today() -> None:
    capped = DEFAULT.model_copy(update={"cpu": DEFAULT.cpu.model_copy(update={"max": "800m"})})
    plan = planned(ev_of("cpu-throttling"), search_api(0.45, 0.6), SEARCH, policy=capped)
    assert changed(plan) == {CPU: "800m"} and "(capped by policy)" in plan.summary
    plain = planned(ev_of("cpu-throttling"), None, SEARCH)
    assert changed(plain) == {CPU: "750m"} and plain.curve is None and plain.sizing_note == ""


# ---------------------------------------------------------------- unschedulable


REQUEST = "spec.template.spec.containers[name=report-builder].resources.requests.memory"
REPORT = ("unschedulable", "apps/report-builder/deployment.yaml")


def report_builder(peak: float) -> Metrics:
    """The report builder's earlier ReplicaSet ran 5 days (24Gi requested then too, on bigger nodes since
    replaced): a plateau at 6Gi with a nightly report peaking at ``peak``."""
    earlier = [s.container(f"report-builder-7f8d9c5b6-{x}", "report-builder",
                           image="ghcr.io/acme/report-builder:2.2.1",
                           memory=s.plateau(6 * GiB, peak=peak, every=DAY, width=2 * HOUR), start=-7 * DAY,
                           end=-2 * DAY, requests={"memory": 24 * GiB, "cpu": 2.0}) for x in ("q4mzt",)]
    return s.metrics(*earlier, window=7 * DAY)


def test_a_request_is_lowered_toward_the_earlier_pods_peak_with_headroom() -> None:
    plan = planned(ev_of("unschedulable"), report_builder(9420 * MiB), REPORT)
    assert changed(plan) == {REQUEST: "11775Mi"}  # 9420Mi x 1.25 (today: 90% of the node, 14318Mi)
    reason = plan.changes[0].reason
    assert reason.startswith("peak memory usage 9420Mi of 1 earlier pod(s) (revision(s) 7f8d9c5b6) over the window "
                             "x1.25 headroom (policy requests.headroom), never below that peak")
    assert plan.curve is not None and plan.curve.proposed == 11775 and plan.curve.threshold == 24576


def test_a_peak_that_leaves_no_headroom_on_the_node_gets_what_fits() -> None:
    plan = planned(ev_of("unschedulable"), report_builder(13 * GiB), REPORT)
    assert changed(plan) == {REQUEST: "14318Mi"}
    assert "limited to 90% of node k8s-worker-01's allocatable memory" in plan.changes[0].reason


def test_never_below_the_peak_a_bigger_peak_needs_bigger_nodes() -> None:
    err = refused(ev_of("unschedulable"), report_builder(15 * GiB), REPORT)
    assert err.code == "cut_too_deep" and "needs bigger nodes" in err.message
    assert err.message.startswith("peak memory usage 15Gi of 1 earlier pod(s)")


def test_without_usage_the_request_rule_is_todays_and_says_so() -> None:
    other = s.metrics(s.container("report-exporter-5c6d7f8b9-zq2wx", "report-exporter", image="x:1",
                                  memory=s.flat(GiB), start=-DAY), window=7 * DAY)
    plan = planned(ev_of("unschedulable"), other, REPORT)
    assert changed(plan) == {REQUEST: "14318Mi"} and plan.curve is None
    assert plan.sizing_note == ("sized without metrics: Prometheus has no memory_working_set_bytes series of "
                                "container report-builder in the window")


# ---------------------------------------------------------------- HPA at its ceiling


def frontend(used: float) -> Metrics:
    """Ten frontend pods (200m requested each) at ``used`` cores; the HPA targets 70% of request."""
    return s.metrics(*[s.container(f"frontend-84f7c9d6b-{x}", "frontend", image="ghcr.io/acme/frontend:7.12.0",
                                   cpu=s.flat(used), start=-3 * DAY, requests={"cpu": 0.2, "memory": 256 * MiB})
                       for x in ("2g9q5", "bqvq4", "bxjwh", "jpnbq", "f5mkg", "zsvqz", "svhrh", "4bv2t", "dwtpk",
                                 "qrvrm")])


FRONTEND = ("hpa-maxed-out", "apps/frontend/hpa.yaml")


@pytest.mark.parametrize(("used", "expected", "words"), [
    (0.17, 13, "the HPA would have wanted up to 13 replicas: CPU utilization up to 85% of request"),
    (0.24, 14, "the HPA would have wanted up to 18 replicas: CPU utilization up to 120% of request (p95 120%) "
               "against the target 70%, limited by the ResourceQuota room"),
    (0.12, 14, "x1.5 of 10: the observed CPU utilization up to 60% of request (p95 60%) against the target 70% "
               "would want no more than 9"),
], ids=["from-utilization", "quota-limits", "window-misses-the-load"])
def test_hpa_ceiling_from_the_observed_utilization(used: float, expected: int, words: str) -> None:
    plan = planned(ev_of("hpa-maxed-out"), frontend(used), FRONTEND)
    assert changed(plan) == {"spec.maxReplicas": expected}
    assert words in plan.changes[0].reason
    assert plan.curve is not None and plan.curve.threshold == 10 and plan.curve.proposed == expected


def test_hpa_without_metrics_is_todays() -> None:
    plan = planned(ev_of("hpa-maxed-out"), None, FRONTEND)
    assert changed(plan) == {"spec.maxReplicas": 14} and plan.curve is None
    assert planned(ev_of("hpa-maxed-out"), DOWN, FRONTEND).sizing_note.startswith("sized without metrics")


# ---------------------------------------------------------------- risk


def test_change_magnitude_reads_the_observed_use() -> None:
    """A request cut from 24Gi to 1.25x the observed peak is a smaller step than the cut alone says; a raise far
    above what was used a larger one."""
    ev = ev_of("unschedulable")
    with_use = planned(ev, report_builder(9420 * MiB), REPORT)
    alone = with_use.model_copy(update={"curve": None})
    workload = git(*REPORT)

    def magnitude(plan: Plan) -> risk.RiskFactor:
        assessed = risk.assess(workload=workload, namespace="analytics", plan=plan, policy=DEFAULT)
        return next(f for f in assessed.factors if f.name == "change_magnitude")

    seen, blind = magnitude(with_use), magnitude(alone)
    assert seen.value < blind.value
    assert blind.explanation == "largest change x0.48 of the value in git"
    assert seen.explanation == "largest change x0.48 of the value in git; x1.25 of the observed peak 9420 MiB"
    far = with_use.model_copy(update={"curve": with_use.curve.model_copy(update={"proposed": 9420.0 * 3})})
    assert magnitude(far).value > seen.value
    below = with_use.model_copy(update={"curve": with_use.curve.model_copy(update={"proposed": 9000.0})})
    assert "below what it was seen to use" in magnitude(below).explanation


def test_risk_of_a_plan_without_curve_is_unchanged() -> None:
    plan = planned(ev_of("oom-deployment"), None, ("oom-deployment", CHECKOUT))
    factor = next(f for f in risk.assess(workload=git("oom-deployment", CHECKOUT), namespace="shop", plan=plan,
                                         policy=DEFAULT).factors if f.name == "change_magnitude")
    assert factor.explanation == "largest change x1.50 of the value in git"
    assert factor.value == pytest.approx(0.1 + 0.5849625 / 2, abs=1e-4)


def test_windows_are_anchored_at_the_alert() -> None:
    """The shapes end at the alert's startsAt, as the reader's window does (never the wall clock)."""
    metrics = s.metrics(*spiky())
    assert metrics.end == s.ALERT_AT and max(t for x in metrics.series for t, _ in x.points) <= s.ALERT_AT
    assert min(t for x in metrics.series for t, _ in x.points) >= s.ALERT_AT - 3 * DAY - HOUR - MINUTE
