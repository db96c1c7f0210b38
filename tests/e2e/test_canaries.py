"""Canary secrets planted in every input channel never reach any output channel.

The corpus (tests/data/secret_canaries.yaml: 90 shapes from gitleaks' and detect-secrets' rules, and the shapes
that slipped through on main) is planted in: the alert's labels and annotations, container logs, events,
the workload's annotations (including keys that name a secret and last-applied-configuration), literal env
values, and comments of the GitOps repo's manifest beside the line the fix changes. Then the bot runs as a user
runs it: `autofix serve` (a crash-looping, OOM-killed Deployment: a PR is opened) and `autofix handle` (an
application crash: no fix, with a reason that quotes the log). Output channels read back: the PR request
(title, body, labels, comments), the pushed branch (its name, commit message and added lines), stdout and
stderr, GET /jobs and /metrics, the job store file, the MLflow store and its artifacts, every file in the data
dir. No canary, nor a 12-character piece of one, may appear in any of them.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from app.demo import seed_bare_repo
from tests.conftest import EXAMPLES, ROOT, SCENARIOS
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake
from tests.serve import serving

pytestmark = pytest.mark.e2e

CORPUS = yaml.safe_load((ROOT / "tests" / "data" / "secret_canaries.yaml").read_text())
BY_ID = {entry["id"]: entry for entry in CORPUS}
GH_TOKEN = "ghs_canary_token_0123456789abcdefghij"
WEBHOOK_TOKEN = "canary-webhook-token-4f9c2a"
SECRET_ANNOTATIONS = ("vault.hashicorp.com/token", "api-key", "db-password")
REPO_CANARIES = ("env-pass-suffix", "url-password-with-slash", "github-pat", "cli-password-flag")


def carriers(entry: dict[str, Any]) -> list[str]:
    return [c.replace("{secret}", entry["secret"]) for c in entry["carriers"]]


def needles(entry: dict[str, Any]) -> list[str]:
    """The secret, and a 12-character piece of what follows its public prefix (a partial leak)."""
    secret = str(entry["secret"])
    core = secret[len(entry.get("prefix") or ""):].strip()
    middle = max(0, (len(core) - 12) // 2)
    return [secret] + ([core[middle:middle + 12]] if len(core) >= 12 else [])


# --- planting -------------------------------------------------------------------------------------------


def plant_alert(payload: dict[str, Any]) -> dict[str, Any]:
    payload = copy.deepcopy(payload)
    alert = payload["alerts"][0]
    payload["alerts"] = [alert]
    room = 60 - len(alert["labels"])
    for i, entry in enumerate(CORPUS):
        line = carriers(entry)[i % len(entry["carriers"])]
        target = alert["labels"] if i < room else alert["annotations"]
        target[f"canary_{i}"] = line
    alert["annotations"]["description"] += " " + " ".join(carriers(CORPUS[-1]))
    payload["commonAnnotations"] = dict(alert["annotations"])
    return payload


def _last_applied(workload: dict[str, Any]) -> str:
    applied = copy.deepcopy(workload)
    applied.pop("status", None)
    for c in applied["spec"]["template"]["spec"]["containers"]:
        c["env"] = [{"name": "DATABASE_URL", "value": carriers(BY_ID["url-password-with-slash"])[0]},
                    {"name": "STRIPE_KEY", "value": BY_ID["stripe-secret-key"]["secret"]}]
    return json.dumps(applied)


def plant_cluster(snapshot: dict[str, Any], kind: str) -> dict[str, Any]:
    snapshot = copy.deepcopy(snapshot)
    pods = [o for o in snapshot["items"] if o["kind"] == "Pod"]
    for obj in snapshot["items"]:
        if obj["kind"] not in (kind, "Pod"):
            continue
        notes = obj["metadata"].setdefault("annotations", {})
        if obj["kind"] == kind:
            notes["kubectl.kubernetes.io/last-applied-configuration"] = _last_applied(obj)
            for key, canary in zip(SECRET_ANNOTATIONS, ("annotation-vault-token", "annotation-api-key",
                                                         "annotation-db-password"), strict=True):
                notes[key] = BY_ID[canary]["secret"]
            for entry in CORPUS:
                notes[f"canary.acme.io/{entry['id']}"] = "\n".join(carriers(entry))
        spec = obj["spec"]["template"]["spec"] if obj["kind"] == kind else obj["spec"]
        for container in spec["containers"]:
            container.setdefault("env", []).extend(
                {"name": f"APP_SETTING_{i}", "value": entry["secret"]} for i, entry in enumerate(CORPUS))
    for i, entry in enumerate(CORPUS):
        pod = pods[i % len(pods)]
        snapshot["items"].append({
            "apiVersion": "v1", "kind": "Event", "type": "Warning", "reason": "Unhealthy", "count": 1,
            "message": "Readiness probe failed: " + "\n".join(carriers(entry)),
            "firstTimestamp": "2026-11-23T15:16:00Z", "lastTimestamp": "2026-11-23T15:16:59Z", "eventTime": None,
            "source": {"component": "kubelet", "host": "k8s-worker-01"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod["metadata"]["name"],
                               "namespace": pod["metadata"]["namespace"], "uid": pod["metadata"]["uid"]},
            "metadata": {"name": f"{pod['metadata']['name']}.canary{i:03d}", "namespace": pod["metadata"]["namespace"],
                         "uid": f"canary-{i}"}})
    keys = sorted(snapshot["logs"])
    for i, entry in enumerate(CORPUS):
        key = keys[i % len(keys)]
        # Before the crash, as an app prints its config at start: the crash stays the log's last lines.
        snapshot["logs"][key]["previous"] = "\n".join(carriers(entry)) + "\n" + snapshot["logs"][key]["previous"]
    return snapshot


def plant_repo(repo: Path, manifest: str, anchor: str) -> None:
    path = repo / manifest
    lines = path.read_text().splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if anchor in line)
    indent = lines[at][: len(lines[at]) - len(lines[at].lstrip())]
    notes = [f"{indent}# ops note: {carriers(e)[0]}\n" for e in CORPUS if e["id"] in REPO_CANARIES]
    path.write_text("".join(lines[:at] + notes + lines[at:]))


# --- reading outputs ------------------------------------------------------------------------------------


def git(*argv: str, cwd: Path) -> str:
    return subprocess.run(["git", *argv], cwd=cwd, check=True, capture_output=True, text=True, timeout=30).stdout


def branch_outputs(bare: Path) -> dict[str, str]:
    refs = git("for-each-ref", "--format=%(refname)", cwd=bare)
    messages = git("log", "--all", "--format=%B", cwd=bare)
    added = "\n".join(line for line in git("log", "--all", "-p", "--format=", cwd=bare).splitlines()
                      if line.startswith("+") and not line.startswith("+++"))
    return {"branch names": refs, "commit messages": messages, "lines the bot added": added}


def files_under(root: Path, *, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not any(path.is_relative_to(s) for s in skip):
            out[f"file {path.relative_to(root)}"] = path.read_bytes().decode("utf-8", errors="replace")
    return out


def leaks(outputs: dict[str, str], *, repo_too: bool) -> list[str]:
    found = []
    for entry in CORPUS:
        if entry["id"] in REPO_CANARIES and not repo_too:
            continue
        for needle in needles(entry):
            found += [f"{entry['id']} in {name}" for name, text in outputs.items() if needle in text]
    return sorted(set(found))


def world_env(tmp_path: Path, bare: Path, gh: FakeGitHub, kube: KubeApiFake) -> dict[str, str]:
    return {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
            "AUTOFIX_GIT_URL": str(bare), "AUTOFIX_GITHUB_REPO": "acme/gitops", "GITHUB_TOKEN": GH_TOKEN,
            "AUTOFIX_GITHUB_API_URL": gh.api_url, "AUTOFIX_GITHUB_WRITE_SPACING": "0",
            "AUTOFIX_DATA_DIR": str(tmp_path / "data"), "AUTOFIX_WEBHOOK_TOKEN": WEBHOOK_TOKEN,
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}",
            "AUTOFIX_MLFLOW_UI_URL": "https://mlflow.example"}


def forge_outputs(gh: FakeGitHub) -> dict[str, str]:
    return {f"forge request {r.method} {r.path}": json.dumps(r.body) for r in gh.requests if r.method != "GET"}


# --- the runs -------------------------------------------------------------------------------------------


def serve_one_alert(env: dict[str, str], payload: dict[str, Any], tmp_path: Path) -> dict[str, str]:
    """`autofix serve` as deployed: post the alert, wait for the job, read /jobs and /metrics, stop it."""
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    outputs: dict[str, str] = {}
    with serving(env, out=out, err=err, verbose=True, start_seconds=60) as served:
        base = served.base
        headers = {"Authorization": f"Bearer {WEBHOOK_TOKEN}"}
        accepted = httpx.post(f"{base}/webhooks/alertmanager", json=payload, headers=headers, timeout=10)
        assert accepted.status_code == 202, accepted.text
        [job_id] = accepted.json()["jobs"]
        deadline = time.monotonic() + 150
        while True:
            job = httpx.get(f"{base}/jobs/{job_id}", headers=headers, timeout=10)
            if job.json()["state"] in ("done", "failed"):
                break
            assert time.monotonic() < deadline, job.text
            time.sleep(0.3)
        outputs["GET /jobs"] = job.text
        # The run record reaches MLflow in the background: wait for the outbox to empty (MLflow's first run can take
        # longer than the service's drain on a loaded machine), so the artifacts are there to be read.
        deadline = time.monotonic() + 120
        while True:
            page = httpx.get(f"{base}/metrics", timeout=10).text
            if 'autofix_export_backlog{state="pending"} 0.0' in page and \
                    'autofix_export_backlog{state="linking"} 0.0' in page:
                break
            assert time.monotonic() < deadline, [line for line in page.splitlines() if "export" in line]
            time.sleep(0.3)
        outputs["GET /metrics"] = page
    outputs["serve stdout"] = out.read_text()
    outputs["serve stderr"] = err.read_text()
    return outputs


@pytest.mark.timeout(280)
def test_no_canary_leaves_through_serve_and_a_pull_request(tmp_path: Path) -> None:
    demo = EXAMPLES / "demo"
    repo = tmp_path / "repo"
    subprocess.run(["cp", "-r", str(demo / "repo"), str(repo)], check=True)
    plant_repo(repo, "apps/checkout/deployment.yaml", 'memory: "512Mi"')
    bare = tmp_path / "gitops.git"
    seed_bare_repo(repo, bare)
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps(plant_cluster(json.loads((demo / "cluster.json").read_text()), "Deployment")))
    payload = plant_alert(json.loads((demo / "alert.json").read_text()))
    with FakeGitHub("acme/gitops", token=GH_TOKEN) as gh, KubeApiFake.from_snapshot(snapshot) as kube:
        outputs = serve_one_alert(world_env(tmp_path, bare, gh, kube), payload, tmp_path)
        outputs |= forge_outputs(gh)
    result = json.loads(outputs["GET /jobs"])["result"]
    assert result is not None and result["outcome"] == "pr_opened", outputs["GET /jobs"]
    [pr] = [r for r in gh.requests_to("POST", "/pulls")]
    assert "OOMKilled" in pr.body["body"], "the evidence reached the PR: the channels were exercised"
    assert "ops note" in pr.body["body"], "the repository's comment beside the change is in the PR's diff"
    outputs |= branch_outputs(bare)
    outputs |= files_under(tmp_path / "mlflow")
    # The checkout is a clone of the team's repository: its files hold what the team committed.
    outputs |= files_under(tmp_path / "data", skip=(tmp_path / "data" / "repo",))
    assert any(name.startswith("file jobs.sqlite3") for name in outputs), sorted(outputs)
    assert any("evidence.json" in name for name in outputs), "the MLflow artifacts were read"
    assert leaks({k: v for k, v in outputs.items() if k != "lines the bot added"}, repo_too=True) == []
    assert leaks({"lines the bot added": outputs["lines the bot added"]}, repo_too=False) == []


@pytest.mark.timeout(200)
def test_no_canary_leaves_through_handle_and_a_no_fix_reason(tmp_path: Path) -> None:
    scenario = SCENARIOS / "application-crash"
    bare = tmp_path / "gitops.git"
    seed_bare_repo(scenario / "repo", bare)
    snapshot = tmp_path / "cluster.json"
    snapshot.write_text(json.dumps(plant_cluster(json.loads((scenario / "cluster.json").read_text()),
                                                 "Deployment")))
    payload = tmp_path / "alert.json"
    payload.write_text(json.dumps(plant_alert(json.loads((scenario / "alert.json").read_text()))))
    with FakeGitHub("acme/gitops", token=GH_TOKEN) as gh, KubeApiFake.from_snapshot(snapshot) as kube:
        proc = subprocess.run([sys.executable, "-m", "app.cli", "-v", "handle", str(payload)],
                              env=world_env(tmp_path, bare, gh, kube), cwd=ROOT, capture_output=True, text=True,
                              timeout=180)
        outputs = {"handle stdout": proc.stdout, "handle stderr": proc.stderr} | forge_outputs(gh)
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)["results"]
    assert result["outcome"] == "no_fix" and "OperationalError" in result["reason"], result
    outputs |= branch_outputs(bare)
    outputs |= files_under(tmp_path / "mlflow")
    outputs |= files_under(tmp_path / "data", skip=(tmp_path / "data" / "repo",))
    assert leaks(outputs, repo_too=True) == []
