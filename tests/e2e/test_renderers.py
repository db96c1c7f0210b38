"""Which renderer runs, which version it is, and what a fix in a modern overlay says with each.

The overlay (tests/fixtures/kustomize-prefix-delete-json6902) uses what the removed kustomize approximation
ignored: namespace, namePrefix, a `$patch: delete` and JSON 6902 operations. With the real renderer
(this machine's kubectl and its kustomize v5, or a standalone kustomize first on PATH) the fix is planned on
the render and verified; with none on the search path, or one too old for the overlay, it is planned on the
live object and says "not verified" with the reason.

Stand-ins are shell scripts named like the tool on a search path of their own: the real launcher, sandbox and
parsing run, only the program is ours. Their answers are the real tools' output, verbatim (kubectl 1.20.2 from
Debian bookworm's kubernetes-client 1.20.5+really1.20.2-1.1+deb12u1: `version --client -o json`, and its error
on this overlay).
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app import doctor
from app.adapters import renderers
from app.adapters.renderers import SandboxedRenderer
from app.models.changes import FieldChange, Location, Plan
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.sources.layouts import kustomize
from tests.conftest import ROOT
from tests.unit.sources.goldens import DirRepo, apply

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]  # real renderers, a child process per call

OVERLAY = ROOT / "tests" / "fixtures" / "kustomize-prefix-delete-json6902"
PROD = "overlays/prod"
MEMORY = "spec.template.spec.containers[name=checkout].resources.limits.memory"
JSON6902 = "overlays/prod/limits.json6902.yaml"

KUBECTL_120_VERSION = """{
  "clientVersion": {
    "major": "1",
    "minor": "20",
    "gitVersion": "v1.20.2",
    "gitCommit": "faecb196815e248d3ecfb03c680a4507229c2a56",
    "gitTreeState": "archive",
    "buildDate": "2025-06-08T22:40:27Z",
    "goVersion": "go1.19.8",
    "compiler": "gc",
    "platform": "linux/amd64"
  }
}"""
KUBECTL_120_ERROR = ("Error: json: cannot unmarshal object into Go struct field Kustomization.patchesStrategicMerge "
                     "of type patch.StrategicMerge")


def stand_in(bin_dir: Path, name: str, script: str) -> Path:
    bin_dir.mkdir(parents=True, exist_ok=True)
    exe = bin_dir / name
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)
    return exe


def kubectl_120(bin_dir: Path) -> Path:
    """kubectl 1.20 as it answers the bot: its version, a help without --load-restrictor, the overlay refused."""
    return stand_in(bin_dir, "kubectl", f"""case "$1 $2" in
  "version --client") cat <<'EOF'
{KUBECTL_120_VERSION}
EOF
  ;;
  "kustomize --help") echo "  -h, --help   help for kustomize" ;;
  *) echo '{KUBECTL_120_ERROR}' >&2; exit 1 ;;
