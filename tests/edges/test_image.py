"""The image as a release pipeline builds it: current renderers copied from their images pinned by digest
(no Debian kubectl 1.20 and its kustomize v2), on PATH where the app looks; and a workflow that builds amd64
and arm64 with an SBOM and provenance, then signs the pushed digest with cosign. No Docker engine here: the
Dockerfile is linted (tests/edges/test_deploy.py runs hadolint) and read, the workflow parsed."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.conftest import ROOT

DIGEST = re.compile(r"@sha256:[0-9a-f]{64}\b")


def instructions() -> list[str]:
    text = (ROOT / "Dockerfile").read_text()
    return [line for line in text.replace("\\\n", " ").splitlines() if line and not line.startswith("#")]


def test_the_renderers_come_from_their_images_pinned_by_tag_and_digest() -> None:
    stages = {line.split()[-1]: line.split()[1] for line in instructions() if line.startswith("FROM ") and " AS " in line}
    assert re.fullmatch(r"registry\.k8s\.io/kustomize/kustomize:v5\.\d+\.\d+@sha256:[0-9a-f]{64}", stages["kustomize"])
    assert re.fullmatch(r"alpine/helm:3\.\d+\.\d+@sha256:[0-9a-f]{64}", stages["helm"])
    copies = [line for line in instructions() if line.startswith("COPY --from=")]
    assert any("--from=kustomize" in c and c.endswith(" /usr/local/bin/kustomize") for c in copies)
    assert any("--from=helm" in c and c.endswith(" /usr/local/bin/helm") for c in copies)
    installs = " ".join(line for line in instructions() if "apt-get install" in line)
    assert "git" in installs.split() and "tini" in installs.split()
    assert "kubernetes-client" not in installs  # Debian's kubectl 1.20: kustomize v2


def workflow() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / ".github" / "workflows" / "image.yml").read_text())
    return loaded


def steps() -> list[dict[str, Any]]:
    [job] = workflow()["jobs"].values()
    found: list[dict[str, Any]] = job["steps"]
    return found


def uses(prefix: str) -> list[dict[str, Any]]:
    return [s for s in steps() if s.get("uses", "").startswith(prefix)]


def test_the_workflow_builds_both_platforms_with_sbom_and_provenance() -> None:
    assert uses("docker/setup-qemu-action@") and uses("docker/setup-buildx-action@")
    [release] = [s for s in uses("docker/build-push-action@") if "platforms" in s.get("with", {})]
    options = release["with"]
    assert set(options["platforms"].split(",")) == {"linux/amd64", "linux/arm64"}
    assert options["sbom"] is True and str(options["provenance"]).startswith(("true", "mode=max"))
    for step in steps():  # every action pinned at least by major version, never a branch
        if "uses" in step:
            assert re.search(r"@v\d+(\.\d+)*$|@[0-9a-f]{40}$", step["uses"]), step["uses"]


def test_the_workflow_signs_the_pushed_digest_keyless_and_attests_an_sbom() -> None:
    [job] = workflow()["jobs"].values()
    assert job["permissions"]["id-token"] == "write"  # keyless: the workflow's OIDC identity
    assert uses("sigstore/cosign-installer@")
    runs = [s.get("run", "") for s in steps()]
    [sign] = [r for r in runs if r.startswith("cosign sign ")]
    assert "@${DIGEST}" in sign and "--key" not in sign  # the digest, never a tag that can move
    digest_envs = [s["env"]["DIGEST"] for s in steps() if "DIGEST" in s.get("env", {})]
    assert digest_envs and all(e == "${{ steps.build.outputs.digest }}" for e in digest_envs)
    [sbom] = uses("anchore/sbom-action@")
    assert sbom["with"]["image"].endswith("@${{ steps.build.outputs.digest }}")
    assert any(r.startswith("cosign attest ") and "--predicate sbom.spdx.json" in r for r in runs)
    assert [s for s in steps() if s.get("id") == "build"]
