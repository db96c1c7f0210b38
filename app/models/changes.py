"""Where the fix goes, what it changes, and the single change record everything is rendered from."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny

from app.models.metrics import Curve


class LayoutSpec(BaseModel):
    """What a layout needs to know beyond the fields every Location shares.

    This base is the plain layout's: nothing, the document at the location is the workload. Each layout in
    app/sources/layouts subclasses it with its own typed fields and names itself in ``layout``, its key in the
    one layout registry (app/sources/layouts/__init__.py).
    """

    model_config = ConfigDict(frozen=True)

    layout: ClassVar[str] = "plain"


class Location(BaseModel):
    """The document in the GitOps repo that defines the workload, and the layout that produces it from git."""

    model_config = ConfigDict(frozen=True)

    path: str  # relative to the repository root, POSIX separators
    document_index: int = 0  # which YAML document in a multi-document file
    source: str  # which deployer found it: "argocd", "flux", "plain"
    # YAML path from the document root to the workload object (empty for a whole document; ("items", i) for
    # an object inside a `kind: List`).
    prefix: tuple[str | int, ...] = ()
    app: str | None = None  # the Argo CD Application / Flux object that deploys it
    note: str | None = None  # how it was found, for the PR and MLflow
    environments: tuple[str, ...] = ()  # what the change reaches (overlay dirs, values files), for the PR
    # How the effective workload is produced from git: the layout's own typed model (kustomization
    # directory, Helm values sources...); its class names the layout.
    layout_spec: SerializeAsAny[LayoutSpec] = Field(default_factory=LayoutSpec)

    @property
    def layout(self) -> str:
        """The name of the layout (its key in the layout registry)."""
        return self.layout_spec.layout


class FileEdit(BaseModel):
    """Field changes in one document of one file, in that document's own paths (below ``prefix``)."""

    model_config = ConfigDict(frozen=True)

    path: str
    document_index: int = 0
    prefix: tuple[str | int, ...] = ()
    changes: list[FieldChange]
    what: str = ""  # "strategic-merge patch", "images transformer", "values file", "workload manifest"


class FieldChange(BaseModel):
    """One field of the workload object: a path like ``spec.template.spec.containers[name=app].image``."""

    model_config = ConfigDict(frozen=True)

    path: str
    old: Any = None
    new: Any = None
    reason: str = ""


class Plan(BaseModel):
    """The changes a fixer wants on the workload object, in the object's own field paths."""

    model_config = ConfigDict(frozen=True)

    cause: str
    summary: str  # "Raise memory limit of shop/checkout to 768Mi"
    changes: list[FieldChange]
    allowed_paths: list[str] = Field(default_factory=list)  # globs the validation accepts for this cause
    # The metric the sizing read, for the PR's chart and table (None: sized without metrics, or not a sizing).
    curve: Curve | None = None
    sizing_note: str = ""  # "sized without metrics: prometheus: connection refused" when metrics were wanted


class FileChange(BaseModel):
    model_config = ConfigDict(frozen=True)

    path: str
    old_text: str
    new_text: str
    diff: str


class RiskFactor(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    value: float
    weight: float
    explanation: str


class Tally(BaseModel):
    """What became of a set of earlier fixes (ledger rows): ``final`` counts stay 0 until outcomes are followed."""

    model_config = ConfigDict(frozen=True)

    opened: int = 0
    merged: int = 0
    closed: int = 0  # closed unmerged: a human said no
    effective: int = 0
    ineffective: int = 0
    reverted: int = 0

    @property
    def decided(self) -> int:
        return self.merged + self.closed

    @property
    def bad(self) -> int:
        """Decided against, undone, or did not help."""
        return self.closed + self.reverted + self.ineffective


class TrackRecord(BaseModel):
    """The ledger's record of earlier fixes of one cause (``cause``) and, among them, of one workload's."""

    model_config = ConfigDict(frozen=True)

    cause: str
    overall: Tally
    workload: Tally

    @property
    def cold(self) -> bool:
        return self.overall.decided == 0


class Risk(BaseModel):
    model_config = ConfigDict(frozen=True)

    score: float
    level: str  # low, medium, high
    factors: list[RiskFactor]
    track: TrackRecord | None = None  # the ledger's record the ``history`` factor used (None: not consulted)


class ChangeSet(BaseModel):
    """The change record: file -> object -> field -> old/new. PR, commit and MLflow are rendered from it."""

    model_config = ConfigDict(frozen=True)

    location: Location
    plan: Plan
    files: list[FileChange]
    risk: Risk
    validation: list[str] = Field(default_factory=list)  # checks that passed, one line each
    edits: list[FileEdit] = Field(default_factory=list)  # where each planned field change was written
    rendered: str | None = None  # "verified: ..." or "not verified: why", for the PR
    # The effective workload before and after (rendered overlay/chart), when the edited file is not the
    # workload manifest itself: what gates must judge for such layouts.
    workload_old: dict[str, Any] | None = None
    workload_new: dict[str, Any] | None = None

    @property
    def diff(self) -> str:
        return "".join(f.diff for f in self.files)


Location.model_rebuild()
