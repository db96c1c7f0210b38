"""Two workloads never share a branch, a PR or a fix: on real bare git repositories.

Earlier versions cut branch names at 63 characters, so two Deployments whose names share their first 63
characters shared ``autofix/<ns>/<63 chars>/<cause>``: one alert was answered ``duplicate`` of the other
workload's PR (same changed lines, other file), and with other values the branch was force-pushed to the
second workload's change, losing the first fix. Here: the workspace refuses to replace a branch that carries
another workload's change, and ``autofix handle`` on twin Deployments (the demo's OOM-killed checkout,
cloned under two long names) opens two PRs on two branches, each editing its own file, including when the
first twin already has an open PR from an earlier version under the shared name.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from app import ledger, render
from app.adapters.workspace import GitWorkspace
from app.demo import seed_bare_repo
from app.errors import PermanentError
from app.models.incident import WorkloadRef
from app.ports import Remediation
from tests.conftest import EXAMPLES
from tests.e2e.test_e2e_handle import TOKEN, branch_diff, changed_lines, git, run_handle
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake

AUTHOR = "gitops-autofix[bot] <gitops-autofix@users.noreply.github.com>"
PREFIX = "payments-settlement-reconciliation-worker-for-eu-central-1-prod"  # 63 characters
Twins = dict[str, tuple[str, str, str]]  # twin -> (Deployment name, memory limit in git, the fix's limit)
TWINS: Twins = {"a": (f"{PREFIX}-a", "512Mi", "768Mi"), "b": (f"{PREFIX}-b", "1Gi", "1536Mi")}
SAME_LIMITS: Twins = {"a": TWINS["a"], "b": (f"{PREFIX}-b", "512Mi", "768Mi")}  # the same changed lines
OWNER_A, OWNER_B = "a" * 16, "b" * 16
CAUSE = "oom_killed"


def workload(twin: str) -> WorkloadRef:
    return WorkloadRef(kind="Deployment", namespace="shop", name=TWINS[twin][0])


def manifest_path(twin: str) -> str:
    return f"apps/settlement-{twin}/deployment.yaml"


# ---- the workspace never replaces another workload's change ------------------------------------------------


@pytest.fixture
def bare(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    for twin in TWINS:
        (source / manifest_path(twin)).parent.mkdir(parents=True)
        (source / manifest_path(twin)).write_text(f"kind: Deployment\nmetadata:\n  name: {TWINS[twin][0]}\n")
    seed_bare_repo(source, tmp_path / "gitops.git")
    return tmp_path / "gitops.git"


def workspace(bare: Path, tmp_path: Path, name: str = "clone") -> GitWorkspace:
    ws = GitWorkspace(str(bare), base="main", checkout=tmp_path / name, author=AUTHOR)
    ws.sync()
    return ws


def tip(bare: Path, branch: str) -> str:
    return git("rev-parse", f"refs/heads/{branch}", cwd=bare).strip()


def edit(twin: str) -> dict[str, str]:
    return {manifest_path(twin): f"kind: Deployment\nmetadata:\n  name: {TWINS[twin][0]}\n# {twin} fixed\n"}


def test_push_refuses_a_branch_that_carries_another_workloads_change(bare: Path, tmp_path: Path) -> None:
    ws = workspace(bare, tmp_path)
    shared = render.legacy_branch(workload("a"), CAUSE)
    ws.push_branch(shared, edit("a"), message="Raise memory limit of a", owner=OWNER_A)
    before = tip(bare, shared)
    assert git("log", "-1", "--format=%(trailers:key=Autofix-Id,valueonly)", shared, cwd=bare).strip() == OWNER_A

    with pytest.raises(PermanentError) as err:
        ws.push_branch(shared, edit("b"), message="Raise memory limit of b", owner=OWNER_B)

    assert err.value.code == "branch_taken" and OWNER_A in err.value.message
    assert tip(bare, shared) == before, "the first workload's fix is still there"
    ws.push_branch(shared, {manifest_path("a"): edit("a")[manifest_path("a")] + "# again\n"}, message="again",
                   owner=OWNER_A)
    assert tip(bare, shared) != before, "its own workload still updates it"


def test_a_branch_pushed_before_owners_is_judged_by_its_files(bare: Path, tmp_path: Path) -> None:
    ws = workspace(bare, tmp_path)
    shared = render.legacy_branch(workload("a"), CAUSE)
    ws.push_branch(shared, edit("a"), message="pushed by an earlier version")  # no Autofix-Id trailer
    before = tip(bare, shared)

    with pytest.raises(PermanentError) as err:
        ws.push_branch(shared, edit("b"), message="b", owner=OWNER_B)
    assert err.value.code == "branch_taken" and manifest_path("a") in err.value.message
    assert tip(bare, shared) == before

    ws.push_branch(shared, {manifest_path("a"): "kind: Deployment\n# newer fix\n"}, message="a", owner=OWNER_A)
    assert tip(bare, shared) != before


@pytest.mark.parametrize("name", ["x.lock", "api.v2.lock", "a" * 58 + ".lock"])
def test_a_name_ending_in_lock_gets_a_branch(bare: Path, tmp_path: Path, name: str) -> None:
    """A valid Kubernetes name; on main its branch ``autofix/shop/x.lock/oom-killed`` could never be pushed."""
    ws = workspace(bare, tmp_path)
    branch = render.branch(WorkloadRef(kind="Deployment", namespace="shop", name=name), CAUSE)
    result = ws.push_branch(branch, edit("a"), message="fix", owner=OWNER_A)
    assert tip(bare, branch) == result.commit and ".lock/" not in branch


def test_remote_branch_files_are_the_branchs_own_change(bare: Path, tmp_path: Path) -> None:
    ws = workspace(bare, tmp_path)
    branch = render.branch(workload("a"), CAUSE)
    assert ws.remote_branch_files(branch) is None
    ws.push_branch(branch, edit("a"), message="a", owner=OWNER_A)
    old = f"kind: Deployment\nmetadata:\n  name: {TWINS['a'][0]}\n"
    assert ws.remote_branch_files(branch) == {manifest_path("a"): (old, edit("a")[manifest_path("a")])}


# ---- end to end: `autofix handle` on twin Deployments -------------------------------------------------------


def twin_objects(items: list[dict[str, Any]], twin: str, twins: Twins) -> list[dict[str, Any]]:
    """The demo's Deployment, ReplicaSets, pods and events, renamed to the twin (uids and labels too)."""
    name, limit, _ = twins[twin]
    kinds = ("Deployment", "ReplicaSet", "Pod", "Event")
    text = json.dumps([i for i in items if i["kind"] in kinds])
    text = text.replace("checkout-7d9f8b6c5", f"{name}-7d9f8b6c5").replace("checkout-5b6c8d9f47", f"{name}-5b6c8d9f47")
    text = text.replace('"app.kubernetes.io/name": "checkout"', f'"app.kubernetes.io/name": "settlement-{twin}"')
    text = text.replace('"512Mi"', f'"{limit}"').replace("limit=512Mi", f"limit={limit}")
    objects: list[dict[str, Any]] = json.loads(_new_uids(text, twin))
    for obj in objects:
        meta = obj["metadata"]
        if obj["kind"] == "Deployment":
            meta["name"] = name
            meta.pop("annotations", None)  # no Argo CD tracking: the plain source finds the manifest by name
        for ref in meta.get("ownerReferences", []):
            if ref["kind"] == "Deployment":
                ref["name"] = name
    return objects


