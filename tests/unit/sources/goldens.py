"""Golden layout cases: tests/golden/layouts/<case>/ holds

- ``original/``: a GitOps repo, copied verbatim from ``tests/scenarios/<scenario>/repo`` (the scenario is
  named in case.json; its cluster.json gives the workload and its Argo CD or Flux objects);
- ``case.json``: the planned change (workload field paths, old and new) and what the layout must answer:
  its edits, the environments reached, the render verdict and checks, the path the change record shows;
- ``expected/``: every file the change edits, as the branch must hold it (compared byte for byte);
- ``renders.json``: what the real renderer printed for the inputs the layout passed it, replayed by the
  fake renderer (tests/fakes/renderers.py); absent when the layout renders nothing.

Re-record the renders after a deliberate change: ``.venv/bin/python -m tests.unit.sources.goldens``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from app import yaml_rt
from app.adapters.renderers import SandboxedRenderer
from app.models.changes import FieldChange, FileEdit, Location, Plan
from app.models.evidence import Evidence
from app.models.incident import Incident, WorkloadRef
from app.ports import Renderer
from app.sources import deployers
from app.sources.deployers.repo_urls import RepoIdentity
from app.sources.layouts import Layout, Layouts
from tests.conftest import ROOT, SCENARIOS
from tests.fakes.renderers import FakeRenderer, RecordingRenderer

GOLDEN = ROOT / "tests" / "golden" / "layouts"
IDENTITY = RepoIdentity(git_url="https://github.com/acme/gitops.git", github_repo="acme/gitops")
GITOPS_KINDS = ("Application", "Kustomization", "GitRepository", "HelmRelease")


class DirRepo:
    """A RepoView over a directory (what the workspace offers over a checkout)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def list_files(self, *, suffixes: Any = (".yaml", ".yml")) -> list[str]:
        names = sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*") if p.is_file())
        return [n for n in names if not suffixes or n.endswith(tuple(suffixes))]

    def read_text(self, path: str) -> str:
        return (self.root / path).read_text()


def evidence(scenario: str) -> Evidence:
    """The scenario's Deployment shop/checkout and the GitOps objects the cluster holds for it."""
    items = json.loads((SCENARIOS / scenario / "cluster.json").read_text())["items"]
    dep = next(i for i in items if i["kind"] == "Deployment")
    incident = Incident.model_validate({"alertname": "KubePodCrashLooping", "fingerprint": "0" * 16,
                                        "status": "firing", "starts_at": "2026-11-23T15:15:16Z",
                                        "labels": {"namespace": "shop"}})
    return Evidence(incident=incident, workload=WorkloadRef(kind="Deployment", namespace="shop", name="checkout"),
                    object=dep, gitops=[i for i in items if i["kind"] in GITOPS_KINDS])


def files_under(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}


def apply(edits: list[FileEdit], repo: DirRepo) -> dict[str, str]:
    """The edited files' new texts, each edit written by the round-trip editor in turn (as the pipeline does)."""
    texts: dict[str, str] = {}
    for edit in edits:
        old = texts.get(edit.path) or repo.read_text(edit.path)
        texts[edit.path] = yaml_rt.edit(old, document_index=edit.document_index, prefix=edit.prefix,
                                        changes=[(c.path, c.new) for c in edit.changes])
    return texts


@dataclass(frozen=True)
class Case:
    name: str

    @property
    def dir(self) -> Path:
        return GOLDEN / self.name

    @cached_property
    def meta(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / "case.json").read_text())
        return data

    @property
    def repo(self) -> DirRepo:
        return DirRepo(self.dir / "original")

    @property
    def evidence(self) -> Evidence:
        return evidence(self.meta["scenario"])

    @property
    def plan(self) -> Plan:
        return Plan(cause=self.meta["cause"], summary="golden",
                    changes=[FieldChange(**c) for c in self.meta["changes"]])

    @property
    def expected(self) -> dict[str, str]:
        return files_under(self.dir / "expected")

    def fake(self, **kw: Any) -> FakeRenderer:
        return FakeRenderer.from_file(self.dir / "renders.json", **kw)


def cases() -> list[Case]:
    return [Case(p.name) for p in sorted(GOLDEN.iterdir()) if (p / "case.json").exists()]


@dataclass(frozen=True)
class Result:
    """Everything the layout answered for a case, in pipeline order."""

    location: Location
    layout: Layout
    workload: dict[str, Any]
    edits: list[FileEdit]
    texts: dict[str, str]
    rendered: str
    checks: list[str]
    environments: tuple[str, ...]
    shown_path: str


def run(case: Case, renderer: Renderer) -> Result:
    """The case through its deployer and layout, as the change stage runs them."""
    ev, repo, plan = case.evidence, case.repo, case.plan
    location = deployers.locate(ev, repo, IDENTITY)
    layout = Layouts(renderer=renderer).of(location)
    workload = layout.effective(location, ev, repo=repo)
    edits = layout.edits(location, plan, evidence=ev, repo=repo, workload=workload)
    texts = apply(edits, repo)
    rendered, checks = layout.verify(location, ev, repo=repo, plan=plan, new_texts=texts)
    return Result(location=location, layout=layout, workload=workload, edits=edits, texts=texts, rendered=rendered,
                  checks=checks, environments=layout.environments(location, edits, repo=repo),
                  shown_path=layout.shown_path(location, edits))


def record(case: Case) -> list[dict[str, Any]]:
    """What the real renderer prints for the case's renders, in the form renders.json keeps."""
    recorder = RecordingRenderer(SandboxedRenderer())
    run(case, recorder)
    return [r.to_json() for r in recorder.recordings.values()]


def dumps(recordings: list[dict[str, Any]]) -> str:
    return json.dumps(recordings, indent=1, sort_keys=True) + "\n"


if __name__ == "__main__":
    for found in cases():
        recorded = record(found)
        target = found.dir / "renders.json"
        if recorded:
            target.write_text(dumps(recorded))
        elif target.exists():
            target.unlink()
        print(f"{found.name}: {len(recorded)} render(s)")
