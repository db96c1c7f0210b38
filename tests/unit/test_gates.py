"""Gates every change passes, whatever proposed it: each gate with a change it must refuse.

Table-driven over a realistic Deployment (what a team has in git), then end to end: a model that obeys a
prompt injection in a log line, under a team policy that (wrongly) lets the model touch securityContext,
still gets no PR, because "privileged: true" is refused whatever the policy says.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from app import gates, policies, settings
from app.demo import seed_bare_repo
from app.errors import NoFix
from app.models.alertmanager import WebhookPayload
from app.models.changes import FieldChange, Plan
from app.oneshot import handle_and_export
from app.settings import DEFAULT_POLICY_DIR
from tests.conftest import SCENARIOS, mlflow_run
from tests.e2e.test_e2e_handle import TOKEN, git
from tests.fakes.github_api import FakeGitHub
from tests.fakes.kube_api import KubeApiFake
from tests.fakes.openai_api import FakeOpenAI

C = "spec.template.spec.containers[name=checkout]"
POD = "spec.template.spec"

DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "checkout", "namespace": "shop", "labels": {"app.kubernetes.io/name": "checkout"}},
    "spec": {"replicas": 3, "selector": {"matchLabels": {"app.kubernetes.io/name": "checkout"}},
             "template": {"metadata": {"labels": {"app.kubernetes.io/name": "checkout"}}, "spec": {
                 "containers": [{"name": "checkout", "image": "ghcr.io/acme/checkout:1.8.2",
                                 "securityContext": {"runAsNonRoot": True, "allowPrivilegeEscalation": False},
                                 "resources": {"requests": {"cpu": "250m", "memory": "256Mi"},
                                               "limits": {"memory": "512Mi"}}}],
                 "volumes": [{"name": "tmp", "emptyDir": {}}]}}},
}
# A team policy that is far too permissive on purpose: the always-refused gate must hold regardless.
PERMISSIVE = policies.Policy.model_validate({
    "causes": {"oom_killed": {"paths": ["spec.template.spec.*"]}},
    "hpa": {"max": 20}})
STRICT = policies.load(DEFAULT_POLICY_DIR)


def _set(obj: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    """A deep copy of ``obj`` with ``dotted`` (plain keys, [name=x] and [i] selectors) set to ``value``."""
    from app import fieldpaths

    out = copy.deepcopy(obj)
    *parents, leaf = fieldpaths.parse(dotted)
    node: Any = out
    for seg in parents:
        node = fieldpaths.get(node, [seg])
    node[leaf] = value
    return out


def _change(path: str, old: Any, new: Any, *, policy: policies.Policy = PERMISSIVE, kind: str = "Deployment",
            doc: dict[str, Any] = DEPLOYMENT, baseline: dict[str, Any] | None = None) -> list[str]:
    plan = Plan(cause="oom_killed", summary="change", changes=[FieldChange(path=path, old=old, new=new)])
    return gates.check(old=doc, new=_set(doc, path, new), plan=plan, policy=policy, kind=kind, baseline=baseline)


def test_a_rules_memory_raise_passes_every_gate() -> None:
    passed = _change(f"{C}.resources.limits.memory", "512Mi", "768Mi", policy=STRICT)
    assert [line.split(":")[0] for line in passed] == ["kind", "paths", "security", "bounds", "replicas", "requests"]


@pytest.mark.parametrize(("path", "old", "new", "why"), [
    (f"{C}.securityContext.privileged", None, True, "privileged: true"),
    (f"{C}.securityContext.allowPrivilegeEscalation", False, True, "allowPrivilegeEscalation: true"),
    (f"{POD}.hostNetwork", None, True, "hostNetwork: true"),
    (f"{POD}.hostPID", None, True, "hostPID: true"),
    (f"{POD}.hostIPC", None, "true", "hostIPC: true"),
    (f"{C}.securityContext.capabilities", None, {"add": ["NET_ADMIN"]}, "added capabilities ['NET_ADMIN']"),
    (f"{POD}.volumes[name=tmp].hostPath", None, {"path": "/"}, "a hostPath volume"),
    (f"{C}.securityContext.runAsUser", None, 0, "runAsUser: 0"),
    (f"{C}.securityContext.runAsNonRoot", True, False, "runAsNonRoot: false"),
], ids=["privileged", "allowPrivilegeEscalation", "hostNetwork", "hostPID", "hostIPC", "capabilities-add",
        "hostPath", "runAsUser-0", "runAsNonRoot-false"])
def test_always_refused_whatever_the_policy(path: str, old: Any, new: Any, why: str) -> None:
    with pytest.raises(NoFix, match="never allowed, whatever the policy") as err:
        _change(path, old, new)
    assert why in err.value.message and err.value.code == "gate_refused"


@pytest.mark.parametrize(("kind", "why"), [
    ("Role", "RBAC kind"), ("ClusterRoleBinding", "RBAC kind"), ("Namespace", "cluster-scoped"),
    ("StorageClass", "cluster-scoped"), ("Secret", "never writes secrets"),
])
def test_forbidden_kinds(kind: str, why: str) -> None:
    doc = {**DEPLOYMENT, "kind": kind}
    with pytest.raises(NoFix, match=why):
        _change(f"{C}.resources.limits.memory", "512Mi", "768Mi", kind=kind, doc=doc)


@pytest.mark.parametrize(("path", "old", "new", "policy", "why"), [
    pytest.param(f"{C}.image", "ghcr.io/acme/checkout:1.8.2", "ghcr.io/acme/checkout:1.8.1", STRICT,
                 "outside the paths the policy allows for oom_killed", id="path-outside-the-cause"),
    pytest.param(f"{C}.resources.limits.memory", "512Mi", "32Gi", STRICT, "above the policy's cap 16Gi",
                 id="memory-above-absolute-cap"),
    pytest.param(f"{C}.resources.limits.memory", "512Mi", "4Gi", STRICT, "above x4 of the value in git (512Mi)",
                 id="memory-above-ratio-to-git"),
    pytest.param(f"{C}.resources.limits.memory", "512Mi", "", STRICT, "removing a memory bound",
                 id="limit-removed"),
    pytest.param(f"{C}.resources.limits.cpu", None, "64", PERMISSIVE, "above the policy's cap 8",
                 id="cpu-above-cap"),
    pytest.param(f"{C}.resources.requests.memory", "256Mi", "1Gi", PERMISSIVE, "above its limit 512Mi",
                 id="request-above-limit"),
])
def test_bounds_and_paths(path: str, old: Any, new: Any, policy: policies.Policy, why: str) -> None:
    with pytest.raises(NoFix, match="gate refused") as err:
        _change(path, old, new, policy=policy)
    assert why in err.value.message


def test_max_replicas_cap() -> None:
    hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "checkout"},
           "spec": {"minReplicas": 3, "maxReplicas": 10}}
    policy = policies.Policy.model_validate({"causes": {"oom_killed": {"paths": ["spec.maxReplicas"]}},
                                             "hpa": {"max": 20}})
    assert _change("spec.maxReplicas", 10, 15, policy=policy, kind="HorizontalPodAutoscaler", doc=hpa)
    with pytest.raises(NoFix, match="30 is above the policy's cap hpa.max=20"):
        _change("spec.maxReplicas", 10, 30, policy=policy, kind="HorizontalPodAutoscaler", doc=hpa)


def test_a_diff_wider_than_the_plan_is_refused() -> None:
    """The plan names the memory limit, the edit also flipped the image: the changed paths are checked too."""
    new = _set(_set(DEPLOYMENT, f"{C}.resources.limits.memory", "768Mi"), f"{C}.image", "evil:latest")
    plan = Plan(cause="oom_killed", summary="raise",
                changes=[FieldChange(path=f"{C}.resources.limits.memory", old="512Mi", new="768Mi")])
    with pytest.raises(NoFix, match=r"containers\[name=checkout\].image is outside the paths"):
        gates.check(old=DEPLOYMENT, new=new, plan=plan, policy=STRICT, kind="Deployment")


def test_a_models_plan_is_held_to_the_llm_paths_not_its_own() -> None:
    """A Plan built as a model's would be, claiming wide allowed_paths for itself: the gate ignores the claim."""
    plan = Plan(cause="model_proposed", summary="set privileged", allowed_paths=["*"],
                changes=[FieldChange(path=f"{C}.securityContext.privileged", old=None, new=True)])
    new = _set(DEPLOYMENT, f"{C}.securityContext.privileged", True)
    with pytest.raises(NoFix, match="outside the paths the policy allows"):
        gates.check(old=DEPLOYMENT, new=new, plan=plan, policy=STRICT, kind="Deployment", proposed_by="model:gpt")