def _new_uids(text: str, twin: str) -> str:
    for item in json.loads(text):
        for uid in {item["metadata"].get("uid"), *(r["uid"] for r in item["metadata"].get("ownerReferences", []))}:
            if uid:
                text = text.replace(uid, str(uuid.uuid5(uuid.NAMESPACE_URL, f"{twin}/{uid}")))
    return text


def twin_world(tmp_path: Path, twins: Twins = TWINS) -> Path:
    """A scenario directory: the demo's cluster, repo and alert, for two Deployments instead of checkout."""
    demo = EXAMPLES / "demo"
    world = tmp_path / "twins"
    snapshot = json.loads((demo / "cluster.json").read_text())
    shared = [i for i in snapshot["items"] if i["kind"] in ("Node", "ConfigMap")]
    snapshot["items"] = shared + [obj for twin in twins for obj in twin_objects(snapshot["items"], twin, twins)]
    logs = {}
    for twin in twins:
        name = twins[twin][0]
        logs.update({key.replace("checkout-7d9f8b6c5", f"{name}-7d9f8b6c5"): value
                     for key, value in snapshot["logs"].items()})
    snapshot["logs"] = logs
    world.mkdir()
    (world / "cluster.json").write_text(json.dumps(snapshot))
    manifest = (demo / "repo/apps/checkout/deployment.yaml").read_text()
    for twin in twins:
        name, limit, _ = twins[twin]
        text = manifest.replace("name: checkout\n  namespace", f"name: {name}\n  namespace")
        text = text.replace("app.kubernetes.io/name: checkout", f"app.kubernetes.io/name: settlement-{twin}")
        (world / "repo" / manifest_path(twin)).parent.mkdir(parents=True)
        (world / "repo" / manifest_path(twin)).write_text(text.replace('memory: "512Mi"', f'memory: "{limit}"'))
    payload = json.loads((demo / "alert.json").read_text())
    first = payload["alerts"][0]
    alerts = []
    for twin in twins:
        alert = json.loads(_new_uids_in_alert(json.dumps(first), twin))
        alert["labels"]["pod"] = alert["labels"]["pod"].replace("checkout-", f"{twins[twin][0]}-")
        alert["fingerprint"] = f"{twin}{first['fingerprint'][1:]}"
        alerts.append(alert)
    payload["alerts"] = alerts
    (world / "alert.json").write_text(json.dumps(payload))
    return world


