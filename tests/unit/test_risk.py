"""Risk: properties of the score (hypothesis), and each factor reading the evidence the way a reviewer would.

No magic numbers: the score is bounded, monotone in every factor, and a near-zero factor cannot hide a large
one (the clip keeps every factor's voice); each factor moves the right way when its evidence does.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import policies, risk
from app.models.changes import FieldChange, Plan, RiskFactor
from app.settings import DEFAULT_POLICY_DIR

NAMES = list(risk.DEFAULT_WEIGHTS)
values = st.floats(min_value=0.0, max_value=1.5, allow_nan=False)
weights = st.floats(min_value=0.05, max_value=5.0, allow_nan=False)
POLICY = policies.load(DEFAULT_POLICY_DIR)


def _factors(vals: list[float], ws: list[float]) -> list[RiskFactor]:
    return [RiskFactor(name=n, value=v, weight=w, explanation="") for n, v, w in zip(NAMES, vals, ws, strict=True)]


@given(st.lists(values, min_size=5, max_size=5), st.lists(weights, min_size=5, max_size=5))
def test_score_is_bounded_by_the_clip(vals: list[float], ws: list[float]) -> None:
    assert risk.FLOOR <= risk.score(_factors(vals, ws)) <= risk.CEIL + 1e-9


@given(st.lists(values, min_size=5, max_size=5), st.lists(weights, min_size=5, max_size=5),
       st.integers(0, 4), st.floats(0.0, 1.0))
def test_score_is_monotone_in_each_factor(vals: list[float], ws: list[float], i: int, bump: float) -> None:
    higher = list(vals)
    higher[i] = vals[i] + bump
    assert risk.score(_factors(higher, ws)) >= risk.score(_factors(vals, ws)) - 1e-12


@given(st.lists(values, min_size=5, max_size=5), st.integers(0, 4), st.integers(0, 4), st.floats(0.0, 0.01))
def test_a_near_zero_factor_cannot_hide_a_large_one(vals: list[float], big: int, tiny: int, near_zero: float) -> None:
    """With the clip, a zero is 0.01, not -inf in log space: a large factor lifts the score by the same ratio
    whatever the others are, so a near-zero factor elsewhere never cancels it."""
    if big == tiny:
        return
    ones = [1.0] * 5
    with_tiny = list(vals)
    with_tiny[tiny] = near_zero
    lift_with_tiny = _lift(with_tiny, big, ones)
    assert lift_with_tiny == _lift(vals, big, ones) or abs(lift_with_tiny - _lift(vals, big, ones)) < 1e-9
    assert lift_with_tiny > 1.5  # from 0.1 to 1.0 on one of five equal weights: x10^(1/5)
    assert risk.score(_factors(with_tiny, ones)) >= risk.FLOOR


def _lift(vals: list[float], i: int, ws: list[float]) -> float:
    calm, alarming = list(vals), list(vals)
    calm[i], alarming[i] = 0.1, 1.0
    return risk.score(_factors(alarming, ws)) / risk.score(_factors(calm, ws))


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_level_is_monotone_in_the_score(a: float, b: float) -> None:
    order = ["low", "medium", "high"]
    low, high = sorted((a, b))
    assert order.index(risk.level(low, POLICY)) <= order.index(risk.level(high, POLICY))


# ---------------------------------------------------------------- factors from evidence

LIMIT = "spec.template.spec.containers[name=checkout].resources.limits.memory"
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "checkout", "namespace": "shop"},
    "spec": {"replicas": 3, "template": {"metadata": {"labels": {"app.kubernetes.io/name": "checkout"}},
                                         "spec": {"containers": [{"name": "checkout"}]}}}}
SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "checkout", "namespace": "shop"},
           "spec": {"selector": {"app.kubernetes.io/name": "checkout"}, "ports": [{"port": 80}]}}
PDB = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "checkout"},
       "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app.kubernetes.io/name": "checkout"}}}}


def _plan(old: str = "512Mi", new: str = "768Mi") -> Plan:
    return Plan(cause="oom_killed", summary="raise", changes=[FieldChange(path=LIMIT, old=old, new=new)])


def _factor(name: str, **kwargs: Any) -> float:
    args: dict[str, Any] = {"workload": DEPLOYMENT, "namespace": "shop", "plan": _plan(), "policy": POLICY,
                            **kwargs}
    assessed = risk.assess(**args)
    return next(f.value for f in assessed.factors if f.name == name)


def _with_replicas(n: int) -> dict[str, Any]:
    doc = copy.deepcopy(DEPLOYMENT)
    doc["spec"]["replicas"] = n
    return doc


@given(st.integers(1, 60), st.integers(0, 40))
def test_blast_radius_grows_with_replicas(n: int, more: int) -> None:
    assert _factor("blast_radius", workload=_with_replicas(n + more)) >= _factor("blast_radius", workload=_with_replicas(n))


def test_blast_radius_counts_hpa_services_and_pdbs() -> None:
    hpa = {"kind": "HorizontalPodAutoscaler", "metadata": {"name": "checkout"}, "spec": {"maxReplicas": 12}}
    alone = _factor("blast_radius")
    scaled = _factor("blast_radius", related=[hpa])
    serving = _factor("blast_radius", related=[hpa, SERVICE])
    guarded = _factor("blast_radius", related=[hpa, SERVICE, PDB])
    assert alone < scaled < serving < guarded
    why = risk.assess(workload=DEPLOYMENT, namespace="shop", plan=_plan(), policy=POLICY,
                      related=[hpa, SERVICE, PDB]).factors[0].explanation
    assert "up to 12 with its HPA" in why and "Service(s) checkout" in why and "PodDisruptionBudget" in why


def test_namespace_scope_follows_environment_labels() -> None:
    def scope(labels: dict[str, str]) -> float:
        return _factor("namespace_scope", namespace="shop", namespace_labels=labels)

    assert scope({"environment": "dev"}) < scope({}) < scope({"env": "staging"}) < scope({"environment": "prod"})
    assert _factor("namespace_scope", namespace="prod-shop") == scope({"environment": "production"})


@given(st.integers(257, 4096), st.integers(0, 4096))
def test_change_magnitude_grows_with_the_ratio(new_mi: int, more: int) -> None:
    small = _factor("change_magnitude", plan=_plan("256Mi", f"{new_mi}Mi"))
    large = _factor("change_magnitude", plan=_plan("256Mi", f"{new_mi + more}Mi"))
    assert small <= large


def test_statefulset_is_riskier_to_roll_back_than_a_deployment() -> None:
    sts = {**copy.deepcopy(DEPLOYMENT), "kind": "StatefulSet"}
    assert _factor("rollback_complexity", workload=sts) > _factor("rollback_complexity")
    assert _factor("resource_sensitivity", workload=sts) > _factor("resource_sensitivity")


def test_every_factor_is_explained_in_one_line() -> None:
    assessed = risk.assess(workload=DEPLOYMENT, namespace="shop", plan=_plan(), policy=POLICY, related=[SERVICE])
    assert [f.name for f in assessed.factors] == NAMES
    assert all(f.explanation and "\n" not in f.explanation for f in assessed.factors)
    assert 0 < assessed.score <= 1 and assessed.level in ("low", "medium", "high")


# ---------------------------------------------------------------- the namespace factor: which signal decides

ARGO_PROD = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "checkout",
             "namespace": "argocd"}, "spec": {"project": "production", "source": {"path": "apps/checkout"}}}
ARGO_SHOP = {**ARGO_PROD, "spec": {"project": "shop", "source": {"path": "apps/checkout"}}}
FLUX = {"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
        "metadata": {"name": "apps", "namespace": "flux-system"}, "spec": {"interval": "10m"}}


def _flux(path: str) -> dict[str, Any]:
    return {**FLUX, "spec": {**FLUX["spec"], "path": path}}


def _scope(**kwargs: Any) -> tuple[float, str]:
    args: dict[str, Any] = {"workload": _with_replicas(1), "namespace": "shop", "plan": _plan(), "policy": POLICY,
                            **kwargs}
    factor = next(f for f in risk.assess(**args).factors if f.name == "namespace_scope")
    return factor.value, factor.explanation


@pytest.mark.parametrize(("kwargs", "value", "why"), [
    ({"namespace_labels": {"environment": "production"}}, 0.9, "namespace label environment=production"),
    ({"namespace_labels": {"tier": "frontend", "app.kubernetes.io/part-of": "prod-eu"}}, 0.9,
     "namespace label app.kubernetes.io/part-of=prod-eu"),  # "frontend" names no environment: the next key decides
    ({"namespace_annotations": {"env": "staging"}}, 0.5, "namespace annotation env=staging"),
    ({"gitops": [ARGO_PROD]}, 0.9, "Argo CD Application checkout in project production"),
    ({"gitops": [_flux("./apps/production")]}, 0.9, "Flux Kustomization apps path ./apps/production"),
    ({"gitops": [_flux("clusters/prod-eu/apps")]}, 0.9, "Flux Kustomization apps path clusters/prod-eu/apps"),
    ({"gitops": [_flux("./clusters/dev")]}, 0.15, "Flux Kustomization apps path ./clusters/dev"),
    ({"namespace": "shop-prod"}, 0.9, "namespace name shop-prod matches production_namespaces"),
    ({"namespace_labels": {"env": "dev"}, "gitops": [ARGO_PROD]}, 0.15, "namespace label env=dev"),  # labels first
    ({"workload": _with_replicas(3), "related": [SERVICE], "gitops": [ARGO_SHOP]}, risk.SERVING,
     "3 replicas serve traffic through Service(s) checkout"),
    ({"workload": _with_replicas(3)}, risk.UNKNOWN, "serves no traffic"),
    ({"related": [SERVICE]}, risk.UNKNOWN, "serves no traffic"),  # one replica behind a Service
], ids=["label", "later-key", "annotation", "argocd-project", "flux-path", "flux-path-glob", "flux-dev-path",
        "name", "label-before-project", "serving-replicas", "replicas-no-service", "service-one-replica"])
def test_namespace_factor_names_the_signal_that_decided(kwargs: dict[str, Any], value: float, why: str) -> None:
    got, explanation = _scope(**kwargs)
    assert got == value and why in explanation, explanation


def test_a_three_replica_traffic_serving_checkout_is_not_low_risk() -> None:
    """The demo: Argo CD project "shop", no Namespace labels, 3 replicas behind the checkout Service."""
    assessed = risk.assess(workload=_with_replicas(3), namespace="shop", plan=_plan(), policy=POLICY,
                           related=[SERVICE], gitops=[ARGO_SHOP])
    assert assessed.level != "low", assessed


def test_the_policy_sets_the_environment_patterns() -> None:
    custom = POLICY.model_copy(update={"risk": POLICY.risk.model_copy(update={
        "environments": POLICY.risk.environments.model_copy(update={"production": ["live-*"]})})})
    assert _scope(gitops=[ARGO_PROD], policy=custom)[0] == risk.UNKNOWN
    assert _scope(namespace_labels={"env": "live-eu"}, policy=custom) == (0.9, "production: namespace label "
                                                                                 "env=live-eu")
