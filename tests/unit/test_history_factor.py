"""The history factor and the track record: the ledger's earlier fixes of a cause, tallied and weighed.

A cold decision (nothing decided yet) is shown and weighs nothing; each fix closed unmerged, reverted or
ineffective raises the factor, each merged one that stayed lowers it; this workload's own record counts twice.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from app import policies, render, risk
from app.models.changes import FieldChange, Plan
from app.ports import Remediation
from app.settings import DEFAULT_POLICY_DIR

POLICY = policies.load(DEFAULT_POLICY_DIR)
LIMIT = "spec.template.spec.containers[name=checkout].resources.limits.memory"
HERE = "Deployment/shop/checkout"
DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "checkout", "namespace": "shop"},
    "spec": {"replicas": 3, "template": {"spec": {"containers": [{"name": "checkout"}]}}}}
PLAN = Plan(cause="oom_killed", summary="raise", changes=[FieldChange(path=LIMIT, old="512Mi", new="768Mi")])


def _fix(number: int, *, state: str = "merged", final: str | None = None, workload: str = "Deployment/shop/cart",
         cause: str = "oom_killed") -> Remediation:
    name = workload.rsplit("/", 1)[-1]
    return Remediation(workload=workload, cause=cause, branch=f"autofix/shop/{name}/oom-killed", pr_number=number,
                       pr_url=f"https://github.com/acme/gitops/pull/{number}", state=state, opened_at=1000.0 + number,
                       merged_at=2000.0 + number if state == "merged" else None, final=final)


def _history(entries: list[Remediation], policy: policies.Policy = POLICY) -> tuple[float, float, str, float]:
    track = risk.track_record(entries, cause="oom_killed", workload=HERE)
    assessed = risk.assess(workload=DEPLOYMENT, namespace="shop", plan=PLAN, policy=policy, track=track)
    factor = next(f for f in assessed.factors if f.name == "history")
    return factor.value, factor.weight, factor.explanation, assessed.score


def test_the_record_counts_the_cause_and_this_workload_apart() -> None:
    entries = [_fix(1, final="effective"), _fix(2, state="closed"), _fix(3, final="reverted"), _fix(4, state="open"),
               _fix(5, workload=HERE, final="effective"), _fix(6, cause="image_pull_after_rollout")]
    track = risk.track_record(entries, cause="oom_killed", workload=HERE)
    overall, here = track.overall, track.workload
    assert (overall.opened, overall.merged, overall.closed, overall.effective, overall.reverted) == (5, 3, 1, 2, 1)
    assert (here.opened, here.merged, here.effective) == (1, 1, 1) and not track.cold
    assert render.track_line(track) == (
        "Track record: 5 earlier `oom_killed` fix(es): 3 merged, 1 closed unmerged, 2 effective, 1 reverted "
        "(this workload: 1 earlier, 1 merged, 1 effective, 0 reverted).")


def test_no_decided_fix_is_a_cold_decision_that_moves_nothing() -> None:
    without = risk.assess(workload=DEPLOYMENT, namespace="shop", plan=PLAN, policy=POLICY)
    value, weight, why, score = _history([_fix(1, state="open")])
    assert (value, weight) == (0.5, 0.0) and score == without.score
    assert why == "cold decision: no earlier oom_killed fix decided (1 still open); no weight"
    cold = risk.track_record([], cause="oom_killed", workload=HERE)
    assert cold.cold and render.track_line(cold) == "Cold decision: no earlier `oom_killed` fix decided yet."
    assert all(f.name != "history" for f in without.factors), "no record consulted: no factor"


def test_bad_outcomes_raise_the_factor_and_the_score() -> None:
    good = _history([_fix(1, final="effective"), _fix(2)])
    bad = _history([_fix(1, final="reverted"), _fix(2, state="closed")])
    assert good[0] == 0.25 and bad[0] == 0.75 and good[1] == bad[1] == 1.0
    assert good[3] < bad[3]
    assert bad[2] == "2 of 2 decided oom_killed fix(es) closed, reverted or ineffective"


def test_this_workloads_own_record_counts_twice() -> None:
    elsewhere = _history([_fix(1, final="ineffective"), _fix(2), _fix(3)])[0]
    here = _history([_fix(1, final="ineffective", workload=HERE), _fix(2), _fix(3)])[0]
    assert elsewhere == (1 + 1) / (3 + 2) and here == (2 + 1) / (4 + 2)


def test_the_policy_weighs_the_factor() -> None:
    heavy = POLICY.model_copy(update={"risk": POLICY.risk.model_copy(update={"weights": {
        **POLICY.risk.weights, "history": 3.0}})})
    entries = [_fix(1, final="reverted"), _fix(2, state="closed")]
    assert _history(entries, heavy)[1] == 3.0 and _history(entries, heavy)[3] > _history(entries)[3]
    assert POLICY.risk.weights["history"] == 1.0, "policies/default.yaml weighs it"


@given(st.lists(st.sampled_from(["open", "closed", "merged", "effective", "ineffective", "reverted"]), max_size=30),
       st.sampled_from(["closed", "reverted", "ineffective"]))
def test_one_more_bad_fix_never_lowers_the_factor(states: list[str], worse: str) -> None:
    def fix(i: int, s: str) -> Remediation:
        return _fix(i, state=s if s in ("open", "closed", "merged") else "merged",
                    final=s if s not in ("open", "closed", "merged") else None)

    entries = [fix(i, s) for i, s in enumerate(states)]
    before = _history(entries)
    after = _history([*entries, fix(len(states), worse)])
    assert after[0] >= before[0] and 0 < after[0] < 1