def _new_uids_in_alert(text: str, twin: str) -> str:
    uid = json.loads(text)["labels"].get("uid")
    return text.replace(uid, str(uuid.uuid5(uuid.NAMESPACE_URL, f"{twin}/{uid}"))) if uid else text


def seed(world: Path, tmp_path: Path) -> Path:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(world / "repo", bare)
    return bare


def assert_each_branch_edits_its_own_file(bare: Path, results: list[dict[str, Any]], twins: Twins = TWINS) -> None:
    for twin, result in zip(twins, results, strict=True):
        _, old, new = twins[twin]
        diff = branch_diff(bare, result["branch"])
        assert git("diff", "--name-only", "main", result["branch"], cwd=bare).split() == [manifest_path(twin)], diff
        assert [line[0] + line[1:].strip() for line in changed_lines(diff)] == [f'-memory: "{old}"', f'+memory: "{new}"'], diff


@pytest.mark.e2e
@pytest.mark.timeout(300)
@pytest.mark.parametrize("twins", [TWINS, SAME_LIMITS], ids=["other-values", "same-changed-lines"])
def test_twins_sharing_63_characters_get_two_prs_on_two_branches(tmp_path: Path, mlflow_uri: str,
                                                                  twins: Twins) -> None:
    """On main: 'other-values' force-pushed b's fix over a's PR; 'same-changed-lines' answered b 'duplicate'."""
    world = twin_world(tmp_path, twins)
    bare = seed(world, tmp_path)
    with FakeGitHub("acme/gitops", token=TOKEN) as gh, KubeApiFake.from_snapshot(world / "cluster.json") as kube:
        results = run_handle(world, tmp_path, mlflow_uri, gh, kube, bare=bare)
        again = run_handle(world, tmp_path, mlflow_uri, gh, kube, bare=bare)

    assert [r["outcome"] for r in results] == ["pr_opened", "pr_opened"], results
    assert results[0]["branch"] != results[1]["branch"]
    assert results[0]["branch"].startswith("autofix/shop/payments-settlement-reconciliation-worke/oom-killed-")
    assert_each_branch_edits_its_own_file(bare, results, twins)
    posts = [r.body for r in gh.requests_to("POST", "/pulls")]
    assert [p["head"] for p in posts] == [r["branch"] for r in results]
    assert [p["title"] for p in posts] == [
        f"Raise memory limit of shop/{twins[t][0]} to {twins[t][2]} after OOMKilled" for t in twins]
    # Each repeat is a duplicate of its own PR, never of the twin's.
    assert [(r["outcome"], r["pr_url"]) for r in again] == [("duplicate", r["pr_url"]) for r in results], again
    assert len(gh.requests_to("POST", "/pulls")) == 2
    assert [set(p.body) for p in gh.requests_to("PATCH", "/pulls/1")] == [{"body"}], "linked to its run, not updated"


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_an_open_pr_of_an_earlier_version_under_the_shared_name_is_kept(tmp_path: Path, mlflow_uri: str) -> None:
    """Twin a has an open PR on the shared 63-character branch (opened before this fix): twin b's alert
    opens its own PR instead of answering 'duplicate' or force-pushing over it; twin a's is still found."""
    world = twin_world(tmp_path)
    bare = seed(world, tmp_path)
    shared = render.legacy_branch(workload("a"), CAUSE)
    assert shared == render.legacy_branch(workload("b"), CAUSE)
    path = manifest_path("a")
    earlier = GitWorkspace(str(bare), base="main", checkout=tmp_path / "earlier", author=AUTHOR)
    earlier.sync()
    fixed = earlier.read_text(path).replace('memory: "512Mi"', 'memory: "768Mi"')
    earlier.push_branch(shared, {path: fixed}, message="Raise memory limit")  # as earlier versions did
    before = tip(bare, shared)
    field = "spec.template.spec.containers[name=checkout].resources.limits.memory"
    marker = ledger.marker(Remediation(workload=str(workload("a")), cause=CAUSE, branch=shared, pr_number=1,
                                       pr_url="", state="open", before={field: "512Mi"}, after={field: "768Mi"}))
    with FakeGitHub("acme/gitops", token=TOKEN) as gh, KubeApiFake.from_snapshot(world / "cluster.json") as kube:
        gh.create_pull(head=f"acme:{shared}", title="Raise memory limit", body=f"body\n\n{marker}\n",
                       labels=("autofix",))
        results = run_handle(world, tmp_path, mlflow_uri, gh, kube, bare=bare, export=False)

    assert [r["outcome"] for r in results] == ["duplicate", "pr_opened"], results
    assert results[0]["branch"] == shared and results[0]["pr_url"].endswith("/pull/1")
    assert results[1]["branch"] not in (shared, render.branch(workload("a"), CAUSE))
    assert tip(bare, shared) == before, "twin a's fix was not overwritten"
    assert_each_branch_edits_its_own_file(bare, results)
    assert [r.body["head"] for r in gh.requests_to("POST", "/pulls")] == [results[1]["branch"]]
    assert not gh.requests_to("PATCH", "/pulls/1"), "twin a's PR was not retitled"