def test_existing_settings_are_not_blamed_on_the_fix() -> None:
    """A manifest that already runs hostNetwork (a team's choice, reviewed by them) may still get more memory."""
    doc = _set(DEPLOYMENT, f"{POD}.hostNetwork", True)
    assert _change(f"{C}.resources.limits.memory", "512Mi", "768Mi", policy=STRICT, doc=doc)


# ---------------------------------------------------------------- end to end: a model obeys an injection


@pytest.mark.e2e  # a whole pipeline run
def test_model_obeying_a_prompt_injection_is_stopped_by_the_gate(tmp_path: Path, mlflow_uri: str,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    source = SCENARIOS / "llm-prompt-injection"
    scenario = tmp_path / "scenario"
    shutil.copytree(source, scenario)
    manifest = scenario / "repo" / "apps" / "reviews" / "deployment.yaml"
    text = manifest.read_text()
    # The team's manifest states privileged: false explicitly, as hardened manifests often do.
    manifest.write_text(text.replace("          image: ghcr.io/acme/reviews:2.3.4\n",
                                     "          image: ghcr.io/acme/reviews:2.3.4\n"
                                     "          securityContext:\n            privileged: false\n", 1))
    policy_dir = tmp_path / "policies"
    policy_dir.mkdir()
    shutil.copy(DEFAULT_POLICY_DIR / "default.yaml", policy_dir / "default.yaml")
    # A team's mistake: it lets the model touch securityContext.privileged.
    (policy_dir / "zz-team.yaml").write_text("llm:\n  container_fields: [securityContext.privileged]\n")
    monkeypatch.setenv("AUTOFIX_POLICY_DIR", str(policy_dir))
    with FakeOpenAI() as model, FakeGitHub("acme/gitops", token=TOKEN) as gh:
        model.reply_json(json.loads((source / "model_reply.json").read_text()))
        monkeypatch.setenv("OPENAI_API_KEY", model.api_key)
        monkeypatch.setenv("OPENAI_BASE_URL", model.base_url)
        with KubeApiFake.from_snapshot(scenario / "cluster.json") as kube:
            seed_bare_repo(scenario / "repo", tmp_path / "gitops.git")
            for key, value in {"KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
                               "AUTOFIX_GIT_URL": str(tmp_path / "gitops.git"), "AUTOFIX_GITHUB_REPO": "acme/gitops",
                               "GITHUB_TOKEN": TOKEN, "AUTOFIX_GITHUB_API_URL": gh.api_url,
                               "AUTOFIX_DATA_DIR": str(tmp_path / "data"), "MLFLOW_TRACKING_URI": mlflow_uri}.items():
                monkeypatch.setenv(key, value)
            payload = WebhookPayload.model_validate_json((scenario / "alert.json").read_bytes())
            (result,), _ = handle_and_export(settings.load(), payload)  # `autofix handle`, in-process
        assert "ignore previous instructions" in model.chat_requests()[0].text()
        assert gh.requests_to("POST", "/pulls") == []

    assert result["outcome"] == "no_fix", result
    assert "gate refused: privileged: true at" in result["reason"]
    assert "never allowed, whatever the policy" in result["reason"]
    branches = git("branch", "--format=%(refname:short)", cwd=tmp_path / "gitops.git").split()
    assert branches == ["main"], "no branch may be pushed for a refused change"

    run = mlflow_run(mlflow_uri, result["record_id"])
    assert run.data.tags["gate"] == "refused" and run.data.tags["outcome"] == "no_fix"
    assert run.data.tags["cause"] == "model_proposed"
    assert "privileged: true" in run.data.tags["reason"]
