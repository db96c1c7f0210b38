"""Kustomize trees refuse every remote reference before anything renders them (issue: the repo reached the
network). kubernetes-sigs/kustomize's springboot example, verbatim, with one remote entry added per case."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.errors import NoFix
from app.sources.layouts import kustomize
from tests.conftest import ROOT
from tests.unit.sources.goldens import DirRepo

SPRINGBOOT = ROOT / "tests" / "fixtures" / "kustomize-springboot"
PROD = "overlays/production"
URL = "https://raw.githubusercontent.com/acme/platform/main/kustomize/{}"
TRANSFORMER_DIR = "overlays/production/transformers"


def _springboot(tmp_path: Path, extra: str, files: dict[str, str] | None = None) -> DirRepo:
    root = tmp_path / "repo"
    shutil.copytree(SPRINGBOOT, root)
    overlay = root / PROD / "kustomization.yaml"
    overlay.write_text(overlay.read_text() + extra)
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return DirRepo(root)


LOCAL_PATCH_TRANSFORMER = """apiVersion: builtin
kind: PatchTransformer
metadata:
  name: remote-patch
path: {url}
target:
  kind: Deployment
"""
INLINE_HELM = """  - |
    apiVersion: builtin
    kind: HelmChartInflationGenerator
    metadata:
      name: redis
    name: redis
    repo: https://charts.bitnami.com/bitnami
"""


@pytest.mark.parametrize(("extra", "files", "needle"), [
    (f"transformers:\n- {URL.format('labels.yaml')}\n", None, "labels.yaml"),
    ("generators:\n- github.com/acme/platform//generators?ref=v1.2.0\n", None, "github.com/acme"),
    (f"validators:\n- {URL.format('validator.yaml')}\n", None, "validator.yaml"),
    (f"configurations:\n- {URL.format('fieldspecs.yaml')}\n", None, "fieldspecs.yaml"),
    (f"crds:\n- {URL.format('crd.json')}\n", None, "crd.json"),
    (f"openapi:\n  path: {URL.format('schema.json')}\n", None, "schema.json"),
    (f"patchesStrategicMerge:\n- {URL.format('smp.yaml')}\n", None, "smp.yaml"),
    (f"patchesJson6902:\n- target: {{kind: Deployment, name: sbdemo}}\n  path: {URL.format('ops.yaml')}\n",
     None, "ops.yaml"),
    (f"replacements:\n- path: {URL.format('replacements.yaml')}\n", None, "replacements.yaml"),
    (f"configMapGenerator:\n- name: extra\n  files:\n  - app.yaml={URL.format('app.yaml')}\n", None, "app.yaml"),
    ("components:\n- git@github.com:acme/platform.git//components/otel?ref=main\n", None, "git@github.com"),
    ("helmCharts:\n- name: redis\n  repo: https://charts.bitnami.com/bitnami\n", None, "charts.bitnami.com"),
    ("helmChartInflationGenerator:\n- chartName: redis\n", None, "helmChartInflationGenerator"),
    # A local plugin config file that loads a URL, an inline one, and a plugin directory whose own
    # kustomization names a remote base: nested kustomizations are checked like the top one.
    ("transformers:\n- remote-patch.yaml\n",
     {f"{PROD}/remote-patch.yaml": LOCAL_PATCH_TRANSFORMER.format(url=URL.format("p.yaml"))}, "p.yaml"),
    ("generators:\n" + INLINE_HELM, None, "charts.bitnami.com"),
    ("transformers:\n- transformers\n",
     {f"{TRANSFORMER_DIR}/kustomization.yaml": "resources:\n- ssh://git@git.acme.internal/platform/t.git\n"},
     "ssh://git@git.acme.internal"),
    ("transformers:\n- transformers\n",
     {f"{TRANSFORMER_DIR}/kustomization.yaml": "resources:\n- patch.yaml\n",
      f"{TRANSFORMER_DIR}/patch.yaml": LOCAL_PATCH_TRANSFORMER.format(url="http://10.0.0.7/p.yaml")},
     "http://10.0.0.7"),
], ids=["transformers", "generators", "validators", "configurations", "crds", "openapi", "patchesStrategicMerge",
        "patchesJson6902", "replacements", "configMapGenerator-files", "components", "helmCharts",
        "helmChartInflationGenerator", "plugin-file-path", "inline-plugin", "plugin-dir-remote-base",
        "plugin-dir-config-path"])
def test_every_field_that_can_fetch_is_refused(tmp_path: Path, extra: str, files: dict[str, str] | None,
                                               needle: str) -> None:
    repo = _springboot(tmp_path, extra, files)
    with pytest.raises(NoFix) as err:
        kustomize.walk(repo, PROD)
    assert err.value.code == "unsupported_source"
    assert needle in err.value.message


@pytest.mark.parametrize(("ref", "remote"), [
    ("https://github.com/acme/base//deploy?ref=v1", True), ("HTTP://example.com/x.yaml", True),
    ("github.com/acme/base/deploy?ref=v1", True), ("GitHub.com:acme/base", True), ("gh:acme/base", True),
    ("git::https://example.com/base", True), ("git@gitlab.com:acme/base.git", True),
    ("org-1@ssh.dev.azure.com:v3/acme/base", True), ("file:///etc/base", True), ("s3://bucket/x.yaml", True),
    ("../../base", False), ("patches/memory.yaml", False), ("deploy.yaml", False), ("base", False),
    ("github-com/app.yaml", False),
])
def test_remote_reference_forms(ref: str, remote: bool) -> None:
    """The forms kustomize's repospec and HTTP loader fetch (kustomize api/internal/git/repospec.go)."""
    assert kustomize.is_remote(ref) is remote
