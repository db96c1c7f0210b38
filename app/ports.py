"""The edges of the pipeline as Protocols: each has one real adapter and a small recording fake for tests."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from app.models.repo_index import RepoIndex
from app.models.runs import RECORD_REF, PendingRun, RunRecord, record_ref

__all__ = ["RECORD_REF", "PendingRun", "RunRecord", "record_ref"]  # re-exported: the run record is a port's value

if TYPE_CHECKING:
    from app.advice import Answer, Prompt, Proposal

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


@dataclass(frozen=True)
class TreeEntry:
    """A regular file of a commit (symlinks and submodules are left out: never followed)."""

    path: str
    blob: str  # git object id
    size: int  # bytes


@dataclass(frozen=True)
class ChangedFile:
    """A file changed between two commits. A rename is a delete plus an add (``--no-renames``)."""

    status: str  # A, M or D (a file that became a symlink or submodule is D)
    path: str
    blob: str = ""  # the new object id; empty for D


@dataclass(frozen=True)
class FileCommit:
    """A commit of the base branch that changed one file, with the file's text on both sides of it.

    ``time`` is the committer time (Unix seconds): when the change landed on the base branch (a squash or
    merge commit's own time), which is what a window ("changed in the last 24 h") is about; ``authored``
    is when its author wrote it. ``text`` is None when the commit deleted the file, ``previous`` (the text
    at the commit's first parent) None when it added it.
    """

    sha: str
    time: float
    author: str  # "Name <email>", as the commit says (untrusted text)
    authored: float
    subject: str  # the first line of the message (untrusted text)
    text: str | None
    previous: str | None


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

    def push_branch(self, branch: str, files: Mapping[str, str], *, message: str,
                    owner: str | None = None) -> PushResult:
        """Create ``branch`` from the base with ``files`` (path -> new text), commit, force-push it.

        With ``owner`` (the id of the workload and cause the change is for) the commit carries it, and an
        existing remote branch whose change belongs to another owner is refused (PermanentError
        ``branch_taken``), never overwritten.
        """
        ...

    def remote_branch_files(self, branch: str) -> dict[str, tuple[str | None, str | None]] | None:
        """The files the remote branch changes since it left the base: path -> (text there, text on the
        branch), None for an absent file; None when the branch is not on the remote."""
        ...

    def head(self) -> str:
        """The base commit this worker reads (what its last ``sync()`` returned)."""
        ...

    def changed_files(self, old_commit: str, new_commit: str) -> list[ChangedFile]: ...

    def tree(self, commit: str) -> list[TreeEntry]: ...

    def read_blobs(self, blobs: Sequence[str]) -> dict[str, bytes]: ...

    def file_history(self, path: str, *, since: float, limit: int = 20) -> list[FileCommit]:
        """The commits on the base branch's first-parent line, up to ``head()``, that changed ``path`` and
        landed at or after ``since`` (Unix seconds), newest first, at most ``limit``: who changed the file,
        when, and its text before and after each (``git log --first-parent -- path``)."""
        ...

    @property
    def index(self) -> RepoIndex:
        """The repository index at ``head()``: loaded, updated from ``git diff`` or built, then kept."""
        ...


class Renderer(Protocol):
    """Renders a GitOps tree the way Argo CD and Flux would, offline, from file texts (path -> text).

    The real one (app/adapters/renderers.py) runs `kustomize build` (or `kubectl kustomize`) and `helm template`
    (or the Helm SDK) sandboxed; layouts reach it only through this port, injected at wiring time. A tool that
    is not installed is not an error: the layout asks first (``*_installed``), plans on the live object (never on
    a computation of its own) and says "not verified" in the PR.
    A render that fails raises PermanentError (``render_failed``; ``renderer_missing`` if asked anyway).
    """

    def kustomize_installed(self) -> bool: ...

    def helm_installed(self) -> bool: ...

    def kustomize(self, files: Mapping[str, str], directory: str) -> list[K8sObject]:
        """Objects `kustomize build DIRECTORY` renders from ``files``."""
        ...

    def helm(self, files: Mapping[str, str], chart_dir: str, *, values: Mapping[str, Any], release: str,
             namespace: str) -> list[K8sObject]:
        """Objects the chart in ``chart_dir`` renders with ``values`` as release ``release``."""
        ...


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    branch: str
    state: str = "open"  # open, closed, merged
    title: str = ""
    labels: tuple[str, ...] = ()
    # What the ledger is rebuilt from (not part of a PR's identity, so not compared): the body's hidden
    # marker and the times, ISO 8601 UTC as the forge reports them.
    body: str = field(default="", compare=False, repr=False)
    created_at: str | None = field(default=None, compare=False)
    merged_at: str | None = field(default=None, compare=False)
    closed_at: str | None = field(default=None, compare=False)
    merge_commit: str | None = field(default=None, compare=False)  # the commit a merged PR landed as on the base
    merged_by: str | None = field(default=None, compare=False)  # the login; only ``Forge.get_pr`` asks for it


@dataclass(frozen=True)
class PrFile:
    """A file a pull request changes, with the forge's patch of it (unified diff hunks; "" when the forge
    leaves it out: binary, or too large). ``too_large``: the forge changed the file but did not show the hunks
    (GitLab's ``too_large``/``collapsed``): an empty patch then says nothing about what changed."""

    path: str
    patch: str = ""
    too_large: bool = False


class Forge(Protocol):
    """A code host: pull requests and comments. The branch was already pushed by the Workspace."""

    def find_open_pr(self, branch: str) -> PullRequest | None: ...

    def open_pr(self, *, branch: str, base: str, title: str, body: str, labels: Sequence[str]) -> PullRequest: ...

    def update_pr(self, pr: PullRequest, *, title: str, body: str, comment: str) -> PullRequest: ...

    def comment(self, pr: PullRequest, body: str) -> None: ...

    def list_prs(self, label: str, state: str = "all", *, branch: str | None = None,
                 updated_since: float | None = None) -> list[PullRequest]:
        """PRs carrying ``label`` (open, closed unmerged, merged or all), optionally only those of ``branch``
        or those updated at or after ``updated_since`` (Unix seconds)."""
        ...

    def get_pr(self, number: int) -> PullRequest | None:
        """One PR as the forge knows it now, with who merged it (``merged_by``); None when there is none."""
        ...

    def pr_files(self, pr: PullRequest) -> list[PrFile]:
        """The files ``pr`` changes (at most the first 100), with their patches; [] when the forge cannot say."""
        ...

    def request_reviewers(self, pr: PullRequest, *, reviewers: Sequence[str],
                          teams: Sequence[str]) -> list[tuple[str, str]]:
        """Ask ``reviewers`` (logins) and ``teams`` (slugs) for a review, never the PR's own author; the ones the
        forge refused (not a collaborator...) as (name, why), teams named ``team <slug>``: a refusal never
        fails the PR."""
        ...

    def close_pr(self, pr: PullRequest, *, comment: str) -> None: ...

    def set_body(self, pr: PullRequest, body: str) -> None:
        """Replace the PR's description (the exporter adds the MLflow link once the run is recorded)."""
        ...


@dataclass(frozen=True)
class Issue:
    """An issue of the GitOps repository: the dashboard the bot keeps (app/dashboard.py)."""

    number: int
    url: str
    title: str = ""
    body: str = field(default="", compare=False, repr=False)


class IssueBoard(Protocol):
    """The one issue the bot keeps current, found by a hidden marker in its body (the forge's issues)."""

    def find_issue(self, marker: str) -> Issue | None:
        """The open issue whose body contains ``marker`` (the lowest number when several), or None."""
        ...

    def create_issue(self, *, title: str, body: str) -> Issue: ...

    def update_issue(self, issue: Issue, *, title: str, body: str) -> Issue: ...


@dataclass(frozen=True)
class Remediation:
    """One row of the ledger: a PR the bot opened for a workload and cause, and what became of it.

    Times are Unix seconds. ``before``/``after`` map field paths to the values in git before and after.
    """

    workload: str  # Kind/namespace/name
    cause: str
    branch: str
    pr_number: int
    pr_url: str
    state: str  # open, merged, closed (closed = unmerged)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    images: tuple[str, ...] = ()  # the workload's images when the PR was opened: "new image" = new evidence
    opened_at: float = 0.0
    merged_at: float | None = None
    closed_at: float | None = None
    resolved_at: float | None = None  # when the alert resolved: without the change (we commented), or after its merge
    escalated_at: float | None = None  # when we commented that the merged fix did not resolve the alert
    # The life of the fix after the PR (app/outcomes.py follows it read-only; issue 15):
    record_id: str = ""  # the run record's key: the MLflow run tagged autofix_record=<key> gets the outcome
    risk: float | None = None  # the risk score the PR was opened with
    merged_by: str | None = None
    synced_at: float | None = None  # the merge commit synced (Argo CD / Flux status)
    rolled_out_at: float | None = None  # the live object's field equals what the PR set
    fired_again_at: float | None = None  # the same alert for the same workload and cause, after the merge
    final: str | None = None  # effective, ineffective, reverted, rejected, stale (None: still being followed)
    final_at: float | None = None
    cooldown_lifted_at: float | None = None  # a human lifted this closed PR's cooldown (the dashboard issue)
    repo: str = ""  # the repository's name in repositories.yaml; '' = the one AUTOFIX_GIT_URL names
    cluster: str = ""  # the cluster's name in clusters.yaml the fix was for; '' = the install's one cluster


class Ledger(Protocol):
    """Every remediation the bot proposed (in the job store); rebuilt from the forge when lost."""

    def record(self, entry: Remediation) -> None:
        """Insert or replace the row of ``entry.pr_number`` in ``entry.repo``."""
        ...

    def entries(self, *, branch: str | None = None, repo: str | None = None) -> list[Remediation]:
        """Rows, oldest first, optionally those of one branch (= one workload and cause) and of one repository
        (None: every repository)."""
        ...

    def opened_since(self, since: float) -> int: ...

    def is_empty(self) -> bool: ...

    def publishing(self, *, spacing: float | Callable[[], float] = 0.0) -> AbstractContextManager[None]:
        """Held around the PR budget check, the look for an open PR on the branch, the push, the PR and its
        ledger row: one at a time across workers, processes and replicas (app/adapters/store.py). ``spacing``:
        seconds another replica waiting for the lock must still wait after it is released (the forge's write
        spacing, which each process keeps only between its own writes); a callable is asked at release (0 when
        the holder wrote nothing)."""
        ...


@dataclass(frozen=True)
class RunHandle:
    run_id: str
    url: str


@dataclass(frozen=True)
class RawSeries:
    """One series as a Prometheus-compatible API answers it: its labels and its (Unix seconds, value) samples."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


class MetricsReader(Protocol):
    """A Prometheus-compatible HTTP API (Prometheus, Thanos Query, Mimir, VictoriaMetrics), read-only: GET
    /api/v1/query and /api/v1/query_range. Failures raise TemporaryError with dependency "prometheus"; the
    evidence stage turns them into Metrics(status="unavailable"), never a failed job."""

    @property
    def source(self) -> str: ...  # the base URL, without credentials

    def query_range(self, promql: str, *, start: float, end: float, step: float) -> list[RawSeries]: ...

    def query(self, promql: str, *, at: float) -> list[RawSeries]: ...


class RunSink(Protocol):
    """Where run records end up (MLflow): used only by the exporter, never on the path from alert to PR."""

    def export(self, run: PendingRun) -> RunHandle:
        """Create (or find, by the ``autofix_record`` tag) the run and log the whole record; idempotent."""
        ...

    def prepare(self) -> None:
        """The slow first steps (connect, open the store, find the experiment), ahead of the first export."""
        ...


class Advisor(Protocol):
    """An optional LLM: explains a rule's diagnosis, proposes a change where no rule matched.

    Its words are data, never instructions. Prompts and answers are app.advice types; every failure
    (timeout, refusal, invalid output, API error) raises app.advice.AdvisorError, carrying the usage when
    the model answered. ``check`` is for `autofix doctor`: a one-line status, or AdvisorError.
    """

    @property
    def model(self) -> str: ...

    def explain(self, prompt: Prompt) -> Answer[str]: ...

    def propose(self, prompt: Prompt) -> Answer[Proposal]: ...  # no change proposed: empty ``changes``

    def check(self) -> str: ...


class Handler(Protocol):
    """Handles one alert end to end (the pipeline). Raises TemporaryError when the job should be retried."""

    def handle(self, incident: Any) -> Any: ...  # app.models.incident.Incident -> app.models.outcome.Outcome