def test_twin_world_is_two_independent_workloads(tmp_path: Path) -> None:
    """The fixture itself: two Deployments, their own pods and files, names sharing exactly 63 characters."""
    world = twin_world(tmp_path)
    items = json.loads((world / "cluster.json").read_text())["items"]
    deployments = [i["metadata"]["name"] for i in items if i["kind"] == "Deployment"]
    assert deployments == [TWINS["a"][0], TWINS["b"][0]] and deployments[0][:63] == deployments[1][:63]
    uids = [i["metadata"]["uid"] for i in items if "uid" in i["metadata"]]
    assert len(uids) == len(set(uids))


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_a_name_held_by_another_workloads_pr_is_refused_not_reused(tmp_path: Path, mlflow_uri: str) -> None:
    """Earlier versions left the kind out: a StatefulSet's open PR sits on the Deployment's branch name."""
    demo = EXAMPLES / "demo"
    bare = seed(demo, tmp_path)
    payload = json.loads((demo / "alert.json").read_text())
    payload["alerts"] = payload["alerts"][:1]
    (tmp_path / "alert.json").write_text(json.dumps(payload))
    other = Remediation(workload="StatefulSet/shop/checkout", cause=CAUSE, branch="autofix/shop/checkout/oom-killed",
                        pr_number=1, pr_url="", state="open")
    with FakeGitHub("acme/gitops", token=TOKEN) as gh, KubeApiFake.from_snapshot(demo / "cluster.json") as kube:
        gh.create_pull(head="acme:autofix/shop/checkout/oom-killed", title="Raise memory limit of the StatefulSet",
                       body=f"body\n\n{ledger.marker(other)}\n", labels=("autofix",))
        [result] = run_handle(demo, tmp_path, mlflow_uri, gh, kube, bare=bare, payload=tmp_path / "alert.json", export=False)

    assert result["outcome"] == "failed" and "PR #1 of another workload" in result["reason"], result
    assert git("branch", "--format=%(refname:short)", cwd=bare).split() == ["main"], "nothing pushed"
    assert not gh.requests_to("POST", "/pulls") and not gh.requests_to("PATCH", "/pulls/1")
