"""Where the fix goes, what it changes, and the single change record everything is rendered from."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Location(BaseModel):
    """The document in the GitOps repo that defines the workload."""

    model_config = ConfigDict(frozen=True)

    path: str  # relative to the repository root, POSIX separators
    document_index: int = 0  # which YAML document in a multi-document file
    source: str  # which source module found it: "argocd", "plain", ...
    # YAML path from the document root to the workload object (empty for a plain manifest; e.g. a Helm
    # values key prefix for values files).
    prefix: tuple[str | int, ...] = ()
    app: str | None = None  # the Argo CD Application / Flux object that deploys it
    note: str | None = None  # how it was found, for the PR and MLflow
    # How the effective workload is produced from git: "plain" (the document above is the workload),
    # "kustomize" (rendered from ``render_dir``), "helm" (a chart rendered with ``values`` sources).
    layout: str = "plain"
    render_dir: str | None = None  # kustomization directory, or the chart directory when it is in the repo
    values: tuple[ValuesSource, ...] = ()  # helm: values sources, lowest precedence first
    release: str | None = None  # helm: release name (for rendering)
    environments: tuple[str, ...] = ()  # what the change reaches (overlay dirs, values files)


class ValuesSource(BaseModel):
    """One place Helm values come from: a values file, or a mapping inside a manifest (prefix)."""

    model_config = ConfigDict(frozen=True)

    path: str | None  # None: not in the repo (e.g. a chart's defaults from a Helm repository)
    document_index: int = 0
    prefix: tuple[str | int, ...] = ()
    editable: bool = True  # the chart's own defaults and generated manifests are never edited
    label: str = ""  # "values file", "chart defaults", "Application valuesObject", ...
    inline: dict[str, Any] | None = None  # values not in an editable place (helm.values text, parameters)


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


class Risk(BaseModel):
    model_config = ConfigDict(frozen=True)

    score: float
    level: str  # low, medium, high
    factors: list[RiskFactor]


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