esac
""")


@pytest.fixture
def repo(tmp_path: Path) -> DirRepo:
    root = tmp_path / "gitops"
    shutil.copytree(OVERLAY, root)
    return DirRepo(root)


def rendered_tree(repo: DirRepo, texts: dict[str, str] | None = None) -> list[dict[str, Any]]:
    tree = kustomize.walk(repo, PROD)
    return SandboxedRenderer().kustomize({**{f: repo.read_text(f) for f in tree.files}, **(texts or {})}, PROD)


def deployment(objects: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == "Deployment"]
    return found


def evidence(repo: DirRepo) -> Evidence:
    """The alert on prod-checkout in shop; the live object is what Argo CD applied: the render, with a status."""
    live = {**deployment(rendered_tree(repo)), "status": {"replicas": 2, "unavailableReplicas": 2}}
    incident = Incident.model_validate({"alertname": "KubePodCrashLooping", "fingerprint": "0" * 16,
                                        "status": "firing", "starts_at": "2026-11-23T15:15:16Z",
                                        "labels": {"namespace": "shop"}})
    return Evidence(incident=incident, workload=WorkloadRef(kind="Deployment", namespace="shop", name="prod-checkout"),
                    object=live)


def fix(renderer: SandboxedRenderer, repo: DirRepo) -> tuple[dict[str, Any], dict[str, str], str, list[str]]:
    """The layout as the change stage runs it: effective workload, edits, edited texts, render check."""
    ev = evidence(repo)
    location: Location = kustomize.locate(ev, repo, PROD, source="argocd", app="checkout", note="test")
    layout = kustomize.Kustomize(renderer)
    workload = layout.effective(location, ev, repo=repo)
    plan = Plan(cause="oom", summary="memory", changes=[FieldChange(path=MEMORY, old="384Mi", new="768Mi")])
    edits = layout.edits(location, plan, evidence=ev, repo=repo, workload=workload)
    texts = apply(edits, repo)
    verdict, checks = layout.verify(location, ev, repo=repo, plan=plan, new_texts=texts)
    return workload, texts, verdict, checks


# ---------------------------------------------------------------- the fix in a modern overlay


def test_a_modern_overlay_is_planned_on_its_render_and_verified(repo: DirRepo) -> None:
    assert not renderers.too_old(renderers.renderer_versions()["kustomize"])  # this machine: kustomize v5
    workload, texts, verdict, checks = fix(SandboxedRenderer(), repo)

    # The plan reads the render: prefixed name, namespace, sidecar deleted, JSON 6902 memory, CPU limit removed.
    assert (workload["metadata"]["name"], workload["metadata"]["namespace"]) == ("prod-checkout", "shop")
    [container] = workload["spec"]["template"]["spec"]["containers"]
    assert (container["name"], container["resources"]["limits"]) == ("checkout", {"memory": "384Mi"})
    # The edit lands in the JSON 6902 operation that sets the value, nowhere else.
    assert list(texts) == [JSON6902]
    assert texts[JSON6902] == repo.read_text(JSON6902).replace("value: 384Mi", "value: 768Mi")
    assert verdict == "verified: kubectl kustomize overlays/prod before and after differ only in the planned fields"
    assert checks and checks[0] == "render: 2 objects, only Deployment/shop/prod-checkout changed"
    after = deployment(rendered_tree(repo, texts))
    [edited] = after["spec"]["template"]["spec"]["containers"]
    assert edited["resources"]["limits"] == {"memory": "768Mi"} and after["metadata"]["name"] == "prod-checkout"


def test_without_a_renderer_the_fix_is_planned_on_the_live_object_and_not_verified(repo: DirRepo,
                                                                                   tmp_path: Path) -> None:
    """No kustomize, no kubectl on the search path: nothing is computed here; the live object is the plan's
    input and the PR says why the render was not checked."""
    nothing = SandboxedRenderer(search_path=str(tmp_path / "empty-bin"), helm_sdk=False)
    assert not nothing.kustomize_installed() and not nothing.helm_installed()
    ev = evidence(repo)
    workload, texts, verdict, checks = fix(nothing, repo)

    assert workload == {k: v for k, v in ev.object.items() if k != "status"}
    assert list(texts) == [JSON6902] and "value: 768Mi" in texts[JSON6902]
    assert verdict == ("not verified: no kustomize renderer installed (kustomize or kubectl); the fix was planned "
                       "on the live object")
    assert checks == []


def test_a_kustomize_too_old_for_the_overlay_says_not_verified_and_why(repo: DirRepo, tmp_path: Path) -> None:
    """kubectl 1.20 (kustomize v2, Debian bookworm's) refuses this overlay: planned on the live object, and the
    PR quotes its error."""
    bin_dir = tmp_path / "bin"
    kubectl_120(bin_dir)
    old = SandboxedRenderer(search_path=str(bin_dir))
    ev = evidence(repo)
    workload, texts, verdict, checks = fix(old, repo)

    assert workload == {k: v for k, v in ev.object.items() if k != "status"}
    assert list(texts) == [JSON6902]
    assert verdict.startswith("not verified: kubectl kustomize cannot render overlays/prod as it is in git")
    assert "cannot unmarshal object into Go struct field Kustomization.patchesStrategicMerge" in verdict
    assert checks == []


# ---------------------------------------------------------------- versions, start-up check, doctor


def test_this_machines_renderers_and_their_versions() -> None:
    import helm_python

    found = renderers.renderer_versions()
    assert found["kustomize"].startswith("v") and not renderers.too_old(found["kustomize"]), found
    assert found["kustomize_via"].split()[0] in ("kustomize", "kubectl"), found
    assert found["helm"] == helm_python.helm_sdk_version() or found["helm_via"].startswith("helm "), found
    assert renderers.renderer_versions() == found  # cached: the same answer, no second probe needed


def test_the_helm_sdk_version_is_asked_in_a_child_so_the_service_never_maps_helms_go_runtime(
        tmp_path: Path) -> None:
    # A fresh interpreter (this one has imported helm_python in other tests); an empty search path: no helm
    # binary, so the SDK is the Helm renderer, as on a machine with the helm extra and no binary.
    script = ("import json, sys\nfrom app.adapters import renderers\nfound = renderers.check_at_start(sys.argv[1])\n"
              "print(json.dumps({'found': found, 'loaded': 'helm_python' in sys.modules}))")
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                          check=True, timeout=60)
    answer = json.loads(proc.stdout)
    import helm_python

    assert answer["found"]["helm_via"].startswith("helm-python-sdk "), answer
    assert answer["found"]["helm"] == helm_python.helm_sdk_version(), answer
    assert answer["loaded"] is False, answer  # importing it maps Helm's Go runtime for good: ~50 MB resident


def test_kubectl_120_is_kustomize_v2_too_old_warned_at_start_and_failed_by_doctor(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    bin_dir = tmp_path / "bin"
    exe = kubectl_120(bin_dir)
    found = renderers.renderer_versions(str(bin_dir))
    assert (found["kustomize"], found["kustomize_via"]) == ("v2.0.3", f"kubectl {exe}")
    assert renderers.too_old(found["kustomize"])

    with caplog.at_level(logging.INFO, logger="app.adapters.renderers"):
        renderers.check_at_start(str(bin_dir))
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "older than v4" in warning.getMessage() and "not verified" in warning.getMessage()
    assert warning.__dict__["renderer_kustomize"] == "v2.0.3"

    kustomize_row, helm_row = doctor.renderer_rows(str(bin_dir))
    assert (kustomize_row.name, kustomize_row.status) == ("kustomize", "fail")
    assert f"kubectl {exe}: kustomize v2.0.3, older than v4" in kustomize_row.detail
    assert (helm_row.name, helm_row.status) == ("helm", "ok")


def test_no_kustomize_at_all_is_absent_warned_and_failed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    empty = str(tmp_path / "empty-bin")
    assert renderers.renderer_versions(empty)["kustomize"] == "absent"
    with caplog.at_level(logging.WARNING, logger="app.adapters.renderers"):
        renderers.check_at_start(empty)
    assert [r.getMessage() for r in caplog.records if "no kustomize renderer" in r.getMessage()]
    assert doctor.renderer_rows(empty)[0].status == "fail"


@pytest.mark.parametrize(("printed", "version"), [
    ("v5.4.3\n", "v5.4.3"),  # kustomize v5 `version`
    ("{Version:kustomize/v4.5.7 GitCommit:56d82a8378dfc8dc3b3b1085e5a6e67b82966bd7 BuildDate:2022-08-02T16:35:54Z "
     "GoOs:linux GoArch:amd64}\n", "v4.5.7"),  # kustomize v4 `version`
], ids=["v5", "v4"])
def test_a_standalone_kustomize_is_preferred_to_kubectl(tmp_path: Path, printed: str, version: str) -> None:
    """`kustomize build DIR --load-restrictor LoadRestrictionsRootOnly`, in the sandbox, before kubectl's."""
    bin_dir, report = tmp_path / "bin", tmp_path / "report.txt"
    kubectl_120(bin_dir)
    exe = stand_in(bin_dir, "kustomize", f"""case "$1 $2" in
  "version ") printf '%s' '{printed}' ;;
  "build --help") echo "      --load-restrictor LoadRestrictions   if set to 'LoadRestrictionsNone'..." ;;
  *) {{ echo "argv=$*"; echo "home=$HOME"; echo "proxy=$HTTPS_PROXY"; }} > {report}
     printf 'apiVersion: v1\\nkind: ConfigMap\\nmetadata:\\n  name: rendered\\n' ;;
esac
""")
    found = renderers.renderer_versions(str(bin_dir))
    assert (found["kustomize"], found["kustomize_via"]) == (version, f"kustomize {exe}")
    assert doctor.renderer_rows(str(bin_dir))[0].status == "ok"

    [config] = SandboxedRenderer(search_path=str(bin_dir)).kustomize({"overlays/prod/kustomization.yaml": ""}, PROD)
    assert config["metadata"]["name"] == "rendered"
    seen = report.read_text().splitlines()
    assert "argv=build overlays/prod --load-restrictor LoadRestrictionsRootOnly" in seen
    assert "proxy=http://127.0.0.1:9" in seen and any(s.startswith("home=") and "autofix-kustomize-" in s for s in seen)


def test_a_helm_binary_renders_with_helm_template_offline_and_without_plugins(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`helm template` when a helm binary is on the path: no plugin (an empty HELM_PLUGINS), no repository
    configured, HOME in the render's temporary directory, the merged values in a file, nothing of ours inherited."""
    bin_dir, report = tmp_path / "bin", tmp_path / "report.txt"
    exe = stand_in(bin_dir, "helm", f"""case "$1" in
  version) echo "v3.16.2+g13654a5" ;;
  template)
    {{ echo "argv=$*"; env; echo "plugins=$(ls -A "$HELM_PLUGINS" | wc -l)";
       echo "repositories=$(test -e "$HELM_REPOSITORY_CONFIG" && echo present || echo none)";
       echo "values=$(cat "$7")"; }} > {report}
    printf '# Source: checkout/templates/deployment.yaml\\napiVersion: apps/v1\\nkind: Deployment\\nmetadata:\\n  name: %s\\n' "$2" ;;
esac
""")
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_canary_must_not_reach_the_renderer")
    found = renderers.renderer_versions(str(bin_dir))
    assert (found["helm"], found["helm_via"]) == ("v3.16.2", f"helm {exe}")
    chart = {"charts/checkout/Chart.yaml": "apiVersion: v2\nname: checkout\nversion: 1.0.0\n"}

    [rendered] = SandboxedRenderer(search_path=str(bin_dir)).helm(
        chart, "charts/checkout", values={"resources": {"limits": {"memory": "768Mi"}}}, release="checkout",
        namespace="shop")

    assert rendered == {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "checkout"}}
    seen = report.read_text().splitlines()
    env = dict(line.split("=", 1) for line in seen if "=" in line)
    argv = env["argv"].split()
    assert argv[:5] == ["template", "checkout", argv[2], "--namespace", "shop"] and argv[2].endswith(
        "/tree/charts/checkout") and argv[5] == "--values"
    assert json.loads(env["values"]) == {"resources": {"limits": {"memory": "768Mi"}}}
    assert (env["plugins"], env["repositories"]) == ("0", "none")
    assert env["HELM_PLUGINS"].startswith(env["HOME"]) and "autofix-helm-" in env["HOME"]
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:9" and "GITHUB_TOKEN" not in env
