"""Never loop, respect "no": the ledger's rules, end to end through `autofix handle` and unit by unit.

End to end (what `autofix handle` runs, in-process): the real kubernetes client against the loopback API, real git, PyGithub against the GitHub fake,
a real MLflow store. A human merges or closes the PR on the fake (``fake.merge(n)`` / ``fake.close(n)``) and
the alert fires again: the bot must comment or stay quiet, never open a second PR. The data dir is thrown
away between runs where the test says so: the ledger must come back from the forge.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app import gates, ledger, policies, settings
from app.adapters.store import JobStore
from app.demo import seed_bare_repo
from app.models.alertmanager import WebhookPayload
from app.models.changes import FieldChange, Plan
from app.models.incident import Incident
from app.ports import PullRequest, Remediation
from app.settings import DEFAULT_POLICY_DIR
from app.wiring import build_exporter, build_pipeline
from tests.conftest import EXAMPLES, ROOT, mlflow_run
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

pytestmark = pytest.mark.e2e  # real servers, binaries or whole pipeline runs: the slow part

TOKEN = "ghs_test_token_0123456789abcdefghij"
DEMO = EXAMPLES / "demo"
BRANCH = "autofix/shop/checkout/oom-killed"
LIMIT = "spec.template.spec.containers[name=checkout].resources.limits.memory"
HOUR = 3600.0


def _payload(tmp_path: Path, *, resolved: bool = False) -> Path:
    """The demo's first alert alone (one pod of shop/checkout), firing or resolved as Alertmanager sends it."""
    payload = json.loads((DEMO / "alert.json").read_text())
    alert = payload["alerts"][0]
    payload["alerts"] = [alert]
    if resolved:
        payload["status"] = alert["status"] = "resolved"
        alert["endsAt"] = "2026-11-23T16:02:44.74437033Z"
    path = tmp_path / ("resolved.json" if resolved else "firing.json")
    path.write_text(json.dumps(payload))
    return path


def handle_in_process(tmp_path: Path, gh: FakeGitHub, kube: KubeApiFake, mlflow_uri: str, *, payload: Path,
                      data: str = "data", policy_dir: Path = DEFAULT_POLICY_DIR, repo: Path = DEMO / "repo") -> dict[str, Any]:
    """What `autofix handle PAYLOAD` does, in this process (MLflow is imported once per session, not per run)."""
    bare = tmp_path / "gitops.git"
    if not bare.exists():
        seed_bare_repo(repo, bare)
    env = {"KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
           "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops", "GITHUB_TOKEN": TOKEN,
           "AUTOFIX_GITHUB_API_URL": gh.api_url, "AUTOFIX_DATA_DIR": str(tmp_path / data),
           "MLFLOW_TRACKING_URI": mlflow_uri, "AUTOFIX_MLFLOW_UI_URL": "https://mlflow.example",
           "AUTOFIX_POLICY_DIR": str(policy_dir)}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        loaded = settings.load()
    store = JobStore(loaded.store_path)
    pipeline = build_pipeline(loaded, store=store)
    (alert,) = WebhookPayload.model_validate_json(payload.read_bytes()).alerts
    handled = pipeline.handle(Incident.from_alert(alert))
    assert handled.run is not None
    store.add_run(handled.run)  # then exported, as `autofix handle` does once the alerts are decided
    build_exporter(loaded, store, forge=pipeline.forge).drain(seconds=60)
    store.close()
    outcome: dict[str, Any] = handled.model_dump(mode="json")
    return outcome  # the public result keys, plus the stages and workload the job store keeps


@pytest.fixture
def gh() -> Any:
    with FakeGitHub("acme/gitops", token=TOKEN) as server:
        yield server


@pytest.fixture
def kube() -> Any:
    with KubeApiFake.from_snapshot(DEMO / "cluster.json") as server:
        yield server


def _comments(gh: FakeGitHub, number: int) -> list[str]:
    return [str(c["body"]) for c in gh.comments[number]]


