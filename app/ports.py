"""The edges of the pipeline as Protocols: each has one real adapter and a small recording fake for tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

K8sObject = dict[str, Any]


class ClusterReader(Protocol):
    """Read-only view of the cluster. Kinds are Kubernetes kinds ("Pod", "Deployment", "Application", ...).

    Objects come back as API JSON (camelCase dicts). ``get`` returns None for 404. Transient trouble
    (timeouts, 5xx) raises TemporaryError; missing permission raises PermanentError.
    """

    def get(self, kind: str, namespace: str | None, name: str) -> K8sObject | None: ...

    def list(self, kind: str, namespace: str | None, *, label_selector: str | None = None) -> list[K8sObject]: ...

    def logs(self, namespace: str, pod: str, container: str, *, previous: bool, tail_lines: int) -> str: ...


@dataclass(frozen=True)
class PushResult:
    branch: str
    commit: str
    base_commit: str
    diff: str  # `git diff base..branch` as pushed


class Workspace(Protocol):
    """A local clone of the GitOps repository. Writes reach the remote only as new branches."""

    @property
    def root(self) -> Path: ...

    def sync(self) -> str:
        """Fetch the remote and check out the base branch clean; returns the base commit sha."""
        ...

    def read_text(self, path: str) -> str: ...

    def list_files(self, *, suffixes: Sequence[str] = (".yaml", ".yml")) -> list[str]:
        """Repository-relative POSIX paths of tracked files at the base commit."""
        ...

    def push_branch(self, branch: str, files: Mapping[str, str], *, message: str) -> PushResult:
        """Create ``branch`` from the base with ``files`` (path -> new text), commit, force-push it."""
        ...

    def remote_branch_diff(self, branch: str) -> str | None:
        """The diff base..origin/branch if the branch exists on the remote, else None."""
        ...


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    branch: str
    state: str = "open"  # open, closed, merged
    title: str = ""
    labels: tuple[str, ...] = ()


class Forge(Protocol):
    """A code host: pull requests and comments. The branch was already pushed by the Workspace."""

    def find_open_pr(self, branch: str) -> PullRequest | None: ...

    def open_pr(self, *, branch: str, base: str, title: str, body: str, labels: Sequence[str]) -> PullRequest: ...

    def update_pr(self, pr: PullRequest, *, title: str, body: str, comment: str) -> PullRequest: ...

    def comment(self, pr: PullRequest, body: str) -> None: ...


@dataclass(frozen=True)
class RunHandle:
    run_id: str
    url: str


@dataclass
class RunRecord:
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)  # file name -> text


class Tracker(Protocol):
    """Experiment tracking: one run per alert handled."""

    def start_run(self, *, name: str, tags: Mapping[str, str]) -> RunHandle: ...

    def finish_run(self, handle: RunHandle, record: RunRecord, *, status: str) -> None: ...


class Advisor(Protocol):
    """An optional LLM: explains a diagnosis. Its words are data, never instructions."""

    @property
    def model(self) -> str: ...

    def explain(self, evidence_summary: str, root_cause: str) -> str | None: ...


class Handler(Protocol):
    """Handles one alert end to end (the pipeline). Raises TemporaryError when the job should be retried."""

    def handle(self, incident: Any) -> Any: ...  # app.models.incident.Incident -> app.models.outcome.Outcome
