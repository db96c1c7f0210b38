"""Publish: the PR's texts from the change record (compose), then the branch, the PR and the ledger row on a
real bare repository and the local forge: opened, duplicate, updated, budget, a branch held by another."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from app import ledger as ledgers
from app.errors import PermanentError, TemporaryError
from app.models.changes import ChangeSet
from app.policies import Policy
from app.ports import PullRequest
from app.stages import change, publish
from tests.stages.world import DEMO, World, make_world

CODEOWNERS = Path(__file__).resolve().parents[1] / "fixtures" / "codeowners" / "gitops-CODEOWNERS"

BRANCH = "autofix/shop/checkout/oom-killed"
LIMIT = "spec.template.spec.containers[name=checkout].resources.limits.memory"


def _proposal(world: World, *, policy: Policy | None = None, bump: str | None = None) -> tuple[
        publish.Proposal, ChangeSet]:
    ev = world.evidence()
    diagnosis = world.diagnosis(ev)
    located = change.locate(evidence=ev, workspace=world.workspace, identity=world.pipeline().identity)
    planned = change.plan(located=located, evidence=ev, diagnosis=diagnosis, workspace=world.workspace,
                          policy=world.policy, layouts=world.layouts)
    if bump is not None:  # another value for the same field: the same PR, updated
        changes = [c.model_copy(update={"new": bump}) for c in planned.plan.changes]
        planned = change.Planned(document=planned.document, decision=planned.decision,
                                 plan=planned.plan.model_copy(update={"changes": changes}))
    edited = change.edit(located=located, planned=planned, evidence=ev, workspace=world.workspace,
                         layouts=world.layouts)
    changeset = change.assess(planned=planned, edited=edited, evidence=ev, policy=world.policy,
                              namespace_labels={}).changeset
    proposal = publish.compose(incident=world.incident(), evidence=ev, diagnosis=diagnosis, changeset=changeset,
                               explanation=None, model=None, policy=policy or world.policy,
                               run_url="https://mlflow.example/#/runs/1")
    return proposal, changeset


def _publish(world: World, proposal: publish.Proposal, changeset: ChangeSet, *,
             policy: Policy | None = None) -> publish.Published:
    ev = world.evidence()
    return publish.publish(proposal=proposal, workload=ev.workload, cause="oom_killed", changeset=changeset,
                           workspace=world.workspace, forge=world.forge, ledger=world.ledger,
                           policy=policy or world.policy, base="main", clock=world.now,
                           run_url="https://mlflow.example/#/runs/1")


def test_compose_renders_the_pr_from_the_change_record(world: World) -> None:
    proposal, changeset = _proposal(world)
    assert proposal.branch == BRANCH and proposal.labels == ("autofix", "risk:medium", "cause:oom-killed")
    assert proposal.title == "Raise memory limit of shop/checkout to 768Mi after OOMKilled"
    assert proposal.body.startswith("## Root cause") and changeset.files[0].diff.splitlines()[3] in proposal.body
    marker = ledgers.from_pr(PullRequest(number=1, url="", branch=BRANCH, body=proposal.body))
    assert marker is not None and (marker.workload, marker.after) == ("Deployment/shop/checkout", {LIMIT: "768Mi"})
    assert dict(proposal.files) == {"apps/checkout/deployment.yaml": changeset.files[0].new_text}
    assert proposal.message.startswith(proposal.title + "\n")


def test_the_cluster_is_in_the_ledger_row_and_its_marker_only_when_there_is_one(world: World) -> None:
    one, _ = _proposal(world)
    assert one.entry.cluster == "" and '"cluster"' not in one.body, "a one-cluster install's bodies stay as they were"
    ev = world.evidence()
    diagnosis = world.diagnosis(ev)
    _, changeset = _proposal(world)
    eu = publish.compose(incident=world.incident(), evidence=ev, diagnosis=diagnosis, changeset=changeset,
                         explanation=None, model=None, policy=world.policy, run_url="autofix-record:1",
                         cluster="prod-eu")
    assert eu.entry.cluster == "prod-eu" and eu.branch != one.branch
    rebuilt = ledgers.from_pr(PullRequest(number=2, url="", branch=eu.branch, body=eu.body))
    assert rebuilt is not None and (rebuilt.cluster, rebuilt.workload) == ("prod-eu", "Deployment/shop/checkout")


def test_a_new_change_opens_one_pr_pushes_one_branch_and_records_it(world: World) -> None:
    proposal, changeset = _proposal(world)
    out = _publish(world, proposal, changeset)
    assert (out.end.kind, out.end.reason, out.decision) == ("pr_opened", proposal.title, "PR #1 opened")
    assert (out.end.branch, out.end.risk) == (BRANCH, changeset.risk.score)
    [pr] = world.opened()
    assert (pr["branch"], pr["title"], pr["labels"]) == (BRANCH, proposal.title, ["autofix", "risk:medium", "cause:oom-killed"])
    assert world.remote_branches() == sorted(["main", BRANCH])
    [row] = world.ledger.entries(branch=BRANCH)
    assert (row.pr_number, row.state, row.after) == (1, "open", {LIMIT: "768Mi"})


def test_the_same_change_again_is_a_duplicate_and_another_value_updates_the_pr(world: World) -> None:
    proposal, changeset = _proposal(world)
    _publish(world, proposal, changeset)
    again = _publish(world, proposal, changeset)
    assert (again.end.kind, again.end.reason) == ("duplicate", "PR #1 already proposes this change")
    bigger, bigger_changes = _proposal(world, bump="1Gi")
    updated = _publish(world, bigger, bigger_changes)
    assert (updated.end.kind, updated.end.reason) == ("pr_updated", "updated PR #1")
    [pr] = world.opened()
    assert len(pr["comments"]) == 1 and "1Gi" in world.pr_body(1)


def test_reviewers_are_asked_as_the_owners_policy_says(world: World) -> None:
    owners = Policy.model_validate({**world.policy.model_dump(), "owners": [
        {"namespaces": ["shop"], "labels": ["team-shop"], "reviewers": ["alice"], "teams": ["shop-sre"]}]})
    proposal, changeset = _proposal(world, policy=owners)
    assert proposal.labels == ("autofix", "team-shop", "risk:medium", "cause:oom-killed")
    _publish(world, proposal, changeset, policy=owners)
    [pr] = world.opened()
    assert (pr["reviewers"], pr["teams"]) == (["alice"], ["shop-sre"])


def test_no_budget_left_pushes_nothing_and_asks_for_a_retry(world: World) -> None:
    none_left = world.policy.model_copy(update={"limits": world.policy.limits.model_copy(update={"prs_per_hour": 0})})
    proposal, changeset = _proposal(world)
    with pytest.raises(TemporaryError, match=r"PR budget exhausted \(0 new PRs per hour\)") as caught:
        _publish(world, proposal, changeset, policy=none_left)
    assert caught.value.code == "pr_budget" and caught.value.delay > 0
    assert world.opened() == [] and world.remote_branches() == ["main"]


def test_a_branch_held_by_another_workloads_pr_is_refused(world: World) -> None:
    proposal, changeset = _proposal(world)
    theirs = proposal.body.replace("Deployment/shop/checkout", "StatefulSet/shop/checkout")
    world.forge.open_pr(branch=BRANCH, base="main", title="theirs", body=theirs, labels=["autofix"])
    with pytest.raises(PermanentError, match="holds the open PR #1 of another workload") as caught:
        _publish(world, proposal, changeset)
    assert caught.value.code == "branch_taken" and world.remote_branches() == ["main"]


def _with_codeowners(tmp_path: Path, where: str) -> World:
    """The demo with the fixture CODEOWNERS committed at ``where`` of its GitOps repo."""
    scenario = tmp_path / "scenario"
    shutil.copytree(DEMO, scenario)
    target = scenario / "repo" / where
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(CODEOWNERS, target)
    return make_world(tmp_path / "world", scenario)


@pytest.mark.parametrize("where", [".github/CODEOWNERS", "CODEOWNERS", "docs/CODEOWNERS"])
def test_reviewers_come_from_codeowners_then_the_policy(tmp_path: Path, where: str) -> None:
    world = _with_codeowners(tmp_path, where)
    try:
        owners = Policy.model_validate({**world.policy.model_dump(), "owners": [
            {"namespaces": ["shop"], "reviewers": ["alice", "carol"], "teams": ["shop-sre"]}]})
        proposal, changeset = _proposal(world, policy=owners)
        out = _publish(world, proposal, changeset, policy=owners)
        assert out.end.kind == "pr_opened"
        [pr] = world.opened()
        # apps/checkout/ is owned by @acme/shop-team and @carol (fixture), then the policy's, once each
        assert (pr["reviewers"], pr["teams"]) == (["carol", "alice"], ["shop-team", "shop-sre"])
    finally:
        world.ledger.close()


def test_the_body_says_what_happens_next_and_shows_the_last_log_lines(world: World) -> None:
    proposal, _ = _proposal(world)
    body = proposal.body
    assert "- **Merge:** Argo CD Application `checkout` in namespace `argocd` syncs it automatically" in body
    assert "for 72 h after the close: closed now, not before `" in body
    assert "<details><summary>Last 19 log lines before the failure (checkout-7d9f8b6c5-fghij/checkout, previous " \
           "container)</summary>" in body
    assert "(for " in body and " when this was decided), severity `warning`." in body


def test_delivery_reads_argocd_and_flux_objects() -> None:
    app = {"kind": "Application", "metadata": {"name": "checkout", "namespace": "argocd"},
           "spec": {"syncPolicy": {"automated": {"prune": True, "enabled": False}}}}
    ks = {"kind": "Kustomization", "metadata": {"name": "apps", "namespace": "flux-system"},
          "spec": {"interval": "10m", "path": "./apps/production"}}
    manual = publish.delivery([app], app="checkout")
    assert manual is not None and (manual.tool, manual.automated) == ("Argo CD", False)
    flux = publish.delivery([app, ks], app="apps")
    assert flux is not None and (flux.tool, flux.kind, flux.interval, flux.automated) == ("Flux", "Kustomization",
                                                                                          "10m", True)
    assert publish.delivery([], app=None) is None


class RecordingLedger:
    """The world's ledger, recording what each publication asks the replicas after it to wait (asked at release)."""

    def __init__(self, inner: object) -> None:
        self.inner, self.waits = inner, []

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    @contextmanager
    def publishing(self, *, spacing: float | Callable[[], float] = 0.0) -> Iterator[None]:
        with self.inner.publishing():  # type: ignore[attr-defined]
            yield
        self.waits.append(spacing() if callable(spacing) else spacing)


def test_only_a_publication_that_wrote_makes_the_next_replica_wait_the_forges_spacing(world: World) -> None:
    world.forge.write_spacing = 1.0  # type: ignore[attr-defined]  # as GitHub's forge (1 s between writes)
    ledger = RecordingLedger(world.ledger)
    proposal, changeset = _proposal(world)
    bigger, bigger_changes = _proposal(world, bump="1Gi")
    kinds = []
    for p, c in ((proposal, changeset), (proposal, changeset), (bigger, bigger_changes)):
        ev = world.evidence()
        kinds.append(publish.publish(proposal=p, workload=ev.workload, cause="oom_killed", changeset=c,
                                     workspace=world.workspace, forge=world.forge, ledger=ledger,  # type: ignore[arg-type]
                                     policy=world.policy, base="main", clock=world.now,
                                     run_url="https://mlflow.example/#/runs/1").end.kind)
    assert kinds == ["pr_opened", "duplicate", "pr_updated"]
    assert ledger.waits == [1.0, 0.0, 1.0]  # a duplicate wrote nothing: nobody waits after it