def test_merged_fix_that_did_not_help_escalates_on_the_merged_pr(tmp_path: Path, gh: FakeGitHub,
                                                                 kube: KubeApiFake, mlflow_uri: str) -> None:
    firing = _payload(tmp_path)
    first = handle_in_process(tmp_path, gh, kube, mlflow_uri, payload=firing, data="data")
    assert first["outcome"] == "pr_opened", first
    gh.merge(1)

    again = handle_in_process(tmp_path, gh, kube, mlflow_uri, payload=firing, data="data")
    assert again["outcome"] == "no_fix", again
    assert again["reason"].startswith("escalated: fix merged at 20") and "did not resolve" in again["reason"]
    assert len(gh.requests_to("POST", "/pulls")) == 1, "never a chain of PRs for one problem"
    (comment,) = _comments(gh, 1)
    assert "Escalation" in comment and "OOMKilled" in comment
    # Written before the run reaches MLflow: the comment names the tag that finds it.
    assert f"Run: MLflow run tagged autofix_record={again['record_id']}" in comment

    third = handle_in_process(tmp_path, gh, kube, mlflow_uri, payload=firing, data="data")
    assert third["outcome"] == "no_fix" and len(_comments(gh, 1)) == 1, "one escalation per merged fix"

    run = mlflow_run(mlflow_uri, again["record_id"])
    assert run.data.tags["ledger"] == "escalate" and run.data.tags["outcome"] == "no_fix"
    store = JobStore(tmp_path / "data" / "jobs.sqlite3")
    (row,) = store.entries(branch=BRANCH)
    assert (row.state, row.before, row.after) == ("merged", {LIMIT: "512Mi"}, {LIMIT: "768Mi"})

    # `autofix explain` shows each stage's decision and the ledger behind the refusal
    (job,) = store.enqueue(WebhookPayload.model_validate_json(firing.read_bytes()))
    leased = store.lease("w1", ttl=30)
    assert leased is not None and store.complete(job.job_id, "w1", again)
    proc = subprocess.run([sys.executable, "-m", "app.cli", "explain", again["fingerprint"]], cwd=ROOT, timeout=60,
                          env={**os.environ, "AUTOFIX_DATA_DIR": str(tmp_path / "data")}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "escalate: escalated: fix merged at" in proc.stdout
    assert "outcome: no_fix: escalated" in proc.stdout
    assert "ledger: PR #1 merged at 20" in proc.stdout and "memory 512Mi -> 768Mi" in proc.stdout


def test_closed_pr_is_a_no_even_after_the_data_dir_is_lost(tmp_path: Path, gh: FakeGitHub, kube: KubeApiFake,
                                                          mlflow_uri: str) -> None:
    firing = _payload(tmp_path)
    assert handle_in_process(tmp_path, gh, kube, mlflow_uri, payload=firing, data="data-a")["outcome"] == "pr_opened"
    gh.close(1)  # a human said no

    again = handle_in_process(tmp_path, gh, kube, mlflow_uri, payload=firing, data="data-b")  # a fresh install
    assert again["outcome"] == "no_fix", again
    assert "PR #1 was closed unmerged" in again["reason"] and "unless the evidence changes" in again["reason"]
    assert len(gh.requests_to("POST", "/pulls")) == 1
    (row,) = JobStore(tmp_path / "data-b" / "jobs.sqlite3").entries()
    assert (row.pr_number, row.state, row.cause, row.workload) == (1, "closed", "oom_killed",
                                                                   "Deployment/shop/checkout")
    assert row.after == {LIMIT: "768Mi"}, "values come back from the PR body's marker"


def test_resolved_alert_comments_on_the_open_pr_and_reviewers_are_asked(tmp_path: Path, gh: FakeGitHub,
                                                                       kube: KubeApiFake, mlflow_uri: str) -> None:
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    (policy_dir / "default.yaml").write_text((DEFAULT_POLICY_DIR / "default.yaml").read_text())
    (policy_dir / "zz-shop.yaml").write_text(
        "owners:\n  - namespaces: [shop]\n    labels: [team-shop]\n    reviewers: [alice]\n    teams: [shop-sre]\n")
    opened = handle_in_process(tmp_path, gh, kube, mlflow_uri, payload=_payload(tmp_path), data="data", policy_dir=policy_dir)
    assert opened["outcome"] == "pr_opened"
    (asked,) = gh.requests_to("POST", "/pulls/1/requested_reviewers")
    assert asked.body == {"reviewers": ["alice"], "team_reviewers": ["shop-sre"]}
    assert {"autofix", "team-shop"} <= {label["name"] for label in gh.pulls[1]["labels"]}

    resolved = handle_in_process(tmp_path, gh, kube, mlflow_uri, payload=_payload(tmp_path, resolved=True), data="data",
                       policy_dir=policy_dir)
    assert resolved["outcome"] == "skipped" and "commented on PR #1" in resolved["reason"], resolved
    (comment,) = _comments(gh, 1)
    assert comment.startswith("The alert `KubePodCrashLooping` resolved at 2026-11-23T16:02:44Z without this change")
    assert gh.pulls[1]["state"] == "open", "closing is opt-in (limits.close_pr_on_resolve)"


# ---------------------------------------------------------------- the rules, unit by unit


def _entry(state: str, *, at: float, images: tuple[str, ...] = ("ghcr.io/acme/checkout:1.8.2",),
           number: int = 1) -> Remediation:
    return Remediation(workload="Deployment/shop/checkout", cause="oom_killed", branch=BRANCH, pr_number=number,
                       pr_url=f"https://github.example/acme/gitops/pull/{number}", state=state,
                       before={LIMIT: "512Mi"}, after={LIMIT: "768Mi"}, images=images, opened_at=at - HOUR,
                       merged_at=at if state == "merged" else None, closed_at=at if state != "open" else None)


LIMITS = policies.Limits(cooldown_hours_after_closed=72, merged_fix_window_hours=24)
NOW = 1_790_000_000.0
IMAGES = ("ghcr.io/acme/checkout:1.8.2",)


@pytest.mark.parametrize(("entries", "images", "action"), [
    pytest.param([], IMAGES, "proceed", id="no-history"),
    pytest.param([_entry("open", at=NOW - 60)], IMAGES, "proceed", id="open-pr-is-updated-not-doubled"),
    pytest.param([_entry("merged", at=NOW - 2 * HOUR)], IMAGES, "escalate", id="merged-within-window"),
    pytest.param([_entry("merged", at=NOW - 30 * HOUR)], IMAGES, "proceed", id="merged-long-ago"),
    pytest.param([_entry("closed", at=NOW - 5 * HOUR)], IMAGES, "cooldown", id="closed-within-cooldown"),
    pytest.param([_entry("closed", at=NOW - 80 * HOUR)], IMAGES, "proceed", id="closed-cooldown-over"),
    pytest.param([_entry("closed", at=NOW - 5 * HOUR)], ("ghcr.io/acme/checkout:1.9.0",), "proceed",
                 id="closed-but-new-image"),
    pytest.param([_entry("merged", at=NOW - 50 * HOUR), _entry("closed", at=NOW - HOUR, number=2)], IMAGES,
                 "cooldown", id="latest-pr-decides"),
])
def test_decide(entries: list[Remediation], images: tuple[str, ...], action: str) -> None:
    assert ledger.decide(entries, now=NOW, limits=LIMITS, images=images).action == action


def test_cap_counts_from_the_value_before_the_first_merged_fix() -> None:
    """512Mi -> 768Mi merged long ago; the same cause again wants 1152Mi: past x2 of 512Mi, refused."""
    verdict = ledger.decide([_entry("merged", at=NOW - 48 * HOUR)], now=NOW, limits=LIMITS, images=IMAGES)
    assert verdict.action == "proceed" and verdict.baseline == {LIMIT: "512Mi"}
    policy = policies.Policy.model_validate({
        "causes": {"oom_killed": {"paths": ["spec.template.spec.containers[*].resources.limits.memory"]}},
        "memory": {"max_ratio_to_git": 2}})
    old = {"kind": "Deployment", "spec": {"template": {"spec": {"containers": [
        {"name": "checkout", "resources": {"limits": {"memory": "768Mi"}}}]}}}}
    new = json.loads(json.dumps(old).replace("768Mi", "1152Mi"))
    plan = Plan(cause="oom_killed", summary="raise", changes=[FieldChange(path=LIMIT, old="768Mi", new="1152Mi")])
    assert gates.check(old=old, new=new, plan=plan, policy=policy, kind="Deployment")  # x1.5 of git: fine alone
    with pytest.raises(Exception, match=r"above x2 of the value before the first merged fix \(512Mi\)"):
        gates.check(old=old, new=new, plan=plan, policy=policy, kind="Deployment", baseline=verdict.baseline)


def test_budget_counts_new_prs_in_the_last_hour(tmp_path: Path) -> None:
    store = JobStore(tmp_path / "jobs.sqlite3")
    for n, age in enumerate((3000.0, 1200.0, 60.0), start=1):
        store.record(replace(_entry("open", at=NOW, number=n), opened_at=NOW - age))
    assert ledger.budget_wait(store, now=NOW, per_hour=4) is None
    assert ledger.budget_wait(store, now=NOW, per_hour=3) == pytest.approx(600.0)  # the oldest ages out
    assert ledger.budget_wait(store, now=NOW, per_hour=0) == pytest.approx(HOUR)


def test_marker_round_trips_and_cannot_close_the_comment() -> None:
    entry = _entry("open", at=NOW, images=("evil-->image<script>",))
    body = "## Root cause\n\nsomething\n" + ledger.marker(entry) + "\n"
    assert body.count("-->") == 1, "a value must not end the hidden comment early"
    pr = PullRequest(number=1, url=entry.pr_url, branch=BRANCH, state="closed", body=body,
                     created_at="2026-11-23T15:20:00Z", closed_at="2026-11-23T18:00:00Z")
    rebuilt = ledger.from_pr(pr)
    assert rebuilt is not None
    assert (rebuilt.workload, rebuilt.cause, rebuilt.images, rebuilt.after) == (
        entry.workload, entry.cause, entry.images, entry.after)
    assert rebuilt.closed_at == ledger.epoch("2026-11-23T18:00:00Z")
    bare = ledger.from_pr(PullRequest(number=2, url="u", branch=BRANCH, state="merged"))
    assert bare is not None and (bare.cause, bare.workload) == ("oom_killed", "?/shop/checkout")
    assert ledger.from_pr(PullRequest(number=3, url="u", branch="feature/x")) is None
