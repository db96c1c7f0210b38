"""What a stage test runs against, in process: the scenario's cluster from its snapshot (SnapshotCluster),
its GitOps repo as a real bare repository with a real checkout (GitWorkspace), the local forge writing PRs
to disk, the real job store as the ledger, the policy from policies/. The run record travels on the Outcome
(``outcome.run``) or on the exception: no network, no MLflow, these tests are fast.
"""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app import advice, causes, policies, targets
from app.adapters.renderers import SandboxedRenderer
from app.adapters.snapshot import SnapshotCluster
from app.adapters.store import JobStore
from app.adapters.workspace import GitWorkspace
from app.demo import seed_bare_repo
from app.forges.local import LocalForge
from app.models.alertmanager import WebhookPayload
from app.models.diagnosis import Diagnosis
from app.models.evidence import Evidence
from app.models.incident import Incident
from app.pipeline import Pipeline
from app.ports import Advisor
from app.settings import DEFAULT_POLICY_DIR
from app.sources.deployers.repo_urls import RepoIdentity
from app.sources.layouts import Layouts
from app.stages.evidence import gather
from tests.conftest import EXAMPLES

DEMO = EXAMPLES / "demo"


@dataclass
class ScriptedAdvisor:
    """The Advisor port in memory: answers what it was given, or fails as told; keeps the prompts it got."""

    model: str = "gpt-4o-mini"
    proposal: advice.Proposal | None = None
    narrative: str = ""
    error: advice.AdvisorError | None = None
    prompts: list[advice.Prompt] = field(default_factory=list)

    def explain(self, prompt: advice.Prompt) -> advice.Answer[str]:
        return advice.Answer(value=self._answer(prompt, self.narrative), usage=self._usage())

    def propose(self, prompt: advice.Prompt) -> advice.Answer[advice.Proposal]:
        value = self._answer(prompt, self.proposal)
        assert value is not None, "no proposal scripted"
        return advice.Answer(value=value, usage=self._usage())

    def check(self) -> str:
        return f"model {self.model} is served"

    def _answer(self, prompt: advice.Prompt, value: Any) -> Any:
        self.prompts.append(prompt)
        if self.error is not None:
            raise self.error
        return value

    def _usage(self) -> advice.Usage:
        return advice.Usage(model=f"{self.model}-2024-07-18", tokens_in=812, tokens_out=64, seconds=0.8)


@dataclass
class World:
    scenario: Path
    bare: Path
    cluster: SnapshotCluster
    workspace: GitWorkspace
    forge: LocalForge
    ledger: JobStore
    policy: policies.Policy
    prs: Path
    offset: float = 0.0  # seconds the bot's clock runs ahead of the wall clock the local forge stamps PRs with

    def incidents(self) -> list[Incident]:
        return incidents(self.scenario)

    def incident(self, index: int = 0, **labels: str) -> Incident:
        incident = self.incidents()[index]
        return incident.model_copy(update={"labels": {**incident.labels, **labels}})

    def evidence(self, index: int = 0) -> Evidence:
        incident = self.incident(index)
        return gather(self.cluster, targets.resolve(self.cluster, incident), incident)

    def diagnosis(self, ev: Evidence) -> Diagnosis:
        return causes.diagnose(ev)[0]

    def now(self) -> float:
        return time.time() + self.offset

    def pipeline(self, *, advisor: Advisor | None = None, own_namespace: str | None = None,
                 policy: policies.Policy | None = None) -> Pipeline:
        return Pipeline(policy=policy or self.policy, cluster=self.cluster, workspace=self.workspace,
                        forge=self.forge, identity=RepoIdentity(git_url=str(self.bare), github_repo="acme/gitops"),
                        base="main", advisor=advisor, ledger=self.ledger, own_namespace=own_namespace,
                        layouts=self.layouts, clock=self.now)

    @property
    def layouts(self) -> Layouts:
        """The layouts with the real sandboxed renderers, as app/wiring.py builds them."""
        return Layouts(renderer=SandboxedRenderer())

    def remote_branches(self) -> list[str]:
        """The branches of the bare remote (what the bot pushed)."""
        out = subprocess.run(["git", "branch", "--format=%(refname:short)"], cwd=self.bare, check=True,
                             capture_output=True, text=True, timeout=30).stdout
        return sorted(out.split())

    def pr_body(self, number: int) -> str:
        [folder] = self.prs.glob(f"{number}-*/")
        return (folder / "body.md").read_text()

    def opened(self) -> list[dict[str, Any]]:
        """The PRs the local forge holds (pr.json), oldest first."""
        return [json.loads((d / "pr.json").read_text()) for d in sorted(self.prs.glob("*/"))]


def make_world(tmp_path: Path, scenario: Path = DEMO) -> World:
    bare = tmp_path / "gitops.git"
    seed_bare_repo(scenario / "repo", bare)
    workspace = GitWorkspace(str(bare), base="main", checkout=tmp_path / "checkout",
                             author="gitops-autofix[bot] <gitops-autofix@users.noreply.github.com>")
    return World(scenario=scenario, bare=bare, cluster=SnapshotCluster.from_file(scenario / "cluster.json"),
                 workspace=workspace, forge=LocalForge(tmp_path / "prs"), ledger=JobStore(tmp_path / "jobs.sqlite3"),
                 policy=policies.load(DEFAULT_POLICY_DIR), prs=tmp_path / "prs")


def incidents(scenario: Path) -> list[Incident]:
    payload = WebhookPayload.model_validate_json((scenario / "alert.json").read_bytes())
    return [Incident.from_alert(alert) for alert in payload.alerts]


def snapshot(scenario: Path = DEMO, *, extra: list[dict[str, Any]] | None = None) -> SnapshotCluster:
    """The scenario's cluster snapshot, with ``extra`` objects (a Namespace and its labels, say) added."""
    data = json.loads((scenario / "cluster.json").read_text())
    return SnapshotCluster([*data["items"], *(extra or [])], logs=data.get("logs"))


def namespace(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
