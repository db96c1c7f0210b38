"""The pure half of app/outcomes.py: the final outcome from a ledger row, the status that says a commit synced,
the live value that says it rolled out, the MLflow amendment."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from app import outcomes
from app.adapters.snapshot import SnapshotCluster
from app.policies import OutcomesPolicy
from app.ports import PullRequest, Remediation

HOUR = 3600.0
T0 = 1_795_000_000.0
SHA = "4f1c9a0d2b7e8f60a1b2c3d4e5f60718293a4b5c"
LIMIT = "spec.template.spec.containers[name=checkout].resources.limits.memory"
WINDOWS = OutcomesPolicy()  # quiet 24 h, decision 168 h
ROW = Remediation(workload="Deployment/shop/checkout", cause="oom_killed", branch="autofix/shop/checkout/oom-killed",
                  pr_number=7, pr_url="https://github.example/acme/gitops/pull/7", state="open",
                  before={LIMIT: "512Mi"}, after={LIMIT: "768Mi"}, opened_at=T0, record_id="ab" * 16)


def merged(**changes: Any) -> Remediation:
    return replace(ROW, state="merged", merged_at=T0 + HOUR, **changes)


@pytest.mark.parametrize(("row", "now", "reverted", "final"), [
    pytest.param(ROW, T0 + 167 * HOUR, False, None, id="open-within-the-window"),
    pytest.param(ROW, T0 + 168 * HOUR, False, ("stale", T0 + 168 * HOUR), id="open-past-the-window"),
    pytest.param(replace(ROW, state="closed", closed_at=T0 + 5), T0 + 10, False, ("rejected", T0 + 5),
                 id="closed-unmerged"),
    pytest.param(merged(), T0 + 2 * HOUR, False, None, id="merged-not-rolled-out-yet"),
    pytest.param(merged(rolled_out_at=T0 + 2 * HOUR), T0 + 25 * HOUR, False, None, id="rolled-out-still-quiet"),
    pytest.param(merged(rolled_out_at=T0 + 2 * HOUR), T0 + 26 * HOUR, False, ("effective", T0 + 26 * HOUR),
                 id="rolled-out-and-quiet-for-the-window"),
    pytest.param(merged(rolled_out_at=T0 + 2 * HOUR, fired_again_at=T0 + 3 * HOUR), T0 + 4 * HOUR, False,
                 ("ineffective", T0 + 3 * HOUR), id="fired-again-after-the-merge"),
    pytest.param(merged(fired_again_at=T0 + 30), T0 + 2 * HOUR, False, None, id="fired-before-the-merge-only"),
    pytest.param(merged(rolled_out_at=T0 + 2 * HOUR, fired_again_at=T0 + 3 * HOUR), T0 + 4 * HOUR, True,
                 ("reverted", T0 + 4 * HOUR), id="reverted-whatever-the-alert-did"),
    pytest.param(merged(), T0 + 169 * HOUR, False, ("stale", T0 + 169 * HOUR), id="merged-never-rolled-out"),
    pytest.param(merged(final="effective", final_at=T0 + 9), T0 + 500 * HOUR, True, ("effective", T0 + 9),
                 id="decided-stays-decided"),
])
def test_decide(row: Remediation, now: float, reverted: bool, final: tuple[str, float] | None) -> None:
    assert outcomes.decide(row, now=now, windows=WINDOWS, reverted=reverted) == final


def test_advance_takes_the_forge_state_and_keeps_the_first_sightings() -> None:
    pr = PullRequest(number=7, url=ROW.pr_url, branch=ROW.branch, state="merged", merged_at="2026-11-20T10:00:00Z",
                     closed_at="2026-11-20T10:00:00Z", merge_commit=SHA, merged_by="alice")
    first = outcomes.advance(ROW, outcomes.Seen(pr=pr, synced_at=T0 + 50, rolled_out=True), now=T0 + 60,
                             windows=WINDOWS)
    assert (first.state, first.merged_by, first.synced_at, first.rolled_out_at, first.final) == (
        "merged", "alice", T0 + 50, T0 + 60, None)
    assert first.merged_at == 1_795_168_800.0
    again = outcomes.advance(first, outcomes.Seen(pr=pr, synced_at=T0 + 99, rolled_out=True), now=T0 + 70,
                             windows=WINDOWS)
    assert (again.synced_at, again.rolled_out_at) == (T0 + 50, T0 + 60), "first sightings are kept"


def test_the_amendment_carries_the_outcome_and_the_times() -> None:
    row = merged(merged_by="alice", synced_at=T0 + HOUR + 95, resolved_at=T0 + HOUR + 600,
                 rolled_out_at=T0 + HOUR + 100, final="effective", final_at=T0 + 30 * HOUR)
    run = outcomes.amend(row)
    assert run is not None and (run.key, run.amends) == (f"{row.record_id}.outcome", row.record_id)
    assert run.record.metrics == {"time_to_merge_s": HOUR, "time_to_sync_s": 95.0, "time_to_resolve_s": 600.0}
    assert run.record.tags["outcome.final"] == "effective" and run.record.tags["outcome.merged_by"] == "alice"
    assert run.record.params == {} and run.record.artifacts == {}
    assert outcomes.amend(replace(row, record_id="")) is None, "a row from before run keys: nothing to amend"
    assert outcomes.amend(replace(row, final=None)) is None


def _cluster(*objects: dict[str, Any]) -> SnapshotCluster:
    return SnapshotCluster(list(objects))


def test_argo_cd_sync_revision_without_history_is_synced_now() -> None:
    app = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "checkout",
           "namespace": "argocd"}, "status": {"sync": {"status": "Synced", "revision": SHA}, "history": []}}
    assert outcomes.synced(_cluster(app), SHA) is not None
    assert outcomes.synced(_cluster(app), "0" * 40) is None


def test_a_helm_release_built_from_the_commit_is_synced_when_its_history_says() -> None:
    release = {"apiVersion": "helm.toolkit.fluxcd.io/v2", "kind": "HelmRelease",
               "metadata": {"name": "checkout", "namespace": "shop"},
               "status": {"history": [{"chartName": "checkout", "chartVersion": f"1.4.0+{SHA[:12]}", "version": 9,
                                       "status": "deployed", "lastDeployed": "2026-11-23T16:05:00Z"}]}}
    assert outcomes.synced(_cluster(release), SHA) == 1_795_449_900.0
    assert outcomes.synced(_cluster(release), "f" * 40) is None


def test_flux_revision_formats() -> None:
    assert outcomes._same_commit(f"main@sha1:{SHA}", SHA)
    assert outcomes._same_commit(f"main/{SHA}", SHA)
    assert not outcomes._same_commit(f"main@sha1:{SHA}", SHA[:12])


def _deployment(memory: str, *, generation: int = 4, observed: int = 4) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "checkout", "namespace": "shop", "generation": generation},
            "spec": {"template": {"spec": {"containers": [{"name": "checkout", "resources": {
                "limits": {"memory": memory}}}]}}},
            "status": {"observedGeneration": observed}}


@pytest.mark.parametrize(("live", "rolled"), [
    pytest.param(_deployment("768Mi"), True, id="the-new-value"),
    pytest.param(_deployment("0.75Gi"), True, id="the-same-quantity-written-otherwise"),
    pytest.param(_deployment("512Mi"), False, id="still-the-old-value"),
    pytest.param(_deployment("768Mi", generation=5, observed=4), False, id="spec-not-observed-yet"),
])
def test_rolled_out(live: dict[str, Any], rolled: bool) -> None:
    assert outcomes.rolled_out(ROW, _cluster(live)) is rolled


def test_a_workload_gone_or_unknown_has_not_rolled_out() -> None:
    assert outcomes.rolled_out(ROW, _cluster()) is False
    assert outcomes.rolled_out(replace(ROW, workload="?/shop/checkout"), _cluster(_deployment("768Mi"))) is False
